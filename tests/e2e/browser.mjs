// Natter in a real browser: playwright-core driving Debian's chromium
// (no browser download). Two people, each in their own browser context.
//
//   NATTER_URL=http://127.0.0.1:PORT [SCREENSHOT=docs/screenshot.png] node browser.mjs
//
// Env: CHROMIUM (default /usr/bin/chromium), SCREENSHOT (optional path, relative
// to the current directory), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';
import {
  BASE, start, check, note, sleep, waitFor, onCleanup,
} from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];
const WAIT = 10000; // generous but bounded wait for anything the UI should show
const PASSWORD = 'correct horse battery';
const XSS = '<img src=x onerror=alert(1)>';

const HISTORY_MSG = '[data-testid=message-history] [data-testid=message]';

/** A person: one browser context (own cookies) and one page, with observers. */
async function newPerson(browser, name, tag) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: BASE });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  const p = {
    name,
    username: `${name}_${tag}`,
    email: `${name}.${tag}@example.test`,
    context,
    page,
    dialogs: [],
    pageErrors: [],
    joinAcks: 0, // Socket.IO acks carrying last_seq seen by this page (join-chat done)
    navigations: 0,
  };
  page.on('dialog', async (d) => {
    p.dialogs.push(`${d.type()}: ${d.message()}`);
    try { await d.dismiss(); } catch { /* already gone */ }
  });
  page.on('pageerror', (e) => p.pageErrors.push(String(e && e.message ? e.message : e)));
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) p.navigations += 1; });
  // Observe the page's Socket.IO traffic (websocket frames or long-polling
  // responses) to know when its join-chat was acknowledged, so that a message
  // sent by the other person is not raced against the page's own join.
  const sawAck = (text) => { if (typeof text === 'string' && text.includes('"last_seq"')) p.joinAcks += 1; };
  page.on('websocket', (ws) => ws.on('framereceived', (f) => sawAck(typeof f.payload === 'string' ? f.payload : f.payload.toString())));
  page.on('response', async (r) => {
    if (!r.url().includes('/socket.io/') || r.request().method() !== 'GET') return;
    try { sawAck(await r.text()); } catch { /* body gone */ }
  });
  return p;
}

/** Wait until the page's socket has joined its room (after `before` acks had been seen). */
async function waitJoined(p, before) {
  await waitFor(() => p.joinAcks > before, {
    timeout: WAIT,
    what: `${p.name}'s chat page to connect its socket and get its join-chat ack (a Socket.IO ack with last_seq)`,
  });
}

/** The history as the page shows it: [{seq, pending, text}] in DOM order. */
function history(page) {
  return page.$$eval(HISTORY_MSG, (els) => els.map((e) => {
    const t = e.querySelector('.text');
    return {
      seq: e.getAttribute('data-seq'),
      pending: e.hasAttribute('data-pending'),
      text: t ? t.textContent.trim() : null,
    };
  }));
}

async function submitForm(page, formSel, how = 'click') {
  const form = page.locator(formSel);
  if (how === 'enter') {
    await form.locator('input:not([type=hidden])').last().press('Enter');
    return;
  }
  const button = form.locator('button[type=submit], input[type=submit], button:not([type])').first();
  await button.click();
}

