// Attachments in a real browser (playwright-core driving Debian's chromium):
// two people in a group, each in their own browser context. Anna pastes an
// image and sends it with a multi-line caption holding a link, **bold** and
// a mention of Ben; Ben sees the thumbnail, the link, the bold and the
// highlight, an "@" badge for a mention elsewhere, and older history as he
// scrolls up. A removed member gets 403 for the file. An uploaded HTML page
// and an SVG with script are offered as downloads and never run. Then the
// screenshots of docs/ (desktop and phone width).
//
//   NATTER_URL=http://127.0.0.1:PORT [SCREENSHOT=docs/screenshot.png
//     SCREENSHOT_PHONE=docs/screenshot-phone.png] node files.mjs
//
// Env: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  start, check, launchChecked, sleep, waitFor, api, registerAndLogin,
  MESSAGE_BOX as BOX, HISTORY_MSG, newPerson as person, logIn, openRoom, scrollsBackToStart,
} from './lib.mjs';

/** A person whose browser takes downloads (the served files are downloads). */
const newPerson = (browser, user, options = {}) => person(browser, user, { ...options, context: { acceptDownloads: true, ...options.context } });

const WAIT = 10000;
const PASSWORD = 'correct horse battery';

/** The message of `p`'s history whose attachments include a file named `name`, once it has a seq. */
async function messageWithFile(p, name, what) {
  const locator = p.page.locator(`${HISTORY_MSG}[data-seq]`, {
    has: p.page.locator(`[data-testid=attachments] [title^="${name}"], [data-testid=attachments] .file-name[title="${name}"]`),
  });
  await waitFor(async () => (await locator.count()) === 1, { timeout: WAIT, what });
  return locator;
}

