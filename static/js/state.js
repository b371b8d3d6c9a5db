// The page: who I am and which room is open (from <body data-…>, set by
// templates/chat.html), the elements the modules work on, and the open room's
// members, owner and kind as they change live.

import { MAX_MESSAGE_CHARS, MAX_UPLOAD_BYTES } from './format.js';

const body = document.body;
const $ = (sel) => document.querySelector(sel);

export const page = Object.freeze({
  meId: body.dataset.meId || '',
  meName: body.dataset.meUsername || '',
  rid: body.dataset.rid || '',
  initialLastSeq: Number(body.dataset.lastSeq) || 0,
  // Opened at a search hit whose window does not reach the room's end: live
  // messages would leave a hole, so the page offers a jump to the latest instead.
  moreAfter: body.dataset.moreAfter === 'true',
  // The server's limit on a message (--max-message-chars), for the composer's counter.
  maxChars: Number(body.dataset.maxMessageChars) || MAX_MESSAGE_CHARS,
  // The server's limit on one attachment (--max-upload-bytes): larger files are refused before
  // uploading; 0 when the server takes none (then the page offers no way to attach one).
  maxUploadBytes: body.dataset.maxUploadBytes == null ? MAX_UPLOAD_BYTES : Number(body.dataset.maxUploadBytes) || 0,
});

const form = $('[data-testid="message-form"]');
const groupPanel = document.getElementById('group-panel');

export const els = Object.freeze({
  body,
  chatList: $('[data-testid="chat-list"]'),
  history: $('[data-testid="message-history"]'),
  scroller: document.getElementById('history-scroll'),
  form,
  input: form ? form.elements.namedItem('message') : null,
  loadOlder: $('.load-older'),
  statusLine: $('.status-line'),
  roomTitle: $('.room-title'),
  roomAvatar: $('.room-header .avatar'),
  roomSub: $('.room-sub'),
  presenceLine: $('.presence-line'),
  typingLine: $('.typing-line'),
  replyBar: $('[data-testid="reply-bar"]'),
  groupPanel,
  membersToggle: $('.members-toggle'),
  memberList: groupPanel?.querySelector('.member-list') ?? null,
  addMemberForm: groupPanel?.querySelector('[data-testid="add-member-form"]') ?? null,
  renameForm: groupPanel?.querySelector('[data-testid="rename-form"]') ?? null,
  searchForm: $('[data-testid="search-form"]'),
  searchResults: $('[data-testid="search-results"]'),
});

function memberOf(li) {
  const lastSeen = Number(li.dataset.lastSeen);
  return {
    id: li.dataset.userId,
    username: li.dataset.username || li.textContent.trim(),
    online: li.dataset.online === 'true',
    last_seen: Number.isFinite(lastSeen) && li.dataset.lastSeen !== '' ? lastSeen : null,
    read_seq: Number(li.dataset.readSeq) || 0,
    bot: li.dataset.bot === 'true',
  };
}

/** The open room; `members` maps user id to {id, username, online, last_seen, read_seq, bot}. */
export const room = {
  kind: body.dataset.kind || 'direct',
  ownerId: body.dataset.ownerId || '',
  title: els.roomTitle ? els.roomTitle.textContent : '',
  members: new Map(),
  gone: false, // removed from the group, or left it
};
document.querySelectorAll('.member-list [data-user-id]').forEach((li) => {
  const m = memberOf(li);
  room.members.set(m.id, m);
});

/** The other person of a direct room. */
export const peer = () => (room.kind === 'direct' ? [...room.members.values()].find((m) => m.id !== page.meId) : null);

/** What markup.js needs to know about the page to build messages. */
export const markupContext = Object.freeze({
  meId: page.meId,
  meName: page.meName,
  rid: page.rid,
  nameOf: (id) => room.members.get(id)?.username,
  // Who a message may mention: the members now (they change live).
  memberNames: () => [...room.members.values()].map((m) => m.username),
});
