// Pure helpers: times, texts, grouping. No DOM, no page state: node's test
// runner imports this module as it is (tests/js/format.test.mjs).

const fmtTime = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fmtDay = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const fmtDayYear = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
const fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
const fmtWeekday = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });

/** Messages further apart than this start a new run (sender name shown again). */
export const GROUP_GAP_S = 5 * 60;

// ---------- time ----------

export const sameDay = (a, b) =>
  a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

const dayBefore = (now) => new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);

/** "14:05" today, "3 Mar, 14:05" this year, "3 Mar 2024, 14:05" before. */
export function formatShort(date, now = new Date()) {
  if (sameDay(date, now)) return fmtTime.format(date);
  const day = date.getFullYear() === now.getFullYear() ? fmtDay : fmtDayYear;
  return `${day.format(date)}, ${fmtTime.format(date)}`;
}

/** The long form, for a tooltip. */
export const formatFull = (date) => fmtFull.format(date);

/** The label above the first message of a day: Today, Yesterday, a weekday and date, a full date. */
export function dayLabel(date, now = new Date()) {
  if (sameDay(date, now)) return 'Today';
  if (sameDay(date, dayBefore(now))) return 'Yesterday';
  return date.getFullYear() === now.getFullYear() ? fmtWeekday.format(date) : fmtDayYear.format(date);
}

/** "last seen …" for someone offline since `unixSeconds` (or "offline" if unknown). */
export function lastSeenText(unixSeconds, now = new Date()) {
  if (!(unixSeconds > 0)) return 'offline';
  const d = new Date(unixSeconds * 1000);
  const mins = Math.floor((now - d) / 60000);
  if (mins < 1) return 'last seen just now';
  if (mins < 60) return `last seen ${mins} min ago`;
  if (sameDay(d, now)) return `last seen today at ${fmtTime.format(d)}`;
  if (sameDay(d, dayBefore(now))) return `last seen yesterday at ${fmtTime.format(d)}`;
  return `last seen ${(d.getFullYear() === now.getFullYear() ? fmtDay : fmtDayYear).format(d)}`;
}

/**
 * The moment a `<time>` stands for, from its `data-ts` (unix seconds, as a
 * string) or else its `datetime` (ISO 8601); null if neither is usable.
 */
export function parseTime(ts, iso) {
  const n = Number(ts);
  if (ts && Number.isFinite(n)) return new Date(n * 1000);
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

// ---------- grouping ----------

/**
 * Day labels and runs for a list of messages in display order, each given as
 * {date: Date|null, sender: string|null|undefined, quoted: boolean}.
 * Returns one {day: string|null, cont: boolean} per message: `day` labels the
 * first message of each day, `cont` marks a message continuing the previous
 * one's run (same sender, same day, less than GROUP_GAP_S later, not a reply).
 */
export function groupRuns(items, now = new Date()) {
  let prev = null;
  return items.map((it) => {
    const d = it.date;
    const pd = prev ? prev.date : null;
    const newDay = !pd || !d || !sameDay(d, pd);
    const day = d && newDay ? dayLabel(d, now) : null;
    const cont =
      !newDay && prev && it.sender != null && it.sender === prev.sender && !it.quoted && d && pd &&
      d - pd < GROUP_GAP_S * 1000;
    prev = it;
    return { day, cont: Boolean(cont) };
  });
}

// ---------- texts ----------

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

/** What an error code from the server means, for a person. */
export const errorText = (code) =>
  (Object.hasOwn(ERROR_TEXT, code) && ERROR_TEXT[code]) || `Not done (${code || 'unknown error'}).`;

export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** A group header's presence line: "3 members, 2 online". */
export const membersLine = (total, online) => `${plural(total, 'member')}${online ? `, ${online} online` : ''}`;

/** The typing line for the names typing in a room ('' when nobody is). */
export function typingText(names) {
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length > 2) return `${names.length} people are typing…`;
  return '';
}

/** The tab title: the open room's title, and the total unread in front. */
export function pageTitle(total, roomTitle) {
  const base = roomTitle ? `${roomTitle} · Natter` : 'Natter';
  return total > 0 ? `(${total}) ${base}` : base;
}

/** The first character (a whole code point) of a name, for its avatar. */
export const initial = (name) => Array.from(name)[0] || '?';

/** A stable hue per name, so a contact keeps its colour everywhere. */
export function hueOf(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

/** Words as the server's search reads them: runs of letters and digits, lowercased. */
export const searchWords = (text) => text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter(Boolean);

/**
 * A text cut into plain and marked pieces, each query word (lowercase) found
 * marked, left to right: [{text, mark}]. The pieces go into the page as text
 * nodes, never as markup.
 */
export function markWords(text, words) {
  const out = [];
  const lower = text.toLowerCase();
  let i = 0;
  while (i < text.length) {
    let hit = null;
    for (const w of words) {
      const at = lower.indexOf(w, i);
      if (at !== -1 && (!hit || at < hit.at)) hit = { at, len: w.length };
    }
    if (!hit) break;
    out.push({ text: text.slice(i, hit.at), mark: false }, { text: text.slice(hit.at, hit.at + hit.len), mark: true });
    i = hit.at + hit.len;
  }
  out.push({ text: text.slice(i), mark: false });
  return out;
}

/** A version 4 UUID from 16 random bytes (when crypto.randomUUID is missing: plain http). */
export function uuidFromBytes(bytes) {
  const b = Uint8Array.from(bytes);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
