// Natter chat page: live messages over Socket.IO, optimistic sending, local times.
// No framework, no build step. User text only ever goes through textContent.
'use strict';

(() => {
  const body = document.body;
  const ME_ID = body.dataset.meId || '';
  const ME_NAME = body.dataset.meUsername || '';
  const RID = body.dataset.rid || '';
  const INITIAL_LAST_SEQ = Number(body.dataset.lastSeq) || 0;

  const ACK_TIMEOUT_MS = 10000;
  const SYNC_PAGE = 200; // the server's max page; a full page means there may be more
  const OLDER_PAGE = 50;
  const NEAR_BOTTOM_PX = 120;
  const GROUP_GAP_S = 5 * 60;

  const chatList = document.querySelector('[data-testid="chat-list"]');
  const history = document.querySelector('[data-testid="message-history"]');
  const scroller = document.getElementById('history-scroll');
  const form = document.querySelector('[data-testid="message-form"]');
  const input = form ? form.elements.namedItem('message') : null;
  const loadOlderBtn = document.querySelector('.load-older');
  const statusLine = document.querySelector('.status-line');

  const ERROR_TEXT = {
    not_member: 'You are not a member of this chat.',
    no_such_room: 'This chat does not exist any more.',
    too_long: 'Too long: messages are limited to 4000 characters.',
    empty: 'Empty messages cannot be sent.',
    rate_limited: 'You are sending too fast. Wait a moment, then retry.',
    invalid: 'The server refused this message.',
    timeout: 'No answer from the server. Check your connection.',
    offline: 'Not connected. It will be sent when you retry.',
    unavailable: 'The server is restarting. Retry in a moment.',
  };
  const errorText = (code) => ERROR_TEXT[code] || `Not sent (${code || 'unknown error'}).`;

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

  // ---------- avatars ----------

  // A stable hue per name, so a contact keeps its colour everywhere.
  function paintAvatar(el) {
    const name = el.dataset.name || el.textContent || '';
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    el.style.setProperty('--hue', String(h % 360));
  }

  function makeAvatar(name) {
    const span = document.createElement('span');
    span.className = 'avatar';
    span.dataset.name = name;
    span.setAttribute('aria-hidden', 'true');
    span.textContent = Array.from(name)[0] || '?';
    paintAvatar(span);
    return span;
  }

  // ---------- message DOM (mirrors templates/chat.html) ----------

  function buildMessage(m, mine) {
    const li = document.createElement('li');
    li.setAttribute('data-testid', 'message');
    li.className = mine ? 'message mine' : 'message';
    if (m.seq != null) li.dataset.seq = String(m.seq);
    if (m.client_id) li.dataset.clientId = m.client_id;

    const bubble = document.createElement('div');
    bubble.className = 'bubble';
    const sender = document.createElement('span');
    sender.className = 'sender';
    sender.textContent = m.sender_username || '';
    const text = document.createElement('p');
    text.className = 'text';
    text.textContent = m.message || '';
    const meta = document.createElement('span');
    meta.className = 'meta';
    const time = document.createElement('time');
    meta.append(time);
    setTime(time, m.timestamp);
    bubble.append(sender, text, meta);
    li.append(bubble);
    return li;
  }

  const seqOf = (el) => (el.dataset.seq ? Number(el.dataset.seq) : NaN);
  const confirmedEls = () => (history ? history.querySelectorAll('[data-testid="message"][data-seq]') : []);
  const findBySeq = (seq) => history.querySelector(`[data-testid="message"][data-seq="${seq}"]`);
  const findByClientId = (cid) =>
    Array.from(history.querySelectorAll('[data-testid="message"][data-client-id]:not([data-seq])')).find(
      (el) => el.dataset.clientId === cid,
    );

  function highestSeq() {
    const els = confirmedEls();
    const last = els.length ? seqOf(els[els.length - 1]) : 0;
    return Math.max(INITIAL_LAST_SEQ, last || 0);
  }

  function lowestSeq() {
    const first = history && history.querySelector('[data-testid="message"][data-seq]');
    return first ? seqOf(first) : 0;
  }

  // Confirmed messages stay sorted by seq; pending/failed ones stay below them.
  function place(el) {
    const seq = seqOf(el);
    if (Number.isNaN(seq)) {
      history.append(el);
      return;
    }
    const els = Array.from(confirmedEls()).filter((x) => x !== el);
    let i = els.length;
    while (i > 0 && seqOf(els[i - 1]) > seq) i -= 1;
    const before = i < els.length ? els[i] : history.querySelector('[data-testid="message"]:not([data-seq])');
    history.insertBefore(el, before);
  }

  // Sender names and day labels only where they start a run, like most messengers.
  function regroup() {
    if (!history) return;
    let prev = null;
    for (const el of history.querySelectorAll('[data-testid="message"]')) {
      const t = el.querySelector('time');
      const d = t ? timeOf(t) : null;
      const pd = prev ? timeOf(prev.querySelector('time')) : null;
      const sender = el.querySelector('.sender')?.textContent;
      const prevSender = prev?.querySelector('.sender')?.textContent;
      const newDay = !pd || !d || !sameDay(d, pd);
      if (d && newDay) el.dataset.day = dayLabel(d);
      else delete el.dataset.day;
      const cont = !newDay && prev && sender === prevSender && d && pd && d - pd < GROUP_GAP_S * 1000;
      el.classList.toggle('cont', Boolean(cont));
      prev = el;
    }
    if (loadOlderBtn) loadOlderBtn.hidden = !(lowestSeq() > 1);
  }

  // ---------- scrolling ----------

  const nearBottom = () => !scroller || scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM_PX;
  const scrollToBottom = () => {
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    if (jumpBtn) jumpBtn.hidden = true;
  };

  // "New messages" pill for when something arrives while the reader is scrolled up.
  let jumpBtn = null;
  function showJump() {
    if (!scroller) return;
    if (!jumpBtn) {
      jumpBtn = document.createElement('button');
      jumpBtn.type = 'button';
      jumpBtn.className = 'jump-latest';
      jumpBtn.textContent = 'New messages ↓';
      jumpBtn.addEventListener('click', scrollToBottom);
      scroller.after(jumpBtn);
    }
    jumpBtn.hidden = false;
  }
  scroller?.addEventListener(
    'scroll',
    () => {
      if (jumpBtn && !jumpBtn.hidden && nearBottom()) jumpBtn.hidden = true;
    },
    { passive: true },
  );

  // ---------- chat list ----------

  function chatItem(rid) {
    if (!chatList) return null;
    for (const li of chatList.querySelectorAll('[data-testid="chat-item"]')) {
      if (li.dataset.rid === rid) return li;
    }
    return null;
  }

  function buildChatItem(rid, title) {
    const li = document.createElement('li');
    li.setAttribute('data-testid', 'chat-item');
    li.dataset.rid = rid;
    li.className = 'chat-item';
    const a = document.createElement('a');
    a.className = 'chat-link';
    a.href = `/chat/?rid=${encodeURIComponent(rid)}`;
    const main = document.createElement('span');
    main.className = 'chat-body';
    const row1 = document.createElement('span');
    row1.className = 'chat-row';
    const t = document.createElement('span');
    t.className = 'chat-title';
    t.textContent = title;
    const time = document.createElement('time');
    time.className = 'chat-time';
    row1.append(t, time);
    const row2 = document.createElement('span');
    row2.className = 'chat-row';
    const preview = document.createElement('span');
    preview.className = 'chat-preview';
    row2.append(preview);
    main.append(row1, row2);
    a.append(makeAvatar(title), main);
    li.append(a);
    return li;
  }

  function updateChatItem(m, bumpUnread) {
    if (!chatList || !m.rid) return;
    let li = chatItem(m.rid);
    if (!li) {
      // A room we did not know yet (someone just added us). Only their name is known.
      if (m.sender_id === ME_ID) return;
      li = buildChatItem(m.rid, m.sender_username || 'New chat');
      document.querySelector('.empty-chats')?.remove();
    }
    const preview = li.querySelector('.chat-preview');
    if (preview) {
      preview.replaceChildren();
      if (m.sender_id === ME_ID) {
        const prefix = document.createElement('span');
        prefix.className = 'preview-prefix';
        prefix.textContent = 'You: ';
        preview.append(prefix);
      }
      const text = document.createElement('span');
      text.className = 'preview-text';
      text.textContent = m.message;
      preview.append(text);
    }
    const time = li.querySelector('.chat-time');
    if (time) setTime(time, m.timestamp);
    if (bumpUnread) {
      let badge = li.querySelector('.badge');
      if (!badge) {
        badge = document.createElement('span');
        badge.className = 'badge';
        li.querySelector('.chat-preview')?.parentElement.append(badge);
      }
      const n = (Number(badge.textContent) || 0) + 1;
      badge.textContent = String(n);
      badge.setAttribute('aria-label', `${n} unread`);
      li.classList.add('has-unread');
    }
    if (chatList.firstElementChild !== li) chatList.prepend(li);
  }

  // ---------- connection state ----------

  const CONN_LABEL = { connecting: 'Connecting…', connected: 'Online', reconnecting: 'Reconnecting…', offline: 'Offline' };
  function setConn(state) {
    for (const el of document.querySelectorAll('.conn')) {
      el.dataset.state = state;
      el.title = CONN_LABEL[state];
      const label = el.querySelector('.conn-label');
      if (label) label.textContent = CONN_LABEL[state];
    }
  }

  let statusTimer = 0;
  function showStatus(text) {
    if (!statusLine) return;
    statusLine.textContent = text;
    statusLine.classList.add('visible');
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => statusLine.classList.remove('visible'), 5000);
  }

  // ---------- unread count in the tab title while hidden ----------

  const baseTitle = document.title;
  let hiddenUnread = 0;
  function bumpTitle() {
    if (!document.hidden) return;
    hiddenUnread += 1;
    document.title = `(${hiddenUnread}) ${baseTitle}`;
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      hiddenUnread = 0;
      document.title = baseTitle;
    }
  });

  // ---------- initial render ----------

  renderAllTimes();
  document.querySelectorAll('.avatar').forEach(paintAvatar);
  chatItem(RID)?.querySelector('.badge')?.remove();
  regroup();
  scrollToBottom();
  // Fonts/layout can settle after the first frame; stick to the bottom once more.
  requestAnimationFrame(scrollToBottom);
  setInterval(() => {
    renderAllTimes();
    regroup();
  }, 60000);
  if (input && window.matchMedia('(min-width: 700px)').matches) input.focus({ preventScroll: true });

  if (typeof window.io !== 'function') {
    setConn('offline');
    return;
  }

  // ---------- socket ----------

  const socket = window.io({ path: '/socket.io/', transports: ['websocket', 'polling'] });
  setConn('connecting');

  function resolveMessage(el, m) {
    const dup = m.seq != null && findBySeq(m.seq);
    if (dup && dup !== el) {
      el.remove();
      return dup;
    }
    el.dataset.seq = String(m.seq);
    delete el.dataset.pending;
    delete el.dataset.failed;
    el.removeAttribute('aria-busy');
    el.querySelector('.failure')?.remove();
    el.querySelector('.state')?.remove();
    const text = el.querySelector('.text');
    if (text && typeof m.message === 'string') text.textContent = m.message;
    const time = el.querySelector('time');
    if (time && m.timestamp != null) setTime(time, m.timestamp);
    place(el);
    return el;
  }

  function isValidMessage(m) {
    return m && typeof m === 'object' && Number.isInteger(m.seq) && typeof m.message === 'string';
  }

  // Adds one server message to the open room; returns false if it was already shown.
  function addServerMessage(m) {
    if (!history || !isValidMessage(m) || findBySeq(m.seq)) return false;
    const mine = m.sender_id === ME_ID;
    const pending = mine && m.client_id ? findByClientId(m.client_id) : null;
    if (pending) {
      resolveMessage(pending, m);
    } else {
      place(buildMessage(m, mine));
    }
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

  let syncing = false;
  let syncAgain = false;
  function sync(round = 0) {
    if (!RID) return;
    if (syncing && round === 0) {
      syncAgain = true;
      return;
    }
    syncing = true;
    socket.timeout(ACK_TIMEOUT_MS).emit('sync', { rid: RID, after_seq: highestSeq(), limit: SYNC_PAGE }, (err, ack) => {
      const more = !err && ack && ack.ok && Array.isArray(ack.messages) && ack.messages.length >= SYNC_PAGE;
      if (!err && ack && ack.ok) {
        const latest = ack.messages && ack.messages[ack.messages.length - 1];
        addBatch(ack.messages, { keepAtBottom: false });
        if (latest) updateChatItem(latest, false);
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
      }
    });
  }

  function joinAndSync() {
    socket.timeout(ACK_TIMEOUT_MS).emit('join-chat', { rid: RID }, (err, ack) => {
      if (!err && ack && ack.error) {
        showStatus(errorText(ack.error.code));
        return;
      }
      sync();
    });
  }

  socket.on('connect', () => {
    setConn('connected');
    if (RID) joinAndSync();
  });

  socket.on('disconnect', (reason) => {
    setConn('reconnecting');
    // The client does not retry by itself after a server-side disconnect; do it, gently.
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 2000);
  });

  socket.io.on('reconnect_attempt', () => setConn('reconnecting'));

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
    if (m.rid === RID && history) {
      const stick = mine || nearBottom();
      const gap = m.seq > highestSeq() + 1 && confirmedEls().length > 0;
      if (addServerMessage(m)) {
        regroup();
        if (stick) scrollToBottom();
        else showJump();
      }
      // A hole in the seq run means we missed something: ask for it.
      if (gap) sync();
      if (!mine) bumpTitle();
    } else if (!mine) {
      bumpTitle();
    }
    updateChatItem(m, m.rid !== RID && !mine);
  });

  socket.on('joined-chat', (ev) => {
    if (!ev || ev.rid !== RID || ev.user_id === ME_ID || typeof ev.msg !== 'string') return;
    showStatus(ev.msg);
  });

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

  function markPending(el) {
    el.dataset.pending = 'true';
    delete el.dataset.failed;
    el.setAttribute('aria-busy', 'true');
    el.querySelector('.failure')?.remove();
    const meta = el.querySelector('.meta');
    if (meta && !meta.querySelector('.state')) {
      const st = document.createElement('span');
      st.className = 'state';
      st.setAttribute('role', 'img');
      st.setAttribute('aria-label', 'Sending');
      st.title = 'Sending…';
      meta.append(st);
    }
  }

  function markFailed(el, code) {
    delete el.dataset.pending;
    el.dataset.failed = 'true';
    el.removeAttribute('aria-busy');
    el.querySelector('.state')?.remove();
    el.querySelector('.failure')?.remove();
    const box = document.createElement('div');
    box.className = 'failure';
    const msg = document.createElement('span');
    msg.className = 'error';
    msg.setAttribute('role', 'alert');
    msg.textContent = errorText(code);
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'retry';
    retry.textContent = 'Retry';
    box.append(msg, retry);
    el.append(box);
  }

  function send(el, text, clientId) {
    markPending(el);
    socket.timeout(ACK_TIMEOUT_MS).emit('outgoing', { rid: RID, message: text, client_id: clientId }, (err, ack) => {
      if (el.dataset.seq) return; // already resolved by a broadcast or a sync
      if (err) {
        markFailed(el, socket.connected ? 'timeout' : 'offline');
      } else if (ack && ack.ok && ack.message) {
        const placed = resolveMessage(el, ack.message);
        regroup();
        if (placed === el && nearBottom()) scrollToBottom();
        updateChatItem({ ...ack.message, rid: ack.message.rid || RID }, false);
      } else {
        markFailed(el, ack && ack.error ? ack.error.code : 'invalid');
      }
    });
  }

  if (form && input && history) {
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      const clientId = newClientId();
      const el = buildMessage(
        { sender_username: ME_NAME, message: text, timestamp: Date.now() / 1000, client_id: clientId },
        true,
      );
      el.dataset.clientId = clientId;
      history.append(el);
      input.value = '';
      input.focus();
      send(el, text, clientId);
      regroup();
      scrollToBottom();
    });

    history.addEventListener('click', (e) => {
      const btn = e.target.closest('.retry');
      if (!btn) return;
      const el = btn.closest('[data-testid="message"]');
      if (!el || el.dataset.seq) return;
      const text = el.querySelector('.text')?.textContent || '';
      send(el, text, el.dataset.clientId);
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
        const anchor = history.querySelector('[data-testid="message"][data-seq] .bubble');
        const offset = () => anchor.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
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
