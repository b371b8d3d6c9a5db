// An invite-only server in a real browser (playwright-core driving Debian's
// chromium): sign-up without an invitation is refused; with one, the person
// lands in the group it names, and the group sees them join. Then the
// account page, and its screenshot for the README.
//
//   NATTER_URL=http://127.0.0.1:PORT [SCREENSHOT_ACCOUNT=FILE] node invites.mjs
//
// (accounts.mjs writes the README's screenshot of the account page.)
//
// The server must run with `--registration invite`, fresh (the first
// account made here is its admin). Env: CHROMIUM (default
// /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  start, check, launchChecked, waitFor, api, registerAndLogin,
  HISTORY_MSG, newPerson, logIn, openRoom,
} from './lib.mjs';

const WAIT = 10000;
const PASSWORD = 'correct horse battery';

/** Fills and sends the sign-up form of the page as it stands. */
async function signUp(p) {
  const form = p.page.locator('[data-testid=register-form]');
  await form.locator('[name=username]').fill(p.username);
  await form.locator('[name=email]').fill(p.email);
  await form.locator('[name=password]').fill(PASSWORD);
  await form.locator('[name=password]').press('Enter');
}

async function main() {
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  const browser = await launchChecked();

  let A;
  let gid;
  let link;
  await check('anna, the first account, is the admin: she makes a group and an invitation to it', async () => {
    const a = await registerAndLogin(`anna_${tag}`, `anna.${tag}@example.test`, PASSWORD);
    const r = await api('POST', '/groups', { title: 'Book club', emails: [] }, a.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    gid = r.body.room_id;
    const made = await api('POST', '/invites', { room_id: gid, max_uses: 1 }, a.token);
    assert.equal(made.status, 201, JSON.stringify(made.body));
    link = made.body.url;
    assert.match(link, /^\/register\?invite=[\w-]{22,}$/);
    A = await newPerson(browser, { ...a, name: 'anna' });
    await logIn(A);
    await openRoom(A, gid);
  });

  const B = { username: `ben_${tag}`, email: `ben.${tag}@example.test`, password: PASSWORD, name: 'ben' };
  await check('ben signs up without an invitation: the page says the server is invite-only and refuses him', async () => {
    Object.assign(B, await newPerson(browser, B));
    await B.page.goto('/register');
    assert.match(await B.page.locator('[data-testid=registration-mode]').textContent(), /invitation only/);
    const [answer] = await Promise.all([
      B.page.waitForResponse((r) => r.url().endsWith('/register') && r.request().method() === 'POST'),
      signUp(B),
    ]);
    assert.equal(answer.status(), 403);
    assert.match(await B.page.locator('[role=alert]').first().textContent(), /invitation only/);
    const login = await api('POST', '/sessions', { email: B.email, password: PASSWORD });
    assert.equal(login.status, 401, 'no account was made');
  });

  await check('with the invitation link he signs up, logs in, and lands in the group; anna sees him join, live', async () => {
    await B.page.goto(link);
    await B.page.locator('[data-testid=invited]').waitFor();
    await signUp(B);
    await B.page.waitForURL((u) => u.pathname === '/login');
    await logIn(B);
    assert.equal(new URL(B.page.url()).searchParams.get('rid'), gid, 'the login lands in the group');
    assert.equal(await B.page.locator('[data-testid=room-title]').textContent(), 'Book club');
    const joined = `${B.username} joined with ${A.username}'s invitation`;
    for (const p of [B, A]) {
      await waitFor(async () => (await p.page.locator(`${HISTORY_MSG}[data-kind=system] .text`).allTextContents()).includes(joined), { timeout: WAIT, what: `the join at ${p.name}` });
    }
  });

  await check('the invitation was for one person: used, it refuses the next', async () => {
    const again = await api('POST', '/users', { username: `cleo_${tag}`, email: `cleo.${tag}@example.test`, password: PASSWORD, invite: link.split('=')[1] });
    assert.equal(again.status, 403);
    assert.equal(again.body.error.code, 'invalid_invite');
  });

  await check('the account page lists anna\'s devices; she signs another one out', async () => {
    const other = await api('POST', '/sessions', { email: A.email, password: PASSWORD });
    assert.equal(other.status, 201);
    const listed = await api('GET', '/sessions', undefined, other.body.token);
    const otherId = listed.body.sessions.find((s) => s.current).id;
    await A.page.locator('[data-testid=account-link]').click();
    await A.page.waitForURL((u) => u.pathname === '/account');
    const sessions = A.page.locator('[data-testid=session]');
    await waitFor(async () => (await sessions.count()) >= 2, { timeout: WAIT, what: 'the sessions listed' });
    const count = await sessions.count();
    if (process.env.SCREENSHOT_ACCOUNT) {
      const file = path.resolve(process.cwd(), process.env.SCREENSHOT_ACCOUNT);
      mkdirSync(path.dirname(file), { recursive: true });
      await A.page.screenshot({ path: file, fullPage: true });
    }
    assert.equal(await A.page.locator('[data-testid=session].current').count(), 1, 'this browser, marked');
    await A.page.locator(`[data-testid=session][data-id="${otherId}"] [data-testid=end-session]`).click();
    await A.page.locator('[data-testid=flash]').waitFor();
    assert.equal(await sessions.count(), count - 1);
    const me = await api('GET', '/me', undefined, other.body.token);
    assert.equal(me.status, 401, 'that device is signed out');
  });
}

start('invites', main);
