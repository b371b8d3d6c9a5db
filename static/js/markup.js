// The one place in the script that builds (and changes) the markup of a
// message and of a chat list entry. The server renders the same structure
// from templates/message.html and templates/chat_item.html: change them
// together (tests/js/markup.test.mjs compares their classes and test ids).
//
// Message:
//   li.message[data-testid=message][data-seq][data-rev] (.mine .deleted .highlight)
//     a.quote[data-testid=quote][data-reply-seq] > span.quote-sender + span.quote-text   (a reply)
//     div.bubble[tabindex=0] > span.sender + (div.attachments) + p.text + span.meta > (span.edited) + time
//     div.reactions > button.reaction[data-testid=reaction][data-emoji] > span.reaction-emoji + span.reaction-count
//   li.message.system[data-testid=message][data-kind=system][data-seq] > p.system-text > span.text + time
//
// A message's p.text holds its text read as rich text (richtext.js: links,
// Markdown, mentions), .emoji-only when it is 1–3 emoji; its li has
// .mentions-me when someone else's message mentions me. The server renders
// the plain text, and the page reads it again on load (renderText).
// div.attachments holds the message's pictures and files (attachments.js,
// templates/attachments.html); p.text under it is then the caption, and
// may be empty.
// Messages sent from this page wait with data-client-id (and no data-seq)
// until the server acknowledges them. User text only goes through text nodes.
// `ctx` is {meId, meName, rid, nameOf(userId), memberNames()} (state.js's markupContext).

import { setAttachments } from './attachments.js';
import { button, el, makeAvatar, setAvatar, setTime } from './dom.js';
import { attachmentSummary, mentions } from './format.js';
import { previewAccepts } from './merge.js';
import { isEmojiOnly, richNodes } from './richtext.js';

export const MESSAGE = '[data-testid="message"]';
export const DELETED_TEXT = 'message deleted';
/** A quote of a message that is only attachments, when the server does not say which. */
export const ATTACHMENT_TEXT = '📎 Attachment';

/** The quote of the message replied to. */
export function buildQuote(q, ctx) {
  const a = el('a', 'quote');
  a.setAttribute('data-testid', 'quote');
  a.dataset.replySeq = String(q.seq);
  a.href = `/chat/?rid=${encodeURIComponent(ctx.rid)}&at=${q.seq}`;
  a.append(el('span', 'quote-sender', q.sender_username || ''), el('span', 'quote-text'));
  fillQuote(a, q);
  return a;
}

/** A quote follows the message it quotes: its text (or its attachments), or that it was deleted. */
export function fillQuote(a, q) {
  a.querySelector('.quote-text').textContent = q.deleted
    ? DELETED_TEXT
    : q.message || attachmentSummary(q.attachments) || ATTACHMENT_TEXT;
  a.classList.toggle('deleted', Boolean(q.deleted));
}

/** Replaces a message's reaction chips. */
export function setReactions(li, reactions, ctx) {
  li.querySelector('.reactions')?.remove();
  if (!reactions || !reactions.length) return;
  const box = el('div', 'reactions');
  for (const r of reactions) {
    const chip = button('reaction', null, 'reaction');
    const mine = Array.isArray(r.user_ids) && r.user_ids.includes(ctx.meId);
    chip.classList.toggle('mine', mine);
    chip.setAttribute('aria-pressed', String(mine));
    chip.dataset.emoji = r.emoji;
    const names = (r.user_ids || []).map((id) => ctx.nameOf(id)).filter(Boolean);
    chip.title = names.length ? names.join(', ') : `${r.count}`;
    chip.append(el('span', 'reaction-emoji', r.emoji), el('span', 'reaction-count', String(r.count)));
    box.append(chip);
  }
  li.querySelector('.bubble')?.after(box);
}

function buildSystem(m) {
  const li = el('li', 'message system');
  li.setAttribute('data-testid', 'message');
  li.dataset.kind = 'system';
  li.dataset.seq = String(m.seq);
  const p = el('p', 'system-text');
  const time = el('time');
  p.append(el('span', 'text', m.message || ''), time);
  setTime(time, m.timestamp);
  li.append(p);
  return li;
}

