// The web app when things go wrong around it, in Debian's chromium: the
// outbox (messages typed with the network cut, or with the server killed, and
// across reloads, are delivered exactly once), the service worker (the app
// opens with the server stopped, and shows pushes unless a Natter tab is in
// front), the installability checks Chromium itself makes, desktop
// notifications, and the phone layout (a tap opens a message's actions;
// touch targets of 44 px at least).
//
// It runs its own server, so that it can kill and restart it:
//   NATTER_BIN=target/debug/natter NATTER_URL=http://127.0.0.1:PORT node offline.mjs
// (PORT free; the server listens there, with its data in a temporary folder).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';
import {
  BASE, api, check, note, onCleanup, registerAndLogin, sleep, start, uniqueTag, waitFor, CHROMIUM, CHROMIUM_ARGS,
} from './lib.mjs';

const NATTER_BIN = process.env.NATTER_BIN || '';
const WAIT = 15000;
const PASSWORD = 'correct horse battery';
const HISTORY_MSG = '[data-testid=message-history] [data-testid=message]';

// ---------- the server, which this script starts, kills and restarts ----------

const pageErrors = [];
const dataDir = mkdtempSync(path.join(tmpdir(), 'natter-offline-'));
onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
let server = null;

async function startServer() {
  const addr = new URL(BASE).host;
  const child = spawn(NATTER_BIN, [
    'serve', '--addr', addr, '--data-dir', dataDir, '--argon2-memory-kib', '64', '--argon2-iterations', '1',
  ], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, NATTER_LOG: 'warn', NATTER_SEND_RATE: '100000', NATTER_SEND_BURST: '100000' },
  });
  server = child;
  await waitFor(async () => (await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(1000) })).ok, {
    timeout: WAIT, interval: 100, what: `natter to listen at ${BASE}`,
  });
}

function killServer() {
  const child = server;
  server = null;
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGKILL');
  });
}
onCleanup(() => server?.kill('SIGKILL'));

// ---------- people ----------

async function login(context, person) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e?.message || e)));
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  await page.goto('/login');
  await page.fill('[name=email]', person.email);
  await page.fill('[name=password]', PASSWORD);
  await page.click('form button[type=submit]');
  await page.waitForURL(/\/chat\//);
  return page;
}

/** B, as an app would be: a socket that (re)joins the room and counts what it receives. */
function observer(token, rid) {
  const seen = [];
  const s = io(BASE, { path: '/socket.io/', transports: ['websocket'], auth: { token }, reconnectionDelay: 200, reconnectionDelayMax: 500 });
  onCleanup(() => s.close());
  s.on('connect', () => s.emit('join-chat', { rid }));
  s.on('message', (m) => { if (m && m.rid === rid) seen.push(m); });
  return { socket: s, seen, count: (text) => seen.filter((m) => m.message === text).length };
}

/** Every message of the room, from the server. */
async function roomHistory(token, rid) {
  const r = await api('GET', `/rooms/${encodeURIComponent(rid)}/messages?limit=100`, undefined, token);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.messages;
}

const shown = (page) => page.$$eval(HISTORY_MSG, (els) => els.map((e) => ({
  seq: e.getAttribute('data-seq'),
  client: e.getAttribute('data-client-id'),
  waiting: e.hasAttribute('data-waiting'),
  text: e.querySelector('.text')?.textContent.trim(),
})));

/** The outbox as IndexedDB holds it. */
const outboxOf = (page) => page.evaluate(() => new Promise((resolve, reject) => {
  const req = indexedDB.open('natter');
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const db = req.result;
    if (!db.objectStoreNames.contains('outbox')) { resolve([]); return; }
    const all = db.transaction('outbox').objectStore('outbox').getAll();
    all.onsuccess = () => resolve(all.result.map((e) => e.message));
    all.onerror = () => reject(all.error);
  };
}));

