// Natter with the official Socket.IO JavaScript client (socket.io-client v4).
//
//   NATTER_URL=http://127.0.0.1:PORT node official-client.mjs
//
// Two users talk in a direct room over websocket sockets; a third socket (the
// first user's second device) uses HTTP long-polling only. Checks the wire
// contract of shared/PROTOCOL.md section 3 as a third-party client sees it.

import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import {
  BASE, start, check, note, sleep, waitFor, uniqueTag, api, registerAndLogin, onCleanup,
} from './lib.mjs';

const PASSWORD = 'correct horse battery';
const ACK_MS = 5000;

/** Connect a socket; resolves with it once connected, rejects with the connect_error. */
function connect({ token, transports = ['websocket'] } = {}) {
  return new Promise((resolve, reject) => {
    const s = io(BASE, {
      path: '/socket.io/',
      transports,
      auth: token ? { token } : {},
      reconnection: false,
      forceNew: true,
      timeout: 8000,
    });
    onCleanup(() => s.close());
    const timer = setTimeout(() => { s.close(); reject(new Error('no connect / connect_error within 8 s')); }, 8000);
    s.once('connect', () => { clearTimeout(timer); resolve(s); });
    s.once('connect_error', (e) => { clearTimeout(timer); s.close(); reject(e); });
  });
}

/** Resolve with the connect_error a token-less (or bad-token) connection gets. */
async function refusedConnect(opts) {
  try {
    const s = await connect(opts);
    s.close();
  } catch (e) {
    return e;
  }
  throw new Error('the connection was accepted; expected connect_error "unauthorized"');
}

const ack = (s, ev, payload) => s.timeout(ACK_MS).emitWithAck(ev, payload);

function collect(s, ev) {
  const got = [];
  s.on(ev, (m) => got.push(m));
  return got;
}

const nowSecs = () => Date.now() / 1000;

function assertMessageShape(m, { rid, seq, sender, text, clientId }) {
  assert.equal(typeof m, 'object', `Message must be an object: ${JSON.stringify(m)}`);
  assert.equal(typeof m.id, 'string', `Message.id must be a string: ${JSON.stringify(m)}`);
  assert.equal(m.rid, rid, 'Message.rid');
  if (seq !== undefined) assert.equal(m.seq, seq, `Message.seq (${JSON.stringify(m)})`);
  assert.equal(m.sender_id, sender.id, 'Message.sender_id is decided by the server');
  assert.equal(m.sender_username, sender.username, 'Message.sender_username is decided by the server');
  if (text !== undefined) assert.equal(m.message.trim(), text.trim(), 'Message.message');
  assert.equal(typeof m.timestamp, 'number', 'Message.timestamp must be a number (Unix seconds)');
  assert.ok(Math.abs(m.timestamp - nowSecs()) < 120,
    `Message.timestamp ${m.timestamp} must be the server's time now (${nowSecs()}), in Unix seconds`);
  assert.equal(m.client_id, clientId === undefined ? null : clientId, 'Message.client_id');
}

