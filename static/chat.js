// Natter chat page: live messages over Socket.IO, optimistic sending, local times,
// groups, presence, typing, read receipts, edits, replies, reactions and search.
// No framework, no build step. User text only ever goes through textContent.
'use strict';

(() => {
  const body = document.body;
  const ME_ID = body.dataset.meId || '';
  const ME_NAME = body.dataset.meUsername || '';
  const RID = body.dataset.rid || '';
  const INITIAL_LAST_SEQ = Number(body.dataset.lastSeq) || 0;
  // Opened at a search hit whose window does not reach the room's end: live
  // messages would leave a hole, so the page offers a jump to the latest instead.
  const MORE_AFTER = body.dataset.moreAfter === 'true';

  const ACK_TIMEOUT_MS = 10000;
  const SYNC_PAGE = 200; // the server's max page; a full page means there may be more
  const OLDER_PAGE = 50;
  const NEAR_BOTTOM_PX = 120;
  const GROUP_GAP_S = 5 * 60;
  const TYPING_RENEW_MS = 2000; // the server passes one `true` per 2 s on
  const TYPING_SHOWN_MS = 6000; // a lost `false` expires by itself
  const LONG_PRESS_MS = 500;
  const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🎉'];

  const chatList = document.querySelector('[data-testid="chat-list"]');
  const history = document.querySelector('[data-testid="message-history"]');
  const scroller = document.getElementById('history-scroll');
  const form = document.querySelector('[data-testid="message-form"]');
  const input = form ? form.elements.namedItem('message') : null;
  const loadOlderBtn = document.querySelector('.load-older');
  const statusLine = document.querySelector('.status-line');
  const roomTitleEl = document.querySelector('.room-title');
  const roomAvatar = document.querySelector('.room-header .avatar');
  const roomSub = document.querySelector('.room-sub');
  const presenceLine = document.querySelector('.presence-line');
  const typingLine = document.querySelector('.typing-line');
  const replyBar = document.querySelector('[data-testid="reply-bar"]');

  const ERROR_TEXT = {
    not_member: 'You are not a member of this chat.',
    no_such_room: 'This chat does not exist any more.',
    too_long: 'Too long: messages are limited to 4000 characters.',
    empty: 'Empty messages cannot be sent.',
    rate_limited: 'You are sending too fast. Wait a moment, then retry.',
    invalid: 'The server refused this.',
    timeout: 'No answer from the server. Check your connection.',
    offline: 'Not connected. It will be sent when you retry.',
    unavailable: 'The server is unavailable (restarting, or its database is). Retry in a moment.',
    not_group: 'This is not a group.',
    not_owner: 'Only the group owner can do that.',
    already_member: 'Already a member of this group.',
    no_such_user: 'Nobody has registered with that email yet.',
    no_such_message: 'That message does not exist any more.',
    not_sender: 'You can only change your own messages.',
    deleted: 'That message was deleted.',
  };
  const errorText = (code) => ERROR_TEXT[code] || `Not done (${code || 'unknown error'}).`;

  // ---------- time ----------

  const fmtTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
  const fmtDay = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const fmtDayYear = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
  const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
  const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });

  const sameDay = (a, b) =>
    a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

  function formatShort(date) {
    const now = new Date();
    if (sameDay(date, now)) return fmtTime.format(date);
    const day = date.getFullYear() === now.getFullYear() ? fmtDay : fmtDayYear;
    return `${day.format(date)}, ${fmtTime.format(date)}`;
  }

  function dayLabel(date) {
    const now = new Date();
    if (sameDay(date, now)) return 'Today';
    const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
    if (sameDay(date, yesterday)) return 'Yesterday';
    return date.getFullYear() === now.getFullYear() ? fmtWeekday.format(date) : fmtDayYear.format(date);
  }

  function lastSeenText(unixSeconds) {
    if (!(unixSeconds > 0)) return 'offline';
    const d = new Date(unixSeconds * 1000);
    const now = new Date();
    const mins = Math.floor((now - d) / 60000);
    if (mins < 1) return 'last seen just now';
    if (mins < 60) return `last seen ${mins} min ago`;
    if (sameDay(d, now)) return `last seen today at ${fmtTime.format(d)}`;
    const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
    if (sameDay(d, yesterday)) return `last seen yesterday at ${fmtTime.format(d)}`;
    return `last seen ${(d.getFullYear() === now.getFullYear() ? fmtDay : fmtDayYear).format(d)}`;
  }

  function timeOf(el) {
    const ts = Number(el.dataset.ts);
    if (el.dataset.ts && Number.isFinite(ts)) return new Date(ts * 1000);
    const iso = el.getAttribute('datetime');
    if (!iso) return null;
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function renderTime(el) {
    const d = timeOf(el);
    if (!d) return;
    el.textContent = formatShort(d);
    el.title = fmtFull.format(d);
  }

  function setTime(el, unixSeconds) {
    const d = new Date(unixSeconds * 1000);
    if (Number.isNaN(d.getTime())) return;
    el.dataset.ts = String(unixSeconds);
    el.setAttribute('datetime', d.toISOString());
    renderTime(el);
  }

  const renderAllTimes = () => document.querySelectorAll('time[data-ts], time[datetime]').forEach(renderTime);

  // ---------- small DOM helpers ----------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text != null) e.textContent = text;
    return e;
  }

  function button(className, label, testid) {
    const b = el('button', className);
    b.type = 'button';
    if (label) b.setAttribute('aria-label', label);
    if (label) b.title = label;
    if (testid) b.setAttribute('data-testid', testid);
    return b;
  }

  // ---------- avatars ----------

  // A stable hue per name, so a contact keeps its colour everywhere.
  function paintAvatar(avatar) {
    const name = avatar.dataset.name || avatar.textContent || '';
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    avatar.style.setProperty('--hue', String(h % 360));
  }

  function setAvatar(avatar, name) {
    avatar.dataset.name = name;
    avatar.textContent = Array.from(name)[0] || '?';
    paintAvatar(avatar);
  }

  function makeAvatar(name) {
    const span = el('span', 'avatar');
    span.setAttribute('aria-hidden', 'true');
    setAvatar(span, name);
    return span;
  }

  // ---------- the open room: members, owner, kind ----------

  const room = {
    kind: body.dataset.kind || 'direct',
    ownerId: body.dataset.ownerId || '',
    title: roomTitleEl ? roomTitleEl.textContent : '',
    members: new Map(),
    gone: false, // removed from the group, or left it
  };

  function memberOf(li) {
    const lastSeen = Number(li.dataset.lastSeen);
    return {
      id: li.dataset.userId,
      username: li.dataset.username || li.textContent.trim(),
      online: li.dataset.online === 'true',
      last_seen: Number.isFinite(lastSeen) && li.dataset.lastSeen !== '' ? lastSeen : null,
      read_seq: Number(li.dataset.readSeq) || 0,
    };
  }
  document.querySelectorAll('.member-list [data-user-id]').forEach((li) => {
    const m = memberOf(li);
    room.members.set(m.id, m);
  });

  const peer = () => (room.kind === 'direct' ? [...room.members.values()].find((m) => m.id !== ME_ID) : null);

  // ---------- message DOM (mirrors templates/chat.html) ----------

  function buildQuote(q) {
    const a = el('a', 'quote');
    a.setAttribute('data-testid', 'quote');
    a.dataset.replySeq = String(q.seq);
    a.href = `/chat/?rid=${encodeURIComponent(RID)}&at=${q.seq}`;
    a.append(el('span', 'quote-sender', q.sender_username || ''), el('span', 'quote-text'));
    fillQuote(a, q);
    return a;
  }

  function fillQuote(a, q) {
    const text = a.querySelector('.quote-text');
    text.textContent = q.deleted ? 'message deleted' : q.message || '';
    a.classList.toggle('deleted', Boolean(q.deleted));
  }

  function buildReactions(li, reactions) {
    li.querySelector('.reactions')?.remove();
    if (!reactions || !reactions.length) return;
    const box = el('div', 'reactions');
    for (const r of reactions) {
      const chip = button('reaction', null, 'reaction');
      const mine = Array.isArray(r.user_ids) && r.user_ids.includes(ME_ID);
      chip.classList.toggle('mine', mine);
      chip.setAttribute('aria-pressed', String(mine));
      chip.dataset.emoji = r.emoji;
      const names = (r.user_ids || []).map((id) => room.members.get(id)?.username).filter(Boolean);
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

  function buildMessage(m, mine) {
    if (m.kind === 'system') return buildSystem(m);
    const li = el('li', mine ? 'message mine' : 'message');
    li.setAttribute('data-testid', 'message');
    if (m.seq != null) li.dataset.seq = String(m.seq);
    if (m.client_id) li.dataset.clientId = m.client_id;
    li.dataset.rev = String(m.rev || 0);

    const bubble = el('div', 'bubble');
    bubble.tabIndex = 0;
    const time = el('time');
    const meta = el('span', 'meta');
    meta.append(time);
    setTime(time, m.timestamp);
    bubble.append(el('span', 'sender', m.sender_username || ''), el('p', 'text'), meta);
    if (m.reply_to) li.append(buildQuote(m.reply_to));
    li.append(bubble);
    applyContent(li, m);
    return li;
  }

  // Text, "edited", "deleted" and reactions: what an update can change.
  function applyContent(li, m) {
    const text = li.querySelector('.text');
    if (!text) return;
    if (m.deleted) {
      text.textContent = 'message deleted';
      li.classList.add('deleted');
      li.querySelector('.quote')?.remove();
      li.querySelector('.edited')?.remove();
    } else if (typeof m.message === 'string') {
      text.textContent = m.message;
      li.classList.remove('deleted');
      if (m.edited_at && !li.querySelector('.edited')) {
        const mark = el('span', 'edited', 'edited');
        mark.setAttribute('data-testid', 'edited');
        li.querySelector('.meta')?.prepend(mark);
      }
    }
    buildReactions(li, m.deleted ? [] : m.reactions);
    if (m.rev != null) li.dataset.rev = String(m.rev);
  }

  const seqOf = (e) => (e.dataset.seq ? Number(e.dataset.seq) : NaN);
  const confirmedEls = () => (history ? history.querySelectorAll('[data-testid="message"][data-seq]') : []);
  const findBySeq = (seq) => history && history.querySelector(`[data-testid="message"][data-seq="${Number(seq)}"]`);
  const findByClientId = (cid) =>
    Array.from(history.querySelectorAll('[data-testid="message"][data-client-id]:not([data-seq])')).find(
      (e) => e.dataset.clientId === cid,
    );

  function highestSeq() {
    const els = confirmedEls();
    const last = els.length ? seqOf(els[els.length - 1]) : 0;
    return Math.max(MORE_AFTER ? 0 : INITIAL_LAST_SEQ, last || 0);
  }

  function lowestSeq() {
    const first = history && history.querySelector('[data-testid="message"][data-seq]');
    return first ? seqOf(first) : 0;
  }

  // The room revision this page has caught up to: every change it shows is at or below it.
  let knownRev = 0;
  let syncing = false; // a sync (maybe several pages) is under way
  let syncAgain = false; // and another was asked for meanwhile
  confirmedEls().forEach((e) => {
    knownRev = Math.max(knownRev, Number(e.dataset.rev) || 0);
  });

  // Confirmed messages stay sorted by seq; pending/failed ones stay below them.
  function place(li) {
    const seq = seqOf(li);
    if (Number.isNaN(seq)) {
      history.append(li);
      return;
    }
    const els = Array.from(confirmedEls()).filter((x) => x !== li);
    let i = els.length;
    while (i > 0 && seqOf(els[i - 1]) > seq) i -= 1;
    const before = i < els.length ? els[i] : history.querySelector('[data-testid="message"]:not([data-seq])');
    history.insertBefore(li, before);
  }

  // Sender names and day labels only where they start a run, like most messengers.
  function regroup() {
    if (!history) return;
    let prev = null;
    for (const li of history.querySelectorAll('[data-testid="message"]')) {
      const t = li.querySelector('time');
      const d = t ? timeOf(t) : null;
      const pd = prev ? timeOf(prev.querySelector('time')) : null;
      const sender = li.querySelector('.sender')?.textContent;
      const prevSender = prev?.querySelector('.sender')?.textContent;
      const newDay = !pd || !d || !sameDay(d, pd);
      if (d && newDay) li.dataset.day = dayLabel(d);
      else delete li.dataset.day;
      const cont =
        !newDay && prev && sender != null && sender === prevSender && !li.querySelector('.quote') && d && pd &&
        d - pd < GROUP_GAP_S * 1000;
      li.classList.toggle('cont', Boolean(cont));
      prev = li;
    }
    if (loadOlderBtn) loadOlderBtn.hidden = !(lowestSeq() > 1);
    updateSeen();
  }

  // ---------- "Seen" under my last message (direct rooms) ----------

  function updateSeen() {
    if (!history) return;
    const other = peer();
    const mineEls = history.querySelectorAll('[data-testid="message"].mine[data-seq]:not(.deleted)');
    const last = mineEls.length ? mineEls[mineEls.length - 1] : null;
    const seen = last && other && other.read_seq >= seqOf(last) && !history.querySelector('.mine:not([data-seq])');
    const current = history.querySelector('[data-testid="seen"]');
    if (seen && current && current.parentElement === last) return;
    current?.remove();
    if (!seen) return;
    const mark = el('p', 'seen', 'Seen');
    mark.setAttribute('data-testid', 'seen');
    last.append(mark);
  }

  // ---------- scrolling ----------

  const nearBottom = () => !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  const scrollToBottom = () => {
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    if (jumpBtn) jumpBtn.hidden = true;
  };

  // "New messages" pill for when something arrives while the reader is scrolled up
  // (or reads an older window, when it leads to the latest messages instead).
  let jumpBtn = null;
  function showJump() {
    if (!scroller) return;
    if (!jumpBtn) {
      jumpBtn = button('jump-latest', null, 'jump-latest');
      jumpBtn.textContent = MORE_AFTER ? 'Latest messages ↓' : 'New messages ↓';
      jumpBtn.addEventListener('click', () => {
        if (MORE_AFTER) window.location.assign(`/chat/?rid=${encodeURIComponent(RID)}`);
        else scrollToBottom();
      });
      scroller.after(jumpBtn);
    }
    jumpBtn.hidden = false;
  }

  function flash(li) {
    li.classList.remove('flash');
    void li.offsetWidth; // restart the animation
    li.classList.add('flash');
  }

  // ---------- chat list ----------

  function chatItem(rid) {
    if (!chatList) return null;
    for (const li of chatList.querySelectorAll('[data-testid="chat-item"]')) {
      if (li.dataset.rid === rid) return li;
    }
    return null;
  }

  function buildChatItem(rid, title) {
    const li = el('li', 'chat-item');
    li.setAttribute('data-testid', 'chat-item');
    li.dataset.rid = rid;
    const a = el('a', 'chat-link');
    a.href = `/chat/?rid=${encodeURIComponent(rid)}`;
    if (rid === RID) {
      li.classList.add('active');
      a.setAttribute('aria-current', 'page');
    }
    const avatarWrap = el('span', 'avatar-wrap');
    avatarWrap.append(makeAvatar(title), el('span', 'presence-dot'));
    const main = el('span', 'chat-body');
    const row1 = el('span', 'chat-row');
    const time = el('time', 'chat-time');
    row1.append(el('span', 'chat-title', title), time);
    const row2 = el('span', 'chat-row');
    const preview = el('span', 'chat-preview');
    const empty = el('span', 'preview-text preview-empty', 'No messages yet');
    preview.append(empty);
    row2.append(preview, el('span', 'chat-typing', 'typing…'));
    main.append(row1, row2);
    a.append(avatarWrap, main);
    li.append(a);
    return li;
  }

  function setPreview(li, m) {
    const preview = li.querySelector('.chat-preview');
    if (!preview) return;
    const shown = Number(preview.dataset.seq) || 0;
    if (m.seq != null && m.seq < shown) return;
    if (m.seq != null) preview.dataset.seq = String(m.seq);
    preview.replaceChildren();
    if (m.sender_id === ME_ID && m.kind !== 'system') preview.append(el('span', 'preview-prefix', 'You: '));
    const text = el('span', 'preview-text', m.deleted ? 'message deleted' : m.message);
    if (m.deleted || m.kind === 'system') text.classList.add('preview-empty');
    preview.append(text);
    const time = li.querySelector('.chat-time');
    if (time && m.timestamp != null) setTime(time, m.timestamp);
  }

  function setUnread(li, n) {
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
    updateTitle();
  }

  const unreadOf = (li) => Number(li.dataset.unread ?? li.querySelector('.badge')?.textContent) || 0;

  function setPresenceDot(li, online) {
    li.dataset.online = String(Boolean(online));
  }

  function updateChatItem(m, bumpUnread) {
    if (!chatList || !m.rid) return;
    let li = chatItem(m.rid);
    if (!li) {
      // A room we do not know yet: its `chat` event is on the way and will fill it in.
      if (m.sender_id === ME_ID) return;
      li = buildChatItem(m.rid, m.kind === 'system' ? 'New group' : m.sender_username || 'New chat');
      document.querySelector('.empty-chats')?.remove();
    }
    setPreview(li, m);
    if (bumpUnread) setUnread(li, unreadOf(li) + 1);
    setTyping(m.rid, m.sender_id, null, false);
    if (chatList.firstElementChild !== li) chatList.prepend(li);
  }

  // A `Chat` from the server: insert or replace its list entry, and the header if it is open.
  function applyChat(chat) {
    if (!chat || typeof chat.room_id !== 'string') return;
    let li = chatItem(chat.room_id);
    const fresh = !li;
    if (!li) li = buildChatItem(chat.room_id, chat.title);
    li.dataset.kind = chat.kind;
    li.querySelector('.chat-title').textContent = chat.title;
    const avatar = li.querySelector('.avatar');
    if (avatar) {
      setAvatar(avatar, chat.title);
      avatar.classList.toggle('avatar-group', chat.kind === 'group');
    }
    const other = chat.kind === 'direct' ? (chat.members || []).find((m) => m.id !== ME_ID) : null;
    if (other) {
      li.dataset.peerId = other.id;
      setPresenceDot(li, other.online);
    }
    if (chat.last_message) setPreview(li, chat.last_message);
    if (fresh && chatList) {
      document.querySelector('.empty-chats')?.remove();
      chatList.prepend(li);
    }
    setUnread(li, chat.room_id === RID && !document.hidden ? 0 : Number(chat.unread) || 0);
    if (chat.room_id === RID) applyOpenChat(chat);
  }

  function removeChat(rid) {
    chatItem(rid)?.remove();
    updateTitle();
    if (rid !== RID) return;
    room.gone = true;
    body.classList.add('room-gone');
    if (input) input.disabled = true;
    form?.querySelector('button[type="submit"]')?.setAttribute('disabled', '');
    document.getElementById('group-panel')?.setAttribute('hidden', '');
    document.querySelector('.members-toggle')?.setAttribute('hidden', '');
    showStatus('You are no longer a member of this group.', true);
  }

  // ---------- the tab title: total unread ----------

  function updateTitle() {
    let total = 0;
    if (chatList) for (const li of chatList.querySelectorAll('[data-testid="chat-item"]')) total += unreadOf(li);
    const base = RID && room.title ? `${room.title} · Natter` : 'Natter';
    document.title = total > 0 ? `(${total}) ${base}` : base;
  }

  // ---------- header: title, presence, typing, group panel ----------

  function renderPresence() {
    if (!presenceLine) return;
    presenceLine.classList.remove('online');
    if (room.kind === 'group') {
      const all = [...room.members.values()];
      const online = all.filter((m) => m.online || m.id === ME_ID).length;
      presenceLine.textContent = `${all.length} member${all.length === 1 ? '' : 's'}${online ? `, ${online} online` : ''}`;
    } else {
      const other = peer();
      if (!other) {
        presenceLine.textContent = '';
      } else if (other.online) {
        presenceLine.textContent = 'online';
        presenceLine.classList.add('online');
      } else {
        presenceLine.textContent = lastSeenText(other.last_seen);
      }
      const avatarWrap = roomAvatar?.parentElement;
      if (avatarWrap?.classList.contains('avatar-wrap')) avatarWrap.dataset.online = String(Boolean(other?.online));
    }
    renderMembers();
  }

  const groupPanel = document.getElementById('group-panel');
  const membersToggle = document.querySelector('.members-toggle');
  const memberList = groupPanel?.querySelector('.member-list');
  const addMemberForm = groupPanel?.querySelector('[data-testid="add-member-form"]');
  const renameForm = groupPanel?.querySelector('[data-testid="rename-form"]');

  function renderMembers() {
    if (!memberList || room.kind !== 'group') return;
    const isOwner = room.ownerId === ME_ID;
    const sorted = [...room.members.values()].sort(
      (a, b) => (b.id === room.ownerId) - (a.id === room.ownerId) || a.username.localeCompare(b.username),
    );
    memberList.replaceChildren(
      ...sorted.map((m) => {
        const li = el('li', 'member');
        li.setAttribute('data-testid', 'member');
        li.dataset.userId = m.id;
        li.dataset.username = m.username;
        li.dataset.online = String(Boolean(m.online));
        li.dataset.readSeq = String(m.read_seq);
        if (m.last_seen != null) li.dataset.lastSeen = String(m.last_seen);
        const wrap = el('span', 'avatar-wrap');
        wrap.dataset.online = String(Boolean(m.online || m.id === ME_ID));
        wrap.append(makeAvatar(m.username), el('span', 'presence-dot'));
        const info = el('span', 'member-info');
        const name = el('span', 'member-name', m.id === ME_ID ? `${m.username} (you)` : m.username);
        const state = el('span', 'member-state', m.online || m.id === ME_ID ? 'online' : lastSeenText(m.last_seen));
        info.append(name, state);
        li.append(wrap, info);
        if (m.id === room.ownerId) li.append(el('span', 'owner-tag', 'owner'));
        if (isOwner && m.id !== ME_ID) {
          const remove = button('btn btn-ghost btn-small remove-member', `Remove ${m.username}`, 'remove-member');
          remove.textContent = 'Remove';
          remove.dataset.userId = m.id;
          li.append(remove);
        }
        return li;
      }),
    );
    if (addMemberForm) addMemberForm.hidden = !isOwner;
    if (membersToggle) {
      const n = room.members.size;
      membersToggle.textContent = `${n} member${n === 1 ? '' : 's'}`;
    }
  }

  function applyOpenChat(chat) {
    room.kind = chat.kind || room.kind;
    room.ownerId = chat.owner_id || '';
    room.title = chat.title;
    if (Array.isArray(chat.members)) {
      room.members = new Map(chat.members.map((m) => [m.id, { ...m, read_seq: Number(m.read_seq) || 0 }]));
    }
    if (roomTitleEl) roomTitleEl.textContent = chat.title;
    if (roomAvatar) setAvatar(roomAvatar, chat.title);
    const renameInput = renameForm?.elements.namedItem('title');
    if (renameInput && document.activeElement !== renameInput) renameInput.value = chat.title;
    renderPresence();
    updateSeen();
    updateTitle();
  }

  // Typing: who is typing where, each entry expiring on its own.
  const typers = new Map(); // `${rid} ${user_id}` -> {rid, name, timer}

  function setTyping(rid, userId, name, typing) {
    if (!userId || userId === ME_ID) return;
    const key = `${rid} ${userId}`;
    const prev = typers.get(key);
    if (prev) clearTimeout(prev.timer);
    if (typing) {
      const timer = setTimeout(() => setTyping(rid, userId, null, false), TYPING_SHOWN_MS);
      typers.set(key, { rid, name: name || prev?.name || '', timer });
    } else if (prev) {
      typers.delete(key);
    } else {
      return;
    }
    renderTyping(rid);
  }

  function renderTyping(rid) {
    const names = [...typers.values()].filter((t) => t.rid === rid).map((t) => t.name);
    chatItem(rid)?.classList.toggle('is-typing', names.length > 0);
    if (rid !== RID || !typingLine) return;
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    typingLine.textContent = text;
    roomSub?.classList.toggle('is-typing', names.length > 0);
  }

  // ---------- connection state ----------

  const CONN_LABEL = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };
  function setConn(state) {
    for (const c of document.querySelectorAll('.conn')) {
      c.dataset.state = state;
      c.title = CONN_LABEL[state];
      const label = c.querySelector('.conn-label');
      if (label) label.textContent = CONN_LABEL[state];
    }
  }

  let statusTimer = 0;
  function showStatus(text, sticky = false) {
    if (!statusLine) return;
    statusLine.textContent = text;
    statusLine.classList.add('visible');
    clearTimeout(statusTimer);
    if (!sticky) statusTimer = setTimeout(() => statusLine.classList.remove('visible'), 5000);
  }

  // ---------- initial render ----------

  renderAllTimes();
  document.querySelectorAll('.avatar').forEach(paintAvatar);
  const openItem = chatItem(RID);
  if (openItem && !document.hidden) setUnread(openItem, 0);
  updateTitle();
  renderPresence();
  regroup();
  const highlighted = history?.querySelector('[data-testid="message"].highlight');
  const showStart = () => {
    if (highlighted) highlighted.scrollIntoView({ block: 'center' });
    else scrollToBottom();
  };
  showStart();
  // Fonts/layout can settle after the first frame; place the view once more.
  requestAnimationFrame(showStart);
  if (MORE_AFTER) showJump();
  setInterval(() => {
    renderAllTimes();
    regroup();
    renderPresence();
  }, 60000);
  if (input && window.matchMedia('(min-width: 700px)').matches) input.focus({ preventScroll: true });

  // The search form and the group controls need the socket; without script they stay hidden.
  if (typeof window.io !== 'function') {
    setConn('offline');
    return;
  }

  // ---------- socket ----------

  const socket = window.io({ path: '/socket.io/', transports: ['websocket', 'polling'] });
  setConn('connecting');

  /** Emits with an ack; resolves to the ack, or to {error: {code}} on a time-out. */
  function request(event, payload) {
    return new Promise((resolve) => {
      socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, ack) => {
        if (err) resolve({ error: { code: socket.connected ? 'timeout' : 'offline' } });
        else resolve(ack && typeof ack === 'object' ? ack : { error: { code: 'invalid' } });
      });
    });
  }

  function resolveMessage(li, m) {
    const dup = m.seq != null && findBySeq(m.seq);
    if (dup && dup !== li) {
      li.remove();
      return dup;
    }
    li.dataset.seq = String(m.seq);
    delete li.dataset.pending;
    delete li.dataset.failed;
    li.removeAttribute('aria-busy');
    li.querySelector('.failure')?.remove();
    li.querySelector('.state')?.remove();
    applyContent(li, m);
    const time = li.querySelector('time');
    if (time && m.timestamp != null) setTime(time, m.timestamp);
    place(li);
    return li;
  }

  function isValidMessage(m) {
    return m && typeof m === 'object' && Number.isInteger(m.seq) && typeof m.message === 'string';
  }

  // A changed message (edit, deletion, reaction): its bubble, and every quote of it.
  function applyUpdate(m) {
    if (!isValidMessage(m) || m.rid !== RID || !history) return;
    // While a sync pages through changes, its own `rev` says how far it got; a
    // live change may be ahead of changes not fetched yet.
    if (!syncing) knownRev = Math.max(knownRev, Number(m.rev) || 0);
    const li = findBySeq(m.seq);
    if (li && (Number(m.rev) || 0) >= (Number(li.dataset.rev) || 0)) applyContent(li, m);
    for (const q of history.querySelectorAll(`.quote[data-reply-seq="${m.seq}"]`)) fillQuote(q, m);
    const item = chatItem(m.rid);
    const preview = item?.querySelector('.chat-preview');
    if (preview && Number(preview.dataset.seq) === m.seq) {
      delete preview.dataset.seq;
      setPreview(item, m);
    }
    updateSeen();
  }

  // Adds one server message to the open room; returns false if it was already shown.
  function addServerMessage(m) {
    if (!history || !isValidMessage(m)) return false;
    const shown = findBySeq(m.seq);
    if (shown) {
      if ((Number(m.rev) || 0) > (Number(shown.dataset.rev) || 0)) applyContent(shown, m);
      return false;
    }
    const mine = m.sender_id === ME_ID;
    const pending = mine && m.client_id ? findByClientId(m.client_id) : null;
    if (pending) resolveMessage(pending, m);
    else place(buildMessage(m, mine));
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

  // ---------- read receipts ----------

  // The marker the server holds for me here: opening the page moved it to the end.
  let myReadSeq = INITIAL_LAST_SEQ;

  function lastVisibleSeq() {
    if (!scroller) return 0;
    const bottom = scroller.getBoundingClientRect().bottom;
    const els = confirmedEls();
    for (let i = els.length - 1; i >= 0; i -= 1) {
      if (els[i].getBoundingClientRect().top < bottom) return seqOf(els[i]);
    }
    return 0;
  }

  function markVisibleRead() {
    if (!RID || room.gone || document.hidden || !socket.connected) return;
    const seq = lastVisibleSeq();
    if (!(seq > myReadSeq)) return;
    myReadSeq = seq;
    socket.emit('read', { rid: RID, seq });
  }

  let readTimer = 0;
  scroller?.addEventListener(
    'scroll',
    () => {
      if (jumpBtn && !jumpBtn.hidden && !MORE_AFTER && nearBottom()) jumpBtn.hidden = true;
      clearTimeout(readTimer);
      readTimer = setTimeout(markVisibleRead, 200);
    },
    { passive: true },
  );
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) return;
    markVisibleRead();
  });

  // ---------- joining and catching up ----------

  function sync(round = 0) {
    if (!RID || room.gone) return;
    if (syncing && round === 0) {
      syncAgain = true;
      return;
    }
    syncing = true;
    // Reading an older window: only its changes matter, not what follows it.
    const payload = { rid: RID, after_seq: highestSeq(), limit: SYNC_PAGE, after_rev: knownRev };
    socket.timeout(ACK_TIMEOUT_MS).emit('sync', payload, (err, ack) => {
      const ok = !err && ack && ack.ok;
      // A full page of messages or of changes: there may be more of either.
      const full = (list) => Array.isArray(list) && list.length >= SYNC_PAGE;
      const more = ok && ((!MORE_AFTER && full(ack.messages)) || full(ack.updates));
      if (ok) {
        for (const m of ack.updates || []) applyUpdate({ ...m, rid: m.rid || RID });
        if (Number.isInteger(ack.rev)) knownRev = Math.max(knownRev, ack.rev);
        if (!MORE_AFTER) {
          const latest = ack.messages && ack.messages[ack.messages.length - 1];
          addBatch(ack.messages, { keepAtBottom: false });
          if (latest) {
            updateChatItem(latest, false);
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

  function joinAndSync() {
    socket.timeout(ACK_TIMEOUT_MS).emit('join-chat', { rid: RID }, (err, ack) => {
      if (!err && ack && ack.error) {
        if (ack.error.code === 'not_member') removeChat(RID);
        else showStatus(errorText(ack.error.code));
        return;
      }
      if (!err && ack && Number.isInteger(ack.last_seq)) myReadSeq = Math.max(myReadSeq, ack.last_seq);
      sync();
    });
  }

  socket.on('connect', () => {
    setConn('connected');
    if (RID && !room.gone) joinAndSync();
  });

  socket.on('disconnect', (reason) => {
    setConn('reconnecting');
    // The client does not retry by itself after a server-side disconnect; do it, gently.
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 2000);
  });

  socket.io.on('reconnect_attempt', () => setConn('reconnecting'));

  // The server's link to the other nodes blinked: messages sent through them
  // meanwhile did not come live. Catch up exactly as after a reconnect.
  socket.on('resync', () => {
    if (RID && !room.gone) sync();
  });

  // The server is stopping (a restart or a deploy): the connection drops next
  // and the client reconnects by itself.
  socket.on('shutting-down', () => showStatus('The server is restarting; reconnecting…'));

  socket.on('connect_error', (err) => {
    if (err && err.message === 'unauthorized') {
      window.location.assign('/login');
      return;
    }
    setConn('reconnecting');
    // A refusal by the server's middleware is not retried by the client.
    if (!socket.active) setTimeout(() => socket.connect(), 3000);
  });

  socket.on('message', (m) => {
    if (!isValidMessage(m)) return;
    const mine = m.sender_id === ME_ID;
    const here = m.rid === RID && history && !room.gone;
    if (here && MORE_AFTER) {
      showJump();
    } else if (here) {
      const stick = mine || nearBottom();
      const gap = m.seq > highestSeq() + 1 && confirmedEls().length > 0;
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
    const unseen = !mine && (!here || MORE_AFTER || document.hidden);
    updateChatItem(m, unseen);
  });

  socket.on('message-updated', (m) => applyUpdate(m));

  socket.on('chat', (chat) => applyChat(chat));

  socket.on('chat-removed', (ev) => {
    if (ev && typeof ev.rid === 'string') removeChat(ev.rid);
  });

  socket.on('presence', (ev) => {
    if (!ev || typeof ev.user_id !== 'string') return;
    const m = room.members.get(ev.user_id);
    if (m) {
      m.online = Boolean(ev.online);
      if (ev.last_seen != null) m.last_seen = ev.last_seen;
      renderPresence();
    }
    if (!chatList) return;
    for (const li of chatList.querySelectorAll('[data-testid="chat-item"]')) {
      if (li.dataset.peerId === ev.user_id) setPresenceDot(li, ev.online);
    }
  });

  socket.on('typing', (ev) => {
    if (!ev || typeof ev.rid !== 'string' || typeof ev.user_id !== 'string') return;
    setTyping(ev.rid, ev.user_id, ev.username, Boolean(ev.typing));
  });

  socket.on('read', (ev) => {
    if (!ev || typeof ev.rid !== 'string') return;
    if (ev.user_id === ME_ID) {
      const li = chatItem(ev.rid);
      if (li && Number.isInteger(ev.unread)) setUnread(li, ev.unread);
      if (ev.rid === RID && Number.isInteger(ev.read_seq)) myReadSeq = Math.max(myReadSeq, ev.read_seq);
      return;
    }
    if (ev.rid !== RID) return;
    const m = room.members.get(ev.user_id);
    if (m && Number.isInteger(ev.read_seq) && ev.read_seq > m.read_seq) {
      m.read_seq = ev.read_seq;
      updateSeen();
    }
  });

  // ---------- typing (mine) ----------

  let typingSentAt = 0;
  function stopTyping() {
    if (!typingSentAt) return;
    typingSentAt = 0;
    if (RID && socket.connected) socket.emit('typing', { rid: RID, typing: false });
  }
  if (input && RID) {
    input.addEventListener('input', () => {
      if (!input.value.trim()) {
        stopTyping();
        return;
      }
      const now = Date.now();
      if (now - typingSentAt < TYPING_RENEW_MS || !socket.connected) return;
      typingSentAt = now;
      socket.emit('typing', { rid: RID, typing: true });
    });
    input.addEventListener('blur', stopTyping);
  }

  // ---------- sending ----------

  function newClientId() {
    if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
    // randomUUID needs a secure context; plain-http self-hosting still has getRandomValues.
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function markPending(li) {
    li.dataset.pending = 'true';
    delete li.dataset.failed;
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

  function markFailed(li, code) {
    delete li.dataset.pending;
    li.dataset.failed = 'true';
    li.removeAttribute('aria-busy');
    li.querySelector('.state')?.remove();
    li.querySelector('.failure')?.remove();
    const box = el('div', 'failure');
    const msg = el('span', 'error', errorText(code));
    msg.setAttribute('role', 'alert');
    const retry = button('retry');
    retry.textContent = 'Retry';
    box.append(msg, retry);
    li.append(box);
  }

  // A send answered `unavailable` (the server is draining, or cannot reach its
  // database) goes again by itself, with the same client_id, this many times.
  const UNAVAILABLE_RETRIES = 5;
  const UNAVAILABLE_PAUSE_MS = 1500;

  function send(li, text, clientId, retries = UNAVAILABLE_RETRIES) {
    markPending(li);
    const payload = { rid: RID, message: text, client_id: clientId };
    if (li.dataset.replyTo) payload.reply_to = Number(li.dataset.replyTo);
    socket.timeout(ACK_TIMEOUT_MS).emit('outgoing', payload, (err, ack) => {
      if (li.dataset.seq) return; // already resolved by a broadcast or a sync
      if (err) {
        markFailed(li, socket.connected ? 'timeout' : 'offline');
      } else if (ack && ack.ok && ack.message) {
        const placed = resolveMessage(li, ack.message);
        regroup();
        if (placed === li && nearBottom()) scrollToBottom();
        updateChatItem({ ...ack.message, rid: ack.message.rid || RID }, false);
      } else if (ack && ack.error && ack.error.code === 'unavailable' && retries > 0) {
        setTimeout(() => send(li, text, clientId, retries - 1), UNAVAILABLE_PAUSE_MS);
      } else {
        markFailed(li, ack && ack.error ? ack.error.code : 'invalid');
      }
    });
  }

  // Replying: the quoted message waits above the message box until sent or cancelled.
  let replyTo = null; // {seq, sender_username, message}
  function setReply(quote) {
    replyTo = quote;
    if (!replyBar) return;
    replyBar.hidden = !quote;
    if (quote) {
      replyBar.querySelector('.reply-name').textContent = quote.sender_username;
      replyBar.querySelector('.reply-text').textContent = quote.message;
      input?.focus();
    }
  }
  replyBar?.querySelector('.reply-cancel')?.addEventListener('click', () => setReply(null));

  if (form && input && history) {
    form.addEventListener('submit', (e) => {
      // Reading an older window: the plain form post sends and shows the latest messages.
      if (MORE_AFTER || room.gone) return;
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      stopTyping();
      const clientId = newClientId();
      const li = buildMessage(
        {
          sender_username: ME_NAME,
          message: text,
          timestamp: Date.now() / 1000,
          client_id: clientId,
          reply_to: replyTo ? { ...replyTo, deleted: false } : null,
        },
        true,
      );
      li.dataset.clientId = clientId;
      if (replyTo) li.dataset.replyTo = String(replyTo.seq);
      setReply(null);
      history.append(li);
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

  // ---------- message actions: react, reply, edit, delete ----------

  const actions = el('div', 'message-actions');
  actions.setAttribute('data-testid', 'message-actions');
  actions.setAttribute('role', 'toolbar');
  actions.setAttribute('aria-label', 'Message actions');
  const reactBtn = button('action', 'React', 'action-react');
  reactBtn.textContent = '☺';
  const replyBtn = button('action', 'Reply', 'action-reply');
  replyBtn.textContent = '↩';
  const editBtn = button('action', 'Edit', 'action-edit');
  editBtn.textContent = '✎';
  const deleteBtn = button('action action-danger', 'Delete', 'action-delete');
  deleteBtn.textContent = '🗑';
  const picker = el('div', 'emoji-picker');
  picker.setAttribute('data-testid', 'emoji-picker');
  picker.hidden = true;
  for (const emoji of EMOJI) {
    const b = button('emoji', `React ${emoji}`);
    b.dataset.emoji = emoji;
    b.textContent = emoji;
    picker.append(b);
  }
  actions.append(reactBtn, replyBtn, editBtn, deleteBtn, picker);

  const actionable = (li) =>
    li && li.dataset.seq && !li.classList.contains('system') && !li.classList.contains('deleted') && !li.querySelector('.edit-form');

  function showActions(li) {
    if (!actionable(li) || room.gone || MORE_AFTER) return;
    if (actionsOwner() === li) return;
    const mine = li.classList.contains('mine');
    editBtn.hidden = !mine;
    deleteBtn.hidden = !mine;
    picker.hidden = true;
    resetDelete();
    actions.classList.toggle('left', mine);
    li.querySelector('.bubble')?.append(actions);
  }

  // The message whose toolbar is open (the toolbar sits inside its bubble).
  const actionsOwner = () => (actions.isConnected ? actions.closest('[data-testid="message"]') : null);

  function hideActions() {
    picker.hidden = true;
    resetDelete();
    actions.remove();
  }

  function resetDelete() {
    deleteBtn.classList.remove('confirm');
    deleteBtn.textContent = '🗑';
    deleteBtn.setAttribute('aria-label', 'Delete');
    deleteBtn.title = 'Delete';
  }

  async function react(li, emoji) {
    const ack = await request('react', { rid: RID, seq: seqOf(li), emoji });
    if (ack.ok && ack.message) applyUpdate({ ...ack.message, rid: ack.message.rid || RID });
    else showStatus(errorText(ack.error?.code));
  }

  function startEdit(li) {
    const text = li.querySelector('.text');
    if (!text) return;
    hideActions();
    const editForm = el('form', 'edit-form');
    editForm.setAttribute('data-testid', 'edit-form');
    const area = el('textarea', 'edit-input');
    area.name = 'message';
    area.maxLength = 4000;
    area.rows = 2;
    area.value = text.textContent;
    area.setAttribute('aria-label', 'Edit message');
    const save = el('button', 'btn btn-primary btn-small', 'Save');
    save.type = 'submit';
    const cancel = button('btn btn-ghost btn-small edit-cancel');
    cancel.textContent = 'Cancel';
    const row = el('div', 'edit-buttons');
    row.append(cancel, save);
    editForm.append(area, row);
    text.hidden = true;
    text.after(editForm);
    li.classList.add('editing');
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
    const close = () => {
      editForm.remove();
      text.hidden = false;
      li.classList.remove('editing');
    };
    cancel.addEventListener('click', close);
    area.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') close();
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        editForm.requestSubmit();
      }
    });
    editForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const message = area.value.trim();
      if (!message || message === text.textContent) {
        close();
        return;
      }
      save.disabled = true;
      const ack = await request('edit-message', { rid: RID, seq: seqOf(li), message });
      save.disabled = false;
      if (ack.ok && ack.message) {
        close();
        applyUpdate({ ...ack.message, rid: ack.message.rid || RID });
      } else {
        showStatus(errorText(ack.error?.code));
      }
    });
  }

  async function remove(li) {
    hideActions();
    const ack = await request('delete-message', { rid: RID, seq: seqOf(li) });
    if (ack.ok && ack.message) applyUpdate({ ...ack.message, rid: ack.message.rid || RID });
    else showStatus(errorText(ack.error?.code));
  }

  if (history) {
    // An open picker or a pending "Delete?" keeps the toolbar where it is.
    const busy = () => !picker.hidden || deleteBtn.classList.contains('confirm');
    history.addEventListener('mouseover', (e) => {
      const li = e.target.closest('[data-testid="message"]');
      if (li && li !== actionsOwner() && !busy()) showActions(li);
    });
    history.addEventListener('mouseleave', () => {
      if (!busy()) hideActions();
    });
    document.addEventListener('click', (e) => {
      if (actions.isConnected && !actions.contains(e.target)) hideActions();
    });
    history.addEventListener('focusin', (e) => {
      const li = e.target.closest('[data-testid="message"]');
      if (li && !actions.contains(e.target)) showActions(li);
    });
    // Touch: a long press opens the actions.
    let pressTimer = 0;
    history.addEventListener(
      'touchstart',
      (e) => {
        const li = e.target.closest('[data-testid="message"]');
        clearTimeout(pressTimer);
        if (li && !actions.contains(e.target)) pressTimer = setTimeout(() => showActions(li), LONG_PRESS_MS);
      },
      { passive: true },
    );
    for (const ev of ['touchend', 'touchmove', 'touchcancel']) {
      history.addEventListener(ev, () => clearTimeout(pressTimer), { passive: true });
    }

    history.addEventListener('click', (e) => {
      const retry = e.target.closest('.retry');
      if (retry) {
        const li = retry.closest('[data-testid="message"]');
        if (!li || li.dataset.seq) return;
        const text = li.querySelector('.text')?.textContent || '';
        send(li, text, li.dataset.clientId);
        return;
      }
      const quote = e.target.closest('.quote');
      if (quote) {
        const target = findBySeq(quote.dataset.replySeq);
        if (target) {
          e.preventDefault();
          target.scrollIntoView({ block: 'center', behavior: 'smooth' });
          flash(target);
        }
        return;
      }
      const chip = e.target.closest('.reaction');
      if (chip) {
        const li = chip.closest('[data-testid="message"]');
        if (li && !room.gone) react(li, chip.dataset.emoji);
        return;
      }
      const li = actionsOwner();
      if (!li || !actions.contains(e.target)) return;
      const emoji = e.target.closest('.emoji');
      if (emoji) {
        hideActions();
        react(li, emoji.dataset.emoji);
      } else if (e.target.closest('[data-testid="action-react"]')) {
        picker.hidden = !picker.hidden;
      } else if (e.target.closest('[data-testid="action-reply"]')) {
        hideActions();
        setReply({
          seq: seqOf(li),
          sender_username: li.querySelector('.sender')?.textContent || '',
          message: li.querySelector('.text')?.textContent || '',
        });
      } else if (e.target.closest('[data-testid="action-edit"]')) {
        startEdit(li);
      } else if (e.target.closest('[data-testid="action-delete"]')) {
        // Two clicks, so a slip of the mouse deletes nothing.
        if (deleteBtn.classList.contains('confirm')) {
          remove(li);
        } else {
          deleteBtn.classList.add('confirm');
          deleteBtn.textContent = 'Delete?';
          deleteBtn.setAttribute('aria-label', 'Confirm delete');
        }
      }
    });
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && actions.isConnected) hideActions();
    });
  }

  // ---------- group header: members, rename, add, remove, leave ----------

  if (groupPanel && membersToggle) {
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
      const ack = await request('rename-group', { rid: RID, title });
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
      const ack = await request('add-member', { rid: RID, email });
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
      const ack = await request('remove-member', { rid: RID, user_id: b.dataset.userId });
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
      const ack = await request('leave-group', { rid: RID });
      if (ack.ok) window.location.assign('/chat/');
      else say(errorText(ack.error?.code));
    });
  }

  // ---------- search ----------

  const searchForm = document.querySelector('[data-testid="search-form"]');
  const searchResults = document.querySelector('[data-testid="search-results"]');
  if (searchForm && searchResults) {
    searchForm.hidden = false;
    const q = searchForm.elements.namedItem('q');
    let searchTimer = 0;
    let asked = 0; // only the latest question's answer is shown

    const closeSearch = () => {
      searchResults.hidden = true;
      searchResults.replaceChildren();
      body.classList.remove('searching');
    };

    // Query words in a hit, marked (by building text nodes, never markup).
    function marked(text, words) {
      const frag = document.createDocumentFragment();
      const lower = text.toLowerCase();
      let i = 0;
      while (i < text.length) {
        let hit = null;
        for (const w of words) {
          const at = lower.indexOf(w, i);
          if (at !== -1 && (!hit || at < hit.at)) hit = { at, len: w.length };
        }
        if (!hit) break;
        frag.append(text.slice(i, hit.at), el('mark', null, text.slice(hit.at, hit.at + hit.len)));
        i = hit.at + hit.len;
      }
      frag.append(text.slice(i));
      return frag;
    }

    function showResults(messages, words) {
      body.classList.add('searching');
      searchResults.hidden = false;
      if (!messages.length) {
        const none = el('li', 'search-empty', 'No messages found.');
        searchResults.replaceChildren(none);
        return;
      }
      searchResults.replaceChildren(
        ...messages.map((m) => {
          const li = el('li', 'search-hit');
          li.setAttribute('data-testid', 'search-result');
          const a = el('a', 'search-link');
          a.href = `/chat/?rid=${encodeURIComponent(m.rid)}&at=${m.seq}`;
          const head = el('span', 'chat-row');
          const chatTitle = chatItem(m.rid)?.querySelector('.chat-title')?.textContent || '';
          const time = el('time', 'chat-time');
          setTime(time, m.timestamp);
          head.append(el('span', 'chat-title', chatTitle || m.sender_username), time);
          const line = el('span', 'search-text');
          if (m.sender_id === ME_ID) line.append(el('span', 'preview-prefix', 'You: '));
          else if (chatTitle && chatTitle !== m.sender_username) line.append(el('span', 'preview-prefix', `${m.sender_username}: `));
          line.append(marked(m.message, words));
          a.append(head, line);
          li.append(a);
          return li;
        }),
      );
    }

    async function search() {
      const text = q.value.trim();
      if (!text) {
        closeSearch();
        return;
      }
      const mine = ++asked;
      const ack = await request('search', { q: text, limit: 20 });
      if (mine !== asked) return;
      if (ack.ok && Array.isArray(ack.messages)) {
        // Words as the server reads them: runs of letters and digits.
        const words = text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);
        showResults(ack.messages, words);
      } else {
        showResults([], []);
        showStatus(errorText(ack.error?.code));
      }
    }

    searchForm.addEventListener('submit', (e) => {
      e.preventDefault();
      clearTimeout(searchTimer);
      search();
    });
    q.addEventListener('input', () => {
      clearTimeout(searchTimer);
      if (!q.value.trim()) closeSearch();
      else searchTimer = setTimeout(search, 300);
    });
    q.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        q.value = '';
        closeSearch();
      }
    });
  }

  // ---------- older history ----------

  if (loadOlderBtn && history && RID) {
    loadOlderBtn.addEventListener('click', async () => {
      const first = lowestSeq();
      if (!(first > 1)) {
        loadOlderBtn.hidden = true;
        return;
      }
      const label = loadOlderBtn.textContent;
      loadOlderBtn.disabled = true;
      loadOlderBtn.textContent = 'Loading…';
      try {
        const url = `/api/v1/rooms/${encodeURIComponent(RID)}/messages?before=${first}&limit=${OLDER_PAGE}`;
        const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
        if (res.status === 401) {
          window.location.assign('/login');
          return;
        }
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const data = await res.json();
        // Keep the reader's view still: the old first bubble stays where it was on screen
        // (the button and the day label above it may move or vanish).
        const anchor = history.querySelector('[data-testid="message"][data-seq]');
        const offset = () => anchor.getBoundingClientRect().bottom - scroller.getBoundingClientRect().top;
        const before = anchor ? offset() : 0;
        for (const m of data.messages || []) addServerMessage(m);
        regroup();
        if (anchor) scroller.scrollTop += offset() - before;
      } catch (_) {
        showStatus('Could not load older messages.');
      } finally {
        loadOlderBtn.disabled = false;
        loadOlderBtn.textContent = label;
      }
    });
  }
})();
