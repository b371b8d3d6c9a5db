// Pure helpers of the web UI (static/js/format.js): node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  badgeText, dayLabel, defaultLevel, errorText, formatShort, groupRuns, hueOf, initial, lastSeenText, markWords, membersLine, mentions, pageTitle,
  parseTime, sameDay, searchWords, typingText, uuidFromBytes, worthNotifying,
} from '../../static/js/format.js';

const time = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const now = new Date(2026, 2, 15, 12, 0); // 15 March 2026, noon local time
const at = (d, h, m = 0) => new Date(2026, 2, d, h, m);

describe('times', () => {
  it('sameDay compares local calendar days', () => {
    assert.ok(sameDay(at(15, 0), at(15, 23, 59)));
    assert.ok(!sameDay(at(14, 23, 59), at(15, 0)));
  });

  it('formatShort: the time today, the date and time before', () => {
    assert.equal(formatShort(at(15, 9, 5), now), time.format(at(15, 9, 5)));
    assert.ok(formatShort(at(3, 9, 5), now).endsWith(`, ${time.format(at(3, 9, 5))}`));
    const lastYear = new Date(2025, 2, 3, 9, 5);
    assert.ok(formatShort(lastYear, now).includes('2025'), formatShort(lastYear, now));
    assert.ok(!formatShort(at(3, 9, 5), now).includes('2026'));
  });

  it('dayLabel: Today, Yesterday, then dates', () => {
    assert.equal(dayLabel(at(15, 1), now), 'Today');
    assert.equal(dayLabel(at(14, 23), now), 'Yesterday');
    assert.ok(!['Today', 'Yesterday'].includes(dayLabel(at(13, 12), now)));
    assert.ok(dayLabel(new Date(2024, 0, 1), now).includes('2024'));
  });

  it('lastSeenText', () => {
    const s = (d) => d.getTime() / 1000;
    assert.equal(lastSeenText(0, now), 'offline');
    assert.equal(lastSeenText(null, now), 'offline');
    assert.equal(lastSeenText(s(now) - 20, now), 'last seen just now');
    assert.equal(lastSeenText(s(now) - 5 * 60, now), 'last seen 5 min ago');
    assert.equal(lastSeenText(s(at(15, 8)), now), `last seen today at ${time.format(at(15, 8))}`);
    assert.equal(lastSeenText(s(at(14, 8)), now), `last seen yesterday at ${time.format(at(14, 8))}`);
    assert.match(lastSeenText(s(at(1, 8)), now), /^last seen \S/);
  });

  it('parseTime: data-ts first, then the ISO datetime, else null', () => {
    assert.equal(parseTime('1700000000.5', 'junk').getTime(), 1700000000500);
    assert.equal(parseTime('', '2026-03-15T10:00:00Z').toISOString(), '2026-03-15T10:00:00.000Z');
    assert.equal(parseTime('abc', '2026-03-15T10:00:00Z').toISOString(), '2026-03-15T10:00:00.000Z');
    assert.equal(parseTime(undefined, 'nonsense'), null);
    assert.equal(parseTime(undefined, null), null);
  });
});

describe('groupRuns', () => {
  const msg = (d, h, m, sender, quoted = false) => ({ date: at(d, h, m), sender, quoted });

  it('labels the first message of each day', () => {
    const runs = groupRuns([msg(14, 10, 0, 'a'), msg(14, 11, 0, 'b'), msg(15, 9, 0, 'a')], now);
    assert.deepEqual(runs.map((r) => r.day), ['Yesterday', null, 'Today']);
  });

  it('continues a run: same sender, same day, within five minutes, not a reply', () => {
    const runs = groupRuns([
      msg(15, 10, 0, 'a'),
      msg(15, 10, 4, 'a'), // cont
      msg(15, 10, 10, 'a'), // more than 5 min later
      msg(15, 10, 11, 'b'), // another sender
      msg(15, 10, 12, 'b', true), // a reply starts a run
      msg(15, 10, 13, 'b'), // cont
    ], now);
    assert.deepEqual(runs.map((r) => r.cont), [false, true, false, false, false, true]);
  });

  it('system notices (no sender) and messages without a time never continue', () => {
    const runs = groupRuns([
      msg(15, 10, 0, undefined), msg(15, 10, 1, undefined),
      { date: null, sender: 'a', quoted: false }, { date: null, sender: 'a', quoted: false },
    ], now);
    assert.deepEqual(runs, [
      { day: 'Today', cont: false }, { day: null, cont: false }, { day: null, cont: false }, { day: null, cont: false },
    ]);
  });

  it('a new day breaks a run', () => {
    const runs = groupRuns([msg(14, 23, 59, 'a'), msg(15, 0, 1, 'a')], now);
    assert.deepEqual(runs, [{ day: 'Yesterday', cont: false }, { day: 'Today', cont: false }]);
  });
});

