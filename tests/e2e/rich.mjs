// Rich messages in a real browser (playwright-core driving Debian's chromium):
// the multi-line box, links, Markdown, mentions, the length limit, emoji
// (the grid, emoji-only messages, any reaction), infinite scroll upward and
// the "New messages" divider. Two people, each in their own browser context.
//
//   NATTER_URL=http://127.0.0.1:PORT node rich.mjs
//
// Env: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import {
  start, check, launchChecked, note, sleep, waitFor, api, registerAndLogin,
  MESSAGE_BOX as BOX, HISTORY_MSG, newPerson, logIn, openRoom, apiSend, scrollsBackToStart,
} from './lib.mjs';

const WAIT = 10000;
const PASSWORD = 'correct horse battery';


/** The history: [{seq, text}] in order. */
function history(page) {
  return page.$$eval(HISTORY_MSG, (els) => els.map((e) => ({
    seq: e.getAttribute('data-seq'),
    text: e.querySelector('.text')?.textContent ?? null,
  })));
}

/** The message element whose text is exactly `text`, once it shows (acked, with a seq). */
async function arrived(p, text, what) {
  let last = [];
  try {
    await waitFor(async () => {
      last = await history(p.page);
      return last.some((m) => m.text === text && m.seq);
    }, { timeout: WAIT, what });
  } catch (e) {
    throw new Error(`${e.message}\n${p.name}'s last messages: ${JSON.stringify(last.slice(-5))}`);
  }
  const seq = last.find((m) => m.text === text && m.seq).seq;
  return p.page.locator(`${HISTORY_MSG}[data-seq="${seq}"]`);
}

/** Types into the box as a person does (keyboard), then sends with Enter. */
async function typeAndSend(p, text) {
  const box = p.page.locator(BOX);
  await box.click();
  await p.page.keyboard.type(text);
  await box.press('Enter');
}

