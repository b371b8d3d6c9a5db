// Attachments: how a message shows them (static/js/attachments.js through
// markup.js: pictures and file chips, as DOM nodes, names only ever text,
// only paths on this site as links), the text that stands for them, and the
// tray of files to send (static/js/uploads.js: the size checked before
// uploading, progress, errors, ×, the limit of 10) with a mock
// XMLHttpRequest. node --test tests/js/
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';

import { fakeEvent, installFakeDom } from './fake-dom.mjs';

installFakeDom();
const markup = await import('../../static/js/markup.js');
const { buildAttachments, summaryOf } = await import('../../static/js/attachments.js');
const format = await import('../../static/js/format.js');
const { createTray, uploadUrl } = await import('../../static/js/uploads.js');

const ctx = {
  meId: 'u-me', meName: 'anna', rid: 'r1', nameOf: () => undefined, memberNames: () => ['anna', 'ben'],
};
const base = { seq: 4, rev: 2, sender_id: 'u-b', sender_username: 'ben', message: '', timestamp: 1773576000 };
const XSS = '<img src=x onerror=alert(1)>.png';

const photo = {
  id: 'A1', name: 'photo.jpg', content_type: 'image/jpeg', size: 123456, width: 4000, height: 3000,
  url: '/api/v1/attachments/A1', thumbnail_url: '/api/v1/attachments/A1/thumbnail',
};
const pdf = {
  id: 'B2', name: 'report.pdf', content_type: 'application/pdf', size: 2621440, width: null, height: null,
  url: '/api/v1/attachments/B2', thumbnail_url: null,
};

/** No element anywhere in the tree was made from markup: only the tags the builders create. */
function tagsIn(root) {
  const tags = new Set();
  const walk = (e) => {
    tags.add(e.localName);
    e.children.forEach(walk);
  };
  walk(root);
  return tags;
}