/** A message from the server, or one being sent (no seq, a client_id). */
export function buildMessage(m, mine, ctx) {
  if (m.kind === 'system') return buildSystem(m);
  const li = el('li', mine ? 'message mine' : 'message');
  li.setAttribute('data-testid', 'message');
  if (m.seq != null) li.dataset.seq = String(m.seq);
  if (m.client_id) li.dataset.clientId = m.client_id;
  li.dataset.rev = String(m.rev || 0);
  if (m.sender_id != null) li.dataset.senderId = String(m.sender_id);

  const bubble = el('div', 'bubble');
  bubble.tabIndex = 0;
  const time = el('time');
  const meta = el('span', 'meta');
  meta.append(time);
  setTime(time, m.timestamp);
  bubble.append(el('span', 'sender', m.sender_username || ''), el('p', 'text'), meta);
  if (m.reply_to) li.append(buildQuote(m.reply_to, ctx));
  li.append(bubble);
  applyContent(li, m, ctx);
  return li;
}

/** A message's text, read as rich text, into its p.text; and what it says about the message. */
function setText(li, message, ctx) {
  const text = li.querySelector('.text');
  text.replaceChildren(...richNodes(message, ctx.memberNames(), ctx.meName));
  text.classList.toggle('emoji-only', isEmojiOnly(message));
  li.classList.toggle('mentions-me', !li.classList.contains('mine') && mentions(message, ctx.meName));
}

/** A message the server rendered (its text as plain text): read as rich text. */
export function renderText(li, ctx) {
  if (!li.classList.contains('system') && !li.classList.contains('deleted')) setText(li, textOf(li), ctx);
}

/** Text, attachments, "edited", "deleted" and reactions: what an update can change. */
export function applyContent(li, m, ctx) {
  const text = li.querySelector('.text');
  if (!text) return;
  if (m.deleted) {
    text.textContent = DELETED_TEXT;
    text.classList.remove('emoji-only');
    li.classList.remove('mentions-me');
    li.classList.add('deleted');
    li.querySelector('.quote')?.remove();
    li.querySelector('.edited')?.remove();
    setAttachments(li, []);
  } else if (typeof m.message === 'string') {
    setText(li, m.message, ctx);
    li.classList.remove('deleted');
    if (m.edited_at && !li.querySelector('.edited')) {
      const mark = el('span', 'edited', 'edited');
      mark.setAttribute('data-testid', 'edited');
      li.querySelector('.meta')?.prepend(mark);
    }
    // Every message the server sends has its attachments; a bubble being sent has them from the outbox.
    if (Array.isArray(m.attachments)) setAttachments(li, m.attachments);
  }
  setReactions(li, m.deleted ? [] : m.reactions, ctx);
  if (m.rev != null) li.dataset.rev = String(m.rev);
}

// ---------- reading a message back ----------

export const textOf = (li) => li.querySelector('.text')?.textContent || '';
export const senderOf = (li) => li.querySelector('.sender')?.textContent;
export const timeElOf = (li) => li.querySelector('time');
export const isQuoting = (li) => Boolean(li.querySelector('.quote'));

// ---------- sending states ----------

export function markPending(li) {
  li.dataset.pending = 'true';
  delete li.dataset.failed;
  delete li.dataset.waiting;
  li.setAttribute('aria-busy', 'true');
  li.querySelector('.failure')?.remove();
  const meta = li.querySelector('.meta');
  if (meta && !meta.querySelector('.state')) {
    const st = el('span', 'state');
    st.setAttribute('role', 'img');
    st.setAttribute('aria-label', 'Sending');
    st.title = 'Sending…';
    meta.append(st);
  }
}

/** A note under an unsent message, with its buttons (Retry: class "retry", Cancel: "cancel-send"). */
function sendNote(li, reason, retryable) {
  li.querySelector('.failure')?.remove();
  const box = el('div', 'failure');
  const msg = el('span', 'error', reason);
  msg.setAttribute('role', 'alert');
  box.append(msg);
  if (retryable) {
    const retry = button('retry');
    retry.textContent = 'Retry';
    box.append(retry);
  }
  const cancel = button('cancel-send', null, 'cancel-send');
  cancel.textContent = 'Cancel';
  box.append(cancel);
  li.append(box);
}