describe('texts', () => {
  it('errorText: known codes read as sentences, others name the code', () => {
    assert.equal(errorText('too_long'), 'Too long: messages are limited to 4000 characters.');
    assert.equal(errorText('weird'), 'Not done (weird).');
    assert.equal(errorText(undefined), 'Not done (unknown error).');
    assert.equal(errorText('constructor'), 'Not done (constructor).');
  });

  it('membersLine, typingText, pageTitle', () => {
    assert.equal(membersLine(1, 1), '1 member, 1 online');
    assert.equal(membersLine(3, 0), '3 members');
    assert.equal(typingText([]), '');
    assert.equal(typingText(['ann']), 'ann is typing…');
    assert.equal(typingText(['ann', 'bo']), 'ann and bo are typing…');
    assert.equal(typingText(['ann', 'bo', 'cy']), '3 people are typing…');
    assert.equal(pageTitle(0, ''), 'Natter');
    assert.equal(pageTitle(2, ''), '(2) Natter');
    assert.equal(pageTitle(1, 'Lunch'), '(1) Lunch · Natter');
  });

  it('initial and hueOf work on whole code points', () => {
    assert.equal(initial('🍕 club'), '🍕');
    assert.equal(initial(''), '?');
    assert.equal(hueOf('anna'), hueOf('anna'));
    assert.ok(hueOf('anna') >= 0 && hueOf('anna') < 360);
    assert.notEqual(hueOf('anna'), hueOf('ben'));
  });

  it('searchWords: runs of letters and digits, lowercased', () => {
    assert.deepEqual(searchWords('  Pizza, on FRIDAY? 12:30 ünïcode '), ['pizza', 'on', 'friday', '12', '30', 'ünïcode']);
    assert.deepEqual(searchWords('?!'), []);
  });

  it('markWords marks each word found, left to right, case-insensitively', () => {
    const pieces = markWords('Count me in. Margherita for me.', ['me', 'margherita']);
    assert.deepEqual(pieces.filter((p) => p.mark).map((p) => p.text), ['me', 'Margherita', 'me']);
    assert.equal(pieces.map((p) => p.text).join(''), 'Count me in. Margherita for me.');
    assert.deepEqual(markWords('<b>x</b>', ['b']).filter((p) => p.mark).map((p) => p.text), ['b', 'b']);
    assert.deepEqual(markWords('nothing', []), [{ text: 'nothing', mark: false }]);
  });

  it('uuidFromBytes makes a version 4 UUID', () => {
    const id = uuidFromBytes(new Uint8Array(16).fill(0xff));
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(uuidFromBytes(new Uint8Array(16)), '00000000-0000-4000-8000-000000000000');
  });
});

describe('notifications', () => {
  it('mentions: @name in any case, never inside a longer word', () => {
    assert.ok(mentions('hi @Bob!', 'bob'));
    assert.ok(mentions('@bob', 'bob'));
    assert.ok(mentions('ask @bob, then me', 'bob'));
    assert.ok(!mentions('hi @bobby', 'bob'));
    assert.ok(!mentions('mail@bob.example', 'bob'));
    assert.ok(!mentions('hi bob', 'bob'));
    assert.ok(mentions('x@bob @bob', 'bob'), 'a later mention counts when an earlier one is inside a word');
    assert.ok(!mentions('@bob_2', 'bob'));
    assert.ok(!mentions('anything', ''));
  });

  it('levels: direct rooms notify everything by default, groups mentions; none never', () => {
    assert.equal(defaultLevel('direct'), 'all');
    assert.equal(defaultLevel('group'), 'mentions');
    assert.ok(worthNotifying('all', 'hello', 'bob'));
    assert.ok(!worthNotifying('mentions', 'hello', 'bob'));
    assert.ok(worthNotifying('mentions', 'hello @bob', 'bob'));
    assert.ok(!worthNotifying('none', 'hello @bob', 'bob'));
  });

  it('badgeText caps at 99+', () => {
    assert.equal(badgeText(7), '7');
    assert.equal(badgeText(100), '99+');
  });
});
