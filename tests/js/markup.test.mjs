// Message and chat list markup (static/js/markup.js) on a minimal fake DOM:
// text stays text, updates change what they should, and the structure uses
// the same classes and test ids as the server's templates/message.html and
// templates/chat_item.html. node --test tests/js/
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { installFakeDom, namesIn } from './fake-dom.mjs';

installFakeDom();
const markup = await import('../../static/js/markup.js');

const ME = 'u-me';
const ctx = {
  meId: ME, meName: 'anna', rid: 'r 1', nameOf: (id) => ({ 'u-me': 'anna', 'u-b': 'ben' })[id], memberNames: () => ['anna', 'ben'],
};
const XSS = '<img src=x onerror=alert(1)>';
const base = { seq: 4, rev: 2, sender_id: 'u-b', sender_username: 'ben', message: 'hi', timestamp: 1773576000 };

/** Class names and test ids the template uses (template tags stripped out of class="…"). */
function templateNames(file) {
  const url = new URL(`../../templates/${file}`, import.meta.url);
  if (!existsSync(url)) return { classes: new Set(), testids: new Set() };
  const text = readFileSync(url, 'utf8').replace(/\{#[\s\S]*?#\}/g, '');
  const classes = new Set();
  for (const [, v] of text.matchAll(/class="([^"]*)"/g)) {
    v.replace(/\{%.*?%\}/g, ' ').split(/\s+/).filter(Boolean).forEach((c) => classes.add(c));
  }
  const testids = new Set([...text.matchAll(/data-testid="([^"]*)"/g)].map((m) => m[1]));
  return { classes, testids };
}

const union = (sets) => new Set(sets.flatMap((s) => [...s]));
const sorted = (s) => [...s].sort();

describe('messages', () => {
  it('a message: bubble, sender, text, meta with time; text as text', () => {
    const li = markup.buildMessage({ ...base, message: XSS }, false, ctx);
    assert.equal(li.getAttribute('data-testid'), 'message');
    assert.equal(li.dataset.seq, '4');
    assert.equal(li.dataset.rev, '2');
    assert.equal(li.className, 'message');
    assert.equal(li.querySelector('.bubble').getAttribute('tabindex'), '0');
    assert.equal(li.querySelector('.sender').textContent, 'ben');
    assert.equal(li.querySelector('.text').textContent, XSS);
    assert.equal(li.querySelectorAll('img').length, 0);
    assert.ok(li.outerHTML.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.equal(li.querySelector('.meta time').dataset.ts, '1773576000');
    assert.equal(li.querySelector('.meta time').getAttribute('datetime'), '2026-03-15T12:00:00.000Z');
  });

  it('a reply carries a quote linking to the quoted message', () => {
    const li = markup.buildMessage(
      { ...base, reply_to: { seq: 2, sender_username: 'anna', message: XSS, deleted: false } }, true, ctx);
    assert.equal(li.className, 'message mine');
    const q = li.querySelector('.quote');
    assert.equal(q.getAttribute('data-testid'), 'quote');
    assert.equal(q.dataset.replySeq, '2');
    assert.equal(q.href, '/chat/?rid=r%201&at=2');
    assert.equal(q.querySelector('.quote-text').textContent, XSS);
    assert.equal(li.children[0], q, 'the quote comes before the bubble');
    markup.fillQuote(q, { deleted: true });
    assert.equal(q.querySelector('.quote-text').textContent, 'message deleted');
    assert.ok(q.classList.contains('deleted'));
  });

  it('reactions: chips after the bubble, mine pressed, names as title', () => {
    const li = markup.buildMessage({
      ...base,
      reactions: [{ emoji: '👍', count: 2, user_ids: ['u-b', ME] }, { emoji: '🎉', count: 1, user_ids: ['u-gone'] }],
    }, false, ctx);
    const chips = li.querySelectorAll('[data-testid="reaction"]');
    assert.deepEqual(chips.map((c) => [c.dataset.emoji, c.getAttribute('aria-pressed'), c.title, c.textContent]), [
      ['👍', 'true', 'ben, anna', '👍2'],
      ['🎉', 'false', '1', '🎉1'],
    ]);
    assert.ok(chips[0].classList.contains('mine'));
    assert.equal(li.querySelector('.bubble').parentNode.children[1].className, 'reactions');
  });

  it('applyContent: an edit marks "edited" once; a deletion drops text, quote, mark and reactions', () => {
    const li = markup.buildMessage({
      ...base, reply_to: { seq: 1, sender_username: 'anna', message: 'x' }, reactions: [{ emoji: '👍', count: 1, user_ids: [] }],
    }, false, ctx);
    markup.applyContent(li, { ...base, rev: 3, message: 'hi!', edited_at: 1 }, ctx);
    markup.applyContent(li, { ...base, rev: 4, message: 'hi!!', edited_at: 2 }, ctx);
    assert.equal(li.querySelector('.text').textContent, 'hi!!');
    assert.equal(li.querySelectorAll('[data-testid="edited"]').length, 1);
    assert.equal(li.querySelector('.meta').children[0].className, 'edited', '"edited" before the time');
    assert.equal(li.dataset.rev, '4');
    markup.applyContent(li, { ...base, rev: 5, message: '', deleted: true }, ctx);
    assert.equal(li.querySelector('.text').textContent, 'message deleted');
    assert.ok(li.classList.contains('deleted'));
    for (const gone of ['.quote', '.edited', '.reactions']) assert.equal(li.querySelector(gone), null, gone);
  });

  it('the text as rich text: Markdown, links, mentions of me, emoji-only; the text reads back', () => {
    const text = '**hi** @anna, see https://example.com <b>';
    const li = markup.buildMessage({ ...base, message: text }, false, ctx);
    const p = li.querySelector('.text');
    assert.equal(p.textContent, text);
    assert.equal(markup.textOf(li), text);
    assert.equal(p.querySelector('strong').textContent, 'hi');
    assert.equal(p.querySelector('a').getAttribute('rel'), 'noopener noreferrer');
    assert.equal(p.querySelector('.mention').className, 'mention me');
    assert.ok(li.classList.contains('mentions-me'));
    assert.equal(li.querySelectorAll('b').length, 0);
    assert.ok(!markup.buildMessage({ ...base, message: text }, true, ctx).classList.contains('mentions-me'), 'not my own');
    markup.applyContent(li, { ...base, rev: 3, message: '🎉🎉', edited_at: 1 }, ctx);
    assert.ok(p.classList.contains('emoji-only'));
    assert.ok(!li.classList.contains('mentions-me'));
    markup.applyContent(li, { ...base, rev: 4, message: 'hey @anna' }, ctx);
    markup.applyContent(li, { ...base, rev: 5, message: '', deleted: true }, ctx);
    assert.ok(!p.classList.contains('emoji-only'));
    assert.ok(!li.classList.contains('mentions-me'));
  });

  it('a message the server rendered as plain text is read again as rich text', () => {
    const li = markup.buildMessage({ ...base, message: 'x' }, false, ctx);
    li.querySelector('.text').textContent = '_it_ @ANNA';
    markup.renderText(li, ctx);
    assert.equal(li.querySelector('.text em').textContent, 'it');
    assert.ok(li.classList.contains('mentions-me'));
    const system = markup.buildMessage({ seq: 1, kind: 'system', message: '**anna** joined', timestamp: 1 }, false, ctx);
    markup.renderText(system, ctx);
    assert.equal(system.querySelector('.text').children.length, 0, 'notices stay plain');
  });

  it('a system notice', () => {
    const li = markup.buildMessage({ seq: 1, kind: 'system', message: 'anna created the group', timestamp: 1 }, false, ctx);
    assert.equal(li.className, 'message system');
    assert.equal(li.dataset.kind, 'system');
    assert.equal(li.querySelector('.system-text .text').textContent, 'anna created the group');
    assert.ok(li.querySelector('.system-text time'));
  });

  it('sending: pending, failed with Retry, then confirmed by the ack', () => {
    const li = markup.buildMessage({ sender_username: 'anna', message: 'yo', timestamp: 1, client_id: 'c1' }, true, ctx);
    assert.equal(li.dataset.seq, undefined);
    assert.equal(li.dataset.clientId, 'c1');
    markup.markPending(li);
    markup.markPending(li);
    assert.equal(li.dataset.pending, 'true');
    assert.equal(li.querySelectorAll('.state').length, 1);
    markup.markFailed(li, 'No answer from the server.');
    assert.equal(li.dataset.pending, undefined);
    assert.equal(li.dataset.failed, 'true');
    assert.equal(li.querySelector('.failure .error').textContent, 'No answer from the server.');
    assert.equal(li.querySelector('.failure .retry').textContent, 'Retry');
    markup.markPending(li);
    assert.equal(li.querySelector('.failure'), null);
    markup.confirmSent(li, { seq: 9, rev: 0, message: 'yo', timestamp: 2 }, ctx);
    assert.equal(li.dataset.seq, '9');
    assert.equal(li.dataset.pending, undefined);
    assert.equal(li.hasAttribute('aria-busy'), false);
    assert.equal(li.querySelector('.state'), null);
    assert.equal(li.querySelector('time').dataset.ts, '2');
  });

  it('uses the classes and test ids of templates/message.html (and attachments.html, the part it includes)', () => {
    const variants = [
      markup.buildMessage({ ...base, edited_at: 1, reply_to: { seq: 1, sender_username: 'a', message: 'b', deleted: true },
        reactions: [{ emoji: '👍', count: 1, user_ids: [ME] }] }, true, ctx),
      markup.buildMessage({ ...base, attachments: [
        { id: 'a1', name: 'p.png', content_type: 'image/png', size: 9, width: 4, height: 3, url: '/api/v1/attachments/a1',
          thumbnail_url: '/api/v1/attachments/a1/thumbnail' },
        { id: 'a2', name: 'n.pdf', content_type: 'application/pdf', size: 9, width: null, height: null, url: '/api/v1/attachments/a2',
          thumbnail_url: null },
      ] }, false, ctx),
      markup.buildMessage({ ...base, deleted: true }, false, ctx),
      markup.buildMessage({ seq: 1, kind: 'system', message: 'x', timestamp: 1 }, false, ctx),
    ].map(namesIn);
    const js = { classes: union(variants.map((v) => v.classes)), testids: union(variants.map((v) => v.testids)) };
    const parts = [templateNames('message.html'), templateNames('attachments.html')];
    const tpl = { classes: union(parts.map((p) => p.classes)), testids: union(parts.map((p) => p.testids)) };
    // Only the server opens a page at a message (a search hit): `highlight`.
    tpl.classes.delete('highlight');
    assert.deepEqual(sorted(js.classes), sorted(tpl.classes));
    assert.deepEqual(sorted(js.testids), sorted(tpl.testids));
  });
});

describe('chat list entries', () => {
  it('a new entry, its preview (newer only, as text) and badge', () => {
    const li = markup.buildChatItem('r2', '🍕 club', false);
    assert.equal(li.dataset.rid, 'r2');
    assert.equal(li.querySelector('.chat-link').href, '/chat/?rid=r2');
    assert.equal(li.querySelector('.avatar').textContent, '🍕');
    assert.equal(li.querySelector('.chat-preview').textContent, 'No messages yet');
    markup.setPreview(li, { seq: 5, sender_id: ME, message: XSS, timestamp: 1 }, ME);
    assert.equal(li.querySelector('.chat-preview').textContent, `You: ${XSS}`);
    markup.setPreview(li, { seq: 4, sender_id: 'u-b', message: 'older', timestamp: 1 }, ME);
    assert.equal(li.querySelector('.preview-text').textContent, XSS);
    markup.setPreview(li, { seq: 6, sender_id: 'u-b', message: '', deleted: true, timestamp: 1 }, ME);
    assert.equal(li.querySelector('.chat-preview').textContent, 'message deleted');
    markup.setBadge(li, 3);
    assert.equal(li.querySelector('.badge').getAttribute('aria-label'), '3 unread');
    assert.ok(li.classList.contains('has-unread'));
    markup.setBadge(li, 0);
    assert.equal(li.querySelector('.badge'), null);
    assert.ok(!li.classList.contains('has-unread'));
    markup.setBadge(li, 2);
    markup.setMentionBadge(li, 1);
    const row = li.querySelector('.chat-preview').parentElement;
    const badges = row.children.filter((c) => c.classList.contains('mention-badge') || c.classList.contains('badge'));
    assert.deepEqual(badges.map((c) => c.className), ['mention-badge', 'badge'], 'the "@" comes before the count');
    assert.equal(li.dataset.mentions, '1');
    assert.equal(li.querySelector('.mention-badge').getAttribute('aria-label'), '1 unread mentioning you');
    markup.setMentionBadge(li, 0);
    assert.equal(li.querySelector('.mention-badge'), null);
  });

  it('uses the classes and test ids of templates/chat_item.html', () => {
    const li = markup.buildChatItem('r2', 'Lunch', true);
    markup.setChatItemTitle(li, { kind: 'group', title: 'Lunch' });
    markup.setPreview(li, { seq: 1, sender_id: ME, message: 'x', timestamp: 1 }, ME);
    markup.setBadge(li, 1);
    markup.setMentionBadge(li, 1);
    const empty = markup.buildChatItem('r3', 'ben', false);
    const js = [namesIn(li), namesIn(empty)];
    const tpl = templateNames('chat_item.html');
    assert.deepEqual(sorted(union(js.map((n) => n.classes))), sorted(tpl.classes));
    assert.deepEqual(sorted(union(js.map((n) => n.testids))), sorted(tpl.testids));
  });
});
