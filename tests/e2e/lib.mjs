// Shared helpers for the Natter end-to-end scripts: TAP-like reporting,
// a global watchdog, bounded polling, and small JSON API calls.
//
// Every script prints one line per check ("ok N - what" / "not ok N - what"),
// stops at the first failure, and ends with exactly "N passed, 0 failed" or
// "N passed, 1 failed".

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { chromium } from 'playwright-core';

/** Debian's chromium (no browser download) and the flags every script launches it with. */
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run',
];

export const BASE = (process.env.NATTER_URL || '').replace(/\/+$/, '');
export const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS || 60000);

let passed = 0;
let finished = false;
const cleanups = [];

/** Register something to run (best effort, bounded) before the process exits. */
export function onCleanup(fn) {
  cleanups.push(fn);
}

async function runCleanups() {
  const all = cleanups.splice(0).reverse().map(async (fn) => {
    try { await fn(); } catch { /* best effort */ }
  });
  await Promise.race([Promise.all(all), delay(5000)]);
}

export async function finish(code) {
  if (finished) return;
  finished = true;
  await runCleanups();
  console.log(`${passed} passed, ${code === 0 ? 0 : 1} failed`);
  process.exit(code);
}

async function fail(what, err) {
  if (finished) return;
  console.log(`not ok ${passed + 1} - ${what}`);
  const head = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
  for (const line of head.split('\n')) console.log(`#   ${line}`);
  // Only the frames of these scripts (not node or library internals).
  const frames = String((err && err.stack) || '').split('\n')
    .filter((l) => /^\s+at /.test(l) && /tests\/e2e\/(?!lib\.mjs|node_modules)/.test(l));
  for (const f of frames.slice(0, 3)) console.log(`#   ${f.trim()}`);
  await finish(1);
}

/** Run one check; on failure print it and exit non-zero. */
export async function check(what, fn) {
  try {
    const r = await fn();
    passed += 1;
    console.log(`ok ${passed} - ${what}`);
    return r;
  } catch (err) {
    await fail(what, err);
    // finish() exits; never reached
    throw err;
  }
}

export function note(text) {
  console.log(`# ${text}`);
}

/** Start the watchdog and the top-level error handling; call once. */
export function start(name, main) {
  if (!BASE) {
    console.log('not ok 1 - NATTER_URL is not set (e.g. NATTER_URL=http://127.0.0.1:43121)');
    console.log('0 passed, 1 failed');
    process.exit(2);
  }
  console.log(`# ${name} against ${BASE}`);
  const watchdog = setTimeout(() => {
    fail(`global timeout: ${name} did not finish within ${TIMEOUT_MS} ms`, new Error('timeout'));
    // If cleanups hang, exit anyway.
    setTimeout(() => process.exit(1), 6000).unref();
  }, TIMEOUT_MS);
  process.on('unhandledRejection', (e) => fail('unhandled promise rejection', e));
  process.on('uncaughtException', (e) => fail('uncaught exception', e));
  main().then(
    () => { clearTimeout(watchdog); return finish(0); },
    (e) => fail('unexpected error outside a check', e),
  );
}

export const sleep = (ms) => delay(ms);

/** Poll `fn` until it returns a truthy value (returned), or throw after `timeout` ms. */
export async function waitFor(fn, { timeout = 10000, interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await delay(interval);
  }
}

export function uniqueTag() {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;
}