/** A send refused for good: the reason, Retry and Cancel. */
export function markFailed(li, reason) {
  delete li.dataset.pending;
  delete li.dataset.waiting;
  li.dataset.failed = 'true';
  li.removeAttribute('aria-busy');
  li.querySelector('.state')?.remove();
  sendNote(li, reason, true);
}

/** A message kept in the outbox until the server can take it; it goes by itself. */
export function markWaiting(li, reason) {
  markPending(li);
  li.dataset.waiting = 'true';
  sendNote(li, reason || 'Waiting for the connection; it will be sent by itself.', false);
}

/** A sent message the server acknowledged as `m`: confirmed, with its seq, text and time. */
export function confirmSent(li, m, ctx) {
  li.dataset.seq = String(m.seq);
  delete li.dataset.pending;
  delete li.dataset.failed;
  delete li.dataset.waiting;
  li.removeAttribute('aria-busy');
  li.querySelector('.failure')?.remove();
  li.querySelector('.state')?.remove();
  applyContent(li, m, ctx);
  const time = li.querySelector('time');
  if (time && m.timestamp != null) setTime(time, m.timestamp);
}

/** "Seen", under my last message of a direct room. */
export function seenMark() {
  const mark = el('p', 'seen', 'Seen');
  mark.setAttribute('data-testid', 'seen');
  return mark;
}

// ---------- message tools: the actions toolbar and the edit form ----------

export const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🎉'];

/** The toolbar shown on one message at a time; its parts, to show, hide and listen to. */
export function buildActions() {
  const bar = el('div', 'message-actions');
  bar.setAttribute('data-testid', 'message-actions');
  bar.setAttribute('role', 'toolbar');
  bar.setAttribute('aria-label', 'Message actions');
  const tool = (cls, label, testid, glyph) => {
    const b = button(cls, label, testid);
    b.textContent = glyph;
    return b;
  };
  const react = tool('action', 'React', 'action-react', '☺');
  const reply = tool('action', 'Reply', 'action-reply', '↩');
  const edit = tool('action', 'Edit', 'action-edit', '✎');
  const del = tool('action action-danger', 'Delete', 'action-delete', '🗑');
  const picker = el('div', 'emoji-picker');
  picker.setAttribute('data-testid', 'emoji-picker');
  picker.hidden = true;
  for (const emoji of EMOJI) {
    const b = button('emoji', `React ${emoji}`);
    b.dataset.emoji = emoji;
    b.textContent = emoji;
    picker.append(b);
  }
  // Any other emoji: the whole grid (picker.js).
  const more = button('emoji-more', 'More emoji', 'emoji-more');
  more.textContent = '+';
  more.setAttribute('aria-haspopup', 'dialog');
  more.setAttribute('aria-expanded', 'false');
  picker.append(more);
  bar.append(react, reply, edit, del, picker);
  return { bar, react, reply, edit, del, picker, more };
}

/** The delete button asks once more before it deletes. */
export function setDeleteConfirm(del, confirm) {
  del.classList.toggle('confirm', confirm);
  if (confirm) {
    del.textContent = 'Delete?';
    del.setAttribute('aria-label', 'Confirm delete');
  } else {
    del.textContent = '🗑';
    del.setAttribute('aria-label', 'Delete');
    del.title = 'Delete';
  }
}

/** The inline edit form, holding `value`. */
export function buildEditForm(value) {
  const form = el('form', 'edit-form');
  form.setAttribute('data-testid', 'edit-form');
  const area = el('textarea', 'edit-input');
  area.name = 'message';
  area.rows = 2;
  area.value = value;
  area.setAttribute('aria-label', 'Edit message');
  const save = el('button', 'btn btn-primary btn-small', 'Save');
  save.type = 'submit';
  const cancel = button('btn btn-ghost btn-small edit-cancel');
  cancel.textContent = 'Cancel';
  const row = el('div', 'edit-buttons');
  row.append(cancel, save);
  form.append(area, row);
  return { form, area, save, cancel };
}

// ---------- chat list entries (templates/chat_item.html) ----------

