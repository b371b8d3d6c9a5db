// Natter in a real browser: playwright-core driving Debian's chromium
// (no browser download). Two people, each in their own browser context.
//
//   NATTER_URL=http://127.0.0.1:PORT node browser.mjs
//
// Env: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).
// The screenshots of docs/ are files.mjs's.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { io } from 'socket.io-client';
import {
  BASE, start, check, note, sleep, waitFor, onCleanup, api, registerAndLogin, CHROMIUM, CHROMIUM_ARGS,
} from './lib.mjs';

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


/** The message element whose text contains `text`. */
function messageEl(page, text) {
  return page.locator(HISTORY_MSG).filter({ has: page.locator('.text', { hasText: text }) });
}

/** Opens a room and waits until its socket has joined it. */
async function openRoom(p, roomId, at) {
  const before = p.joinAcks;
  await p.page.goto(`/chat/?rid=${encodeURIComponent(roomId)}${at ? `&at=${at}` : ''}`);
  await p.page.locator('[data-testid=message-form] [name=message]').waitFor();
  await waitJoined(p, before);
}

/** Waits until the locator's text satisfies `pred`; returns it. */
async function waitText(locator, pred, what) {
  let last = null;
  try {
    return await waitFor(async () => {
      last = (await locator.count()) ? (await locator.first().textContent()).trim() : null;
      return last !== null && pred(last) ? last : null;
    }, { timeout: WAIT, what });
  } catch (e) {
    throw new Error(`${e.message} (last seen: ${JSON.stringify(last)})`);
  }
}

/** Hovers a message and clicks one of its actions (react, reply, edit, delete). */
async function messageAction(page, text, action) {
  const msg = messageEl(page, text);
  await msg.locator('.bubble').hover();
  await msg.locator(`[data-testid=action-${action}]`).click();
  return msg;
}

