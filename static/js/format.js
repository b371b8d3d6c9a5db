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
  blocked: 'You cannot write to this person: one of you blocks the other.',
  declined: 'They declined this group lately.',
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

// ---------- notifications ----------

/** A character that continues a word: an "@name" inside a word mentions nobody. */
export const WORD_CHAR = /[\p{L}\p{N}_]/u;

/**
 * Whether `text` mentions `username`: "@username", in any case, not inside a
 * longer word ("mail@bob" and "@bobby" do not mention bob). The server's rule
 * for pushes is the same (src/domain/rules.rs).
 */
export function mentions(text, username) {
  if (!username) return false;
  const hay = text.toLowerCase();
  const needle = `@${username.toLowerCase()}`;
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) {
    const before = i > 0 ? hay[i - 1] : '';
    const after = hay.slice(i + needle.length).match(/^./u)?.[0] || '';
    if (!WORD_CHAR.test(before) && !WORD_CHAR.test(after)) return true;
  }
  return false;
}

/** A chat's notification level when the server has not said: direct rooms all, groups mentions. */
export const defaultLevel = (kind) => (kind === 'group' ? 'mentions' : 'all');

/** Whether a message from someone else deserves a notification at `level`. */
export function worthNotifying(level, text, myName) {
  if (level === 'all') return true;
  if (level === 'mentions') return mentions(text || '', myName);
  return false;
}

/** The favicon badge's text: the count, capped. */
export const badgeText = (n) => (n > 99 ? '99+' : String(n));

// ---------- the message box ----------

/** The server's limit on a message, in characters once trimmed (../shared/PROTOCOL.md). */
export const MAX_MESSAGE_CHARS = 4000;
/** The counter under the box shows from this share of the limit on (3,600 of 4,000). */
export const COUNTER_FROM = 0.9;

const WHITE_SPACE = /\p{White_Space}/u;

/**
 * A message's length as the server counts it: Unicode scalar values (code
 * points, not UTF-16 units) once white space is trimmed from both ends (Rust's
 * str::trim, the Unicode White_Space property).
 */
export function messageLength(text) {
  const chars = Array.from(text);
  let start = 0;
  let end = chars.length;
  while (start < end && WHITE_SPACE.test(chars[start])) start += 1;
  while (end > start && WHITE_SPACE.test(chars[end - 1])) end -= 1;
  return end - start;
}

/** The counter for a message of `n` characters: null while far from the limit, else {text, over}. */
export function charCounter(n, max = MAX_MESSAGE_CHARS) {
  if (n < Math.floor(max * COUNTER_FROM)) return null;
  const over = n > max;
  return { text: over ? `${n} / ${max}: too long` : `${n} / ${max}`, over };
}

/** Why a message over the limit is not sent (it stays where it was typed, whole). */
export const tooLongText = (n, max = MAX_MESSAGE_CHARS) => `Too long to send: ${n} characters, the limit is ${max}.`;

// Characters of a username (src/domain/rules.rs): what an "@" being typed may be followed by.
const NAME_CHAR = /[A-Za-z0-9_.-]/;
const MAX_NAME = 32;

/**
 * The mention being typed at the caret: the "@" (not inside a word) and the
 * name characters around the caret, as {at, end, prefix} (prefix lowercased,
 * up to the caret), or null.
 */
export function mentionQuery(value, caret) {
  let start = caret;
  while (start > 0 && caret - start <= MAX_NAME && NAME_CHAR.test(value[start - 1])) start -= 1;
  const at = start - 1;
  if (at < 0 || value[at] !== '@' || caret - start > MAX_NAME) return null;
  if (at > 0 && WORD_CHAR.test(value[at - 1])) return null;
  let end = caret;
  while (end < value.length && NAME_CHAR.test(value[end])) end += 1;
  return { at, end, prefix: value.slice(start, caret).toLowerCase() };
}

/** Usernames starting with `prefix`, mine left out, sorted, at most `limit`. */
export function namesStarting(names, prefix, me, limit = 8) {
  const mine = (me || '').toLowerCase();
  return [...new Set(names.map((n) => n.toLowerCase()))]
    .filter((n) => n !== mine && n.startsWith(prefix))
    .sort()
    .slice(0, limit);
}

// ---------- attachments ----------

/** Files one message may carry (the server's limit). */
export const MAX_ATTACHMENTS = 10;
/** The server's limit on one upload when the page does not say (<body data-max-upload-bytes>). */
export const MAX_UPLOAD_BYTES = 26214400;
/** Types shown as pictures in the message (with their width and height); any other file is a chip. */
export const INLINE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
/** The largest box a picture takes in a message, in CSS pixels each way. */
export const IMAGE_BOX = 320;

