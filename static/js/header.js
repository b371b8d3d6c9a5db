// The open room's header: title, presence ("online", "last seen …", "3
// members, 2 online"), and a group's panel (members, rename, add, remove,
// leave). Also what a `chat` or `chat-removed` event changes on the page.

import { applyChatItem, removeChatItem, setPeerOnline, updateTitle } from './chatlist.js';
import { request } from './connection.js';
import { button, el, makeAvatar, setAvatar, shownName } from './dom.js';
import { peerOf, shownTitle } from './markup.js';
import { errorText, lastSeenText, membersLine, plural } from './format.js';
import { updateSeen } from './conversation.js';
import { els, page, peer, room } from './state.js';
import { showStatus } from './status.js';

export function renderPresence() {
  const line = els.presenceLine;
  if (!line) return;
  line.classList.remove('online');
  if (room.kind === 'group') {
    const all = [...room.members.values()];
    const online = all.filter((m) => m.online || m.id === page.meId).length;
    line.textContent = membersLine(all.length, online);
  } else {
    const other = peer();
    if (!other) {
      line.textContent = '';
    } else if (other.online) {
      line.textContent = 'online';
      line.classList.add('online');
    } else {
      line.textContent = lastSeenText(other.last_seen);
    }
    const avatarWrap = els.roomAvatar?.parentElement;
    if (avatarWrap?.classList.contains('avatar-wrap')) avatarWrap.dataset.online = String(Boolean(other?.online));
  }
  renderMembers();
}

function memberEntry(m, isOwner) {
  const li = el('li', 'member');
  li.setAttribute('data-testid', 'member');
  li.dataset.userId = m.id;
  li.dataset.username = m.username;
  li.dataset.online = String(Boolean(m.online));
  li.dataset.readSeq = String(m.read_seq);
  if (m.last_seen != null) li.dataset.lastSeen = String(m.last_seen);
  const me = m.id === page.meId;
  const wrap = el('span', 'avatar-wrap');
  wrap.dataset.online = String(Boolean(m.online || me));
  wrap.append(makeAvatar(shownName(m), m.avatar), el('span', 'presence-dot'));
  const info = el('span', 'member-info');
  const name = el('span', 'member-name', me ? `${shownName(m)} (you)` : shownName(m));
  const state = el('span', 'member-state', m.online || me ? 'online' : lastSeenText(m.last_seen));
  info.append(name, state);
  li.append(wrap, info);
  if (m.id === room.ownerId) li.append(el('span', 'owner-tag', 'owner'));
  // Bots are members like people; they are marked so nobody mistakes one for a person.
  if (m.bot) {
    li.dataset.bot = 'true';
    li.append(el('span', 'owner-tag bot-tag', 'bot'));
  }
  if (isOwner && !me) {
    const remove = button('btn btn-ghost btn-small remove-member', `Remove ${m.username}`, 'remove-member');
    remove.textContent = 'Remove';
    remove.dataset.userId = m.id;
    li.append(remove);
  }
  return li;
}

function renderMembers() {
  if (!els.memberList || room.kind !== 'group') return;
  const isOwner = room.ownerId === page.meId;
  const sorted = [...room.members.values()].sort(
    (a, b) => (b.id === room.ownerId) - (a.id === room.ownerId) || a.username.localeCompare(b.username),
  );
  els.memberList.replaceChildren(...sorted.map((m) => memberEntry(m, isOwner)));
  if (els.addMemberForm) els.addMemberForm.hidden = !isOwner;
  if (els.membersToggle) els.membersToggle.textContent = plural(room.members.size, 'member');
}

function applyOpenChat(chat) {
  room.kind = chat.kind || room.kind;
  room.ownerId = chat.owner_id || '';
  room.title = shownTitle(chat, page.meId);
  if (Array.isArray(chat.members)) {
    room.members = new Map(chat.members.map((m) => [m.id, { ...m, read_seq: Number(m.read_seq) || 0 }]));
  }
  if (els.roomTitle) els.roomTitle.textContent = room.title;
  if (els.roomAvatar) setAvatar(els.roomAvatar, room.title, peerOf(chat, page.meId)?.avatar);
  const renameInput = els.renameForm?.elements.namedItem('title');
  if (renameInput && document.activeElement !== renameInput) renameInput.value = chat.title;
  renderPresence();
  updateSeen();
  updateTitle();
}

