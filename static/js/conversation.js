// The open room's history: messages merged in by seq from every source (the
// page, live events, acks, sync after a reconnect, older pages), edits,
// deletions and reactions by revision, day labels and runs, read receipts
// ("Seen", and telling the server what I have read), the "New messages"
// divider, scrolling, and older pages as the reader scrolls up.

import { chatItem, setUnread, updateChatItem, updatePreview } from './chatlist.js';
import { emit, emitWithAck, isConnected } from './connection.js';
import { button, el, timeOf } from './dom.js';
import { errorText, groupRuns } from './format.js';
import {
  MESSAGE, applyContent, buildMessage, confirmSent, fillQuote, isQuoting, renderText, seenMark, senderOf,
  timeElOf,
} from './markup.js';
import {
  SYNC_PAGE, copyIsNewer, highestSeq as highestOf, insertionIndex, isValidMessage, leavesGap, syncHasMore,
  updateApplies,
} from './merge.js';
import { els, markupContext as ctx, page, peer, room } from './state.js';
import { showStatus } from './status.js';
import { setTyping } from './typing.js';

const OLDER_PAGE = 50;
const NEAR_BOTTOM_PX = 120;
// Scrolled up this close to the top, the older page loads by itself.
const NEAR_TOP_PX = 400;
// After a failed load, scrolling waits this long before it tries again (the button does not).
const OLDER_RETRY_MS = 5000;

const { history, scroller } = els;

// ---------- finding messages ----------

const UNREAD_DIVIDER = '[data-testid="unread-divider"]';

export const seqOf = (e) => (e.dataset.seq ? Number(e.dataset.seq) : NaN);
const confirmedEls = () => (history ? history.querySelectorAll(`${MESSAGE}[data-seq]`) : []);
export const findBySeq = (seq) => history && history.querySelector(`${MESSAGE}[data-seq="${Number(seq)}"]`);
export const findByClientId = (cid) =>
  Array.from(history.querySelectorAll(`${MESSAGE}[data-client-id]:not([data-seq])`)).find(
    (e) => e.dataset.clientId === cid,
  );

function highestSeq() {
  const shown = confirmedEls();
  const last = shown.length ? seqOf(shown[shown.length - 1]) : 0;
  return highestOf(last, page.initialLastSeq, page.moreAfter);
}

function lowestSeq() {
  const first = history && history.querySelector(`${MESSAGE}[data-seq]`);
  return first ? seqOf(first) : 0;
}

// The room revision this page has caught up to: every change it shows is at or below it.
let knownRev = 0;
let syncing = false; // a sync (maybe several pages) is under way
let syncAgain = false; // and another was asked for meanwhile
// The read marker the server holds for me here: opening the page moved it to the end.
let myReadSeq = page.initialLastSeq;
confirmedEls().forEach((e) => {
  knownRev = Math.max(knownRev, Number(e.dataset.rev) || 0);
});

// ---------- order and grouping ----------

/** Confirmed messages stay sorted by seq; pending/failed ones stay below them. */
function place(li) {
  const seq = seqOf(li);
  if (Number.isNaN(seq)) {
    history.append(li);
    return;
  }
  const shown = Array.from(confirmedEls()).filter((x) => x !== li);
  const i = insertionIndex(shown.map(seqOf), seq);
  let before = i < shown.length ? shown[i] : history.querySelector(`${MESSAGE}:not([data-seq])`);
  // What comes before the first unread message was read (or is mine): above "New messages".
  if (before?.previousElementSibling?.matches(UNREAD_DIVIDER)) before = before.previousElementSibling;
  history.insertBefore(li, before);
}

/** Appends a message being sent, below everything. */
export const appendPending = (li) => history.append(li);

/** Sender names and day labels only where they start a run, like most messengers. */
export function regroup() {
  if (!history) return;
  const lis = Array.from(history.querySelectorAll(MESSAGE));
  const runs = groupRuns(
    lis.map((li) => {
      const t = timeElOf(li);
      return { date: t ? timeOf(t) : null, sender: senderOf(li), quoted: isQuoting(li) };
    }),
  );
  lis.forEach((li, i) => {
    if (runs[i].day) li.dataset.day = runs[i].day;
    else delete li.dataset.day;
    li.classList.toggle('cont', runs[i].cont);
  });
  if (els.loadOlder) els.loadOlder.hidden = !(lowestSeq() > 1);
  updateSeen();
}

