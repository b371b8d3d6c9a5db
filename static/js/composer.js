// The message box: sending through the outbox (outbox.js) with an optimistic
// bubble — pending until acked, waiting (with Cancel) while the server cannot
// be reached, failed with Retry when refused for good —, replying to a
// message, and my typing. The box grows with its text (up to about six
// lines, then scrolls); Enter sends, Shift+Enter starts a new line; a counter
// shows near the length limit, and a text over it is refused, never cut.
// "@" offers members to mention (mentions.js), the emoji button the grid
// (picker.js). Files picked, pasted or dropped upload at once as chips above
// the box (uploads.js) and go with the message, which may then have no text;
// sending while some still upload waits for them, then sends. Without
// script the form posts (text only).

import { emitWithAck, isConnected } from './connection.js';
import {
  appendPending, findByClientId, nearBottom, regroup, resolveMessage, scrollToBottom,
} from './conversation.js';
import { updateChatItem } from './chatlist.js';
import { button, el } from './dom.js';
import {
  charCounter, errorText, messageLength, tooLongText, uuidFromBytes,
} from './format.js';
import { MESSAGE, buildMessage, markFailed, markPending, markWaiting } from './markup.js';
import { mentionKey, watchMentions } from './mentions.js';
import * as outbox from './outbox.js';
import { OUTBOX_MAX, payloadOf } from './outbox.js';
import { emojiButton } from './picker.js';
import { els, markupContext as ctx, page, room } from './state.js';
import { showStatus } from './status.js';
import { stopTyping, watchTyping } from './typing.js';
import { createTray, watchFiles } from './uploads.js';

// A send answered with a passing refusal (the server is draining or cannot
// reach its database; too many sends a second) waits this long, then goes again.
const RETRY_PAUSE_MS = 1500;
// Refusals that pass: the message stays in the outbox and is sent again.
const TRANSIENT = new Set(['unavailable', 'rate_limited', 'timeout']);

function newClientId() {
  if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // randomUUID needs a secure context; plain-http self-hosting still has getRandomValues.
  return uuidFromBytes(crypto.getRandomValues(new Uint8Array(16)));
}

// ---------- the send queue ----------
//
// Every unsent message of this user (the open room's and, after a reload,
// other rooms'), oldest first. One is in flight at a time, so messages reach
// the server in the order they were typed, even when an outage queued many.

const queue = [];
let inFlight = null; // the client_id awaiting its ack
let pauseTimer = 0;
// Set once the outbox has been read back: nothing is sent before, so a
// message typed during the read cannot overtake older ones.
let restored = false;
// Messages refused for good: kept (outside the outbox) so that Retry can queue them again.
const refused = new Map();

const bubbleOf = (entry) => (entry.rid === page.rid && els.history ? findByClientId(entry.client_id) : null);

/** The server has the message (`m`): out of the outbox, shown as sent. */
function settle(entry, m) {
  outbox.remove(entry.client_id);
  const li = bubbleOf(entry);
  const message = { ...m, rid: m.rid || entry.rid };
  if (li && !li.dataset.seq) {
    const placed = resolveMessage(li, message);
    regroup();
    if (placed === li && nearBottom()) scrollToBottom();
  }
  updateChatItem(message, false);
}

function dequeue(clientId) {
  const i = queue.findIndex((e) => e.client_id === clientId);
  return i < 0 ? null : queue.splice(i, 1)[0];
}

function pauseThenPump() {
  clearTimeout(pauseTimer);
  pauseTimer = setTimeout(pump, RETRY_PAUSE_MS);
}

/** Sends the oldest queued message, if connected and none is in flight. */
function pump() {
  if (!restored || inFlight || !queue.length) return;
  if (!isConnected()) {
    // All of them wait for the connection, and may be cancelled meanwhile.
    for (const waiting of queue) {
      const li = bubbleOf(waiting);
      if (li && !li.dataset.waiting) markWaiting(li);
    }
    return;
  }
  const entry = queue[0];
  const li = bubbleOf(entry);
  inFlight = entry.client_id;
  if (li) markPending(li);
  emitWithAck('outgoing', payloadOf(entry), (err, ack) => {
    if (inFlight === entry.client_id) inFlight = null;
    const code = err ? 'timeout' : ack && ack.ok && ack.message ? null : ack?.error?.code || 'invalid';
    const stillQueued = queue.includes(entry); // not cancelled meanwhile
    if (!code) {
      dequeue(entry.client_id);
      settle(entry, ack.message);
    } else if (TRANSIENT.has(code)) {
      // Stays first in line; a reconnection pumps again sooner.
      const current = bubbleOf(entry);
      if (stillQueued && current && !current.dataset.seq) markWaiting(current, isConnected() ? errorText(code) : null);
      pauseThenPump();
      return;
    } else {
      dequeue(entry.client_id);
      outbox.remove(entry.client_id);
      const current = bubbleOf(entry);
      if (stillQueued && current && !current.dataset.seq) {
        refused.set(entry.client_id, entry);
        markFailed(current, errorText(code));
      }
    }
    pump();
  });
}