/** Pastes `files` ([{name, type, base64}]) into the message box, as a clipboard paste does. */
async function paste(p, files) {
  await p.page.locator(BOX).evaluate((box, list) => {
    const data = new DataTransfer();
    for (const f of list) {
      const bytes = Uint8Array.from(atob(f.base64), (c) => c.charCodeAt(0));
      data.items.add(new File([bytes], f.name, { type: f.type }));
    }
    box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, files);
}

/** A PNG drawn by the page itself (a small map), as base64. */
async function drawnPng(page) {
  return page.evaluate(async () => {
    const canvas = new OffscreenCanvas(480, 320);
    const g = canvas.getContext('2d');
    g.fillStyle = '#cfe8d5';
    g.fillRect(0, 0, 480, 320);
    g.strokeStyle = '#2f6f4e';
    g.lineWidth = 10;
    g.beginPath();
    g.moveTo(30, 280);
    g.bezierCurveTo(150, 40, 300, 300, 450, 60);
    g.stroke();
    g.fillStyle = '#c0392b';
    g.beginPath();
    g.arc(450, 60, 18, 0, Math.PI * 2);
    g.fill();
    const blob = await canvas.convertToBlob({ type: 'image/png' });
    const bytes = new Uint8Array(await blob.arrayBuffer());
    let text = '';
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
  });
}

/** Waits until every chip of the composer's tray is uploaded; returns their ids. */
async function uploaded(p, count) {
  const chips = p.page.locator('[data-testid=upload-chip]');
  await waitFor(async () => (await chips.count()) === count
    && (await p.page.locator('[data-testid=upload-chip][data-state=done]').count()) === count,
  { timeout: WAIT, what: `${count} uploads done at ${p.name}` });
  return chips.evaluateAll((els) => els.map((e) => e.dataset.attachmentId));
}

/** GETs `url` as the page's user (its cookie): status and the headers a test needs. */
function fetchAs(p, url) {
  return p.page.evaluate(async (u) => {
    const r = await fetch(u);
    const h = (n) => r.headers.get(n);
    return {
      status: r.status,
      type: h('content-type'),
      disposition: h('content-disposition'),
      nosniff: h('x-content-type-options'),
      csp: h('content-security-policy'),
      size: (await r.arrayBuffer()).byteLength,
    };
  }, url);
}

async function main() {
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  const browser = await launchChecked();

  let A;
  let B;
  let C;
  let gid;
  await check('anna, ben and cleo register; anna makes the group "Saturday hike"; anna and ben open it in their browsers', async () => {
    const a = await registerAndLogin(`anna_${tag}`, `anna.${tag}@example.test`, PASSWORD);
    const b = await registerAndLogin(`ben_${tag}`, `ben.${tag}@example.test`, PASSWORD);
    C = await registerAndLogin(`cleo_${tag}`, `cleo.${tag}@example.test`, PASSWORD);
    const r = await api('POST', '/groups', { title: 'Saturday hike', emails: [b.email, C.email] }, a.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    gid = r.body.room_id;
    const direct = await api('POST', '/chats', { email: b.email }, a.token);
    assert.ok(direct.status === 201 || direct.status === 200, JSON.stringify(direct.body));
    A = await newPerson(browser, { ...a, name: 'anna' });
    B = await newPerson(browser, { ...b, name: 'ben' });
    for (const p of [A, B]) {
      await logIn(p);
      await openRoom(p, gid);
    }
    for (const [who, text] of [[a, 'Who is in for Saturday?'], [b, 'Me! Where do we start?']]) {
      const sent = await api('POST', `/rooms/${encodeURIComponent(gid)}/messages`, { message: text }, who.token);
      assert.equal(sent.status, 201, JSON.stringify(sent.body));
    }
  });

  let map;
  await check('anna pastes an image: a chip with its preview uploads to 100 %', async () => {
    const png = await drawnPng(A.page);
    await paste(A, [{ name: 'route.png', type: 'image/png', base64: png }]);
    const [id] = await uploaded(A, 1);
    assert.ok(id, 'the chip knows its attachment id');
    const chip = A.page.locator('[data-testid=upload-chip]');
    assert.equal(await chip.locator('[data-testid=upload-progress]').evaluate((e) => e.value), 100);
    assert.ok(await chip.locator('img').evaluate((img) => img.complete && img.naturalWidth > 0), 'the preview shows the image');
    map = { id };
  });

  const caption = `Here is the route for Saturday @${B.username}\nsee https://example.org/trail and **bring boots**`;
  await check('anna types a two-line caption with a link, **bold** and a mention, and sends with Enter', async () => {
    const box = A.page.locator(BOX);
    await box.click();
    const [first, second] = caption.split('\n');
    await A.page.keyboard.type(first);
    await A.page.keyboard.press('Escape'); // closes the mention list the "@" opened
    await A.page.keyboard.press('Shift+Enter');
    await A.page.keyboard.type(second);
    await box.press('Enter');
    await waitFor(async () => (await A.page.locator('[data-testid=upload-chip]').count()) === 0, { timeout: WAIT, what: 'the tray to clear after sending' });
    await messageWithFile(A, 'route.png', 'the sent image at anna');
  });

  await check('ben sees the thumbnail (sized, loaded), the caption on two lines, a safe link, the bold, and the mention highlighted', async () => {
    const msg = await messageWithFile(B, 'route.png', 'the image at ben');
    const link = msg.locator('[data-testid=attachment-image]');
    assert.equal(await link.getAttribute('data-attachment-id'), map.id);
    assert.equal(await link.getAttribute('target'), '_blank');
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    const img = link.locator('img.attachment-thumb');
    await waitFor(() => img.evaluate((e) => e.complete && e.naturalWidth > 0), { timeout: WAIT, what: 'the thumbnail to load' });
    const shown = await img.evaluate((e) => ({ src: e.getAttribute('src'), w: e.getAttribute('width'), h: e.getAttribute('height'), nw: e.naturalWidth }));
    assert.equal(shown.src, `/api/v1/attachments/${map.id}/thumbnail`);
    assert.deepEqual([shown.w, shown.h], ['320', '213'], 'the box keeps the picture\'s shape');
    assert.ok(shown.nw <= 400, `a thumbnail, not the original: ${shown.nw}px`);
    const text = await msg.locator('.text').evaluate((e) => ({
      inner: e.innerText,
      links: [...e.querySelectorAll('a')].map((a) => [a.getAttribute('href'), a.rel, a.target]),
      strong: [...e.querySelectorAll('strong')].map((s) => s.textContent),
    }));
    assert.equal(text.inner, caption.replace('**bring boots**', 'bring boots'));
    assert.deepEqual(text.links, [['https://example.org/trail', 'noopener noreferrer', '_blank']]);
    assert.deepEqual(text.strong, ['bring boots']);
    assert.match(await msg.getAttribute('class'), /\bmentions-me\b/, 'ben is mentioned');
    const file = await fetchAs(B, await link.getAttribute('href'));
    assert.equal(file.status, 200);
    assert.equal(file.type, 'image/png');
    assert.ok(file.size > 1000);
  });

  await check('a mention in another chat puts an "@" beside its unread count in ben\'s list, live; opening it clears both', async () => {
    const direct = (await api('GET', '/chats', undefined, A.token)).body.chats.find((c) => c.kind === 'direct');
    const item = B.page.locator(`[data-testid=chat-item][data-rid="${direct.room_id}"]`);
    assert.equal(await item.locator('[data-testid=mention-badge]').count(), 0);
    for (const message of ['are you coming?', `@${B.username} bring the map please`]) {
      const sent = await api('POST', `/rooms/${encodeURIComponent(direct.room_id)}/messages`, { message }, A.token);
      assert.equal(sent.status, 201, JSON.stringify(sent.body));
    }
    await waitFor(async () => (await item.getAttribute('data-unread')) === '2', { timeout: WAIT, what: 'two unread in ben\'s list' });
    await item.locator('[data-testid=mention-badge]').waitFor();
    assert.equal(await item.getAttribute('data-mentions'), '1');
    // The server counts the same, for a page loaded afresh.
    const listed = (await api('GET', '/chats', undefined, B.token)).body.chats.find((c) => c.room_id === direct.room_id);
    assert.equal(listed.mentions, 1);
    await openRoom(B, direct.room_id);
    const opened = B.page.locator(`[data-testid=chat-item][data-rid="${direct.room_id}"]`);
    assert.equal(await opened.locator('[data-testid=mention-badge]').count(), 0);
    assert.equal(await opened.locator('.badge').count(), 0);
    await openRoom(B, gid);
  });

  await check('in that chat, scrolling to the top loads older messages by itself (80 sent), the view kept still', async () => {
    const direct = (await api('GET', '/chats', undefined, A.token)).body.chats.find((c) => c.kind === 'direct');
    await scrollsBackToStart([A, B], direct.room_id);
    for (const p of [A, B]) await openRoom(p, gid);
  });

  await check('the full image opens in a new tab from the thumbnail', async () => {
    const msg = await messageWithFile(B, 'route.png', 'the image at ben');
    const [tab] = await Promise.all([
      B.context.waitForEvent('page'),
      msg.locator('[data-testid=attachment-image]').click(),
    ]);
    await tab.waitForLoadState();
    assert.equal(new URL(tab.url()).pathname, `/api/v1/attachments/${map.id}`);
    const size = await tab.evaluate(() => { const i = document.querySelector('img'); return i && [i.naturalWidth, i.naturalHeight]; });
    assert.deepEqual(size, [480, 320]);
    await tab.close();
  });

  await check('cleo, a member, may fetch the file; removed from the group, she gets 403 for it', async () => {
    const url = `/attachments/${map.id}`;
    const before = await api('GET', url, undefined, C.token);
    assert.equal(before.status, 200);
    const removed = await api('DELETE', `/rooms/${encodeURIComponent(gid)}/members/${C.id}`, undefined, A.token);
    assert.equal(removed.status, 204, JSON.stringify(removed.body));
    const after = await api('GET', url, undefined, C.token);
    assert.equal(after.status, 403);
    assert.equal(after.body.error.code, 'not_member');
  });

  const evil = [
    { name: 'invoice.html', type: 'text/html', text: '<!doctype html><script>alert("html ran")</script><h1>pwned</h1>' },
    { name: 'logo.svg', type: 'image/svg+xml', text: '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(\'svg ran\')"><script>alert("svg script ran")</script><circle r="9"/></svg>' },
  ];
  await check('anna attaches an HTML page and an SVG with script: ben sees two download chips, not pictures', async () => {
    await A.page.locator('[data-testid=attach-input]').setInputFiles(evil.map((f) => ({ name: f.name, mimeType: f.type, buffer: Buffer.from(f.text) })));
    await uploaded(A, 2);
    await A.page.locator(BOX).fill('the files you asked for');
    await A.page.locator(BOX).press('Enter');
    const msg = await messageWithFile(B, 'invoice.html', 'the files at ben');
    const files = msg.locator('[data-testid=attachment-file]');
    assert.equal(await files.count(), 2);
    assert.equal(await msg.locator('[data-testid=attachment-image]').count(), 0, 'neither is shown as a picture');
    for (const f of evil) {
      const a = msg.locator(`[data-testid=attachment-file]:has(.file-name[title="${f.name}"])`);
      assert.equal(await a.getAttribute('download'), f.name);
    }
  });

  await check('opened or embedded, neither runs: served as downloads (octet-stream, nosniff, sandbox CSP); no dialog anywhere', async () => {
    const msg = await messageWithFile(B, 'invoice.html', 'the files at ben');
    const hrefs = await msg.locator('[data-testid=attachment-file]').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    for (const href of hrefs) {
      const got = await fetchAs(B, href);
      assert.equal(got.status, 200);
      assert.equal(got.type, 'application/octet-stream');
      assert.equal(got.nosniff, 'nosniff');
      assert.match(got.disposition, /^attachment;/);
      assert.match(got.csp, /sandbox/);
      // Navigated to directly, it downloads rather than renders.
      const tab = await B.context.newPage();
      const [download] = await Promise.all([
        tab.waitForEvent('download'),
        tab.goto(href).catch(() => { /* "Download is starting" */ }),
      ]);
      await download.cancel();
      await tab.close();
      // Embedded the ways a page could try: an iframe, an <object>, an <img>.
      await B.page.evaluate((u) => {
        const box = document.createElement('div');
        box.id = 'embed-test';
        box.innerHTML = '';
        const frame = document.createElement('iframe');
        frame.src = u;
        const object = document.createElement('object');
        object.data = u;
        const img = document.createElement('img');
        img.src = u;
        box.append(frame, object, img);
        document.body.append(box);
      }, href);
      await sleep(1000);
      await B.page.evaluate(() => document.getElementById('embed-test').remove());
    }
    assert.deepEqual(B.dialogs, [], 'no script of the uploads ran');
    assert.deepEqual(B.pageErrors, []);
  });

  if (process.env.SCREENSHOT) {
    await check(`screenshot of ben's view -> ${process.env.SCREENSHOT}`, async () => {
      await openRoom(B, gid);
      await messageWithFile(B, 'route.png', 'the image after a reload (the server renders it)');
      const img = B.page.locator('img.attachment-thumb');
      await waitFor(() => img.evaluate((e) => e.complete && e.naturalWidth > 0), { timeout: WAIT, what: 'the thumbnail to load' });
      await B.page.mouse.move(0, 0);
      const file = path.resolve(process.cwd(), process.env.SCREENSHOT);
      mkdirSync(path.dirname(file), { recursive: true });
      await B.page.screenshot({ path: file });
    });
  }

  if (process.env.SCREENSHOT_PHONE) {
    await check(`screenshot of anna's view on a phone (390 x 844) -> ${process.env.SCREENSHOT_PHONE}`, async () => {
      const phone = await newPerson(browser, { ...A, name: 'anna on a phone' }, { viewport: { width: 390, height: 844 }, context: { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } });
      await logIn(phone);
      await openRoom(phone, gid);
      const msg = await messageWithFile(phone, 'route.png', 'the image on the phone');
      const img = msg.locator('img.attachment-thumb');
      await waitFor(() => img.evaluate((e) => e.complete && e.naturalWidth > 0), { timeout: WAIT, what: 'the thumbnail to load' });
      const width = await img.evaluate((e) => e.getBoundingClientRect().width);
      assert.ok(width <= 390, `the picture fits the screen: ${width}px`);
      await phone.page.locator('[data-testid=attach-input]').setInputFiles({ name: 'packing-list.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\n% packing list\n') });
      await uploaded(phone, 1);
      await phone.page.locator(BOX).fill('Packing list attached');
      const file = path.resolve(process.cwd(), process.env.SCREENSHOT_PHONE);
      mkdirSync(path.dirname(file), { recursive: true });
      await phone.page.screenshot({ path: file });
      await phone.context.close();
    });
  }
}

start('files', main);
