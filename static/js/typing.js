// Who is typing where: "… is typing…" in the open room's header and in the
// chat list, each entry expiring by itself; and telling the server when I type.

import { chatItem } from './chatlist.js';
import { emit, isConnected } from './connection.js';
import { typingText } from './format.js';
import { els, page } from './state.js';

const TYPING_RENEW_MS = 2000; // the server passes one `true` per 2 s on
const TYPING_SHOWN_MS = 6000; // a lost `false` expires by itself

const typers = new Map(); // `${rid} ${user_id}` -> {rid, name, timer}

/** Someone (not me) started or stopped typing in a room. */
export function setTyping(rid, userId, name, typing) {
  if (!userId || userId === page.meId) return;
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
  if (rid !== page.rid || !els.typingLine) return;
  els.typingLine.textContent = typingText(names);
  els.roomSub?.classList.toggle('is-typing', names.length > 0);
}

// ---------- mine ----------

let sentAt = 0;

/** Tells the server I stopped typing (if I had said I was). */
export function stopTyping() {
  if (!sentAt) return;
  sentAt = 0;
  if (page.rid && isConnected()) emit('typing', { rid: page.rid, typing: false });
}

/** Reports typing in the message box, at most once per TYPING_RENEW_MS. */
export function watchTyping(input) {
  input.addEventListener('input', () => {
    if (!input.value.trim()) {
      stopTyping();
      return;
    }
    const now = Date.now();
    if (now - sentAt < TYPING_RENEW_MS || !isConnected()) return;
    sentAt = now;
    emit('typing', { rid: page.rid, typing: true });
  });
  input.addEventListener('blur', stopTyping);
}