/** "Seen" under my last message, once the other person of a direct room has read it. */
export function updateSeen() {
  if (!history) return;
  const other = peer();
  const mine = history.querySelectorAll(`${MESSAGE}.mine[data-seq]:not(.deleted)`);
  const last = mine.length ? mine[mine.length - 1] : null;
  const seen = last && other && other.read_seq >= seqOf(last) && !history.querySelector('.mine:not([data-seq])');
  const current = history.querySelector('[data-testid="seen"]');
  if (seen && current && current.parentElement === last) return;
  current?.remove();
  if (seen) last.append(seenMark());
}

// ---------- scrolling ----------

export const nearBottom = () =>
  !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;

// "New messages" pill for when something arrives while the reader is scrolled up
// (or reads an older window, when it leads to the latest messages instead).
let jumpBtn = null;

export function scrollToBottom() {
  if (scroller) scroller.scrollTop = scroller.scrollHeight;
  if (jumpBtn) jumpBtn.hidden = true;
}

export function showJump() {
  if (!scroller) return;
  if (!jumpBtn) {
    jumpBtn = button('jump-latest', null, 'jump-latest');
    jumpBtn.textContent = page.moreAfter ? 'Latest messages ↓' : 'New messages ↓';
    jumpBtn.addEventListener('click', () => {
      if (page.moreAfter) window.location.assign(`/chat/?rid=${encodeURIComponent(page.rid)}`);
      else scrollToBottom();
    });
    scroller.after(jumpBtn);
  }
  jumpBtn.hidden = false;
}

/** The messages the server rendered (plain text), read as rich text. */
export function renderTexts() {
  history?.querySelectorAll(MESSAGE).forEach((li) => renderText(li, ctx));
}

/**
 * "New messages" above the first message from someone else that I had not
 * read when the page opened. The server renders my read marker from before
 * the page marked the room read as <body data-read-seq>; without it, no divider.
 */
export function markUnread() {
  const readSeq = Number(els.body.dataset.readSeq);
  if (!history || !els.body.dataset.readSeq || !Number.isInteger(readSeq)) return;
  const first = Array.from(confirmedEls()).find((li) => seqOf(li) > readSeq && !li.classList.contains('mine'));
  if (!first) return;
  const divider = el('li', 'unread-divider', 'New messages');
  divider.setAttribute('data-testid', 'unread-divider');
  divider.setAttribute('role', 'separator');
  first.before(divider);
}

/** The first view: the highlighted message (a search hit), the first unread, or the latest. */
export function showStart() {
  const highlighted = history?.querySelector(`${MESSAGE}.highlight`);
  const divider = history?.querySelector(UNREAD_DIVIDER);
  const view = () => {
    if (highlighted) highlighted.scrollIntoView({ block: 'center' });
    // As far down as the end allows, the divider at the top: all that is new shows.
    else if (divider) divider.scrollIntoView({ block: 'start' });
    else scrollToBottom();
  };
  view();
  // Fonts/layout can settle after the first frame; place the view once more.
  requestAnimationFrame(view);
  if (page.moreAfter) showJump();
}

// ---------- merging in ----------

/** A message sent from this page, acknowledged (by its ack, a broadcast or a sync) as `m`. */
export function resolveMessage(li, m) {
  const dup = m.seq != null && findBySeq(m.seq);
  if (dup && dup !== li) {
    li.remove();
    return dup;
  }
  confirmSent(li, m, ctx);
  place(li);
  return li;
}

/** A changed message (edit, deletion, reaction): its bubble, and every quote of it. */
export function applyUpdate(m) {
  if (!isValidMessage(m) || m.rid !== page.rid || !history) return;
  // While a sync pages through changes, its own `rev` says how far it got; a
  // live change may be ahead of changes not fetched yet.
  if (!syncing) knownRev = Math.max(knownRev, Number(m.rev) || 0);
  const li = findBySeq(m.seq);
  if (li && updateApplies(m.rev, li.dataset.rev)) applyContent(li, m, ctx);
  for (const q of history.querySelectorAll(`.quote[data-reply-seq="${m.seq}"]`)) fillQuote(q, m);
  updatePreview(m);
  updateSeen();
}

