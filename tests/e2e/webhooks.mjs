// Webhooks and bots in a real browser (playwright-core driving Debian's
// chromium): what is posted to a room's incoming webhook URL, and what a
// bot sends with its token, appear in the open chat page, live, under
// their names, and stay after a reload; the members panel marks the bot.
//
//   NATTER_URL=http://127.0.0.1:PORT node webhooks.mjs
//
// Env: CHROMIUM (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 60000).

import assert from 'node:assert/strict';
import {
  BASE, start, check, launchChecked, waitFor, api, registerAndLogin,
  HISTORY_MSG, newPerson, logIn, openRoom,
} from './lib.mjs';

const WAIT = 10000;
const PASSWORD = 'correct horse battery';

/** The sender and text of each message of the open room, as shown. */
async function shown(p) {
  return p.page.locator(HISTORY_MSG).evaluateAll((items) => items.map((li) => ({
    sender: li.querySelector('.sender')?.textContent ?? '',
    text: li.querySelector('.text')?.textContent ?? '',
  })));
}

async function main() {
  const tag = Math.random().toString(36).slice(2, 6).padEnd(4, '0');
  const browser = await launchChecked();

  const a = await registerAndLogin(`anna_${tag}`, `anna.${tag}@example.test`, PASSWORD);
  const hookName = `ci-${tag}`;
  let gid;
  let hookUrl;
  let A;
  await check('anna makes a group and an incoming webhook for it, and opens the group', async () => {
    const r = await api('POST', '/groups', { title: 'Deploys', emails: [] }, a.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    gid = r.body.room_id;
    const made = await api('POST', `/rooms/${gid}/webhooks`, { name: hookName }, a.token);
    assert.equal(made.status, 201, JSON.stringify(made.body));
    hookUrl = made.body.url;
    assert.match(hookUrl, /^\/hooks\/nwh_[\w-]{40,}$/);
    A = await newPerson(browser, { ...a, name: 'anna' });
    await logIn(A);
    await openRoom(A, gid);
  });

  await check('a POST to the webhook URL appears in her open page at once, under the webhook\'s name', async () => {
    const res = await fetch(`${BASE}${hookUrl}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'build #42 passed' }),
    });
    assert.equal(res.status, 201, await res.text());
    await waitFor(async () => (await shown(A)).some((m) => m.text === 'build #42 passed' && m.sender === hookName),
      { timeout: WAIT, what: 'the webhook message in the page' });
  });

  await check('a bot she adds sends with its token; its message appears too', async () => {
    const bot = await api('POST', '/bots', { username: `helper-${tag}` }, a.token);
    assert.equal(bot.status, 201, JSON.stringify(bot.body));
    const added = await api('POST', `/rooms/${gid}/members`, { email: bot.body.email }, a.token);
    assert.equal(added.status, 200, JSON.stringify(added.body));
    const token = await api('POST', `/bots/${bot.body.id}/tokens`, { scopes: ['send'], rooms: [gid] }, a.token);
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const sent = await api('POST', `/rooms/${gid}/messages`, { message: 'deployed to production' }, token.body.token);
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    await waitFor(async () => (await shown(A)).some((m) => m.text === 'deployed to production' && m.sender === `helper-${tag}`),
      { timeout: WAIT, what: 'the bot message in the page' });
  });

  await check('the members panel marks the bot as a bot, and nobody else', async () => {
    await openRoom(A, gid);
    await A.page.locator('[data-testid=members-button]').click();
    const bot = A.page.locator(`[data-testid=member][data-username="helper-${tag}"]`);
    await bot.waitFor();
    assert.equal(await bot.getAttribute('data-bot'), 'true');
    assert.match(await bot.textContent(), /bot/);
    assert.equal(await A.page.locator('[data-testid=member][data-bot]').count(), 1);
  });

  await check('after a reload both are in the history', async () => {
    await openRoom(A, gid);
    const texts = (await shown(A)).map((m) => m.text);
    assert.ok(texts.includes('build #42 passed'), JSON.stringify(texts));
    assert.ok(texts.includes('deployed to production'), JSON.stringify(texts));
    assert.deepEqual(A.pageErrors, []);
  });
}

start('webhooks', main);
