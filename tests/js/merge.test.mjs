// Merging by seq and revision (static/js/merge.js): node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  SYNC_PAGE, copyIsNewer, highestSeq, insertionIndex, isValidMessage, leavesGap, previewAccepts, revOf,
  syncHasMore, updateApplies,
} from '../../static/js/merge.js';

describe('merging by seq', () => {
  it('insertionIndex keeps confirmed messages sorted by seq', () => {
    assert.equal(insertionIndex([], 5), 0);
    assert.equal(insertionIndex([1, 2, 3], 4), 3); // the usual case: at the end
    assert.equal(insertionIndex([1, 2, 5], 3), 2); // a late one fills a hole
    assert.equal(insertionIndex([4, 5], 1), 0); // an older page goes first
    assert.equal(insertionIndex([1, 3, 3], 3), 3); // after equal seqs
  });

  it('a merge in any order ends sorted', () => {
    const shown = [];
    for (const seq of [7, 2, 9, 1, 8, 3]) shown.splice(insertionIndex(shown, seq), 0, seq);
    assert.deepEqual(shown, [1, 2, 3, 7, 8, 9]);
  });

  it('highestSeq: the room end as rendered, unless reading an older window', () => {
    assert.equal(highestSeq(0, 12, false), 12);
    assert.equal(highestSeq(15, 12, false), 15);
    assert.equal(highestSeq(8, 12, true), 8);
    assert.equal(highestSeq(NaN, 0, false), 0);
  });

  it('leavesGap: a live message beyond the next seq, with history shown', () => {
    assert.ok(!leavesGap(6, 5, 3));
    assert.ok(leavesGap(7, 5, 3));
    assert.ok(!leavesGap(7, 5, 0)); // nothing shown: nothing to be missing from
  });

  it('isValidMessage wants an integer seq and a string text', () => {
    assert.ok(isValidMessage({ seq: 1, message: '' }));
    for (const bad of [null, 'x', { seq: '1', message: 'a' }, { seq: 1.5, message: 'a' }, { seq: 1 }]) {
      assert.ok(!isValidMessage(bad), JSON.stringify(bad));
    }
  });
});

describe('revisions', () => {
  it('revOf treats junk as 0', () => {
    assert.equal(revOf('3'), 3);
    assert.equal(revOf(undefined), 0);
    assert.equal(revOf('x'), 0);
  });

  it('an update applies when at least as new; a copy redraws only when newer', () => {
    assert.ok(updateApplies(2, '2'));
    assert.ok(updateApplies(3, '2'));
    assert.ok(!updateApplies(1, '2'));
    assert.ok(updateApplies(undefined, undefined));
    assert.ok(!copyIsNewer(2, '2'));
    assert.ok(copyIsNewer(3, '2'));
  });

  it('a preview is replaced by a newer message only', () => {
    assert.ok(previewAccepts(5, '4'));
    assert.ok(previewAccepts(5, '5'));
    assert.ok(!previewAccepts(3, '4'));
    assert.ok(previewAccepts(undefined, '4')); // no seq (a chat event's own data)
    assert.ok(previewAccepts(1, undefined));
  });
});

describe('sync paging', () => {
  const page = (n) => Array.from({ length: n }, (_, i) => ({ seq: i + 1 }));

  it('a full page of messages or of updates means more', () => {
    assert.ok(syncHasMore({ ok: true, messages: page(SYNC_PAGE), updates: [] }, false));
    assert.ok(syncHasMore({ ok: true, messages: [], updates: page(SYNC_PAGE) }, false));
    assert.ok(!syncHasMore({ ok: true, messages: page(SYNC_PAGE - 1), updates: page(3) }, false));
  });

  it('reading an older window, later messages do not count', () => {
    assert.ok(!syncHasMore({ ok: true, messages: page(SYNC_PAGE), updates: [] }, true));
    assert.ok(syncHasMore({ ok: true, messages: [], updates: page(SYNC_PAGE) }, true));
  });

  it('a failed or missing answer has no more', () => {
    assert.ok(!syncHasMore(null, false));
    assert.ok(!syncHasMore({ error: { code: 'timeout' } }, false));
    assert.ok(!syncHasMore({ ok: true }, false));
  });
});