/** An ack's message, for the open room. */
export const applyAcked = (m) => applyUpdate({ ...m, rid: m.rid || page.rid });

/** Adds one server message to the open room; false if it was already shown. */
function addServerMessage(m) {
  if (!history || !isValidMessage(m)) return false;
  const shown = findBySeq(m.seq);
  if (shown) {
    if (copyIsNewer(m.rev, shown.dataset.rev)) applyContent(shown, m, ctx);
    return false;
  }
  const mine = m.sender_id === page.meId;
  const pending = mine && m.client_id ? findByClientId(m.client_id) : null;
  if (pending) resolveMessage(pending, m);
  else place(buildMessage(m, mine, ctx));
  return true;
}

function addBatch(messages, { keepAtBottom }) {
  const stick = keepAtBottom || nearBottom();
  let added = 0;
  for (const m of messages || []) if (addServerMessage(m)) added += 1;
  if (added) {
    regroup();
    if (stick) scrollToBottom();
  }
  return added;
}

/** A message's chat list entry; and its sender has stopped typing. */
function showInList(m, unseen) {
  updateChatItem(m, unseen);
  setTyping(m.rid, m.sender_id, null, false);
}

/** A `message` event. */
export function receiveMessage(m) {
  if (!isValidMessage(m)) return;
  const mine = m.sender_id === page.meId;
  const here = m.rid === page.rid && history && !room.gone;
  if (here && page.moreAfter) {
    showJump();
  } else if (here) {
    const stick = mine || nearBottom();
    const gap = leavesGap(m.seq, highestSeq(), confirmedEls().length);
    if (addServerMessage(m)) {
      regroup();
      if (stick) scrollToBottom();
      else showJump();
    }
    // A hole in the seq run means we missed something: ask for it.
    if (gap) sync();
    markVisibleRead();
  }
  // The open room counts as unread too while the tab is hidden; reading it resets it.
  const unseen = !mine && (!here || page.moreAfter || document.hidden);
  showInList(m, unseen);
}

// ---------- read receipts ----------

function lastVisibleSeq() {
  if (!scroller) return 0;
  const bottom = scroller.getBoundingClientRect().bottom;
  const shown = confirmedEls();
  for (let i = shown.length - 1; i >= 0; i -= 1) {
    if (shown[i].getBoundingClientRect().top < bottom) return seqOf(shown[i]);
  }
  return 0;
}

function markVisibleRead() {
  if (!page.rid || room.gone || document.hidden || !isConnected()) return;
  const seq = lastVisibleSeq();
  if (!(seq > myReadSeq)) return;
  myReadSeq = seq;
  emit('read', { rid: page.rid, seq });
}

/** Reads what scrolls into view, and what shows when the tab comes back. */
export function watchReading() {
  let readTimer = 0;
  scroller?.addEventListener(
    'scroll',
    () => {
      if (jumpBtn && !jumpBtn.hidden && !page.moreAfter && nearBottom()) jumpBtn.hidden = true;
      clearTimeout(readTimer);
      readTimer = setTimeout(markVisibleRead, 200);
    },
    { passive: true },
  );
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    markVisibleRead();
  });
}

/** A `read` event: my markers elsewhere (unread counts), or someone's here ("Seen"). */
export function receiveRead(ev) {
  if (!ev || typeof ev.rid !== 'string') return;
  if (ev.user_id === page.meId) {
    const li = chatItem(ev.rid);
    if (li && Number.isInteger(ev.unread)) setUnread(li, ev.unread);
    if (ev.rid === page.rid && Number.isInteger(ev.read_seq)) myReadSeq = Math.max(myReadSeq, ev.read_seq);
    return;
  }
  if (ev.rid !== page.rid) return;
  const m = room.members.get(ev.user_id);
  if (m && Number.isInteger(ev.read_seq) && ev.read_seq > m.read_seq) {
    m.read_seq = ev.read_seq;
    updateSeen();
  }
}

// ---------- joining and catching up ----------