async function type(page, text) {
  const field = page.locator('[data-testid=message-form] [name=message]');
  await field.fill(text);
  await field.press('Enter');
  await page.locator(HISTORY_MSG).filter({ hasText: text }).first().waitFor();
}

const connState = (page) => page.locator('.room-sub .conn').getAttribute('data-state');

async function waitDisconnected(page) {
  await waitFor(async () => (await connState(page)) !== 'connected', { timeout: WAIT, what: 'the page to notice it is disconnected' });
}

/**
 * Another tab (not Natter's) in front, so that `page` is not looked at. Playwright makes
 * every headless page believe it has the focus; that emulation is turned off
 * for `page`, which then sees it does not. Returns the other tab.
 */
async function putBehind(page) {
  const other = await page.context().newPage();
  await other.goto('about:blank'); // not a Natter page: Natter is in front nowhere
  await other.bringToFront();
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Emulation.setFocusEmulationEnabled', { enabled: false });
  await waitFor(() => page.evaluate(() => !document.hasFocus()), { timeout: WAIT, what: 'the chat page to lose the focus' });
  return other;
}

/** Each text shown once, sent (with a seq), on the page; and once in the room's stored history. */
async function deliveredOnce(page, token, rid, texts, what) {
  let last = [];
  try {
    await waitFor(async () => {
      last = await shown(page);
      return texts.every((t) => last.filter((m) => m.text === t).length === 1 && last.find((m) => m.text === t).seq);
    }, { timeout: WAIT, what });
  } catch (e) {
    throw new Error(`${e.message}\nthe page shows: ${JSON.stringify(last)}`);
  }
  const stored = await roomHistory(token, rid);
  for (const t of texts) {
    assert.equal(stored.filter((m) => m.message === t).length, 1, `"${t}" stored exactly once: ${JSON.stringify(stored.map((m) => m.message))}`);
  }
  const again = await shown(page);
  for (const t of texts) assert.equal(again.filter((m) => m.text === t).length, 1, `"${t}" shown once`);
}