/** A chat list entry for a room the page did not render. */
export function buildChatItem(rid, title, active) {
  const li = el('li', 'chat-item');
  li.setAttribute('data-testid', 'chat-item');
  li.dataset.rid = rid;
  const a = el('a', 'chat-link');
  a.href = `/chat/?rid=${encodeURIComponent(rid)}`;
  if (active) {
    li.classList.add('active');
    a.setAttribute('aria-current', 'page');
  }
  const avatarWrap = el('span', 'avatar-wrap');
  avatarWrap.append(makeAvatar(title), el('span', 'presence-dot'));
  const main = el('span', 'chat-body');
  const row1 = el('span', 'chat-row');
  row1.append(el('span', 'chat-title', title), el('time', 'chat-time'));
  const row2 = el('span', 'chat-row');
  const preview = el('span', 'chat-preview');
  preview.append(el('span', 'preview-text preview-empty', 'No messages yet'));
  row2.append(preview, el('span', 'chat-typing', 'typing…'));
  main.append(row1, row2);
  a.append(avatarWrap, main);
  li.append(a);
  return li;
}

/** An entry's kind, title and avatar, from a `Chat` the server sent. */
/** A direct chat's other person, if any (the one who is not `meId`). */
export const peerOf = (chat, meId) =>
  chat.kind === 'direct' ? (chat.members || []).find((m) => m.id !== meId) || null : null;

/** What a chat is called on the page: a direct chat by the other person's display name. */
export const shownTitle = (chat, meId) => peerOf(chat, meId)?.display_name || chat.title;

export function setChatItemTitle(li, chat, meId) {
  li.dataset.kind = chat.kind;
  const title = shownTitle(chat, meId);
  li.querySelector('.chat-title').textContent = title;
  const avatar = li.querySelector('.avatar');
  if (avatar) {
    setAvatar(avatar, title, peerOf(chat, meId)?.avatar);
    avatar.classList.toggle('avatar-group', chat.kind === 'group');
  }
}

/** An entry's last message line and time (an older message than the one shown changes nothing). */
export function setPreview(li, m, meId) {
  const preview = li.querySelector('.chat-preview');
  if (!preview) return;
  if (!previewAccepts(m.seq, preview.dataset.seq)) return;
  if (m.seq != null) preview.dataset.seq = String(m.seq);
  preview.replaceChildren();
  if (m.sender_id === meId && m.kind !== 'system') preview.append(el('span', 'preview-prefix', 'You: '));
  // A message that is only attachments: "📎 name" (or "📎 3 files").
  const text = el('span', 'preview-text', m.deleted ? DELETED_TEXT : m.message || attachmentSummary(m.attachments));
  if (m.deleted || m.kind === 'system') text.classList.add('preview-empty');
  preview.append(text);
  const time = li.querySelector('.chat-time');
  if (time && m.timestamp != null) setTime(time, m.timestamp);
}

/** An entry's unread badge (none at 0). */
/**
 * A chat list entry's "@" badge: `n` unread messages mention me (0: none).
 * It sits before the unread count, as templates/chat_item.html has it.
 */
export function setMentionBadge(li, n) {
  li.dataset.mentions = String(n);
  let badge = li.querySelector('.mention-badge');
  if (n > 0) {
    if (!badge) {
      badge = el('span', 'mention-badge', '@');
      badge.setAttribute('data-testid', 'mention-badge');
      badge.title = 'You were mentioned';
      const row = li.querySelector('.chat-preview')?.parentElement;
      row?.insertBefore(badge, row.querySelector('.badge'));
    }
    badge.setAttribute('aria-label', `${n} unread mentioning you`);
  } else {
    badge?.remove();
  }
}

export function setBadge(li, n) {
  li.dataset.unread = String(n);
  let badge = li.querySelector('.badge');
  if (n > 0) {
    if (!badge) {
      badge = el('span', 'badge');
      li.querySelector('.chat-preview')?.parentElement.append(badge);
    }
    badge.textContent = String(n);
    badge.setAttribute('aria-label', `${n} unread`);
  } else {
    badge?.remove();
  }
  li.classList.toggle('has-unread', n > 0);
}