/** The chat list entry of a room. */
const chatEntry = (page, roomId) => page.locator(`[data-testid=chat-list] [data-testid=chat-item][data-rid="${roomId}"]`);

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


  // ---------------------------------------------------------------- messenger features

  await check('unread: a message to a chat A has not open shows a badge and "(1) Natter" live; opening it clears both', async () => {
    // Both are on /chat/ (the previous check); B opens the room and writes.
    await openRoom(B, rid);
    await sendMessage(B, 'Are you there?', 'enter');
    await waitText(chatEntry(A.page, rid).locator('.badge'), (t) => t === '1', "a badge '1' on A's chat item");
    await waitFor(async () => (await A.page.title()) === '(1) Natter', { timeout: WAIT, what: `A's title to be "(1) Natter" (is "${await A.page.title()}")` });
    sent.push('Are you there?');
    await openRoom(A, rid);
    assert.equal(await chatEntry(A.page, rid).locator('.badge').count(), 0, 'the badge is gone once the chat is open');
    assert.equal(await A.page.title(), `${B.username} · Natter`);
  });

  await check('presence: A sees B "online" (header and list dot); "last seen …" live once B leaves', async () => {
    const presence = A.page.locator('[data-testid=presence]');
    await waitText(presence, (t) => t === 'online', "A's header to say B is online");
    const dot = chatEntry(A.page, rid).locator('.presence-dot');
    assert.ok(await dot.isVisible(), "the online dot on B's chat in A's list");
    await B.page.goto('about:blank');
    await waitText(presence, (t) => t.startsWith('last seen'), "A's header to say when B was last seen");
    await waitFor(async () => !(await dot.isVisible()), { timeout: WAIT, what: "the dot on B's chat to go off" });
  });

  await check('read receipt: "Seen" shows under A\'s last message only once B has opened the room, live', async () => {
    await sendMessage(A, 'Did you get my note?', 'enter');
    await waitForMessage(A, 'Did you get my note?', (m) => m.seq && !m.pending, "A's message to be acked");
    sent.push('Did you get my note?');
    await sleep(300);
    assert.equal(await A.page.locator('[data-testid=seen]').count(), 0, '"Seen" while B is away');
    await openRoom(B, rid);
    const seen = A.page.locator('[data-testid=seen]');
    await waitText(seen, (t) => t === 'Seen', '"Seen" at A');
    const under = await seen.evaluate((e) => e.closest('[data-testid=message]').querySelector('.text').textContent);
    assert.equal(under, 'Did you get my note?', '"Seen" sits under A\'s last message');
    await waitText(A.page.locator('[data-testid=presence]'), (t) => t === 'online', 'B online again at A');
  });

  await check('typing: B types -> A sees "B is typing…"; B sends -> it goes away and the message arrives', async () => {
    const typing = A.page.locator('[data-testid=typing]');
    // The server passes on one `true` per 2 s per user and room; B's last one
    // (typing in the unread check) may be more recent than that.
    await sleep(2000);
    await B.page.locator('[data-testid=message-form] [name=message]').fill('Yes, got it');
    await waitText(typing, (t) => t === `${B.username} is typing…`, 'the typing line at A');
    await B.page.locator('[data-testid=message-form] [name=message]').press('Enter');
    await waitForMessage(A, 'Yes, got it', (m) => m.seq && !m.pending, 'the message at A');
    sent.push('Yes, got it');
    await waitFor(async () => !(await typing.isVisible()), { timeout: WAIT, what: 'the typing line to go away at A' });
    // A's open page reads B's message as it shows it (a `read` event): B sees "Seen".
    const seenAtB = B.page.locator('[data-testid=seen]');
    await waitText(seenAtB, (t) => t === 'Seen', '"Seen" at B');
    assert.equal(await seenAtB.evaluate((e) => e.closest('[data-testid=message]').querySelector('.text').textContent), 'Yes, got it');
  });

  await check('edit: A edits a message inline -> both see the new text and "edited", live, no reload', async () => {
    const navB = B.navigations;
    await messageAction(A.page, 'Did you get my note?', 'edit');
    const area = A.page.locator('[data-testid=edit-form] textarea');
    await area.fill('Did you get my note about Friday?');
    await area.press('Enter');
    for (const p of people) {
      const msg = messageEl(p.page, 'Did you get my note about Friday?');
      await msg.waitFor();
      await msg.locator('[data-testid=edited]').waitFor();
    }
    assert.equal(B.navigations, navB);
    sent[sent.indexOf('Did you get my note?')] = 'Did you get my note about Friday?';
  });

  await check('delete: A deletes a message (two clicks) -> "message deleted" at both, live', async () => {
    const msg = await messageAction(A.page, "Perfect, I'll book a table for two.", 'delete');
    await msg.locator('[data-testid=action-delete]').click(); // the confirmation
    for (const p of people) {
      const seq = String(sent.indexOf("Perfect, I'll book a table for two.") + 1);
      await waitText(p.page.locator(`${HISTORY_MSG}[data-seq="${seq}"] .text`), (t) => t === 'message deleted', `message ${seq} deleted at ${p.name}`);
    }
    sent[sent.indexOf("Perfect, I'll book a table for two.")] = 'message deleted';
  });

  await check('reconnect: B goes offline, A edits a message; back online, B catches up with the edit (sync after_rev) without a reload', async () => {
    const navB = B.navigations;
    const conn = B.page.locator('.room-sub .conn');
    await B.context.setOffline(true);
    await waitFor(async () => (await conn.getAttribute('data-state')) !== 'connected', { timeout: WAIT, what: "B's page to notice it is offline" });
    await messageAction(A.page, 'Hi Ben! Are we still on for lunch tomorrow?', 'edit');
    const area = A.page.locator('[data-testid=edit-form] textarea');
    await area.fill('Hi Ben! Are we still on for lunch on Friday?');
    await area.press('Enter');
    await messageEl(A.page, 'Hi Ben! Are we still on for lunch on Friday?').locator('[data-testid=edited]').waitFor();
    await sleep(300);
    assert.equal(await messageEl(B.page, 'on Friday?').count(), 0, 'B is offline: no edit yet');
    await B.context.setOffline(false);
    await messageEl(B.page, 'Hi Ben! Are we still on for lunch on Friday?').locator('[data-testid=edited]').waitFor();
    assert.equal(B.navigations, navB, 'caught up without a reload');
  });

  const C = await check('a third person (carol) registers over the API', async () => {
    const name = `carol_${tag}`;
    return registerAndLogin(name, `carol.${tag}@example.test`, PASSWORD);
  });

  let gid;
  await check('A creates a group with B and C through the "New group" form -> the group opens with a system notice; it appears live in B\'s list', async () => {
    await B.page.goto('/chat/');
    await B.page.locator('[data-testid=chat-list]').waitFor({ state: 'attached' });
    await A.page.locator('[data-testid=new-group-toggle]').click();
    const form = A.page.locator('[data-testid=new-group-form]');
    await form.locator('[name=title]').fill('Lunch crew');
    await form.locator('[name=emails]').fill(`${B.email}, ${C.email}`);
    const before = A.joinAcks;
    await form.locator('button[type=submit]').click();
    await A.page.waitForURL((u) => u.pathname === '/chat/' && u.searchParams.get('rid') && u.searchParams.get('rid') !== rid);
    gid = new URL(A.page.url()).searchParams.get('rid');
    await waitJoined(A, before);
    assert.equal((await A.page.locator('[data-testid=room-title]').textContent()).trim(), 'Lunch crew');
    const notice = A.page.locator(`${HISTORY_MSG}.system .text`).first();
    assert.match(await notice.textContent(), /created the group/);
    const item = chatEntry(B.page, gid);
    await waitText(item.locator('.chat-title'), (t) => t === 'Lunch crew', "the group in B's list");
    await waitText(A.page.locator('[data-testid=presence]'), (t) => t.startsWith('3 members'), "A's group header");
  });

  await check('B opens the group; C writes over the API -> both see it live', async () => {
    await openRoom(B, gid);
    const r = await api('POST', `/rooms/${encodeURIComponent(gid)}/messages`, { message: 'Pizza on Friday? 🍕' }, C.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    for (const p of people) await waitForMessage(p, 'Pizza on Friday? 🍕', (m) => m.seq && !m.pending, `C's message at ${p.name}`);
  });

  await check('rename: B renames the group from its header -> A\'s header, list and title follow live, with a notice', async () => {
    await B.page.locator('[data-testid=members-button]').click();
    const rename = B.page.locator('[data-testid=rename-form]');
    await rename.locator('[name=title]').fill('Friday lunch');
    await rename.locator('button[type=submit]').click();
    await waitText(A.page.locator('[data-testid=room-title]'), (t) => t === 'Friday lunch', "A's header");
    await waitText(chatEntry(A.page, gid).locator('.chat-title'), (t) => t === 'Friday lunch', "A's list");
    await waitText(A.page.locator(`${HISTORY_MSG}.system .text`).last(), (t) => t.includes('renamed the group to') && t.includes('Friday lunch'), "the rename notice at A");
    assert.equal(await A.page.title(), 'Friday lunch · Natter');
    await B.page.locator('[data-testid=members-button]').click();
  });

  await check('owner: A removes C, then adds C back by email, from the members panel -> notices live at B, 3 members', async () => {
    await A.page.locator('[data-testid=members-button]').click();
    const panel = A.page.locator('[data-testid=group-panel]');
    assert.equal(await B.page.locator('[data-testid=group-panel] [data-testid=remove-member]').count(), 0, 'only the owner may remove');
    await panel.locator(`[data-testid=member][data-user-id="${C.id}"] [data-testid=remove-member]`).click();
    await waitText(B.page.locator(`${HISTORY_MSG}.system .text`).last(), (t) => t === `${A.username} removed ${C.username}`, 'the removal notice at B');
    await waitText(B.page.locator('[data-testid=presence]'), (t) => t.startsWith('2 members'), "B's header after the removal");
    const r = await api('POST', `/rooms/${encodeURIComponent(gid)}/messages`, { message: 'still here?' }, C.token);
    assert.equal(r.status, 403, `a removed member cannot write: ${JSON.stringify(r.body)}`);
    await panel.locator('[data-testid=add-member-form] [name=email]').fill(C.email);
    await panel.locator('[data-testid=add-member-form] button[type=submit]').click();
    await waitText(B.page.locator(`${HISTORY_MSG}.system .text`).last(), (t) => t === `${A.username} added ${C.username}`, 'the addition notice at B');
    await waitText(B.page.locator('[data-testid=presence]'), (t) => t.startsWith('3 members'), "B's header after the addition");
    await A.page.locator('[data-testid=members-button]').click();
  });

  await check('group conversation: messages both ways, a reply with its quote, a reaction chip live at the other side', async () => {
    await sendMessage(A, 'Count me in. Margherita for me.', 'enter');
    await waitForMessage(B, 'Count me in. Margherita for me.', (m) => m.seq, 'A\'s message at B');
    await messageAction(B.page, 'Pizza on Friday? 🍕', 'reply');
    await B.page.locator('[data-testid=reply-bar]').waitFor();
    await sendMessage(B, 'Same here, 12:30 works', 'enter');
    const quote = messageEl(A.page, 'Same here, 12:30 works').locator('[data-testid=quote]');
    await waitText(quote, (t) => t.includes('Pizza on Friday?') && t.includes(C.username), 'the quote at A');
    const navA = A.navigations;
    await quote.click();
    await waitFor(async () => /\bflash\b/.test(await messageEl(A.page, 'Pizza on Friday?').first().getAttribute('class')),
      { timeout: WAIT, what: 'the quoted message to be scrolled to and flashed at A' });
    assert.equal(A.navigations, navA, 'a quote of a message on the page scrolls, it does not navigate');
    await messageAction(B.page, 'Count me in. Margherita for me.', 'react');
    await B.page.locator('[data-testid=emoji-picker] [data-emoji="👍"]').click();
    const chip = messageEl(A.page, 'Count me in. Margherita for me.').locator('[data-testid=reaction][data-emoji="👍"]');
    await waitText(chip, (t) => t.replace(/\s/g, '') === '👍1', 'the 👍 chip at A');
    assert.equal(await chip.getAttribute('aria-pressed'), 'false', 'not A\'s own reaction');
    const mine = messageEl(B.page, 'Count me in. Margherita for me.').locator('[data-testid=reaction][data-emoji="👍"]');
    await waitFor(async () => (await mine.getAttribute('aria-pressed')) === 'true', { timeout: WAIT, what: "B's own chip to be highlighted" });
    await A.page.locator('[data-testid=reaction][data-emoji="👍"]').click();
    await waitText(mine, (t) => t.replace(/\s/g, '') === '👍2', 'the chip at B counting A too');
  });

  await check('search: A searches "margherita" -> a result linking to the room at that message, which opens highlighted', async () => {
    const q = A.page.locator('[data-testid=search-form] [name=q]');
    await q.fill('margherita');
    await q.press('Enter');
    const hit = A.page.locator('[data-testid=search-result]').first();
    await waitText(hit, (t) => t.includes('Count me in. Margherita for me.'), 'a search result');
    const href = await hit.locator('a').getAttribute('href');
    const url = new URL(href, BASE);
    assert.equal(url.searchParams.get('rid'), gid);
    const seq = url.searchParams.get('at');
    await hit.locator('a').click();
    await A.page.waitForURL((u) => u.searchParams.get('at') === seq);
    const target = A.page.locator(`${HISTORY_MSG}[data-seq="${seq}"]`);
    assert.match(await target.getAttribute('class'), /\bhighlight\b/);
    assert.equal((await target.locator('.text').textContent()).trim(), 'Count me in. Margherita for me.');
    assert.equal(await A.page.locator(`${HISTORY_MSG}.highlight`).count(), 1);
  });

  await check('leave: B leaves the group (two clicks) -> gone from B\'s list; A sees the notice and 2 members, live', async () => {
    await openRoom(B, gid);
    await B.page.locator('[data-testid=members-button]').click();
    const leave = B.page.locator('[data-testid=leave-group]');
    await leave.click();
    await leave.click();
    await B.page.waitForURL((u) => u.pathname === '/chat/' && !u.searchParams.get('rid'));
    await B.page.locator('[data-testid=chat-list]').waitFor({ state: 'attached' });
    assert.equal(await chatEntry(B.page, gid).count(), 0, 'the group is still in B\'s list');
    await waitText(A.page.locator(`${HISTORY_MSG}.system .text`).last(), (t) => t === `${B.username} left`, 'the leave notice at A');
    await waitText(A.page.locator('[data-testid=presence]'), (t) => t.startsWith('2 members'), "A's header after B left");
    const r = await formPost('/chat/?rid=' + encodeURIComponent(gid), { message: 'back?' }, { cookie: cookieHeader(await B.context.cookies(BASE)), origin: BASE });
    assert.equal(r.status, 403, 'B may not write to a group it left');
  });

  await check('no JavaScript errors on any page so far', async () => {
    for (const p of people) assert.deepEqual(p.pageErrors, [], `JavaScript errors on ${p.name}'s pages`);
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
