// Pure rules for merging what the server sends into the history shown: order
// by seq, revisions, gaps, sync paging. No DOM (tests/js/merge.test.mjs).

/** The server's largest page for `sync`; a full page means there may be more. */
export const SYNC_PAGE = 200;

/** A message as the server sends it: an integer seq and a text. */
export const isValidMessage = (m) =>
  Boolean(m) && typeof m === 'object' && Number.isInteger(m.seq) && typeof m.message === 'string';

/** A revision as a number (absent or junk counts as 0). */
export const revOf = (rev) => Number(rev) || 0;

/**
 * Where a message with `seq` goes among confirmed messages whose seqs are
 * `seqs` (ascending): the index of the first one with a larger seq, or
 * `seqs.length` to go after all of them.
 */
export function insertionIndex(seqs, seq) {
  let i = seqs.length;
  while (i > 0 && seqs[i - 1] > seq) i -= 1;
  return i;
}

/**
 * The seq the page has caught up to: the last one shown, or the room's last
 * seq when the page was rendered (not when it shows an older window, which
 * does not reach the end).
 */
export const highestSeq = (lastShown, initialLastSeq, moreAfter) =>
  Math.max(moreAfter ? 0 : initialLastSeq, lastShown || 0);

/** A live message skipping seqs after `highest` means some were missed. */
export const leavesGap = (seq, highest, shownCount) => seq > highest + 1 && shownCount > 0;

/** An update replaces what is shown if it is at least as new. */
export const updateApplies = (incomingRev, shownRev) => revOf(incomingRev) >= revOf(shownRev);

/** A message already shown is redrawn from a copy only if the copy is newer. */
export const copyIsNewer = (incomingRev, shownRev) => revOf(incomingRev) > revOf(shownRev);

/** A chat list preview shows the newest message: an older one does not replace it. */
export const previewAccepts = (seq, shownSeq) => !(seq != null && seq < (Number(shownSeq) || 0));

/**
 * Whether a `sync` answer may have more to fetch: a full page of messages
 * (unless the page reads an older window, where later messages do not matter)
 * or a full page of updates.
 */
export function syncHasMore(ack, moreAfter, page = SYNC_PAGE) {
  if (!ack || !ack.ok) return false;
  const full = (list) => Array.isArray(list) && list.length >= page;
  return (!moreAfter && full(ack.messages)) || full(ack.updates);
}