/** A `Chat` from the server: its list entry, and the header if it is the open room. */
export function applyChat(chat) {
  if (!chat || typeof chat.room_id !== 'string') return;
  applyChatItem(chat);
  if (chat.room_id === page.rid) applyOpenChat(chat);
}

/**
 * The chat list and presence as the server has them now: after a
 * (re)connection, what the page shows may be stale (presence changed during
 * the outage, or the page itself came from the offline cache).
 */
export async function refreshChats() {
  try {
    const res = await fetch('/api/v1/chats', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!res.ok) return;
    const { chats } = await res.json();
    for (const chat of chats || []) applyChat(chat);
  } catch (_) {
    // Offline again: the next connection refreshes.
  }
}

/** I am no longer in a room: it leaves the list; if it is open, the page goes read-only. */
export function removeChat(rid) {
  removeChatItem(rid);
  if (rid !== page.rid) return;
  room.gone = true;
  els.body.classList.add('room-gone');
  if (els.input) els.input.disabled = true;
  els.form?.querySelector('button[type="submit"]')?.setAttribute('disabled', '');
  els.form?.querySelector('.attach-toggle')?.setAttribute('disabled', '');
  document.getElementById('group-panel')?.setAttribute('hidden', '');
  document.querySelector('.members-toggle')?.setAttribute('hidden', '');
  showStatus('You are no longer a member of this group.', true);
}

/** A `presence` event: the header if it is about a member here, and the list's dots. */
export function receivePresence(ev) {
  if (!ev || typeof ev.user_id !== 'string') return;
  const m = room.members.get(ev.user_id);
  if (m) {
    m.online = Boolean(ev.online);
    if (ev.last_seen != null) m.last_seen = ev.last_seen;
    renderPresence();
  }
  setPeerOnline(ev.user_id, ev.online);
}

/** The group panel's controls (they need the socket: without script they stay hidden). */
export function watchGroupPanel() {
  const { groupPanel, membersToggle, renameForm, addMemberForm, memberList } = els;
  if (!groupPanel || !membersToggle) return;
  membersToggle.hidden = false;
  membersToggle.addEventListener('click', () => {
    groupPanel.hidden = !groupPanel.hidden;
    membersToggle.setAttribute('aria-expanded', String(!groupPanel.hidden));
  });
  const panelStatus = groupPanel.querySelector('.panel-status');
  const say = (text) => {
    if (panelStatus) panelStatus.textContent = text;
  };

  renameForm?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const title = renameForm.elements.namedItem('title').value.trim();
    if (!title || title === room.title) return;
    const ack = await request('rename-group', { rid: page.rid, title });
    if (ack.ok && ack.chat) {
      applyChat(ack.chat);
      say('');
    } else {
      say(errorText(ack.error?.code));
    }
  });

  addMemberForm?.addEventListener('submit', async (e) => {
    e.preventDefault();
    const field = addMemberForm.elements.namedItem('email');
    const email = field.value.trim();
    if (!email) return;
    const ack = await request('add-member', { rid: page.rid, email });
    if (ack.ok && ack.chat) {
      field.value = '';
      applyChat(ack.chat);
      say('');
    } else {
      say(errorText(ack.error?.code));
    }
  });

  memberList?.addEventListener('click', async (e) => {
    const b = e.target.closest('.remove-member');
    if (!b) return;
    b.disabled = true;
    const ack = await request('remove-member', { rid: page.rid, user_id: b.dataset.userId });
    if (ack.ok) {
      room.members.delete(b.dataset.userId);
      renderPresence();
      say('');
    } else {
      b.disabled = false;
      say(errorText(ack.error?.code));
    }
  });

  const leave = groupPanel.querySelector('[data-testid="leave-group"]');
  leave?.addEventListener('click', async () => {
    if (!leave.classList.contains('confirm')) {
      leave.classList.add('confirm');
      leave.textContent = 'Leave? Click again';
      return;
    }
    const ack = await request('leave-group', { rid: page.rid });
    if (ack.ok) window.location.assign('/chat/');
    else say(errorText(ack.error?.code));
  });
}
