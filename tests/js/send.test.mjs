// Sending with attachments, through the real composer (static/js/composer.js)
// on a fake page: files pasted into the box upload (a mock XMLHttpRequest),
// the `outgoing` payload (a mock Socket.IO client) carries their ids — only
// once every upload is done, Send waiting for them —, a message may be
// attachments only, and the outbox keeps them with the message, so that a
// resend carries them. node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { fakeEvent, installFakePage } from './fake-dom.mjs';

installFakePage(
  { 'data-me-id': 'u-me', 'data-me-username': 'anna', 'data-rid': 'r1', 'data-last-seq': '0', 'data-max-upload-bytes': '1000' },
  (el) => [
    el('main', { class: 'conversation' },
      el('span', { class: 'status-line' }),
      el('div', { id: 'history-scroll', class: 'history-scroll' }, el('ol', { 'data-testid': 'message-history', class: 'history' })),
      el('form', { 'data-testid': 'message-form', class: 'composer' },
        el('textarea', { id: 'message-input', name: 'message' }),
        el('button', { type: 'submit', class: 'send' }))),
  ],
);

// ---------- the network, mocked ----------

const xhrs = [];
globalThis.XMLHttpRequest = class {
  constructor() {
    this.upload = {};
    this.headers = {};
    xhrs.push(this);
  }

  open(method, url) { Object.assign(this, { method, url }); }
  setRequestHeader(k, v) { this.headers[k] = v; }
  send(body) { this.body = body; }
  abort() { this.aborted = true; }
  answer(status, body) {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.onload();
  }
};

const emitted = []; // {event, payload, ack}
const socket = {
  connected: true,
  io: { on() {} },
  on() {},
  emit(event, payload) { emitted.push({ event, payload }); },
  timeout() {
    return { emit: (event, payload, ack) => emitted.push({ event, payload, ack }) };
  },
};
globalThis.io = () => socket;

const { connect } = await import('../../static/js/connection.js');
connect({ onConnect() {}, onResync() {} });
const composer = await import('../../static/js/composer.js');
const outbox = await import('../../static/js/outbox.js');
composer.watchComposer();
await composer.restoreOutbox();

const form = document.querySelector('[data-testid="message-form"]');
const input = form.querySelector('textarea');
const history = document.querySelector('[data-testid="message-history"]');

const tick = () => new Promise((resolve) => setImmediate(resolve));
const outgoing = () => emitted.filter((e) => e.event === 'outgoing');
const chips = () => form.querySelectorAll('[data-testid="upload-chip"]');
const file = (name, size, type = '') => new File([new Uint8Array(size)], name, { type });
const paste = (...files) => input.dispatchEvent(fakeEvent('paste', { clipboardData: { files } }));
const attachment = (id, name) => ({
  id, name, content_type: 'image/png', size: 10, width: 40, height: 30,
  url: `/api/v1/attachments/${id}`, thumbnail_url: `/api/v1/attachments/${id}/thumbnail`,
});

/** Acknowledges the last `outgoing` as the server would: the message with its seq and attachments. */
function ack(seq) {
  const out = outgoing().at(-1);
  out.ack(null, {
    ok: true,
    message: {
      seq, rev: 0, rid: 'r1', sender_id: 'u-me', sender_username: 'anna', message: out.payload.message,
      timestamp: 1773576000 + seq, client_id: out.payload.client_id,
      attachments: (out.payload.attachments || []).map((id) => attachment(id, `${id}.png`)),
    },
  });
}