/** Queues a message already in the outbox. */
function enqueue(entry) {
  if (!queue.some((e) => e.client_id === entry.client_id)) queue.push(entry);
  pump();
}

/** Sends what is waiting: on every (re)connection. */
export function flushOutbox() {
  clearTimeout(pauseTimer);
  pump();
}

/**
 * Reads the outbox back when the page opens: this room's unsent messages show
 * again as waiting, every room's are queued to go when the socket connects.
 */
export async function restoreOutbox() {
  let entries = [];
  try {
    entries = await outbox.entriesOf(page.meId);
  } catch (_) {
    showStatus('Could not read the unsent messages kept by this browser.');
  }
  for (const entry of entries) {
    if (entry.rid === page.rid && els.history && !findByClientId(entry.client_id)) {
      const li = bubbleFor(entry);
      appendPending(li);
      markWaiting(li);
    }
    if (!queue.some((e) => e.client_id === entry.client_id)) queue.push(entry);
  }
  // Messages typed while the outbox was read joined the queue first: older ones go first.
  queue.sort((a, b) => a.created_at - b.created_at);
  restored = true;
  if (entries.length) {
    regroup();
    scrollToBottom();
  }
  pump();
}

function bubbleFor(entry) {
  const li = buildMessage(
    {
      sender_username: page.meName,
      message: entry.message,
      timestamp: entry.created_at / 1000,
      client_id: entry.client_id,
      reply_to: entry.quote ? { ...entry.quote, deleted: false } : null,
      attachments: entry.attachments || [],
    },
    true,
    ctx,
  );
  if (entry.reply_to != null) li.dataset.replyTo = String(entry.reply_to);
  return li;
}

/** The browser's storage refused the entry (full, or blocked): nothing is sent unkept; Retry tries again. */
function notKept(li, entry) {
  refused.set(entry.client_id, entry);
  markFailed(li, 'This browser could not keep the message; try again.');
}

/** Retry (a refused message) and Cancel (an unsent one), on the bubble's buttons. */
function onBubbleButton(e) {
  const btn = e.target.closest('.retry, .cancel-send');
  const li = btn?.closest(MESSAGE);
  if (!li || li.dataset.seq) return;
  const clientId = li.dataset.clientId;
  if (btn.classList.contains('cancel-send')) {
    // One already on its way may still arrive: then it shows as sent.
    dequeue(clientId);
    refused.delete(clientId);
    outbox.remove(clientId);
    li.remove();
    regroup();
    pump();
    return;
  }
  const entry = refused.get(clientId);
  if (!entry) return;
  refused.delete(clientId);
  markPending(li);
  outbox.put(entry).then(
    () => enqueue(entry),
    () => notKept(li, entry),
  );
}

// Replying: the quoted message waits above the message box until sent or cancelled.
let replyTo = null; // {seq, sender_username, message}

export function setReply(quote) {
  replyTo = quote;
  const bar = els.replyBar;
  if (!bar) return;
  bar.hidden = !quote;
  if (quote) {
    bar.querySelector('.reply-name').textContent = quote.sender_username;
    bar.querySelector('.reply-text').textContent = quote.message;
    els.input?.focus();
  }
}

// ---------- the box as one types ----------

let counter = null;
// The files going with the next message (uploads.js): null when the page
// takes none (reading an older window, where the form posts; or the server
// keeps no files).
let tray = null;
// Send was asked for while files were still uploading: it goes when they are done.
let sendWhenUploaded = false;

/** Fits the box's height to its text; past app.css's max-height it scrolls. */
function fit(input) {
  input.style.height = 'auto';
  input.style.height = `${input.scrollHeight + input.offsetHeight - input.clientHeight}px`;
}

/** The counter near the limit; over it the box is invalid and Send is off. */
function countChars(input) {
  const n = messageLength(input.value);
  const state = charCounter(n, page.maxChars);
  counter.hidden = !state;
  counter.textContent = state ? state.text : '';
  counter.classList.toggle('over', Boolean(state?.over));
  const over = n > page.maxChars;
  if (over) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
  const send = els.form.querySelector('button[type="submit"]');
  if (send) send.disabled = over || room.gone;
}