const SIZE_UNITS = ['KB', 'MB', 'GB', 'TB'];

/** A size for a person: "512 B", "1.5 KB", "25 MB" (units of 1024; one decimal under 10). */
export function humanSize(bytes) {
  const n = bytes == null ? NaN : Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1024) return `${Math.round(n)} B`;
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < SIZE_UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  const shown = v < 10 ? Math.round(v * 10) / 10 : Math.round(v);
  if (shown >= 1024 && i < SIZE_UNITS.length - 1) return `1 ${SIZE_UNITS[i + 1]}`;
  return `${shown} ${SIZE_UNITS[i]}`;
}

/**
 * The box a picture of width × height takes: scaled down (never up) to fit
 * `max` × `max`, whole pixels, at least 1; null unless both are positive.
 */
export function boxSize(width, height, max = IMAGE_BOX) {
  const w = Number(width);
  const h = Number(height);
  if (!(w > 0 && h > 0 && Number.isFinite(w) && Number.isFinite(h))) return null;
  const scale = Math.min(1, max / w, max / h);
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}

/**
 * A URL of an attachment, only if it is a path on this site ("/…", not "//…",
 * no backslash, white space or control character); anything else is null,
 * so that no `javascript:` or foreign address ever becomes a link or an image.
 */
export function sitePath(url) {
  return typeof url === 'string' && /^\/(?![/\\])[^\s\\\p{Cc}]*$/u.test(url) ? url : null;
}

/** Where an attachment is downloaded: its `url`, or the API's path for its id. */
export const attachmentUrl = (a) => sitePath(a.url) || `/api/v1/attachments/${encodeURIComponent(a.id)}`;

/** Whether an attachment shows as a picture: a type browsers draw, its size known. */
export const isInline = (a) => INLINE_TYPES.has(a.content_type) && boxSize(a.width, a.height) !== null;

/** What a picture shows: its thumbnail, or the file itself when it has none. */
export const pictureSrc = (a) => sitePath(a.thumbnail_url) || attachmentUrl(a);

/** A file name's extension for its icon ("PDF"), up to 4 letters or digits; '' if none. */
export function fileExt(name) {
  const m = /\.([\p{L}\p{N}]{1,4})$/u.exec(String(name || ''));
  return m ? m[1].toUpperCase() : '';
}

/** What stands for a message's attachments where only text goes: "📎 name", "📎 3 files"; '' for none. */
export function attachmentSummary(list) {
  if (!Array.isArray(list) || !list.length) return '';
  if (list.length === 1) return `📎 ${list[0]?.name || 'file'}`;
  return `📎 ${list.length} files`;
}

/** Why a file is not uploaded: larger than the server takes. */
export const tooLargeText = (size, max = MAX_UPLOAD_BYTES) =>
  `Too large to send: ${humanSize(size)}, the limit is ${humanSize(max)}.`;

/** A file the page can tell is refused before uploading it: the reason, or null. */
export const uploadRefusal = (file, max = MAX_UPLOAD_BYTES) => (file.size > max ? tooLargeText(file.size, max) : null);

// An upload's status when its answer says no code (status 0: no answer at all).
const UPLOAD_CODE = {
  0: 'network', 401: 'unauthorized', 403: 'not_member', 413: 'too_large', 422: 'invalid', 429: 'rate_limited', 503: 'unavailable',
};
const UPLOAD_TEXT = {
  network: 'Upload failed: no connection to the server.',
  unauthorized: 'You are logged out: log in again to send files.',
  invalid: 'The server cannot take this file.',
  failed: 'Upload failed.',
};
// Refusals that may pass: the chip offers Retry.
const UPLOAD_RETRYABLE = new Set(['network', 'rate_limited', 'unavailable', 'timeout', 'failed']);
const SERVER_TEXT_MAX = 200;

/**
 * Why an upload answered `status` with `body` (the parsed JSON, or null) failed:
 * {code, text, retryable}. The text is the server's message when it sent
 * one, else ours for the code (a 413 from a proxy carries no JSON).
 */
export function uploadError(status, body, max = MAX_UPLOAD_BYTES) {
  const err = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : null;
  const code = (typeof err?.code === 'string' && err.code) || UPLOAD_CODE[status] || 'failed';
  const said = typeof err?.message === 'string' ? err.message.trim() : '';
  let text = said.length > SERVER_TEXT_MAX ? `${said.slice(0, SERVER_TEXT_MAX)}…` : said;
  if (!text && code === 'too_large') text = `Too large to send: the limit is ${humanSize(max)}.`;
  if (!text) text = UPLOAD_TEXT[code] || errorText(code);
  return { code, text, retryable: UPLOAD_RETRYABLE.has(code) || status >= 500 };
}
