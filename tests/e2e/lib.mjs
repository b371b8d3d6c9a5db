// Shared helpers for the Natter end-to-end scripts: TAP-like reporting,
// a global watchdog, bounded polling, and small JSON API calls.
//
// Every script prints one line per check ("ok N - what" / "not ok N - what"),
// stops at the first failure, and ends with exactly "N passed, 0 failed" or
// "N passed, 1 failed".

import { setTimeout as delay } from 'node:timers/promises';

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