describe('attachments in a message', () => {
  it('a picture: its thumbnail in a box sized from width and height, linking to the file in a new tab', () => {
    const li = markup.buildMessage({ ...base, message: 'look', attachments: [photo] }, false, ctx);
    const bubble = li.querySelector('.bubble');
    const box = bubble.querySelector('[data-testid="attachments"]');
    assert.equal(box.dataset.ids, 'A1');
    assert.deepEqual(bubble.children.map((c) => c.className), ['sender', 'attachments', 'text', 'meta'],
      'the caption comes under the attachments');
    const a = box.querySelector('[data-testid="attachment-image"]');
    assert.equal(a.localName, 'a');
    assert.equal(a.getAttribute('href'), '/api/v1/attachments/A1');
    assert.equal(a.getAttribute('target'), '_blank');
    assert.equal(a.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(a.dataset.attachmentId, 'A1');
    assert.equal(a.title, 'photo.jpg (121 KB)');
    const img = a.querySelector('img');
    assert.equal(img.getAttribute('src'), '/api/v1/attachments/A1/thumbnail');
    assert.equal(img.getAttribute('alt'), 'photo.jpg');
    assert.equal(img.getAttribute('loading'), 'lazy');
    assert.deepEqual([img.getAttribute('width'), img.getAttribute('height')], ['320', '240'], 'capped at 320 × 320');
    assert.equal(li.querySelector('.text').textContent, 'look');
  });

  it('a file: a chip with its extension, name and size, downloading it', () => {
    const li = markup.buildMessage({ ...base, attachments: [pdf] }, false, ctx);
    const a = li.querySelector('[data-testid="attachment-file"]');
    assert.equal(a.getAttribute('href'), '/api/v1/attachments/B2');
    assert.equal(a.getAttribute('download'), 'report.pdf');
    assert.equal(a.hasAttribute('target'), false);
    assert.equal(a.querySelector('.file-icon').textContent, 'PDF');
    assert.equal(a.querySelector('.file-icon').getAttribute('aria-hidden'), 'true');
    assert.equal(a.querySelector('.file-name').textContent, 'report.pdf');
    assert.equal(a.querySelector('.file-size').textContent, '2.5 MB');
    assert.equal(li.querySelectorAll('img').length, 0);
    assert.equal(li.querySelector('.text').textContent, '', 'no caption');
  });

  it('pictures first, then files; a picture without its size, or of a type not drawn, is a file', () => {
    const svg = { ...photo, id: 'C3', name: 'logo.svg', content_type: 'image/svg+xml' };
    const sizeless = { ...photo, id: 'D4', width: null, height: null };
    const noThumb = { ...photo, id: 'E5', thumbnail_url: null, url: '/api/v1/attachments/E5' };
    const box = buildAttachments([pdf, svg, photo, sizeless, noThumb]);
    assert.equal(box.dataset.ids, 'B2 C3 A1 D4 E5', 'as sent');
    assert.deepEqual(box.children.map((c) => [c.dataset.attachmentId, c.getAttribute('data-testid')]), [
      ['A1', 'attachment-image'],
      ['E5', 'attachment-image'],
      ['B2', 'attachment-file'],
      ['C3', 'attachment-file'],
      ['D4', 'attachment-file'],
    ]);
    assert.equal(box.children[1].querySelector('img').getAttribute('src'), '/api/v1/attachments/E5',
      'without a thumbnail, the picture itself');
    assert.equal(buildAttachments([]), null);
    assert.equal(buildAttachments(null), null);
    assert.equal(buildAttachments([null, 5, { name: 'no id' }]), null, 'junk is left out');
  });

  it('names are only text, and only paths on this site become links or images', () => {
    const evil = [
      { ...photo, id: 'x"1', name: XSS, url: 'javascript:alert(1)', thumbnail_url: 'javascript:alert(2)' },
      { ...photo, id: 'x2', name: 'javascript:alert(3)', url: '//evil.example/a', thumbnail_url: '/ok/thumb' },
      { ...pdf, id: 'x/3', name: '"><script>alert(4)</script>', url: ' /api/v1/attachments/x3' },
      { ...pdf, id: 'x4', name: '\u202egnp.exe', url: 'https://evil.example/x4' },
    ];
    const li = markup.buildMessage({ ...base, attachments: evil }, false, ctx);
    const links = li.querySelectorAll('.attachment');
    const hrefs = links.map((a) => a.getAttribute('href'));
    assert.deepEqual(hrefs, [
      '/api/v1/attachments/x%221',
      '/api/v1/attachments/x2',
      '/api/v1/attachments/x%2F3',
      '/api/v1/attachments/x4',
    ], 'a URL that is not a path here is replaced by the API path of the id');
    assert.equal(links[0].querySelector('img').getAttribute('alt'), XSS, 'a name is an alt text, nothing more');
    assert.equal(links[0].querySelector('img').getAttribute('src'), '/api/v1/attachments/x%221', 'nor is a thumbnail_url');
    assert.equal(links[1].querySelector('img').getAttribute('alt'), 'javascript:alert(3)');
    assert.equal(links[1].querySelector('img').getAttribute('src'), '/ok/thumb');
    assert.equal(links[2].querySelector('.file-name').textContent, '"><script>alert(4)</script>');
    assert.equal(links[2].getAttribute('download'), '"><script>alert(4)</script>');
    assert.equal(links[3].querySelector('.file-name').textContent, '\u202egnp.exe');
    assert.deepEqual([...tagsIn(li)].sort(), ['a', 'div', 'img', 'li', 'p', 'span', 'time']);
    assert.equal(li.querySelectorAll('img').length, 2);
    assert.ok(!li.outerHTML.includes('<script'), 'escaped when serialised');
    assert.ok(!li.outerHTML.includes('href="javascript:'));
    assert.ok(!li.outerHTML.includes('src="javascript:'));
  });

  it('updates: an edit keeps them (not rebuilt), new ones replace them, a deletion takes them away', () => {
    const li = markup.buildMessage({ ...base, message: 'a', attachments: [photo] }, false, ctx);
    const before = li.querySelector('.attachments');
    markup.applyContent(li, { ...base, rev: 3, message: 'b', edited_at: 1, attachments: [photo] }, ctx);
    assert.equal(li.querySelector('.attachments'), before, 'same attachments, same nodes');
    assert.equal(li.querySelector('.text').textContent, 'b');
    markup.applyContent(li, { ...base, rev: 4, message: 'b', attachments: [photo, pdf] }, ctx);
    assert.equal(li.querySelector('.attachments').dataset.ids, 'A1 B2');
    assert.equal(li.querySelectorAll('.attachments').length, 1);
    markup.applyContent(li, { ...base, rev: 5, message: 'b', reactions: [] }, ctx);
    assert.equal(li.querySelector('.attachments').dataset.ids, 'A1 B2', 'an update without the field leaves them');
    markup.applyContent(li, { ...base, rev: 6, message: '', deleted: true, attachments: [] }, ctx);
    assert.equal(li.querySelector('.attachments'), null);
    assert.equal(li.querySelector('.text').textContent, 'message deleted');
    const gone = markup.buildMessage({ ...base, deleted: true, attachments: [photo] }, false, ctx);
    assert.equal(gone.querySelector('.attachments'), null, 'a deleted message shows none');
  });

  it('what stands for them as text: the chat list, quotes, the reply bar', () => {
    assert.equal(format.attachmentSummary([photo]), '📎 photo.jpg');
    assert.equal(format.attachmentSummary([photo, pdf]), '📎 2 files');
    assert.equal(format.attachmentSummary([]), '');
    assert.equal(format.attachmentSummary(undefined), '');
    const item = markup.buildChatItem('r1', 'ben', false);
    markup.setPreview(item, { ...base, seq: 5, message: '', attachments: [{ ...photo, name: XSS }] }, 'u-me');
    assert.equal(item.querySelector('.preview-text').textContent, `📎 ${XSS}`);
    markup.setPreview(item, { ...base, seq: 6, message: 'caption', attachments: [photo, pdf] }, 'u-me');
    assert.equal(item.querySelector('.preview-text').textContent, 'caption');
    markup.setPreview(item, { ...base, seq: 7, message: '', attachments: [photo, pdf] }, 'u-me');
    assert.equal(item.querySelector('.preview-text').textContent, '📎 2 files');
    markup.setPreview(item, { ...base, seq: 8, message: '', deleted: true, attachments: [] }, 'u-me');
    assert.equal(item.querySelector('.preview-text').textContent, 'message deleted');
    const quote = markup.buildQuote({ seq: 1, sender_username: 'ben', message: '', deleted: false }, ctx);
    assert.equal(quote.querySelector('.quote-text').textContent, '📎 Attachment');
    const li = markup.buildMessage({ ...base, attachments: [photo, pdf] }, false, ctx);
    assert.equal(summaryOf(li), '📎 2 files');
    assert.equal(summaryOf(markup.buildMessage({ ...base, attachments: [pdf] }, false, ctx)), '📎 report.pdf');
    assert.equal(summaryOf(markup.buildMessage({ ...base, message: 'x' }, false, ctx)), '');
  });
});

describe('sizes and boxes', () => {
  it('humanSize', () => {
    assert.equal(format.humanSize(0), '0 B');
    assert.equal(format.humanSize(1023), '1023 B');
    assert.equal(format.humanSize(1024), '1 KB');
    assert.equal(format.humanSize(1536), '1.5 KB');
    assert.equal(format.humanSize(123456), '121 KB');
    assert.equal(format.humanSize(1048575), '1 MB');
    assert.equal(format.humanSize(26214400), '25 MB');
    assert.equal(format.humanSize(5 * 1024 ** 3), '5 GB');
    assert.equal(format.humanSize(null), '');
    assert.equal(format.humanSize(undefined), '');
    assert.equal(format.humanSize(-1), '');
  });

  it('boxSize: scaled down to fit 320 × 320, never up', () => {
    assert.deepEqual(format.boxSize(4000, 3000), { width: 320, height: 240 });
    assert.deepEqual(format.boxSize(3000, 4000), { width: 240, height: 320 });
    assert.deepEqual(format.boxSize(100, 50), { width: 100, height: 50 });
    assert.deepEqual(format.boxSize(10000, 10), { width: 320, height: 1 }, 'at least 1 px');
    assert.equal(format.boxSize(0, 10), null);
    assert.equal(format.boxSize(null, null), null);
    assert.equal(format.boxSize('x', 5), null);
  });

  it('sitePath: only paths on this site', () => {
    assert.equal(format.sitePath('/api/v1/attachments/A'), '/api/v1/attachments/A');
    for (const bad of ['javascript:alert(1)', '//evil.example/x', '/\\evil.example', 'https://x.example/',
      ' /a', '/a b', '/a\nb', 'data:image/png;base64,AAAA', '', null, 5]) {
      assert.equal(format.sitePath(bad), null, String(bad));
    }
  });
});

// ---------- the tray, with a mock XMLHttpRequest ----------

let xhrs = [];
class FakeXHR {
  constructor() {
    this.upload = {};
    this.headers = {};
    this.aborted = false;
    xhrs.push(this);
  }

  open(method, url) { Object.assign(this, { method, url }); }
  setRequestHeader(k, v) { this.headers[k] = v; }
  send(body) { this.body = body; }
  abort() { this.aborted = true; }
  progress(loaded, total) { this.upload.onprogress({ lengthComputable: true, loaded, total }); }
  answer(status, body) {
    this.status = status;
    this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
    this.onload();
  }
}
globalThis.XMLHttpRequest = FakeXHR;

const file = (name, size, type = '') => new File([new Uint8Array(size)], name, { type });
const chips = (tray) => tray.root.querySelectorAll('[data-testid="upload-chip"]');

describe('the tray of files to send', () => {
  let changes = 0;
  let tray;
  beforeEach(() => {
    xhrs = [];
    changes = 0;
    tray = createTray({ rid: 'r 1', maxBytes: 1000, onChange: () => { changes += 1; } });
  });

  it('uploads a file at once: the raw body, its name in the query, the progress, then ready', async () => {
    assert.equal(tray.root.querySelector('.upload-list').children.length, 0, 'empty (app.css: no room taken)');
    tray.add([file('a b&c.txt', 10, 'text/plain')]);
    assert.equal(xhrs.length, 1);
    const [xhr] = xhrs;
    assert.equal(xhr.method, 'POST');
    assert.equal(xhr.url, '/api/v1/rooms/r%201/attachments?name=a%20b%26c.txt');
    assert.equal(uploadUrl('r1', 'é.png'), '/api/v1/rooms/r1/attachments?name=%C3%A9.png');
    assert.equal(xhr.headers['Content-Type'], 'text/plain');
    assert.equal(xhr.body.name, 'a b&c.txt', 'the file itself is the body');
    const [chip] = chips(tray);
    assert.equal(chip.dataset.state, 'uploading');
    assert.equal(chip.querySelector('.upload-name').textContent, 'a b&c.txt');
    assert.equal(chip.querySelector('.upload-size').textContent, '10 B');
    assert.equal(tray.busy, true);
    let settled = false;
    tray.settled().then(() => { settled = true; });
    xhr.progress(5, 10);
    assert.equal(chip.querySelector('[data-testid="upload-progress"]').value, 50);
    assert.equal(chip.querySelector('[data-testid="upload-state"]').textContent, '50%');
    await Promise.resolve();
    assert.equal(settled, false);
    xhr.answer(201, { ...pdf, id: 'F1', name: 'a b&c.txt' });
    await Promise.resolve();
    assert.equal(settled, true);
    assert.equal(chip.dataset.state, 'done');
    assert.equal(chip.dataset.attachmentId, 'F1');
    assert.equal(chip.querySelector('.upload-progress').hidden, true);
    assert.equal(tray.busy, false);
    assert.deepEqual(tray.uploaded().map((a) => a.id), ['F1']);
    assert.ok(changes > 0);
    assert.match(tray.root.querySelector('.upload-live').textContent, /uploaded/);
  });

  it('a file over the limit is refused before uploading, saying why', () => {
    tray.add([file('big.bin', 1001), file('ok.bin', 1000)]);
    assert.equal(xhrs.length, 1, 'only the one within the limit is sent');
    assert.equal(xhrs[0].body.name, 'ok.bin');
    const [big] = chips(tray);
    assert.equal(big.dataset.state, 'error');
    assert.equal(big.querySelector('[data-testid="upload-state"]').textContent, 'Too large to send: 1001 B, the limit is 1000 B.');
    assert.ok(big.querySelector('.upload-state').classList.contains('upload-error'));
    assert.equal(big.querySelector('[data-testid="upload-retry"]').hidden, true, 'retrying would not help');
    assert.equal(tray.failed, 1);
    assert.equal(format.uploadRefusal({ size: 26214401 }), 'Too large to send: 25 MB, the limit is 25 MB.');
    assert.equal(format.uploadRefusal({ size: 26214400 }), null);
  });

  it('the server refusing: its message shown; Retry when it may pass', () => {
    tray.add([file('huge.png', 10, 'image/png'), file('busy.txt', 10)]);
    xhrs[0].answer(422, { error: { code: 'invalid', message: 'The image is too large in pixels.' } });
    xhrs[1].answer(503, '<html>Service Unavailable</html>');
    const [huge, busy] = chips(tray);
    assert.equal(huge.querySelector('.upload-state').textContent, 'The image is too large in pixels.');
    assert.equal(huge.querySelector('.upload-retry').hidden, true);
    assert.match(busy.querySelector('.upload-state').textContent, /unavailable/);
    assert.equal(busy.querySelector('.upload-retry').hidden, false);
    assert.equal(tray.failed, 2);
    busy.querySelector('.upload-retry').dispatchEvent(fakeEvent('click'));
    assert.equal(xhrs.length, 3, 'sent again');
    assert.equal(busy.dataset.state, 'uploading');
    xhrs[2].answer(201, { ...pdf, id: 'G7' });
    assert.equal(tray.failed, 1);
    assert.deepEqual(format.uploadError(413, null, 1000), { code: 'too_large', text: 'Too large to send: the limit is 1000 B.', retryable: false });
    assert.equal(format.uploadError(0, null).retryable, true);
    assert.equal(format.uploadError(403, { error: { code: 'not_member' } }).text, 'You are not a member of this chat.');
  });

  it('× removes a chip and stops its upload; the answer that comes anyway is ignored', () => {
    const focusAfter = { focus() { this.focused = true; } };
    tray = createTray({ rid: 'r1', maxBytes: 1000, focusAfter });
    tray.add([file('one.txt', 5), file('two.txt', 5)]);
    const [one, two] = chips(tray);
    one.querySelector('[data-testid="upload-remove"]').dispatchEvent(fakeEvent('click'));
    assert.equal(xhrs[0].aborted, true);
    assert.equal(chips(tray).length, 1);
    assert.equal(document.activeElement, two.querySelector('.upload-remove'), 'the focus goes to the next ×');
    xhrs[0].answer(201, { ...pdf, id: 'late' });
    assert.deepEqual(tray.uploaded(), []);
    assert.equal(two.querySelector('.upload-remove').getAttribute('aria-label'), 'Remove two.txt');
    two.querySelector('.upload-remove').dispatchEvent(fakeEvent('click'));
    assert.equal(focusAfter.focused, true, 'the last one gone: back to the box');
    assert.equal(tray.count, 0);
    assert.equal(tray.root.querySelector('.upload-list').children.length, 0);
  });

  it('at most 10 files; three upload at a time, the others wait their turn', () => {
    tray.add(Array.from({ length: 12 }, (_, i) => file(`f${i}.txt`, 1)));
    assert.equal(tray.count, 10);
    assert.equal(tray.root.querySelector('[data-testid="upload-note"]').textContent,
      'At most 10 files go with one message: 2 files not added.');
    assert.equal(xhrs.length, 3);
    assert.deepEqual(chips(tray).map((c) => c.dataset.state).slice(0, 4), ['uploading', 'uploading', 'uploading', 'queued']);
    xhrs[0].answer(201, { ...pdf, id: 'f0' });
    assert.equal(xhrs.length, 4, 'the next one starts');
    tray.add([file('more.txt', 1)]);
    assert.equal(tray.count, 10);
    assert.match(tray.root.querySelector('.upload-note').textContent, /1 file not added/);
    tray.clear();
    assert.ok(xhrs.slice(1).every((x) => x.aborted || x.status), 'clearing stops what still uploads');
    assert.equal(tray.count, 0);
    assert.equal(tray.root.querySelector('.upload-note').hidden, true, 'the note goes too');
  });

  it('files are not taken when the tray says no (the room is gone)', () => {
    tray = createTray({ rid: 'r1', canAdd: () => false });
    tray.add([file('x.txt', 1)]);
    assert.equal(tray.count, 0);
    assert.equal(xhrs.length, 0);
  });
});