function boxChanged(input) {
  fit(input);
  countChars(input);
}

/** Writes `text` over the box's selection (at the caret), as if typed. */
function insertText(input, text) {
  input.focus();
  input.setRangeText(text, input.selectionStart, input.selectionEnd, 'end');
  input.dispatchEvent(new Event('input', { bubbles: true }));
}

/** The counter, the emoji button and the files, which only work with script, join the form. */
function addBoxTools(form, input) {
  counter = el('span', 'char-counter');
  counter.id = 'char-counter';
  counter.setAttribute('data-testid', 'char-counter');
  counter.hidden = true;
  input.setAttribute('aria-describedby', counter.id);
  const emoji = button('emoji-toggle', 'Emoji', 'emoji-button');
  emoji.textContent = '☺';
  emojiButton(emoji, (e) => insertText(input, e));
  input.before(emoji);
  form.append(counter);
  // Files go only over the socket (not with the plain form post), and only to a server that takes them.
  if (page.moreAfter || !page.maxUploadBytes) return;
  tray = createTray({ rid: page.rid, maxBytes: page.maxUploadBytes, canAdd: () => !room.gone, focusAfter: input });
  form.prepend(tray.root);
  watchFiles(tray, { input, before: emoji, dropZone: form.closest('.conversation') || form });
}

/** Whether a send waits for the uploads (shown in the tray's note; Escape stops waiting). */
function setSendWaiting(waiting) {
  sendWhenUploaded = waiting;
  if (waiting) els.form.dataset.sendWaiting = 'true';
  else delete els.form.dataset.sendWaiting;
  tray.setNote(waiting ? 'Sends once the files are uploaded. Esc: not yet.' : '');
}

/** Sends what the box holds: its text and the files uploaded for it (some may still be uploading: then it waits). */
function send() {
  const { input } = els;
  const text = input.value.trim();
  const files = tray ? tray.count : 0;
  if ((!text && !files) || room.gone) return;
  const length = messageLength(text);
  if (length > page.maxChars) {
    // Kept in the box as it is, to be shortened.
    showStatus(tooLongText(length, page.maxChars));
    input.focus();
    return;
  }
  if (tray?.failed) {
    const n = tray.failed;
    const why = `${n === 1 ? 'A file' : `${n} files`} could not be uploaded: remove ${n === 1 ? 'it' : 'them'} (×) to send without.`;
    tray.setNote(why);
    return;
  }
  if (tray?.busy) {
    if (sendWhenUploaded) return;
    setSendWaiting(true);
    tray.settled().then(() => {
      if (!sendWhenUploaded) return;
      setSendWaiting(false);
      send();
    });
    return;
  }
  if (queue.length >= OUTBOX_MAX) {
    showStatus(`${OUTBOX_MAX} messages are waiting to be sent already; wait for the connection.`);
    return;
  }
  stopTyping();
  const entry = {
    client_id: newClientId(),
    user: page.meId,
    rid: page.rid,
    message: text,
    attachments: tray ? tray.uploaded() : [],
    reply_to: replyTo ? replyTo.seq : null,
    quote: replyTo,
    created_at: Date.now(),
  };
  const li = bubbleFor(entry);
  setReply(null);
  appendPending(li);
  markPending(li);
  input.value = '';
  tray?.clear();
  boxChanged(input);
  input.focus();
  regroup();
  scrollToBottom();
  // Kept by the browser before it is sent: a reload, a crash or an outage loses nothing.
  outbox.put(entry).then(
    () => enqueue(entry),
    () => notKept(li, entry),
  );
}

export function watchComposer() {
  const { form, input, history } = els;
  if (input && page.rid) watchTyping(input);
  els.replyBar?.querySelector('.reply-cancel')?.addEventListener('click', () => setReply(null));
  if (!form || !input || !history) return;
  addBoxTools(form, input);
  watchMentions(input, form);
  input.addEventListener('input', () => boxChanged(input));
  boxChanged(input);
  form.addEventListener('submit', (e) => {
    // Reading an older window: the plain form post sends and shows the latest messages.
    if (page.moreAfter || room.gone) return;
    e.preventDefault();
    send();
  });
  history.addEventListener('click', onBubbleButton);
  input.addEventListener('keydown', (e) => {
    if (mentionKey(e)) return;
    if (e.key === 'Escape' && sendWhenUploaded) setSendWaiting(false);
    else if (e.key === 'Escape' && replyTo) setReply(null);
    // Enter sends, Shift+Enter is a new line; never while an input method is
    // composing (229: Safari's keydown that ends a composition).
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
}