describe('the composer with attachments', () => {
  it('adds the paperclip (with its file input) and the tray to the form', () => {
    const btn = form.querySelector('[data-testid="attach-button"]');
    assert.equal(btn.getAttribute('aria-label'), 'Attach files');
    const picker = form.querySelector('[data-testid="attach-input"]');
    assert.equal(picker.type, 'file');
    assert.ok(picker.hasAttribute('multiple'));
    assert.equal(form.querySelector('[data-testid="upload-tray"] .upload-list').children.length, 0);
  });

  it('a text alone goes as before, with no attachments', async () => {
    input.value = 'hello';
    form.requestSubmit();
    await tick();
    const [out] = outgoing();
    assert.deepEqual(Object.keys(out.payload).sort(), ['client_id', 'message', 'rid']);
    assert.equal(out.payload.message, 'hello');
    ack(1);
    await tick();
  });

  it('a file over the page\'s limit is refused before uploading, and blocks Send until removed', async () => {
    paste(file('big.bin', 1001));
    assert.equal(xhrs.length, 0, 'nothing uploaded');
    const [chip] = chips();
    assert.equal(chip.dataset.state, 'error');
    assert.equal(chip.querySelector('.upload-state').textContent, 'Too large to send: 1001 B, the limit is 1000 B.');
    input.value = 'with it';
    form.requestSubmit();
    await tick();
    assert.equal(outgoing().length, 1, 'not sent');
    assert.match(form.querySelector('[data-testid="upload-note"]').textContent, /could not be uploaded/);
    chip.querySelector('.upload-remove').click();
    assert.equal(chips().length, 0);
    input.value = '';
  });

  it('Send while files upload waits, then sends the caption with their ids', async () => {
    paste(file('a.png', 10, 'image/png'), file('b.txt', 20, 'text/plain'));
    assert.equal(xhrs.length, 2, 'both upload at once');
    assert.equal(xhrs[0].url, '/api/v1/rooms/r1/attachments?name=a.png');
    input.value = '  look at these  ';
    input.dispatchEvent(fakeEvent('keydown', { key: 'Enter' }));
    await tick();
    assert.equal(outgoing().length, 1, 'nothing sent while uploading');
    assert.equal(form.dataset.sendWaiting, 'true');
    assert.match(form.querySelector('.upload-note').textContent, /once the files are uploaded/);
    xhrs[0].answer(201, attachment('A1', 'a.png'));
    await tick();
    assert.equal(outgoing().length, 1, 'one still uploading');
    xhrs[1].answer(201, { ...attachment('B2', 'b.txt'), content_type: 'text/plain', width: null, height: null, thumbnail_url: null });
    await tick();
    assert.equal(outgoing().length, 2, 'sent once both are done');
    const { payload } = outgoing()[1];
    assert.equal(payload.message, 'look at these');
    assert.deepEqual(payload.attachments, ['A1', 'B2']);
    assert.equal(form.dataset.sendWaiting, undefined);
    assert.equal(chips().length, 0, 'the chips are cleared');
    assert.equal(input.value, '');
    // The bubble shows them while it is sent.
    const li = history.querySelectorAll('[data-testid="message"]').at(-1);
    assert.equal(li.dataset.clientId, payload.client_id);
    assert.equal(li.querySelector('[data-testid="attachment-image"] img').getAttribute('src'), '/api/v1/attachments/A1/thumbnail');
    assert.equal(li.querySelector('[data-testid="attachment-file"]').getAttribute('download'), 'b.txt');
    // Kept by the outbox with the message until the server has it.
    const kept = (await outbox.entriesOf('u-me')).find((e) => e.client_id === payload.client_id);
    assert.deepEqual(kept.attachments.map((a) => a.id), ['A1', 'B2']);
    assert.deepEqual(outbox.payloadOf(kept), payload, 'a resend carries the same ids');
    ack(2);
    await tick();
    assert.equal(li.dataset.seq, '2');
    assert.equal(li.querySelectorAll('.attachment').length, 2);
    assert.equal((await outbox.entriesOf('u-me')).length, 0);
  });

  it('a message may be attachments only; Escape stops a waiting send', async () => {
    paste(file('c.png', 10, 'image/png'));
    form.requestSubmit();
    await tick();
    assert.equal(form.dataset.sendWaiting, 'true');
    input.dispatchEvent(fakeEvent('keydown', { key: 'Escape' }));
    assert.equal(form.dataset.sendWaiting, undefined);
    xhrs.at(-1).answer(201, attachment('C3', 'c.png'));
    await tick();
    assert.equal(outgoing().length, 2, 'not sent by itself any more');
    assert.equal(chips()[0].dataset.state, 'done');
    form.requestSubmit();
    await tick();
    assert.equal(outgoing().length, 3);
    const { payload } = outgoing()[2];
    assert.equal(payload.message, '');
    assert.deepEqual(payload.attachments, ['C3']);
    ack(3);
    await tick();
  });

  it('an upload that fails stops the waiting send; nothing goes without its files', async () => {
    paste(file('d.png', 10, 'image/png'));
    input.value = 'caption';
    form.requestSubmit();
    xhrs.at(-1).answer(429, { error: { code: 'rate_limited', message: 'Too many uploads; wait a moment.' } });
    await tick();
    assert.equal(outgoing().length, 3);
    const [chip] = chips();
    assert.equal(chip.querySelector('.upload-state').textContent, 'Too many uploads; wait a moment.');
    assert.equal(chip.querySelector('[data-testid="upload-retry"]').hidden, false);
    assert.equal(input.value, 'caption', 'the text stays');
    chip.querySelector('[data-testid="upload-retry"]').click();
    xhrs.at(-1).answer(201, attachment('D4', 'd.png'));
    form.requestSubmit();
    await tick();
    assert.deepEqual(outgoing()[3].payload.attachments, ['D4']);
    ack(4);
    await tick();
  });

  it('at most 10 files go with one message', () => {
    paste(...Array.from({ length: 11 }, (_, i) => file(`f${i}.txt`, 1)));
    assert.equal(chips().length, 10);
    assert.match(form.querySelector('.upload-note').textContent, /At most 10 files/);
  });
});

describe('the outbox', () => {
  it('keeps the attachments with the message, and its payload carries their ids', async () => {
    const entry = {
      client_id: 'c-1', user: 'u-me', rid: 'r1', message: '', reply_to: 7, quote: null, created_at: 1,
      attachments: [attachment('X1', 'x.png'), attachment('Y2', 'y.png')],
    };
    await outbox.put(entry);
    const [kept] = (await outbox.entriesOf('u-me')).filter((e) => e.client_id === 'c-1');
    assert.deepEqual(kept.attachments, entry.attachments);
    assert.deepEqual(outbox.payloadOf(kept), { rid: 'r1', message: '', client_id: 'c-1', reply_to: 7, attachments: ['X1', 'Y2'] });
    await outbox.remove('c-1');
    // Entries from before attachments (or without any) send no such field.
    assert.deepEqual(outbox.payloadOf({ rid: 'r1', message: 'hi', client_id: 'c-2', reply_to: null }),
      { rid: 'r1', message: 'hi', client_id: 'c-2' });
    assert.deepEqual(Object.keys(outbox.payloadOf({ rid: 'r1', message: 'hi', client_id: 'c-3', attachments: [] })),
      ['rid', 'message', 'client_id']);
  });
});
