// The chat list: entries, last-message previews, unread badges (and an "@"
// one while unread messages mention me), presence dots, and the total unread
// in the tab title and on its icon.

import { mentions, pageTitle } from './format.js';
import { buildChatItem, setBadge, setChatItemTitle, setMentionBadge, setPreview } from './markup.js';
import { setFaviconBadge } from './notify.js';
import { els, page, room } from './state.js';

const ITEM = '[data-testid="chat-item"]';
const items = () => (els.chatList ? els.chatList.querySelectorAll(ITEM) : []);

/** The list entry of a room, or null. */
export function chatItem(rid) {
  for (const li of items()) if (li.dataset.rid === rid) return li;
  return null;
}

export const unreadOf = (li) => Number(li.dataset.unread ?? li.querySelector('.badge')?.textContent) || 0;

export function updateTitle() {
  let total = 0;
  for (const li of items()) total += unreadOf(li);
  document.title = pageTitle(total, page.rid && room.title ? room.title : '');
  setFaviconBadge(total);
}

export const mentionsOf = (li) => Number(li.dataset.mentions) || 0;

/** Sets the unread count; read up (0), the mentions are read too. */
export function setUnread(li, n) {
  setBadge(li, n);
  if (n === 0) setMentionBadge(li, 0);
  updateTitle();
}

const setPresenceDot = (li, online) => {
  li.dataset.online = String(Boolean(online));
};

/** A direct chat's dot follows its peer's presence. */
export function setPeerOnline(userId, online) {
  for (const li of items()) if (li.dataset.peerId === userId) setPresenceDot(li, online);
}

const dropEmptyNote = () => document.querySelector('.empty-chats')?.remove();

/** A message in some room: its entry goes to the top with the message as preview. */
export function updateChatItem(m, bumpUnread) {
  if (!els.chatList || !m.rid) return;
  let li = chatItem(m.rid);
  if (!li) {
    // A room we do not know yet: its `chat` event is on the way and will fill it in.
    if (m.sender_id === page.meId) return;
    li = buildChatItem(m.rid, m.kind === 'system' ? 'New group' : m.sender_username || 'New chat', m.rid === page.rid);
    dropEmptyNote();
  }
  setPreview(li, m, page.meId);
  if (bumpUnread) {
    setUnread(li, unreadOf(li) + 1);
    if (m.sender_id !== page.meId && mentions(m.message || '', page.meName)) setMentionBadge(li, mentionsOf(li) + 1);
  }
  if (els.chatList.firstElementChild !== li) els.chatList.prepend(li);
}

/** A changed message: the preview follows if it shows that message. */
export function updatePreview(m) {
  const li = chatItem(m.rid);
  const preview = li?.querySelector('.chat-preview');
  if (preview && Number(preview.dataset.seq) === m.seq) {
    delete preview.dataset.seq;
    setPreview(li, m, page.meId);
  }
}

/** A `Chat` from the server: insert or replace its entry. */
export function applyChatItem(chat) {
  let li = chatItem(chat.room_id);
  const fresh = !li;
  if (!li) li = buildChatItem(chat.room_id, chat.title, chat.room_id === page.rid);
  setChatItemTitle(li, chat, page.meId);
  if (chat.notify) li.dataset.notify = chat.notify;
  const other = chat.kind === 'direct' ? (chat.members || []).find((m) => m.id !== page.meId) : null;
  if (other) {
    li.dataset.peerId = other.id;
    setPresenceDot(li, other.online);
  }
  if (chat.last_message) setPreview(li, chat.last_message, page.meId);
  if (fresh && els.chatList) {
    dropEmptyNote();
    els.chatList.prepend(li);
  }
  const seen = chat.room_id === page.rid && !document.hidden;
  setUnread(li, seen ? 0 : Number(chat.unread) || 0);
  setMentionBadge(li, seen ? 0 : Number(chat.mentions) || 0);
}

export function removeChatItem(rid) {
  chatItem(rid)?.remove();
  updateTitle();
}
