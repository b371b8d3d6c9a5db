// Accounts and administration in a real browser (playwright-core driving
// Debian's chromium): a display name and a picture set on the account page
// show in the other person's list; a block closes the direct chat; the admin
// page disables someone, whose open page is signed out live; an account
// deleted from its page leaves a "deleted user" behind. Screenshots of the
// account page and the admin page for the README.
//
//   NATTER_URL=http://127.0.0.1:PORT [SCREENSHOT_ACCOUNT=docs/screenshot-account.png] \
//     [SCREENSHOT_ADMIN=docs/screenshot-admin.png] node accounts.mjs
//
// The server must be fresh: the first account made here is its admin.
// Env: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import {
  start, check, launchChecked, waitFor, api, registerAndLogin,
  HISTORY_MSG, MESSAGE_BOX, newPerson, logIn, openRoom,
} from './lib.mjs';

const WAIT = 10000;
const PASSWORD = 'correct horse battery';

async function screenshot(page, variable) {
  if (!process.env[variable]) return;
  const file = path.resolve(process.cwd(), process.env[variable]);
  mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true });
}

async function main() {
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  const browser = await launchChecked();
  let A;
  let B;
  let C;
  let withBen;
  await check('anna (the first account, an admin), ben and cyd sign in; anna has a chat with each', async () => {
    const a = await registerAndLogin(`anna_${tag}`, `anna.${tag}@example.test`, PASSWORD);
    const b = await registerAndLogin(`ben_${tag}`, `ben.${tag}@example.test`, PASSWORD);
    const c = await registerAndLogin(`cyd_${tag}`, `cyd.${tag}@example.test`, PASSWORD);
    const chat = await api('POST', '/chats', { email: b.email }, a.token);
    withBen = chat.body.room_id;
    await api('POST', '/chats', { email: c.email }, a.token);
    A = await newPerson(browser, { ...a, name: 'anna' });
    B = await newPerson(browser, { ...b, name: 'ben' });
    C = await newPerson(browser, { ...c, name: 'cyd' });
    for (const p of [A, B, C]) await logIn(p);
  });

  await check('on her account page anna sets a display name and a picture; ben\'s list shows both', async () => {
    // A picture: a piece of her own screen, as a PNG.
    const picture = await A.page.screenshot({ clip: { x: 0, y: 0, width: 160, height: 120 } });
    await A.page.locator('[data-testid=account-link]').click();
    await A.page.waitForURL((u) => u.pathname === '/account');
    await A.page.locator('[data-testid=display-name]').fill('Anna Lee');
    await A.page.locator('[data-testid=profile-form] button[type=submit]').click();
    await A.page.locator('[data-testid=flash]').waitFor();
    assert.equal(await A.page.locator('[data-testid=display-name]').inputValue(), 'Anna Lee');
    await Promise.all([
      A.page.waitForEvent('load'),
      A.page.locator('[data-testid=avatar-input]').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: picture }),
    ]);
    const img = A.page.locator('[data-testid=my-avatar]');
    await img.waitFor();
    await waitFor(async () => (await img.evaluate((i) => i.complete && i.naturalWidth)) > 0, { timeout: WAIT, what: 'the picture to load' });
    await screenshot(A.page, 'SCREENSHOT_ACCOUNT');

    await B.page.goto('/chat/');
    const item = B.page.locator(`[data-testid=chat-item][data-rid="${withBen}"]`);
    assert.equal(await item.locator('.chat-title').textContent(), 'Anna Lee');
    const avatar = await item.locator('.avatar').getAttribute('data-avatar');
    assert.match(avatar, /^\/api\/v1\/users\/\d+\/avatar\?v=[0-9a-f]{12}$/);
    const loaded = await B.page.evaluate(async (url) => (await fetch(url)).headers.get('content-type'), avatar);
    assert.equal(loaded, 'image/jpeg');
    assert.match(await item.locator('.avatar').evaluate((s) => getComputedStyle(s).backgroundImage), /avatar\?v=/);
  });

  await check('anna blocks ben from their chat: his message is refused and never reaches her', async () => {
    await openRoom(A, withBen);
    await A.page.locator('[data-testid=block-user]').click();
    await A.page.locator('[data-testid=blocked-banner]').waitFor();
    await openRoom(B, withBen);
    await B.page.locator(MESSAGE_BOX).fill('are you there?');
    await B.page.locator(MESSAGE_BOX).press('Enter');
    const mine = B.page.locator(`${HISTORY_MSG}[data-failed=true]`);
    await mine.waitFor({ timeout: WAIT });
    assert.match(await mine.textContent(), /blocks the other/);
    const history = await api('GET', `/rooms/${withBen}/messages`, undefined, A.token);
    assert.deepEqual(history.body.messages, [], 'nothing reached anna');
    const blocks = await api('GET', '/blocks', undefined, A.token);
    assert.equal(blocks.body.blocked[0].username, B.username);
  });

  await check('on the admin page anna finds cyd and disables her: cyd\'s open page is signed out, live', async () => {
    await C.page.goto('/chat/');
    await A.page.goto('/admin');
    assert.equal(await A.page.locator('[data-testid=count-users]').textContent(), '3');
    await screenshot(A.page, 'SCREENSHOT_ADMIN');
    await A.page.locator('[data-testid=user-query]').fill('cyd');
    await A.page.locator('[data-testid=user-query]').press('Enter');
    await A.page.waitForURL((u) => u.searchParams.get('q') === 'cyd');
    const row = A.page.locator(`[data-testid=user][data-username="${C.username}"]`);
    assert.equal(await A.page.locator('[data-testid=user]').count(), 1);
    await row.locator('[data-testid=disable-user]').click();
    await A.page.locator('[data-testid=flash]').waitFor();
    await C.page.waitForURL((u) => u.pathname === '/login', { timeout: WAIT });
    const login = await api('POST', '/sessions', { email: C.email, password: PASSWORD });
    assert.equal(login.body.error.code, 'disabled');
    await A.page.locator(`[data-testid=user][data-username="${C.username}"] [data-testid=enable-user]`).click();
    await A.page.locator('[data-testid=flash]').waitFor();
    assert.equal((await api('POST', '/sessions', { email: C.email, password: PASSWORD })).status, 201);
  });

  await check('ben deletes his account on its page: signed out, and anna\'s list shows a deleted user, live', async () => {
    await openRoom(A, withBen);
    await B.page.goto('/account');
    await B.page.locator('[data-testid=delete-password]').fill('not my password');
    await B.page.locator('[data-testid=delete-account]').click();
    await B.page.locator('[data-testid=delete-error]').waitFor();
    await B.page.locator('[data-testid=delete-password]').fill(PASSWORD);
    await B.page.locator('[data-testid=delete-account]').click();
    await B.page.waitForURL((u) => u.pathname === '/login');
    assert.match(await B.page.locator('[role=status], .notice').first().textContent(), /account is deleted/);
    const item = A.page.locator(`[data-testid=chat-item][data-rid="${withBen}"] .chat-title`);
    await waitFor(async () => /^deleted user #\d+$/.test(await item.textContent()), { timeout: WAIT, what: 'the deleted user in anna\'s list' });
    assert.equal((await api('GET', '/me', undefined, B.token)).status, 401);
  });

  await check('no page had a script error', async () => {
    for (const p of [A, B, C]) assert.deepEqual(p.pageErrors, [], p.name);
  });
}

start('accounts', main);
