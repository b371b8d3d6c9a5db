// A server that keeps no files renders <body data-max-upload-bytes="0">: the
// composer (static/js/composer.js) then offers no way to attach one — no
// paperclip, no tray — and a pasted file is left to the browser. A page
// without the attribute takes the default limit (state.js). node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { fakeEvent, installFakePage } from './fake-dom.mjs';

installFakePage(
  { 'data-me-id': 'u-me', 'data-me-username': 'anna', 'data-rid': 'r1', 'data-last-seq': '0', 'data-max-upload-bytes': '0' },
  (el) => [
    el('main', { class: 'conversation' },
      el('div', { id: 'history-scroll' }, el('ol', { 'data-testid': 'message-history' })),
      el('form', { 'data-testid': 'message-form', class: 'composer' },
        el('textarea', { name: 'message' }),
        el('button', { type: 'submit', class: 'send' }))),
  ],
);
globalThis.io = () => ({ connected: true, io: { on() {} }, on() {}, timeout: () => ({ emit() {} }) });

const { page } = await import('../../static/js/state.js');
const { watchComposer } = await import('../../static/js/composer.js');
watchComposer();

describe('a server that takes no files', () => {
  it('no paperclip, no tray; a paste is the browser\'s', () => {
    assert.equal(page.maxUploadBytes, 0);
    const form = document.querySelector('[data-testid="message-form"]');
    assert.equal(form.querySelector('[data-testid="attach-button"]'), null);
    assert.equal(form.querySelector('[data-testid="upload-tray"]'), null);
    assert.ok(form.querySelector('[data-testid="emoji-button"]'), 'the other tools are there');
    const paste = fakeEvent('paste', { clipboardData: { files: [new File(['x'], 'x.txt')] } });
    form.querySelector('textarea').dispatchEvent(paste);
    assert.equal(paste.defaultPrevented, false);
  });
});