start('offline, notifications and the phone layout in chromium', async () => {
  if (!NATTER_BIN) throw new Error('NATTER_BIN is not set (the natter binary this script starts and kills)');
  await startServer();
  const tag = uniqueTag();
  const a = await registerAndLogin(`ann_${tag}`, `ann.${tag}@example.test`, PASSWORD);
  const b = await registerAndLogin(`bob_${tag}`, `bob.${tag}@example.test`, PASSWORD);
  const c = await registerAndLogin(`cat_${tag}`, `cat.${tag}@example.test`, PASSWORD);
  const rid = (await api('POST', '/chats', { email: b.email }, a.token)).body.room_id;
  const ridCat = (await api('POST', '/chats', { email: c.email }, a.token)).body.room_id;
  assert.ok(rid && ridCat, 'direct rooms opened');
  const bob = observer(b.token, rid);
  await waitFor(() => bob.socket.connected, { timeout: WAIT, what: "Bob's socket to connect" });

  // A profile of its own (not an incognito context, where Chromium never offers to install an app).
  const profile = mkdtempSync(path.join(tmpdir(), 'natter-chromium-'));
  onCleanup(() => rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, args: CHROMIUM_ARGS, viewport: { width: 1280, height: 800 }, baseURL: BASE,
  });
  onCleanup(() => context.close());
  await context.grantPermissions(['notifications'], { origin: BASE });
  // Every Notification the page creates is recorded (and still created).
  await context.addInitScript(() => {
    const Real = window.Notification;
    window.__notes = [];
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notes.push({ title, body: options?.body, tag: options?.tag, note: this });
      }
    };
  });
  const page = await login(context, a);
  const chatUrl = `/chat/?rid=${encodeURIComponent(rid)}`;

  await check('the service worker installs and controls the page; Chromium finds the app installable', async () => {
    await page.goto(chatUrl);
    await waitFor(() => page.evaluate(() => Boolean(navigator.serviceWorker.controller)), { timeout: WAIT, what: 'a service worker to control the page' });
    const cdp = await context.newCDPSession(page);
    const manifest = await cdp.send('Page.getAppManifest');
    assert.deepEqual(manifest.errors, [], `manifest errors: ${JSON.stringify(manifest.errors)}`);
    const parsed = JSON.parse(manifest.data);
    assert.equal(parsed.display, 'standalone');
    assert.equal(parsed.start_url, '/chat/');
    // What Lighthouse's former PWA audits looked for beyond installability: a splash screen
    // (name, colours, a 512 px icon), a maskable icon, a themed address bar, a viewport.
    assert.ok(parsed.name && parsed.short_name && parsed.background_color && parsed.theme_color, 'splash screen fields');
    assert.ok(parsed.icons.some((i) => i.purpose === 'maskable'), 'a maskable icon');
    assert.ok(parsed.icons.some((i) => i.sizes === '512x512'), 'a 512 px icon');
    assert.equal(await page.locator('meta[name=theme-color]').getAttribute('content'), parsed.theme_color);
    assert.match(await page.locator('meta[name=viewport]').getAttribute('content'), /width=device-width/);
    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, [], `installability errors: ${JSON.stringify(installabilityErrors)}`);
    for (const icon of parsed.icons.filter((i) => i.type === 'image/png')) {
      const size = await page.evaluate((src) => new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(`${img.naturalWidth}x${img.naturalHeight}`);
        img.onerror = () => resolve('broken');
        img.src = src;
      }), icon.src);
      assert.equal(size, icon.sizes, `${icon.src} is ${icon.sizes}`);
    }
    const caches = await page.evaluate(() => caches.keys());
    const version = (await (await fetch(`${BASE}/sw.js`)).text()).match(/^const VERSION = "([0-9a-f]+)";/m)?.[1];
    assert.ok(version, '/sw.js starts with its build version');
    assert.ok(caches.includes(`natter-shell-${version}`), `the shell is cached under this build's version: ${caches}`);
    await cdp.detach();
  });

  await check('network cut: messages wait in the outbox (and Cancel drops one), survive a reload, and are delivered exactly once when the network is back', async () => {
    await waitFor(async () => (await connState(page)) === 'connected', { timeout: WAIT, what: 'the page to connect' });
    const dotColour = () => page.locator('.room-header .presence-dot').evaluate((e) => getComputedStyle(e).backgroundColor);
    const grey = await page.evaluate(() => {
      const probe = document.createElement('div');
      probe.style.background = 'var(--muted)';
      document.body.append(probe);
      const colour = getComputedStyle(probe).backgroundColor;
      probe.remove();
      return colour;
    });
    await page.locator('.room-header .presence-dot').waitFor({ state: 'visible' });
    assert.notEqual(await dotColour(), grey, 'Bob shows online while connected');
    await context.setOffline(true);
    await waitDisconnected(page);
    assert.equal(await dotColour(), grey, 'presence is grey, not stale, while disconnected');
    await type(page, 'offline one');
    await type(page, 'offline two');
    await type(page, 'never mind');
    const cancelled = page.locator(HISTORY_MSG).filter({ hasText: 'never mind' });
    await cancelled.locator('[data-testid=cancel-send]').click();
    await waitFor(async () => (await cancelled.count()) === 0, { timeout: WAIT, what: 'the cancelled message to go' });
    assert.deepEqual((await outboxOf(page)).sort(), ['offline one', 'offline two']);
    const reload = await page.reload();
    assert.ok(reload.fromServiceWorker(), 'the page came from the service worker while offline');
    // The page reads the outbox back from IndexedDB as it opens.
    const waiting = await waitFor(async () => {
      const unsent = (await shown(page)).filter((m) => !m.seq);
      return unsent.length >= 2 ? unsent : null;
    }, { timeout: WAIT, what: `the outbox to show again after the reload (page errors: ${pageErrors})` });
    assert.deepEqual(waiting.map((m) => m.text), ['offline one', 'offline two'], 'each unsent message shown once, in order');
    assert.ok(waiting.every((m) => m.waiting), 'shown as waiting');
    await context.setOffline(false);
    await deliveredOnce(page, a.token, rid, ['offline one', 'offline two'], 'the offline messages to be delivered');
    await waitFor(() => bob.count('offline two') === 1, { timeout: WAIT, what: 'Bob to receive the messages' });
    assert.equal(bob.count('offline one'), 1);
    const stored = (await roomHistory(a.token, rid)).map((m) => m.message);
    assert.ok(stored.indexOf('offline one') < stored.indexOf('offline two'), 'in the order typed');
    assert.ok(!stored.includes('never mind'), 'the cancelled message was never sent');
    assert.deepEqual(await outboxOf(page), [], 'the outbox is empty');
  });

  await check('server killed: messages typed while it is down, and after a reload served by the service worker, are delivered exactly once after it restarts', async () => {
    await waitFor(async () => (await connState(page)) === 'connected', { timeout: WAIT, what: 'the page to connect' });
    await killServer();
    await waitDisconnected(page);
    await type(page, 'while down 1');
    const reload = await page.reload();
    assert.ok(reload.fromServiceWorker(), 'the page came from the service worker while the server was down');
    // The shell works from the cache: styles applied, the modules ran.
    assert.equal(await page.evaluate(() => getComputedStyle(document.querySelector('.app')).display), 'grid');
    await waitFor(() => page.evaluate(() => Boolean(document.body.dataset.conn)), { timeout: WAIT, what: 'the page script to run' });
    await type(page, 'while down 2');
    await startServer();
    await deliveredOnce(page, a.token, rid, ['while down 1', 'while down 2'], 'the messages typed while the server was down to be delivered');
    const stored = (await roomHistory(a.token, rid)).map((m) => m.message);
    assert.ok(stored.indexOf('while down 1') < stored.indexOf('while down 2'), 'in the order typed');
    await waitFor(() => bob.count('while down 2') >= 1 || bob.socket.connected, { timeout: WAIT, what: "Bob's socket to be back" });
    assert.ok(bob.count('while down 1') <= 1 && bob.count('while down 2') <= 1, 'never twice live');
    assert.deepEqual(await outboxOf(page), []);
  });

  await check('notifications: a message from someone else, with the page not in front, makes a desktop notification; a click opens the chat; the tab icon shows the count', async () => {
    await page.goto('/chat/');
    await waitFor(async () => (await page.locator('.sidebar .conn').getAttribute('data-state')) === 'connected', { timeout: WAIT, what: 'the page to connect' });
    // Another tab in front: this one is hidden and unfocused.
    const other = await putBehind(page);
    const r = await api('POST', `/rooms/${encodeURIComponent(ridCat)}/messages`, { message: 'are you there?' }, c.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const notes = await waitFor(async () => {
      const n = await page.evaluate(() => window.__notes.map(({ title, body, tag }) => ({ title, body, tag })));
      return n.length ? n : null;
    }, { timeout: WAIT, what: 'a notification' });
    assert.deepEqual(notes, [{ title: c.username, body: 'are you there?', tag: `natter-${ridCat}` }]);
    await waitFor(async () => (await page.locator('link[rel=icon]').getAttribute('data-badge')) === '1', {
      timeout: WAIT, what: 'the unread count on the tab icon',
    });
    await other.close();
    await page.evaluate(() => window.__notes[0].note.onclick());
    await page.waitForURL((u) => u.searchParams.get('rid') === ridCat);
  });

  await check("notifications: a muted chat (set from its header, kept by the server) makes none", async () => {
    const level = page.locator('[data-testid=notify-level]');
    assert.equal(await level.inputValue(), 'all', 'a direct chat notifies everything by default');
    await level.selectOption('none');
    await waitFor(async () => {
      const chats = (await api('GET', '/chats', undefined, a.token)).body.chats;
      return chats.find((ch) => ch.room_id === ridCat)?.notify === 'none';
    }, { timeout: WAIT, what: 'the server to keep the level' });
    await page.goto('/chat/');
    await waitFor(async () => (await page.locator('.sidebar .conn').getAttribute('data-state')) === 'connected', { timeout: WAIT, what: 'the page to connect' });
    const other = await putBehind(page);
    await api('POST', `/rooms/${encodeURIComponent(ridCat)}/messages`, { message: 'muted one' }, c.token);
    await api('POST', `/rooms/${encodeURIComponent(rid)}/messages`, { message: 'not muted' }, b.token);
    const titles = await waitFor(async () => {
      const n = await page.evaluate(() => window.__notes.map((x) => x.body));
      return n.includes('not muted') ? n : null;
    }, { timeout: WAIT, what: "the notification of Bob's message" });
    assert.deepEqual(titles, ['not muted'], 'the muted chat made none');
    await other.close();
  });

  await check('push: the service worker shows a pushed message as a notification, and stays quiet while a Natter tab is in front', async () => {
    await page.goto(chatUrl);
    await page.bringToFront();
    const cdp = await context.newCDPSession(page);
    const registrations = [];
    cdp.on('ServiceWorker.workerRegistrationUpdated', (ev) => registrations.push(...ev.registrations));
    await cdp.send('ServiceWorker.enable');
    const registration = await waitFor(() => registrations.find((r) => r.scopeURL === `${BASE}/` && !r.isDeleted), {
      timeout: WAIT, what: 'the service worker registration',
    });
    // What Natter's push task sends (docs/protocol.md, "Web Push"), as the browser's push service hands it over.
    const push = (rid, body) => cdp.send('ServiceWorker.deliverPushMessage', {
      origin: BASE,
      registrationId: registration.registrationId,
      data: JSON.stringify({ type: 'message', rid, seq: 1, title: c.username, body, url: `/chat/?rid=${encodeURIComponent(rid)}` }),
    });
    const shown = () => page.evaluate(async () => {
      const reg = await navigator.serviceWorker.ready;
      return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
    });
    await push('in-front', 'while you look');
    const other = await putBehind(page);
    await push(ridCat, 'while you are away');
    const notes = await waitFor(async () => {
      const n = await shown();
      return n.length ? n : null;
    }, { timeout: WAIT, what: 'the pushed notification' });
    assert.deepEqual(notes, [{ title: c.username, body: 'while you are away', tag: `natter-${ridCat}` }], 'only the push that came while no Natter tab was in front');
    await other.close();
    await cdp.detach();
  });

  await check('phone: a tap on a message opens its actions as a sheet, with touch targets of 44 px at least', async () => {
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    onCleanup(() => browser.close());
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, baseURL: BASE,
    });
    onCleanup(() => phone.close());
    const p = await login(phone, a);
    await p.goto(chatUrl);
    const msg = p.locator(HISTORY_MSG).filter({ hasText: 'offline one' });
    await msg.locator('.bubble').tap();
    const sheet = p.locator('[data-testid=message-actions]');
    await sheet.waitFor();
    const boxes = await sheet.locator('button:visible').evaluateAll((bs) => bs.map((b) => {
      const r = b.getBoundingClientRect();
      return { label: b.getAttribute('aria-label'), w: r.width, h: r.height };
    }));
    assert.ok(boxes.length >= 4, `actions shown: ${JSON.stringify(boxes)}`);
    for (const box of boxes) assert.ok(box.w >= 44 && box.h >= 44, `touch target too small: ${JSON.stringify(box)}`);
    const send = await p.locator('.composer .send').boundingBox();
    assert.ok(send.width >= 44 && send.height >= 44, `send button ${JSON.stringify(send)}`);
    // It stays open once the finger is lifted, and an action works.
    await sleep(300);
    assert.ok(await sheet.isVisible(), 'the sheet stays open');
    await sheet.locator('[data-testid=action-reply]').tap();
    await p.locator('[data-testid=reply-bar]').waitFor();
    note('phone layout checked at 390x844');
  });
});
