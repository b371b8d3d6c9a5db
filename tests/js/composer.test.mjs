// The message box's pure helpers (static/js/format.js): the length the server
// counts, the counter near the limit, the mention being typed; and the emoji
// the grid offers (static/js/emoji.js). node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { EMOJI_GROUPS } from '../../static/js/emoji.js';
import {
  MAX_MESSAGE_CHARS, charCounter, mentionQuery, messageLength, namesStarting, tooLongText,
} from '../../static/js/format.js';
import { isEmojiOnly } from '../../static/js/richtext.js';

describe('length', () => {
  it('counts code points of the trimmed text, as the server does', () => {
    assert.equal(messageLength('hello'), 5);
    assert.equal(messageLength('  hi \n\t'), 2);
    assert.equal(messageLength('😀😀'), 2, 'two code points, four UTF-16 units');
    assert.equal(messageLength('é'), 1);
    assert.equal(messageLength('e\u0301'), 2, 'a combining accent is a character of its own');
    assert.equal(messageLength('\u00a0\u2003x\u3000'), 1, 'Unicode white space is trimmed');
    assert.equal(messageLength('a\nb'), 3, 'a newline inside counts');
    assert.equal(messageLength('😀'.repeat(MAX_MESSAGE_CHARS)), MAX_MESSAGE_CHARS);
  });

  it('the counter: hidden far from the limit, then n / 4000, over it flagged', () => {
    assert.equal(charCounter(0), null);
    assert.equal(charCounter(3599), null);
    assert.deepEqual(charCounter(3600), { text: '3600 / 4000', over: false });
    assert.equal(charCounter(89, 100), null, 'the counter follows a smaller limit');
    assert.deepEqual(charCounter(101, 100), { text: '101 / 100: too long', over: true });
    assert.deepEqual(charCounter(4000), { text: '4000 / 4000', over: false });
    assert.deepEqual(charCounter(4001), { text: '4001 / 4000: too long', over: true });
    assert.equal(tooLongText(4001), 'Too long to send: 4001 characters, the limit is 4000.');
  });
});

describe('mention being typed', () => {
  it('"@" and name characters up to the caret, not inside a word', () => {
    assert.deepEqual(mentionQuery('@', 1), { at: 0, end: 1, prefix: '' });
    assert.deepEqual(mentionQuery('hi @An', 6), { at: 3, end: 6, prefix: 'an' });
    assert.deepEqual(mentionQuery('hi @ann.l and', 9), { at: 3, end: 9, prefix: 'ann.l' });
    assert.deepEqual(mentionQuery('@bob rest', 2), { at: 0, end: 4, prefix: 'b' }, 'the caret inside the name');
    assert.deepEqual(mentionQuery('@@b', 3), { at: 1, end: 3, prefix: 'b' });
    assert.equal(mentionQuery('mail@bo', 7), null);
    assert.equal(mentionQuery('@bob ', 5), null, 'past the space');
    assert.equal(mentionQuery('hello', 5), null);
    assert.equal(mentionQuery(`@${'a'.repeat(40)}`, 41), null, 'longer than a username');
  });

  it('members starting with the prefix, me left out, sorted, a few', () => {
    const names = ['bob', 'Anna', 'ann.lee', 'ben', 'me', 'annika'];
    assert.deepEqual(namesStarting(names, 'an', 'me'), ['ann.lee', 'anna', 'annika']);
    assert.deepEqual(namesStarting(names, '', 'ME'), ['ann.lee', 'anna', 'annika', 'ben', 'bob']);
    assert.deepEqual(namesStarting(names, 'x', 'me'), []);
    assert.equal(namesStarting(Array.from({ length: 30 }, (_, i) => `u${i}`), 'u', 'me').length, 8);
  });
});

describe('the emoji grid', () => {
  const all = EMOJI_GROUPS.flatMap((g) => g.emoji);

  it('a few hundred, each once, in named groups', () => {
    assert.ok(all.length >= 200 && all.length <= 700, `${all.length}`);
    assert.equal(new Set(all).size, all.length);
    for (const g of EMOJI_GROUPS) assert.ok(g.id && g.name && g.emoji.length > 10, g.id);
  });

  it('each is a valid reaction (server rule) and shows as an emoji-only message', () => {
    for (const e of all) {
      assert.ok(Buffer.byteLength(e) <= 32, e);
      assert.doesNotMatch(e, /[A-Za-z0-9\s\p{Cc}]/u, e);
      assert.ok(isEmojiOnly(e), `${e} (${[...e].map((c) => c.codePointAt(0).toString(16)).join(' ')})`);
    }
  });
});
