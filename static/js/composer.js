// The message box: sending with an optimistic bubble (pending until acked,
// retried while the server is unavailable, failed with a Retry button),
// replying to a message, and my typing. Without script the form posts.

import { emitWithAck, isConnected } from './connection.js';
import { appendPending, nearBottom, regroup, resolveMessage, scrollToBottom } from './conversation.js';
import { updateChatItem } from './chatlist.js';
import { errorText, uuidFromBytes } from './format.js';
import { buildMessage, markFailed, markPending } from './markup.js';
import { els, markupContext as ctx, page, room } from './state.js';
import { stopTyping, watchTyping } from './typing.js';

// A send answered `unavailable` (the server is draining, or cannot reach its
// database) goes again by itself, with the same client_id, this many times.
const UNAVAILABLE_RETRIES = 5;
const UNAVAILABLE_PAUSE_MS = 1500;

function newClientId() {
  if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  // randomUUID needs a secure context; plain-http self-hosting still has getRandomValues.
  return uuidFromBytes(crypto.getRandomValues(new Uint8Array(16)));
}

/** Sends (or sends again) the message of bubble `li`. */
export function send(li, text, clientId, retries = UNAVAILABLE_RETRIES) {
  markPending(li);
  const payload = { rid: page.rid, message: text, client_id: clientId };
  if (li.dataset.replyTo) payload.reply_to = Number(li.dataset.replyTo);
  emitWithAck('outgoing', payload, (err, ack) => {
    if (li.dataset.seq) return; // already resolved by a broadcast or a sync
    if (err) {
      markFailed(li, errorText(isConnected() ? 'timeout' : 'offline'));
    } else if (ack && ack.ok && ack.message) {
      const placed = resolveMessage(li, ack.message);
      regroup();
      if (placed === li && nearBottom()) scrollToBottom();
      updateChatItem({ ...ack.message, rid: ack.message.rid || page.rid }, false);
    } else if (ack && ack.error && ack.error.code === 'unavailable' && retries > 0) {
      setTimeout(() => send(li, text, clientId, retries - 1), UNAVAILABLE_PAUSE_MS);
    } else {
      markFailed(li, errorText(ack && ack.error ? ack.error.code : 'invalid'));
    }
  });
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

export function watchComposer() {
  const { form, input, history } = els;
  if (input && page.rid) watchTyping(input);
  els.replyBar?.querySelector('.reply-cancel')?.addEventListener('click', () => setReply(null));
  if (!form || !input || !history) return;
  form.addEventListener('submit', (e) => {
    // Reading an older window: the plain form post sends and shows the latest messages.
    if (page.moreAfter || room.gone) return;
    e.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    stopTyping();
    const clientId = newClientId();
    const li = buildMessage(
      {
        sender_username: page.meName,
        message: text,
        timestamp: Date.now() / 1000,
        client_id: clientId,
        reply_to: replyTo ? { ...replyTo, deleted: false } : null,
      },
      true,
      ctx,
    );
    if (replyTo) li.dataset.replyTo = String(replyTo.seq);
    setReply(null);
    appendPending(li);
    input.value = '';
    input.focus();
    send(li, text, clientId);
    regroup();
    scrollToBottom();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && replyTo) setReply(null);
  });
}