/** JSON API call: returns {status, body} (body parsed when JSON). */
export async function api(method, path, body, token) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(`${BASE}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15000),
    });
  } catch (e) {
    throw new Error(`${method} ${BASE}/api/v1${path} failed: ${e.message}${e.cause ? ` (${e.cause.code || e.cause.message})` : ''}`);
  }
  const text = await res.text();
  let parsed = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  return { status: res.status, body: parsed };
}

/** Register a user over the JSON API and log in; returns {id, username, email, password, token}. */
export async function registerAndLogin(username, email, password) {
  let r = await api('POST', '/users', { username, email, password });
  if (r.status !== 201) throw new Error(`POST /api/v1/users ${username}: expected 201, got ${r.status} ${JSON.stringify(r.body)}`);
  if (typeof r.body?.id !== 'string') throw new Error(`user id must be a string: ${JSON.stringify(r.body)}`);
  const user = { ...r.body, password };
  r = await api('POST', '/sessions', { email, password });
  if (r.status !== 201) throw new Error(`POST /api/v1/sessions ${email}: expected 201, got ${r.status} ${JSON.stringify(r.body)}`);
  if (typeof r.body?.token !== 'string') throw new Error(`token must be a string: ${JSON.stringify(r.body)}`);
  user.token = r.body.token;
  return user;
}

// ------------------------------------------------------------ people in a browser

/**
 * The check every browser script starts with: Debian's chromium, launched
 * headless by playwright-core (no browser download), closed at the end.
 * launch() gives every run a fresh temporary --user-data-dir and removes it.
 */
export async function launchChecked() {
  let browser;
  await check(`launch ${CHROMIUM} with playwright-core`, async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30000 });
    onCleanup(() => browser.close());
  });
  return browser;
}

/** The message box of the chat page. */
export const MESSAGE_BOX = '[data-testid=message-form] [name=message]';
/** The messages of the open room's history. */
export const HISTORY_MSG = '[data-testid=message-history] [data-testid=message]';

/**
 * A person: their own browser context (cookies) and page, with observers:
 * `dialogs` (alerts of any of their pages), `pageErrors`, and `joinAcks`
 * (Socket.IO acks carrying `last_seq`, over WebSocket or long-polling: the
 * page's `join-chat` is done). Service workers are off: page.route does not
 * see what a worker answers (offline.mjs tests the worker).
 */
export async function newPerson(browser, user, { viewport = { width: 1280, height: 800 }, context: options = {}, wait = 10000 } = {}) {
  const context = await browser.newContext({ viewport, baseURL: BASE, serviceWorkers: 'block', ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(wait);
  page.setDefaultNavigationTimeout(wait);
  const p = { ...user, context, page, dialogs: [], pageErrors: [], joinAcks: 0 };
  const onDialog = async (d) => {
    p.dialogs.push(`${d.type()}: ${d.message()}`);
    try { await d.dismiss(); } catch { /* already gone */ }
  };
  page.on('dialog', onDialog);
  context.on('page', (other) => other.on('dialog', onDialog));
  page.on('pageerror', (e) => p.pageErrors.push(String(e && e.message ? e.message : e)));
  const sawAck = (text) => { if (typeof text === 'string' && text.includes('"last_seq"')) p.joinAcks += 1; };
  page.on('websocket', (ws) => ws.on('framereceived', (f) => sawAck(typeof f.payload === 'string' ? f.payload : f.payload.toString())));
  page.on('response', async (r) => {
    if (!r.url().includes('/socket.io/') || r.request().method() !== 'GET') return;
    try { sawAck(await r.text()); } catch { /* body gone */ }
  });
  return p;
}

/** Logs in through the web form, with the person's `email` and `password`. */
export async function logIn(p) {
  await p.page.goto('/login');
  const form = p.page.locator('[data-testid=login-form]');
  await form.locator('[name=email]').fill(p.email);
  await form.locator('[name=password]').fill(p.password);
  await form.locator('[name=password]').press('Enter');
  await p.page.waitForURL((u) => u.pathname === '/chat/');
}

/** Opens a room and waits until its socket has joined it. */
export async function openRoom(p, rid, wait = 10000) {
  const before = p.joinAcks;
  await p.page.goto(`/chat/?rid=${encodeURIComponent(rid)}`);
  await p.page.locator(MESSAGE_BOX).waitFor();
  await waitFor(() => p.joinAcks > before, { timeout: wait, what: `${p.name}'s page to join the room` });
}

/** A message over the JSON API (waiting out the send rate limit). */
export async function apiSend(user, rid, message) {
  for (let tries = 0; ; tries += 1) {
    const r = await api('POST', `/rooms/${encodeURIComponent(rid)}/messages`, { message }, user.token);
    if (r.status === 201) return r.body;
    if (r.status !== 429 || tries > 20) throw new Error(`POST message: ${r.status} ${JSON.stringify(r.body)}`);
    await delay(250);
  }
}

/**
 * Infinite scroll upward: the two people of `[a, b]` send 80 messages to
 * `rid` over the API (their pages away meanwhile), b opens the room (at its
 * latest page) and scrolls to the top as a reader would, until seq 1 shows.
 * Each time older messages load by themselves and the message that was first
 * stays where it was; at the end every message shows once, in order.
 */
export async function scrollsBackToStart([a, b], rid, wait = 10000) {
  // An open page reports reading each message as it comes, and 80 of those
  // would use up the reader's budget of requests.
  for (const p of [a, b]) await p.page.goto('about:blank');
  let last = null;
  for (let i = 1; i <= 80; i += 1) last = await apiSend(i % 2 ? a : b, rid, `older ${i}`);
  // Read up to the end: the page opens at the latest messages, not at a "New messages" divider.
  const r = await api('POST', `/rooms/${encodeURIComponent(rid)}/read`, { seq: last.seq }, b.token);
  assert.ok(r.status < 300, `read: ${r.status} ${JSON.stringify(r.body)}`);
  await openRoom(b, rid);
  const shown = async () => b.page.$$eval(HISTORY_MSG, (els) => els.map((e) => Number(e.dataset.seq)));
  const first = (await shown())[0];
  assert.ok(first > 1, `the page opens with the latest page only (first seq ${first})`);
  const loads = [];
  for (let round = 0; round < 5 && (await shown())[0] > 1; round += 1) {
    const count = (await shown()).length;
    // Scroll to the top as a reader would; where the first message sits then.
    const at = await b.page.evaluate(() => {
      const s = document.getElementById('history-scroll');
      const li = document.querySelector('[data-testid=message-history] [data-testid=message][data-seq]');
      s.scrollTop = 0;
      return { seq: li.dataset.seq, bottom: li.getBoundingClientRect().bottom };
    });
    await waitFor(async () => (await shown()).length > count, { timeout: wait, what: 'older messages to load by themselves' });
    await delay(100);
    const bottom = await b.page.evaluate((seq) => document.querySelector(`[data-testid=message][data-seq="${seq}"]`).getBoundingClientRect().bottom, at.seq);
    assert.ok(Math.abs(bottom - at.bottom) <= 2, `the message that was first stays put: ${at.bottom} -> ${bottom}`);
    loads.push((await shown()).length - count);
  }
  const seqs = await shown();
  assert.equal(seqs[0], 1, `all loaded back to seq 1 (${loads.join(' + ')} older)`);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in order');
  assert.equal(new Set(seqs).size, seqs.length, 'each once');
  assert.ok(await b.page.locator('.load-older').isHidden(), 'no button once at the start');
}