async function main() {
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  const browser = await launchChecked();

  let A;
  let B;
  let rid;
  await check('anna and ben register over the API, log in through the web form, and open their chat', async () => {
    const a = await registerAndLogin(`anna_${tag}`, `anna.${tag}@example.test`, PASSWORD);
    const b = await registerAndLogin(`ben_${tag}`, `ben.${tag}@example.test`, PASSWORD);
    A = await newPerson(browser, { ...a, name: 'anna' });
    B = await newPerson(browser, { ...b, name: 'ben' });
    const r = await api('POST', '/chats', { email: b.email }, a.token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.body));
    rid = r.body.room_id;
    for (const p of [A, B]) {
      await logIn(p);
      await openRoom(p, rid);
    }
    assert.equal(await A.page.locator(BOX).evaluate((e) => e.tagName), 'TEXTAREA', 'the message box is a textarea');
    assert.equal(await A.page.locator(BOX).getAttribute('maxlength'), null, 'no maxlength: a paste is never cut');
  });

  await check('Enter sends (and clears the box); Enter while an input method composes does not', async () => {
    const box = A.page.locator(BOX);
    await box.fill('composing');
    const sent = await box.evaluate((e) => {
      const ev = new KeyboardEvent('keydown', { key: 'Enter', isComposing: true, bubbles: true, cancelable: true });
      e.dispatchEvent(ev);
      return ev.defaultPrevented;
    });
    assert.equal(sent, false, 'Enter during a composition must be left to the input method');
    await sleep(300);
    assert.equal(await box.inputValue(), 'composing');
    await box.fill('');
    await typeAndSend(A, 'Hello Ben');
    await arrived(B, 'Hello Ben', 'the message at ben');
    assert.equal(await box.inputValue(), '', 'the box is empty after sending');
  });

  await check('Shift+Enter is a new line, the box grows to about six lines then scrolls; the line break arrives', async () => {
    const box = A.page.locator(BOX);
    await box.click();
    const oneLine = await box.evaluate((e) => e.offsetHeight);
    await A.page.keyboard.type('line one');
    await A.page.keyboard.press('Shift+Enter');
    await A.page.keyboard.type('line two');
    const twoLines = await box.evaluate((e) => e.offsetHeight);
    assert.ok(twoLines > oneLine, `the box grows: ${oneLine}px -> ${twoLines}px`);
    assert.equal(await box.inputValue(), 'line one\nline two');
    const many = await box.evaluate((e) => {
      const keep = e.value;
      e.value = Array.from({ length: 12 }, (_, i) => `row ${i}`).join('\n');
      e.dispatchEvent(new Event('input', { bubbles: true }));
      const r = { height: e.offsetHeight, scrolls: e.scrollHeight > e.clientHeight };
      e.value = keep;
      e.dispatchEvent(new Event('input', { bubbles: true }));
      return r;
    });
    assert.ok(many.scrolls && many.height < oneLine * 5, `twelve lines: capped at ${many.height}px and scrolling`);
    await box.press('Enter');
    const msg = await arrived(B, 'line one\nline two', 'the two-line message at ben');
    const shown = await msg.locator('.text').evaluate((e) => ({ inner: e.innerText, lines: Math.round(e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)) }));
    assert.equal(shown.inner, 'line one\nline two');
    assert.equal(shown.lines, 2, 'shown on two lines');
  });

  await check('a link shows as a safe link (http(s) only, rel noopener noreferrer, a new tab); punctuation stays outside', async () => {
    const text = 'see https://example.com/a_(b). and www.example.org, javascript:alert(1)';
    await typeAndSend(A, text);
    const msg = await arrived(B, text, 'the link message at ben');
    const links = await msg.locator('.text a').evaluateAll((as) => as.map((a) => [a.textContent, a.getAttribute('href'), a.rel, a.target]));
    assert.deepEqual(links, [
      ['https://example.com/a_(b)', 'https://example.com/a_(b)', 'noopener noreferrer', '_blank'],
      ['www.example.org', 'https://www.example.org/', 'noopener noreferrer', '_blank'],
    ]);
  });

  await check('bold, inline code and a quote render; the markers do not show; the text reads back as sent', async () => {
    const text = '**bold** and `code <b>x</b>`\n> quoted _line_\nafter';
    await A.page.locator(BOX).fill(text);
    await A.page.locator(BOX).press('Enter');
    const msg = await arrived(B, text, 'the Markdown message at ben');
    const got = await msg.locator('.text').evaluate((e) => ({
      strong: [...e.querySelectorAll('strong')].map((x) => x.textContent),
      code: [...e.querySelectorAll('code')].map((x) => x.textContent),
      quote: [...e.querySelectorAll('blockquote')].map((x) => x.innerText),
      em: [...e.querySelectorAll('blockquote em')].map((x) => x.textContent),
      b: e.querySelectorAll('b').length,
      inner: e.innerText,
    }));
    assert.deepEqual(got.strong, ['bold']);
    assert.deepEqual(got.code, ['code <b>x</b>']);
    assert.deepEqual(got.quote, ['quoted line']);
    assert.deepEqual(got.em, ['line']);
    assert.equal(got.b, 0, 'code is text, not markup');
    assert.ok(!got.inner.includes('**') && !got.inner.includes('`'), `markers shown: ${JSON.stringify(got.inner)}`);
  });

  await check('an XSS attempt shows as text: no element, no link, no dialog, at both sides', async () => {
    const text = '<img src=x onerror=alert(1)> [x](javascript:alert(1)) <script>alert(2)</script>';
    await A.page.locator(BOX).fill(text);
    await A.page.locator(BOX).press('Enter');
    for (const p of [A, B]) {
      const msg = await arrived(p, text, `the XSS message at ${p.name}`);
      assert.equal(await msg.locator('.text *').count(), 0, 'nothing but text in it');
    }
    await sleep(400);
    for (const p of [A, B]) {
      assert.deepEqual(p.dialogs, []);
      assert.equal(await p.page.locator('[data-testid=message-history] img, [data-testid=message-history] script').count(), 0);
      const hrefs = await p.page.locator('[data-testid=message-history] .text a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
      for (const h of hrefs) assert.match(h, /^https?:\/\//);
    }
  });

  await check('a mention: "@" and two letters offer ben (a listbox), Enter picks; ben sees the message highlighted', async () => {
    const box = A.page.locator(BOX);
    await box.click();
    await A.page.keyboard.type(`hi @${B.username.slice(0, 2)}`);
    const list = A.page.locator('[data-testid=mention-list]');
    await list.waitFor();
    assert.equal(await list.getAttribute('role'), 'listbox');
    const option = list.locator('[role=option]');
    assert.deepEqual(await option.locator('.mention-name').allTextContents(), [B.username]);
    assert.equal(await option.first().getAttribute('aria-selected'), 'true');
    assert.equal(await box.getAttribute('aria-activedescendant'), await option.first().getAttribute('id'));
    await A.page.keyboard.press('Enter');
    assert.equal(await box.inputValue(), `hi @${B.username} `, 'picking writes the name and a space (it does not send)');
    assert.ok(await list.isHidden());
    await A.page.keyboard.type('look');
    await A.page.keyboard.press('Enter');
    const text = `hi @${B.username} look`;
    const atB = await arrived(B, text, 'the mention at ben');
    assert.match(await atB.getAttribute('class'), /\bmentions-me\b/);
    assert.equal(await atB.locator('.mention.me').textContent(), `@${B.username}`);
    const atA = await arrived(A, text, 'the mention at anna');
    assert.doesNotMatch(await atA.getAttribute('class'), /\bmentions-me\b/, 'my own message is not highlighted for me');
    assert.equal(await atA.locator('.mention').count(), 1);
    // Escape closes the list and leaves the text.
    await box.click();
    await A.page.keyboard.type('@');
    await list.waitFor();
    await A.page.keyboard.press('Escape');
    assert.ok(await list.isHidden());
    assert.equal(await box.inputValue(), '@');
    // A click picks too.
    await A.page.keyboard.type(B.username.slice(0, 3));
    await list.locator('[role=option]').first().click();
    assert.equal(await box.inputValue(), `@${B.username} `);
    await box.fill('');
  });

  await check('the counter shows near the limit (in code points); a 4,001-character paste is refused, not cut', async () => {
    const box = A.page.locator(BOX);
    const counter = A.page.locator('[data-testid=char-counter]');
    const send = A.page.locator('[data-testid=message-form] button[type=submit]');
    await box.fill('short');
    assert.ok(await counter.isHidden(), 'no counter far from the limit');
    await box.fill('😀'.repeat(3700));
    assert.equal((await counter.textContent()).trim(), '3700 / 4000', 'emoji count one each');
    await box.fill('');
    await box.focus();
    await A.page.keyboard.insertText('x'.repeat(4001));
    assert.equal((await box.inputValue()).length, 4001, 'the paste is whole');
    assert.equal((await counter.textContent()).trim(), '4001 / 4000: too long');
    assert.match(await counter.getAttribute('class'), /\bover\b/);
    assert.equal(await box.getAttribute('aria-invalid'), 'true');
    assert.ok(await send.isDisabled(), 'Send is off');
    const before = (await history(A.page)).length;
    await box.press('Enter');
    await waitFor(async () => /Too long/.test(await A.page.locator('.status-line').textContent()), { timeout: WAIT, what: 'the refusal in the status line' });
    assert.ok(await A.page.locator('.status-line').isVisible());
    await sleep(300);
    assert.equal((await history(A.page)).length, before, 'nothing was sent');
    assert.equal((await box.inputValue()).length, 4001, 'the text is kept, to be shortened');
    await box.press('Backspace');
    assert.ok(!(await send.isDisabled()), 'Send is on again at 4000');
    await box.press('Enter');
    await arrived(B, 'x'.repeat(4000), 'the 4000-character message at ben');
  });

  await check('an emoji-only message (picked from the grid) shows larger', async () => {
    await A.page.locator('[data-testid=emoji-button]').click();
    const panel = A.page.locator('[data-testid=emoji-panel]');
    await panel.waitFor();
    await panel.locator('[data-emoji="🥳"]').click();
    assert.ok(await panel.isHidden(), 'the grid closes');
    const box = A.page.locator(BOX);
    assert.equal(await box.inputValue(), '🥳');
    await box.press('End');
    await A.page.keyboard.type(' ');
    await A.page.locator('[data-testid=emoji-button]').click();
    await panel.locator('[data-emoji="🎉"]').click();
    assert.equal(await box.inputValue(), '🥳 🎉', 'inserted at the caret');
    await box.press('Enter');
    const big = await arrived(B, '🥳 🎉', 'the emoji at ben');
    const plain = await arrived(B, 'Hello Ben', 'a plain message at ben');
    const size = (l) => l.locator('.text').evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
    assert.match(await big.locator('.text').getAttribute('class'), /\bemoji-only\b/);
    assert.ok(await size(big) >= 2 * await size(plain), `${await size(big)}px vs ${await size(plain)}px`);
  });

  await check('a reaction with an emoji outside the six quick ones (the "more" grid), live at the other side', async () => {
    const msg = await arrived(B, 'Hello Ben', 'the message to react to');
    await msg.locator('.bubble').hover();
    await msg.locator('[data-testid=action-react]').click();
    await msg.locator('[data-testid=emoji-more]').click();
    const panel = B.page.locator('[data-testid=emoji-panel]');
    await panel.waitFor();
    await panel.locator('[data-emoji="🦄"]').click();
    const chip = (await arrived(A, 'Hello Ben', 'the message at anna')).locator('[data-testid=reaction][data-emoji="🦄"]');
    await waitFor(async () => (await chip.count()) && (await chip.textContent()).replace(/\s/g, '') === '🦄1', { timeout: WAIT, what: 'the 🦄 chip at anna' });
  });

  await check('after a reload the messages the server rendered read the same: links, Markdown, the mention, emoji-only', async () => {
    await openRoom(B, rid);
    const link = await arrived(B, 'see https://example.com/a_(b). and www.example.org, javascript:alert(1)', 'the link message');
    assert.equal(await link.locator('.text a').count(), 2);
    const md = await arrived(B, '**bold** and `code <b>x</b>`\n> quoted _line_\nafter', 'the Markdown message');
    assert.equal(await md.locator('.text strong').textContent(), 'bold');
    assert.equal(await md.locator('.text blockquote em').textContent(), 'line');
    const mention = await arrived(B, `hi @${B.username} look`, 'the mention');
    assert.match(await mention.getAttribute('class'), /\bmentions-me\b/);
    const emoji = await arrived(B, '🥳 🎉', 'the emoji');
    assert.match(await emoji.locator('.text').getAttribute('class'), /\bemoji-only\b/);
    const xss = await arrived(B, '<img src=x onerror=alert(1)> [x](javascript:alert(1)) <script>alert(2)</script>', 'the XSS attempt');
    assert.equal(await xss.locator('.text *').count(), 0);
  });

  await check('scrolling to the top loads older messages by itself (80 sent over the API), the view kept still', async () => {
    await scrollsBackToStart([A, B], rid);
  });

  await check('"New messages": a divider above the first message ben had not read when he opens the chat', async () => {
    await B.page.goto('about:blank');
    const last = await apiSend(A, rid, 'read before');
    // ben has read up to here.
    const r = await api('POST', `/rooms/${encodeURIComponent(rid)}/read`, { seq: last.seq }, B.token);
    assert.ok(r.status < 300, `read: ${r.status} ${JSON.stringify(r.body)}`);
    for (const t of ['unread one', 'unread two', 'unread three']) await apiSend(A, rid, t);
    // The server renders my read marker from before the page opened (<body data-read-seq>).
    await B.page.goto(`/chat/?rid=${encodeURIComponent(rid)}`);
    const divider = B.page.locator('[data-testid=unread-divider]');
    await divider.waitFor();
    assert.equal((await divider.textContent()).trim(), 'New messages');
    const next = await divider.evaluate((d) => d.nextElementSibling?.querySelector('.text')?.textContent);
    assert.equal(next, 'unread one', 'right above the first unread message');
    assert.equal(await B.page.locator('[data-testid=unread-divider]').count(), 1);
    assert.ok(await divider.isVisible());
    const inView = await divider.evaluate((d) => {
      const s = document.getElementById('history-scroll').getBoundingClientRect();
      const r = d.getBoundingClientRect();
      return r.top >= s.top && r.bottom <= s.bottom;
    });
    assert.ok(inView, 'the divider is in view');
  });

  await check('no JavaScript errors, no dialogs', async () => {
    for (const p of [A, B]) {
      assert.deepEqual(p.pageErrors, [], `JavaScript errors on ${p.name}'s pages`);
      assert.deepEqual(p.dialogs, [], `dialogs on ${p.name}'s pages`);
    }
  });
}

start('rich messages (playwright-core + Debian chromium)', main);