async function main() {
  const tag = uniqueTag();
  let alice; let bob; let carol; let rid;

  await check('register and log in three users over the JSON API', async () => {
    alice = await registerAndLogin(`alice_${tag}`, `alice.${tag}@example.test`, PASSWORD);
    bob = await registerAndLogin(`bob_${tag}`, `bob.${tag}@example.test`, PASSWORD);
    carol = await registerAndLogin(`carol_${tag}`, `carol.${tag}@example.test`, PASSWORD);
  });

  await check('POST /api/v1/chats {email} opens a direct room (201, string room_id)', async () => {
    const r = await api('POST', '/chats', { email: bob.email }, alice.token);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(typeof r.body.room_id, 'string', JSON.stringify(r.body));
    assert.equal(r.body.kind, 'direct');
    rid = r.body.room_id;
  });

  await check('websocket connect without a token -> connect_error "unauthorized"', async () => {
    const e = await refusedConnect({ transports: ['websocket'] });
    assert.equal(e.message, 'unauthorized', `connect_error message: ${e.message}`);
  });

  await check('polling connect without a token -> connect_error "unauthorized"', async () => {
    const e = await refusedConnect({ transports: ['polling'] });
    assert.equal(e.message, 'unauthorized', `connect_error message: ${e.message}`);
  });

  await check('connect with a bad token -> connect_error "unauthorized"', async () => {
    const e = await refusedConnect({ token: `bogus-${tag}` });
    assert.equal(e.message, 'unauthorized', `connect_error message: ${e.message}`);
  });

  let a; let b; let aPoll; let c;
  await check('connect with auth {token}: two websocket sockets and one long-polling socket', async () => {
    a = await connect({ token: alice.token, transports: ['websocket'] });
    b = await connect({ token: bob.token, transports: ['websocket'] });
    aPoll = await connect({ token: alice.token, transports: ['polling'] });
    c = await connect({ token: carol.token, transports: ['websocket'] });
    assert.equal(a.io.engine.transport.name, 'websocket');
    assert.equal(b.io.engine.transport.name, 'websocket');
    assert.equal(aPoll.io.engine.transport.name, 'polling');
  });

  const gotA = collect(a, 'message');
  const gotB = collect(b, 'message');
  const gotPoll = collect(aPoll, 'message');
  const joinedA = collect(a, 'joined-chat');
  const joinedPoll = collect(aPoll, 'joined-chat');

  await check('join-chat ack {ok: true, rid, last_seq: 0} (websocket and polling)', async () => {
    assert.deepEqual(await ack(a, 'join-chat', { rid }), { ok: true, rid, last_seq: 0 });
    assert.deepEqual(await ack(aPoll, 'join-chat', { rid }), { ok: true, rid, last_seq: 0 });
  });

  await check('joined-chat {rid, user_id, username, msg: "NAME is now online."} reaches the room', async () => {
    assert.deepEqual(await ack(b, 'join-chat', { rid }), { ok: true, rid, last_seq: 0 });
    const want = { rid, user_id: bob.id, username: bob.username, msg: `${bob.username} is now online.` };
    for (const [name, got] of [['websocket', joinedA], ['polling', joinedPoll]]) {
      await waitFor(() => got.some((j) => j.rid === rid && j.user_id === bob.id), {
        timeout: 5000, what: `joined-chat for bob on alice's ${name} socket (got ${JSON.stringify(got)})`,
      });
      const j = got.find((x) => x.user_id === bob.id);
      assert.deepEqual(j, want);
    }
  });

  await check('join-chat refusals: not_member / no_such_room / invalid', async () => {
    assert.deepEqual(await ack(c, 'join-chat', { rid }), { error: { code: 'not_member' } });
    assert.deepEqual(await ack(c, 'join-chat', { rid: `no-such-room-${tag}` }), { error: { code: 'no_such_room' } });
    assert.deepEqual(await ack(c, 'join-chat', {}), { error: { code: 'invalid' } });
  });

  let m1;
  await check('outgoing with forged sender_id/sender_username/timestamp: ack {ok, message} decided by the server', async () => {
    const r = await ack(a, 'outgoing', {
      rid, message: `hello bob ${tag}`, client_id: `c1-${tag}`,
      sender_id: bob.id, sender_username: 'mallory', timestamp: 1,
    });
    assert.equal(r.ok, true, JSON.stringify(r));
    m1 = r.message;
    assertMessageShape(m1, { rid, seq: 1, sender: alice, text: `hello bob ${tag}`, clientId: `c1-${tag}` });
    assert.notEqual(m1.timestamp, 1, 'forged timestamp must be ignored');
  });

  await check('the other user receives "message" (identical to the ack); the sending socket does not', async () => {
    await waitFor(() => gotB.length >= 1, { timeout: 5000, what: 'bob to receive message seq 1' });
    assert.deepEqual(gotB[0], m1);
    await waitFor(() => gotPoll.length >= 1, { timeout: 5000, what: "alice's polling socket to receive her own message" });
    assert.deepEqual(gotPoll[0], m1, "the sender's other (polling) socket gets the message");
    await sleep(300);
    assert.equal(gotA.length, 0, `the sending socket must not get its own message: ${JSON.stringify(gotA)}`);
  });

  let m2;
  await check('reply the other way: alice receives it on both sockets (websocket and polling)', async () => {
    const r = await ack(b, 'outgoing', { rid, message: `hi alice ${tag}` });
    assert.equal(r.ok, true, JSON.stringify(r));
    m2 = r.message;
    assertMessageShape(m2, { rid, seq: 2, sender: bob, text: `hi alice ${tag}`, clientId: undefined });
    await waitFor(() => gotA.length >= 1 && gotPoll.length >= 2, { timeout: 5000, what: 'alice to receive seq 2 on both sockets' });
    assert.deepEqual(gotA[0], m2);
    assert.deepEqual(gotPoll[1], m2);
    assert.equal(gotB.length, 1, `bob must not get his own message back: ${JSON.stringify(gotB)}`);
  });

  await check('a send over long-polling is acked and broadcast', async () => {
    const r = await ack(aPoll, 'outgoing', { rid, message: `via polling ${tag}` });
    assert.equal(r.ok, true, JSON.stringify(r));
    assertMessageShape(r.message, { rid, seq: 3, sender: alice, text: `via polling ${tag}`, clientId: undefined });
    await waitFor(() => gotB.length >= 2 && gotA.length >= 2, { timeout: 5000, what: 'seq 3 at bob and at alice\'s websocket socket' });
    assert.deepEqual(gotB[1], r.message);
    assert.deepEqual(gotA[1], r.message);
  });

  await check('resend with the same client_id returns the stored message and is not broadcast again', async () => {
    const beforeB = gotB.length;
    const beforePoll = gotPoll.length;
    const r = await ack(a, 'outgoing', { rid, message: `hello bob ${tag}`, client_id: `c1-${tag}` });
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.deepEqual(r.message, m1);
    await sleep(500);
    assert.equal(gotB.length, beforeB, `resend was broadcast again to bob: ${JSON.stringify(gotB.slice(beforeB))}`);
    assert.equal(gotPoll.length, beforePoll, 'resend was broadcast again to alice\'s other socket');
    const h = await api('GET', `/rooms/${encodeURIComponent(rid)}/messages`, undefined, alice.token);
    assert.equal(h.status, 200, JSON.stringify(h.body));
    assert.deepEqual(h.body.messages.map((m) => m.seq), [1, 2, 3], 'no second copy stored');
  });

  await check('outgoing refusals: empty / too_long / invalid / not_member', async () => {
    assert.deepEqual(await ack(a, 'outgoing', { rid, message: '   ' }), { error: { code: 'empty' } });
    assert.deepEqual(await ack(a, 'outgoing', { rid, message: 'x'.repeat(4001) }), { error: { code: 'too_long' } });
    assert.deepEqual(await ack(a, 'outgoing', { rid, message: 42 }), { error: { code: 'invalid' } });
    assert.deepEqual(await ack(c, 'outgoing', { rid, message: 'let me in' }), { error: { code: 'not_member' } });
  });

  await check('an outgoing without an ack callback is still served', async () => {
    const before = gotB.length;
    a.emit('outgoing', { rid, message: `no ack wanted ${tag}` });
    await waitFor(() => gotB.length > before, { timeout: 5000, what: 'bob to receive the un-acked send' });
    assert.equal(gotB[before].seq, 4);
    assert.equal(gotB[before].message, `no ack wanted ${tag}`);
  });

  let missed;
  let lastSeen;
  await check('disconnect; messages sent meanwhile are not lost', async () => {
    lastSeen = gotB[gotB.length - 1].seq;
    b.disconnect();
    await sleep(200);
    missed = [];
    for (let i = 0; i < 3; i += 1) {
      const r = await ack(a, 'outgoing', { rid, message: `while you were away ${i} ${tag}`, client_id: `away-${i}-${tag}` });
      assert.equal(r.ok, true, JSON.stringify(r));
      missed.push(r.message);
    }
    assert.deepEqual(missed.map((m) => m.seq), [lastSeen + 1, lastSeen + 2, lastSeen + 3]);
  });

  await check('reconnect, join-chat reports last_seq, sync {after_seq} returns exactly what was missed', async () => {
    const countBefore = gotB.length;
    const connected = new Promise((resolve, reject) => {
      b.once('connect', resolve);
      b.once('connect_error', reject);
    });
    b.connect();
    await Promise.race([connected, sleep(8000).then(() => { throw new Error('reconnect timed out'); })]);
    const j = await ack(b, 'join-chat', { rid });
    assert.deepEqual(j, { ok: true, rid, last_seq: missed[2].seq });
    const s = await ack(b, 'sync', { rid, after_seq: lastSeen });
    assert.equal(s.ok, true, JSON.stringify(s));
    assert.deepEqual(s.messages, missed);
    const lim = await ack(b, 'sync', { rid, after_seq: lastSeen, limit: 2 });
    assert.deepEqual(lim.messages, missed.slice(0, 2), 'sync with limit returns the oldest missed first');
    const none = await ack(b, 'sync', { rid, after_seq: missed[2].seq });
    assert.deepEqual(none, { ok: true, messages: [] });
    assert.equal(gotB.length, countBefore, 'messages sent while disconnected must not be pushed live on reconnect');
  });

  await check('sync refusals: not_member / no_such_room / invalid', async () => {
    assert.deepEqual(await ack(c, 'sync', { rid, after_seq: 0 }), { error: { code: 'not_member' } });
    assert.deepEqual(await ack(b, 'sync', { rid: `no-such-room-${tag}`, after_seq: 0 }), { error: { code: 'no_such_room' } });
    assert.deepEqual(await ack(b, 'sync', { after_seq: 0 }), { error: { code: 'invalid' } });
  });

  await check('after reconnect, live messages flow again (both ways)', async () => {
    const beforeB = gotB.length;
    const r = await ack(a, 'outgoing', { rid, message: `welcome back ${tag}` });
    assert.equal(r.ok, true);
    await waitFor(() => gotB.length > beforeB, { timeout: 5000, what: 'bob to receive live after reconnect' });
    assert.deepEqual(gotB[beforeB], r.message);
    const beforeA = gotA.length;
    const r2 = await ack(b, 'outgoing', { rid, message: `thanks ${tag}` });
    assert.equal(r2.ok, true);
    await waitFor(() => gotA.length > beforeA, { timeout: 5000, what: 'alice to receive bob\'s reply after his reconnect' });
    assert.deepEqual(gotA[beforeA], r2.message);
  });

  await check('full history over sync and the JSON API: seq 1..N, no gaps, no repeats', async () => {
    const s = await ack(a, 'sync', { rid, after_seq: 0, limit: 200 });
    const seqs = s.messages.map((m) => m.seq);
    assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => i + 1));
    assert.equal(seqs.length, 9);
    const h = await api('GET', `/rooms/${encodeURIComponent(rid)}/messages`, undefined, bob.token);
    assert.deepEqual(h.body.messages, s.messages);
  });

  note(`room ${rid}; alice ${alice.id}, bob ${bob.id}`);
  for (const s of [a, b, aPoll, c]) s.close();
}

start('official socket.io-client', main);