/** Record (in the page) the text of every message element that is ever shown with data-pending. */
function watchPending(page) {
  return page.evaluate(() => {
    if (window.__e2ePending) return;
    window.__e2ePending = [];
    const sel = '[data-testid=message][data-pending]';
    new MutationObserver((muts) => {
      for (const m of muts) {
        const nodes = m.type === 'attributes' ? [m.target] : [...m.addedNodes];
        for (const n of nodes) {
          if (n.nodeType !== 1) continue;
          const els = n.matches(sel) ? [n] : [...n.querySelectorAll(sel)];
          for (const e of els) window.__e2ePending.push((e.querySelector('.text') || e).textContent.trim());
        }
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-pending'] });
  });
}

async function sendMessage(p, text, how) {
  await watchPending(p.page);
  const form = p.page.locator('[data-testid=message-form]');
  const field = form.locator('[name=message]');
  await field.fill(text);
  const tag = await field.evaluate((e) => e.tagName.toLowerCase());
  if (how === 'enter' && tag === 'input') {
    await field.press('Enter');
  } else {
    await form.locator('button[type=submit], input[type=submit], button:not([type])').first().click();
  }
}

/** Wait until `text` shows on the page's history and satisfies `pred`; returns the entries. */
async function waitForMessage(p, text, pred, what, timeout = WAIT) {
  let last = [];
  try {
    return await waitFor(async () => {
      last = await history(p.page);
      const hits = last.filter((m) => m.text === text);
      return hits.length && hits.every(pred) ? hits : null;
    }, { timeout, what });
  } catch (e) {
    throw new Error(`${e.message}\n${p.name}'s history: ${JSON.stringify(last)}`);
  }
}

function cookieHeader(cookies) {
  return cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

/** A form POST from node, as a foreign site's page would make it (no redirects followed). */
function formPost(pathname, fields, { cookie, origin }) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded', cookie };
  if (origin) headers.origin = origin;
  return fetch(`${BASE}${pathname}`, {
    method: 'POST', headers, body: new URLSearchParams(fields).toString(),
    redirect: 'manual', signal: AbortSignal.timeout(WAIT),
  });
}

/** Socket.IO connect from node with the session cookie and a given Origin. */
function cookieSocket(cookie, origin) {
  return new Promise((resolve) => {
    const s = io(BASE, {
      path: '/socket.io/', transports: ['websocket'], reconnection: false, forceNew: true,
      extraHeaders: { cookie, origin }, timeout: 8000,
    });
    onCleanup(() => s.close());
    const timer = setTimeout(() => { s.close(); resolve({ error: 'no connect / connect_error within 8 s' }); }, 8000);
    s.once('connect', () => { clearTimeout(timer); s.close(); resolve({ connected: true }); });
    s.once('connect_error', (e) => { clearTimeout(timer); s.close(); resolve({ error: e.message }); });
  });
}

async function main() {
  // Short random suffix: unique users per run, readable names in the screenshot.
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  let browser;

  await check(`launch ${CHROMIUM} with playwright-core (no browser download)`, async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: install it with "apt-get update && apt-get install -y chromium"`);
    }
    // launch() gives every run a fresh temporary --user-data-dir and removes it on close.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
    onCleanup(() => browser.close());
    note(`chromium ${browser.version()}`);
  });

  const A = await newPerson(browser, 'anna', tag);
  const B = await newPerson(browser, 'ben', tag);
  const people = [A, B];

  await check('both register through the web form -> /login with a flash message', async () => {
    for (const p of people) {
      await p.page.goto('/register');
      const form = p.page.locator('[data-testid=register-form]');
      await form.waitFor();
      await form.locator('[name=username]').fill(p.username);
      await form.locator('[name=email]').fill(p.email);
      await form.locator('[name=password]').fill(PASSWORD);
      await submitForm(p.page, '[data-testid=register-form]', p === A ? 'click' : 'enter');
      await p.page.waitForURL((u) => u.pathname === '/login');
      const flash = p.page.locator('[data-testid=flash]').first();
      await flash.waitFor();
      assert.ok((await flash.textContent()).trim().length > 0, 'the flash message is empty');
    }
  });

  await check('both log in through the web form -> /chat/ with an HttpOnly, SameSite=Lax session cookie', async () => {
    for (const p of people) {
      const form = p.page.locator('[data-testid=login-form]');
      await form.waitFor();
      await form.locator('[name=email]').fill(p.email);
      await form.locator('[name=password]').fill(PASSWORD);
      await submitForm(p.page, '[data-testid=login-form]', p === A ? 'enter' : 'click');
      await p.page.waitForURL((u) => u.pathname === '/chat/');
      await p.page.locator('[data-testid=chat-list]').waitFor({ state: 'attached' });
      const cookies = await p.context.cookies(BASE);
      assert.ok(cookies.length > 0, 'no session cookie after login');
      for (const c of cookies) {
        assert.equal(c.httpOnly, true, `cookie ${c.name} must be HttpOnly`);
        assert.equal(c.sameSite, 'Lax', `cookie ${c.name} must be SameSite=Lax`);
      }
    }
  });

  let rid;
  await check('A adds B through the new-chat form -> /chat/?rid=ROOM with history and message box', async () => {
    const before = A.joinAcks;
    const form = A.page.locator('[data-testid=new-chat-form]');
    await form.locator('[name=email]').fill(B.email);
    await submitForm(A.page, '[data-testid=new-chat-form]');
    await A.page.waitForURL((u) => u.pathname === '/chat/' && u.searchParams.get('rid'));
    rid = new URL(A.page.url()).searchParams.get('rid');
    await A.page.locator('[data-testid=message-history]').waitFor({ state: 'attached' });
    await A.page.locator('[data-testid=message-form] [name=message]').waitFor();
    assert.deepEqual(await history(A.page), [], 'a new room has no history');
    await waitJoined(A, before);
  });

  await check('B reloads /chat/, sees a chat-item for A and opens it', async () => {
    await B.page.goto('/chat/');
    const item = B.page.locator(`[data-testid=chat-item][data-rid="${rid}"]`);
    await item.waitFor();
    assert.ok((await item.textContent()).includes(A.username), `chat item should name ${A.username}: ${await item.textContent()}`);
    const before = B.joinAcks;
    // The item may be the link itself or wrap one (e.g. <li><a …>).
    const inner = item.locator('a[href]').first();
    await ((await item.evaluate((e) => e.matches('a[href]')) || !(await inner.count())) ? item : inner).click();
    await B.page.waitForURL((u) => u.pathname === '/chat/' && u.searchParams.get('rid') === rid);
    await B.page.locator('[data-testid=message-form] [name=message]').waitFor();
    await waitJoined(B, before);
  });

  const sent = [];
  // Fresh users (and so a fresh room) every run: the texts need not be unique.
  const exchange = [
    [A, B, 'Hi Ben! Are we still on for lunch tomorrow?', 'enter'],
    [B, A, 'Yes! 12:30 at the usual place?', 'click'],
    [A, B, "Perfect, I'll book a table for two.", 'click'],
    [B, A, 'Great, see you there.', 'enter'],
  ];
  for (const [from, to, text, how] of exchange) {
    const seq = String(sent.length + 1);
    await check(`${from.name} -> ${to.name} (${how === 'enter' ? 'Enter' : 'submit button'}): shown at once with data-pending, acked (data-pending gone, data-seq ${seq}), live at the other side`, async () => {
      const navFrom = from.navigations;
      const navTo = to.navigations;
      await sendMessage(from, text, how);
      await waitForMessage(from, text, () => true, `"${text}" on the sender's page`, 3000);
      await waitForMessage(from, text, (m) => !m.pending && m.seq === seq,
        `"${text}" to lose data-pending and get data-seq=${seq} on the sender's page`);
      const seenPending = await from.page.evaluate(() => window.__e2ePending);
      assert.ok(seenPending.includes(text),
        `the sender's message was never shown with data-pending before its ack (pending seen: ${JSON.stringify(seenPending)})`);
      await waitForMessage(to, text, (m) => m.seq === seq, `"${text}" to arrive live at ${to.name} with data-seq=${seq}`);
      assert.equal(from.navigations, navFrom, 'the sender page must not navigate/reload to send');
      assert.equal(to.navigations, navTo, 'the receiver page must not reload to see the message');
      for (const p of [from, to]) {
        const hits = (await history(p.page)).filter((m) => m.text === text);
        assert.equal(hits.length, 1, `"${text}" shown ${hits.length} times at ${p.name}`);
      }
      const left = await from.page.locator('[data-testid=message-form] [name=message]').inputValue();
      if (left !== '') note(`the message box still holds "${left}" after sending`);
    });
    sent.push(text);
  }

  await check('both pages show the same live history in order', async () => {
    const want = sent.map((t, i) => ({ seq: String(i + 1), pending: false, text: t }));
    assert.deepEqual(await history(A.page), want);
    assert.deepEqual(await history(B.page), want);
  });

  if (process.env.SCREENSHOT) {
    await check(`screenshot of A's chat page -> ${process.env.SCREENSHOT}`, async () => {
      const file = path.resolve(process.cwd(), process.env.SCREENSHOT);
      mkdirSync(path.dirname(file), { recursive: true });
      await A.page.screenshot({ path: file });
      assert.ok(existsSync(file));
    });
  }

  await check(`A sends ${XSS}: shown literally as text on both sides, no <img>, no dialog`, async () => {
    const seq = String(sent.length + 1);
    await sendMessage(A, XSS, 'click');
    // Wait by seq (not by text), so that a page that renders it as HTML fails
    // on the assertions below with a clear message rather than on a time-out.
    for (const p of people) {
      let last = [];
      await waitFor(async () => {
        last = await history(p.page);
        return last.some((m) => m.seq === seq && !m.pending);
      }, { timeout: WAIT, what: `message data-seq=${seq} (acked) on ${p.name}'s page; history: ${JSON.stringify(last)}` })
        .catch((e) => { throw new Error(`${e.message}; ${p.name}'s history: ${JSON.stringify(last)}`); });
    }
    await sleep(500); // give a would-be onerror handler time to fire
    for (const p of people) {
      assert.deepEqual(p.dialogs, [], `a dialog fired at ${p.name}: the message was rendered as HTML`);
      assert.equal(await p.page.locator('[data-testid=message-history] img').count(), 0,
        `an <img> element was created in ${p.name}'s history: the message was rendered as HTML`);
      const hits = (await history(p.page)).filter((m) => m.seq === seq);
      assert.equal(hits.length, 1, `data-seq=${seq} shown ${hits.length} times at ${p.name}`);
      assert.equal(hits[0].text, XSS, `${p.name}'s .text of message ${seq} must be the literal text`);
    }
    sent.push(XSS);
  });

  await check(`both reload: full history in order (data-seq 1..${exchange.length + 1}), no <img>, no dialog`, async () => {
    const want = sent.map((t, i) => ({ seq: String(i + 1), pending: false, text: t }));
    for (const p of people) {
      await p.page.reload();
      await p.page.locator('[data-testid=message-history]').waitFor({ state: 'attached' });
      let got = [];
      try {
        await waitFor(async () => { got = await history(p.page); return got.length >= want.length; }, { timeout: WAIT, what: 'the history' });
      } catch { /* compared below */ }
      assert.deepEqual(got, want, `${p.name}'s history after reload`);
      assert.equal(await p.page.locator('[data-testid=message-history] img').count(), 0);
    }
    await sleep(300);
    for (const p of people) assert.deepEqual(p.dialogs, [], `a dialog fired at ${p.name}`);
  });

  await check('the chat list shows the other person with the last message (as text)', async () => {
    for (const [p, other] of [[A, B], [B, A]]) {
      await p.page.goto('/chat/');
      const item = p.page.locator(`[data-testid=chat-list] [data-testid=chat-item][data-rid="${rid}"]`);
      await item.waitFor();
      const text = await item.textContent();
      assert.ok(text.includes(other.username), `${p.name}'s chat item should name ${other.username}: ${JSON.stringify(text)}`);
      assert.ok(text.includes(XSS), `${p.name}'s chat item should show the last message ${JSON.stringify(XSS)}: ${JSON.stringify(text)}`);
      assert.equal(await p.page.locator('[data-testid=chat-list] img').count(), 0, 'an <img> was created in the chat list');
    }
    await sleep(300);
    for (const p of people) assert.deepEqual(p.dialogs, [], `a dialog fired at ${p.name}`);
  });

  const bCookie = cookieHeader(await B.context.cookies(BASE));
  await check('cross-origin POST /new-chat and /logout with the session cookie -> 403; same-origin control -> 303', async () => {
    let r = await formPost('/new-chat', { email: A.email }, { cookie: bCookie, origin: 'http://evil.example' });
    assert.equal(r.status, 403, `cross-origin POST /new-chat: expected 403, got ${r.status} ${r.headers.get('location') || ''}`);
    r = await formPost('/logout', {}, { cookie: bCookie, origin: 'http://evil.example' });
    assert.equal(r.status, 403, `cross-origin POST /logout: expected 403, got ${r.status} ${r.headers.get('location') || ''}`);
    r = await fetch(`${BASE}/chat/`, { headers: { cookie: bCookie }, redirect: 'manual', signal: AbortSignal.timeout(WAIT) });
    assert.equal(r.status, 200, `B must still be logged in after the refused cross-origin logout (GET /chat/ -> ${r.status})`);
    r = await formPost('/new-chat', { email: A.email }, { cookie: bCookie, origin: BASE });
    assert.equal(r.status, 303, `same-origin POST /new-chat: expected 303, got ${r.status}`);
    const loc = new URL(r.headers.get('location'), BASE);
    assert.equal(loc.pathname, '/chat/');
    assert.equal(loc.searchParams.get('rid'), rid, 'the existing direct room');
  });

  await check('Socket.IO with the session cookie: foreign Origin refused ("unauthorized"), own Origin accepted', async () => {
    const evil = await cookieSocket(bCookie, 'http://evil.example');
    assert.deepEqual(evil, { error: 'unauthorized' }, `cookie handshake from a foreign Origin: ${JSON.stringify(evil)}`);
    const own = await cookieSocket(bCookie, BASE);
    assert.deepEqual(own, { connected: true }, `cookie handshake from the site's own Origin: ${JSON.stringify(own)}`);
  });

  await check('logout button -> /login; then /chat/ redirects to /login', async () => {
    await A.page.goto('/chat/');
    await A.page.locator('[data-testid=logout-button]').click();
    await A.page.waitForURL((u) => u.pathname === '/login');
    await A.page.goto('/chat/');
    await A.page.waitForURL((u) => u.pathname === '/login');
    const r = await fetch(`${BASE}/chat/`, { redirect: 'manual', signal: AbortSignal.timeout(WAIT) });
    assert.equal(r.status, 303, `GET /chat/ without a session: expected 303, got ${r.status}`);
    assert.equal(new URL(r.headers.get('location'), BASE).pathname, '/login');
  });

  for (const p of people) {
    if (p.pageErrors.length) note(`JavaScript errors on ${p.name}'s pages: ${JSON.stringify(p.pageErrors)}`);
  }
  note(`room ${rid}; users ${A.username}, ${B.username}`);
}

start('browser (playwright-core + Debian chromium)', main);