/** Fetches what was missed: messages after the last shown, changes after knownRev. */
export function sync(round = 0) {
  if (!page.rid || room.gone) return;
  if (syncing && round === 0) {
    syncAgain = true;
    return;
  }
  syncing = true;
  // Reading an older window: only its changes matter, not what follows it.
  const payload = { rid: page.rid, after_seq: highestSeq(), limit: SYNC_PAGE, after_rev: knownRev };
  emitWithAck('sync', payload, (err, ack) => {
    const ok = !err && ack && ack.ok;
    // A full page of messages or of changes: there may be more of either.
    const more = ok && syncHasMore(ack, page.moreAfter);
    if (ok) {
      for (const m of ack.updates || []) applyUpdate({ ...m, rid: m.rid || page.rid });
      if (Number.isInteger(ack.rev)) knownRev = Math.max(knownRev, ack.rev);
      if (!page.moreAfter) {
        const latest = ack.messages && ack.messages[ack.messages.length - 1];
        addBatch(ack.messages, { keepAtBottom: false });
        if (latest) {
          showInList(latest, false);
          myReadSeq = Math.max(myReadSeq, latest.seq); // sync marks what it returns read
        }
      }
    } else if (ack && ack.error) {
      showStatus(errorText(ack.error.code));
    }
    if (more && round < 50) {
      sync(round + 1);
      return;
    }
    syncing = false;
    if (syncAgain) {
      syncAgain = false;
      sync();
    } else {
      markVisibleRead();
    }
  });
}

/**
 * Joins the open room's live events, then syncs. Resolves to false if I am
 * not a member any more (nothing synced then).
 */
export function joinAndSync() {
  return new Promise((resolve) => {
    emitWithAck('join-chat', { rid: page.rid }, (err, ack) => {
      if (!err && ack && ack.error) {
        if (ack.error.code === 'not_member') {
          resolve(false);
          return;
        }
        showStatus(errorText(ack.error.code));
        resolve(true);
        return;
      }
      if (!err && ack && Number.isInteger(ack.last_seq)) myReadSeq = Math.max(myReadSeq, ack.last_seq);
      sync();
      resolve(true);
    });
  });
}

// ---------- older history ----------

let loadingOlder = false;
let olderFailedAt = -Infinity;

/** The page before the first message shown, from the HTTP API, the view kept still. */
async function loadOlder() {
  const btn = els.loadOlder;
  const first = lowestSeq();
  if (!(first > 1)) {
    btn.hidden = true;
    return;
  }
  if (loadingOlder) return;
  loadingOlder = true;
  const label = btn.textContent;
  btn.disabled = true;
  btn.textContent = 'Loading…';
  try {
    const url = `/api/v1/rooms/${encodeURIComponent(page.rid)}/messages?before=${first}&limit=${OLDER_PAGE}`;
    const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (res.status === 401) {
      window.location.assign('/login');
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const data = await res.json();
    // Keep the reader's view still: the old first bubble stays where it was on screen
    // (the button and the day label above it may move or vanish).
    const anchor = history.querySelector(`${MESSAGE}[data-seq]`);
    const offset = () => anchor.getBoundingClientRect().bottom - scroller.getBoundingClientRect().top;
    const before = anchor ? offset() : 0;
    for (const m of data.messages || []) addServerMessage(m);
    regroup();
    if (anchor) scroller.scrollTop += offset() - before;
  } catch (_) {
    olderFailedAt = Date.now();
    showStatus('Could not load older messages.');
  } finally {
    loadingOlder = false;
    btn.disabled = false;
    btn.textContent = label;
  }
}

const nearTop = () => scroller.scrollTop < NEAR_TOP_PX;

/**
 * Older messages: by themselves when the reader scrolls near the top (a
 * scroll listener, looking again once a page is in, for a reader still at
 * the top), or with the "Load older messages" button.
 */
export function watchLoadOlder() {
  const btn = els.loadOlder;
  if (!btn || !history || !scroller || !page.rid) return;
  btn.addEventListener('click', loadOlder);
  const onScroll = () => {
    if (btn.hidden || loadingOlder || !nearTop() || Date.now() - olderFailedAt < OLDER_RETRY_MS) return;
    loadOlder().then(() => requestAnimationFrame(onScroll));
  };
  scroller.addEventListener('scroll', onScroll, { passive: true });
}
