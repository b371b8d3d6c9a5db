// A message's text as the reader sees it: links, a small Markdown subset,
// @mentions and emoji-only messages (the rule: docs/rendering.md). The server
// stores plain text; this is the web client's reading of it.
//
// parseRich() reads a text into a tree of plain objects; richNodes() turns
// that into DOM nodes, only ever through createElement and text nodes —
// never HTML — and only a, strong, em, s, code, pre, blockquote and span.
// Every character of the text stays in the tree, in order: Markdown markers
// go into span.md (hidden by app.css), so an element's textContent is still
// exactly the message (editing, replying and the tests read it back).
//
// Linear in the length of the text: every scan moves forward, and the
// emphasis matching pops each marker at most once (no backtracking regex).

import { WORD_CHAR } from './format.js';

// ---------- links ----------

const URL_START = /^(?:https?:\/\/|www\.)/i;
// Where a link ends: white space and characters that cannot be in a URL.
const URL_STOP = /[\s<>"`]/u;
// Characters that end a sentence rather than the link when they come last.
const TRAILING = new Set(['.', ',', ':', ';', '!', '?', "'", '"', '*', '_', '~']);
const CLOSING = { ')': '(', ']': '[', '}': '{' };
const HOST_START = /[\p{L}\p{N}\[]/u;

/** The character (a whole code point) before `i`, or ''. */
function charBefore(line, i) {
  if (i === 0) return '';
  const low = line.charCodeAt(i - 1);
  return i > 1 && low >= 0xdc00 && low <= 0xdfff ? line.slice(i - 2, i) : line[i - 1];
}

/** The character (a whole code point) at `i`, or ''. */
const charAt = (line, i) => (i < line.length ? String.fromCodePoint(line.codePointAt(i)) : '');

/**
 * The link starting at `i` in `line`: null if nothing there looks like one,
 * else {end, href} — href null when it does not make an http(s) URL, and the
 * text up to `end` is then left as text (not read again for a link, so that
 * a long run of failing candidates costs one pass). http:// and https://
 * addresses, and www. ones (as https); trailing punctuation and a closing
 * bracket without its opening one stay outside.
 */
function linkAt(line, i) {
  if (WORD_CHAR.test(charBefore(line, i))) return null;
  const head = URL_START.exec(line.slice(i, i + 8));
  if (!head) return null;
  let end = i + head[0].length;
  if (end >= line.length || !HOST_START.test(line[end])) return null;
  while (end < line.length && !URL_STOP.test(line[end])) end += 1;
  // Brackets are counted once; trimming takes them off one by one.
  const open = { '(': 0, '[': 0, '{': 0 };
  const close = { ')': 0, ']': 0, '}': 0 };
  for (let k = i; k < end; k += 1) {
    const c = line[k];
    if (c in open) open[c] += 1;
    else if (c in close) close[c] += 1;
  }
  for (;;) {
    const last = line[end - 1];
    if (TRAILING.has(last)) end -= 1;
    else if (last in CLOSING && close[last] > open[CLOSING[last]]) {
      close[last] -= 1;
      end -= 1;
    } else break;
  }
  const text = line.slice(i, end);
  if (!HOST_START.test(text[head[0].length] || '')) return { end, href: null };
  let url;
  try {
    url = new URL(/^www\./i.test(text) ? `https://${text}` : text);
  } catch (_) {
    return { end, href: null };
  }
  const ok = url.protocol === 'http:' || url.protocol === 'https:';
  return { end, href: ok ? url.href : null };
}

// ---------- mentions ----------

/**
 * Usernames by length, longest first, lowercased: a mention is the longest
 * member name after the "@" (the server folds names to lowercase).
 */
function nameIndex(names) {
  const byLength = new Map();
  for (const n of names) {
    const name = String(n).toLowerCase();
    if (!name) continue;
    if (!byLength.has(name.length)) byLength.set(name.length, new Set());
    byLength.get(name.length).add(name);
  }
  return [...byLength.entries()].sort((a, b) => b[0] - a[0]);
}

/**
 * The member named at `i` (an "@") as {end, name}, or null. The rule of
 * format.js's mentions() (and the server's): not inside a word on either side.
 */
function mentionAt(line, i, index) {
  if (WORD_CHAR.test(charBefore(line, i))) return null;
  for (const [len, names] of index) {
    const name = line.slice(i + 1, i + 1 + len).toLowerCase();
    if (name.length === len && names.has(name) && !WORD_CHAR.test(charAt(line, i + 1 + len))) {
      return { end: i + 1 + len, name };
    }
  }
  return null;
}

// ---------- inline Markdown ----------

const runEnd = (line, i) => {
  let j = i;
  while (line[j] === line[i]) j += 1;
  return j;
};

const SPACE = /\s/u;
const ALNUM = /[\p{L}\p{N}]/u;

/** Emphasis kinds a run of markers stands for (as an opener; a closer of three reorders). */
function delimKinds(ch, len) {
  if (ch === '*') return len === 1 ? ['em'] : len === 2 ? ['strong'] : len === 3 ? ['strong', 'em'] : null;
  if (ch === '_') return len === 1 ? ['em'] : null;
  if (ch === '~') return len === 2 ? ['s'] : null;
  return null;
}

/**
 * A line's backtick runs by length: where each run starts, and a cursor past
 * those already used. A code span closes at the next run of its length.
 */
function backtickRuns(line) {
  const byLen = new Map();
  for (let i = line.indexOf('`'); i >= 0; i = line.indexOf('`', i)) {
    const end = runEnd(line, i);
    const len = end - i;
    if (!byLen.has(len)) byLen.set(len, { ats: [], next: 0 });
    byLen.get(len).ats.push(i);
    i = end;
  }
  return byLen;
}

/**
 * One line's inline content: code spans, links, mentions, then emphasis
 * (**bold**, *italic*, _italic_, ~~strike~~) around them. Returns nodes.
 */
function parseInline(line, index) {
  const tokens = [];
  let plain = '';
  const flush = () => {
    if (plain) tokens.push({ t: 'text', text: plain });
    plain = '';
  };
  const ticks = backtickRuns(line);
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === '`') {
      const end = runEnd(line, i);
      const len = end - i;
      const runs = ticks.get(len);
      while (runs.next < runs.ats.length && runs.ats[runs.next] <= i) runs.next += 1;
      if (runs.next < runs.ats.length) {
        const close = runs.ats[runs.next];
        runs.next += 1;
        flush();
        tokens.push({ t: 'atom', node: { type: 'code', open: line.slice(i, end), text: line.slice(end, close), close: line.slice(close, close + len) } });
        i = close + len;
      } else {
        plain += line.slice(i, end);
        i = end;
      }
      continue;
    }
    if (c === 'h' || c === 'H' || c === 'w' || c === 'W') {
      const link = linkAt(line, i);
      if (link && link.href) {
        flush();
        tokens.push({ t: 'atom', node: { type: 'link', href: link.href, text: line.slice(i, link.end) } });
        i = link.end;
        continue;
      }
      if (link) {
        plain += line.slice(i, link.end);
        i = link.end;
        continue;
      }
    }
    if (c === '@') {
      const m = mentionAt(line, i, index);
      if (m) {
        flush();
        tokens.push({ t: 'atom', node: { type: 'mention', name: m.name, text: line.slice(i, m.end) } });
        i = m.end;
        continue;
      }
    }
    if (c === '*' || c === '_' || c === '~') {
      const end = runEnd(line, i);
      const kinds = delimKinds(c, end - i);
      if (kinds) {
        const before = i > 0 ? line[i - 1] : '';
        const after = end < line.length ? line[end] : '';
        let canOpen = Boolean(after) && !SPACE.test(after);
        let canClose = Boolean(before) && !SPACE.test(before);
        // snake_case stays as it is: an underscore inside a word is no marker.
        if (c === '_') {
          canOpen = canOpen && !ALNUM.test(before);
          canClose = canClose && !ALNUM.test(after);
        }
        if (canOpen || canClose) {
          flush();
          tokens.push({ t: 'delim', ch: c, text: line.slice(i, end), kinds, canOpen, canClose, closes: [], opens: [] });
          i = end;
          continue;
        }
      }
      plain += line.slice(i, end);
      i = end;
      continue;
    }
    plain += c;
    i += 1;
  }
  flush();
  matchEmphasis(tokens);
  return buildInline(tokens);
}

/**
 * Pairs emphasis markers, left to right, with a stack of openers: a closer
 * takes the nearest opener of its kind and drops (as text) the openers above
 * it, so what is paired always nests (`**_x**_` is bold "_x" and a "_").
 * Sets each marker token's `closes` and `opens` (kinds, in document order).
 */
function matchEmphasis(tokens) {
  const stack = []; // openers: {tok, kind, key}
  // Openers on the stack per character and kind: a closer looks down the
  // stack only when its opener is there, and pops all it passes.
  const open = new Map();
  const opened = (key) => open.get(key) || 0;
  const drop = () => {
    const e = stack.pop();
    open.set(e.key, opened(e.key) - 1);
    return e;
  };
  for (const tok of tokens) {
    if (tok.t !== 'delim') continue;
    let left = tok.kinds;
    while (tok.canClose && left.some((kind) => opened(tok.ch + kind) > 0)) {
      const keys = left.map((kind) => tok.ch + kind);
      let e = drop();
      while (!keys.includes(e.key)) {
        // An opener inside this pair that was never closed: it stays text.
        e.tok.opens.splice(e.tok.opens.indexOf(e.kind), 1);
        e = drop();
      }
      tok.closes.push(e.kind);
      left = left.filter((kind) => kind !== e.kind);
    }
    if (tok.canOpen) {
      for (const kind of left) {
        const key = tok.ch + kind;
        tok.opens.push(kind);
        stack.push({ tok, kind, key });
        open.set(key, opened(key) + 1);
      }
    }
  }
  // Openers left without a closer stay text.
  for (const e of stack) e.tok.opens.splice(e.tok.opens.indexOf(e.kind), 1);
}

const markText = (tok, kind) => tok.ch.repeat(kind === 'em' ? 1 : 2);

/** Tokens with their emphasis pairs into nodes; unpaired markers are text. */
function buildInline(tokens) {
  const root = { children: [] };
  const open = [root];
  const add = (node) => {
    const kids = open[open.length - 1].children;
    const last = kids[kids.length - 1];
    if (node.type === 'text' && last && last.type === 'text') last.text += node.text;
    else kids.push(node);
  };
  for (const tok of tokens) {
    if (tok.t === 'text') add({ type: 'text', text: tok.text });
    else if (tok.t === 'atom') add(tok.node);
    else {
      // The run's characters: closing marks, what pairs with nothing (text), opening marks.
      let used = 0;
      for (const kind of tok.closes) {
        const text = markText(tok, kind);
        used += text.length;
        open.pop();
        add({ type: 'mark', text });
      }
      const opening = tok.opens.map((kind) => markText(tok, kind));
      const rest = tok.text.length - used - opening.join('').length;
      if (rest > 0) add({ type: 'text', text: tok.text.slice(used, used + rest) });
      tok.opens.forEach((kind, n) => {
        add({ type: 'mark', text: opening[n] });
        const node = { type: kind, children: [] };
        add(node);
        open.push(node);
      });
    }
  }
  return root.children;
}

// ---------- blocks ----------

const FENCE_OPEN = /^```[^`]*$/;
const FENCE_CLOSE = /^```\s*$/;
const QUOTE = /^>(?: |$)/;

/**
 * A text as a tree: paragraphs' lines (inline content and newlines), ```
 * fenced code blocks (literal), and runs of "> " lines (quotes, inline content).
 * `names` are the usernames a mention may name (the open room's members).
 * Node types: text, mark (a Markdown marker, hidden), strong, em, s, code,
 * pre, quote, link, mention.
 */
export function parseRich(text, names = []) {
  const index = nameIndex(names);
  const lines = text.split('\n');
  const out = [];
  const push = (node) => {
    const last = out[out.length - 1];
    if (node.type === last?.type && (node.type === 'text' || node.type === 'mark')) last.text += node.text;
    else out.push(node);
  };
  // The newline before a block and after it are marks: the block itself breaks the line.
  const blockBreak = () => {
    const last = out[out.length - 1];
    if (last && last.type === 'text' && last.text.endsWith('\n')) {
      last.text = last.text.slice(0, -1);
      if (!last.text) out.pop();
      push({ type: 'mark', text: '\n' });
    }
  };
  // A fence that never closes is text; once one has not found a closer, none will.
  let fencesClose = true;
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const nl = i < lines.length - 1 ? '\n' : '';
    if (fencesClose && FENCE_OPEN.test(line)) {
      let j = i + 1;
      while (j < lines.length && !FENCE_CLOSE.test(lines[j])) j += 1;
      if (j < lines.length) {
        blockBreak();
        const body = lines.slice(i + 1, j);
        push({ type: 'mark', text: `${line}\n` });
        out.push({ type: 'pre', text: body.join('\n') });
        push({ type: 'mark', text: `${body.length ? '\n' : ''}${lines[j]}${j < lines.length - 1 ? '\n' : ''}` });
        i = j + 1;
        continue;
      }
      fencesClose = false;
    }
    if (QUOTE.test(line)) {
      blockBreak();
      const quote = { type: 'quote', children: [] };
      let j = i;
      for (; j < lines.length && QUOTE.test(lines[j]); j += 1) {
        if (j > i) quote.children.push({ type: 'text', text: '\n' });
        const marker = lines[j].startsWith('> ') ? '> ' : '>';
        quote.children.push({ type: 'mark', text: marker }, ...parseInline(lines[j].slice(marker.length), index));
      }
      out.push(quote);
      if (j < lines.length) push({ type: 'mark', text: '\n' });
      i = j;
      continue;
    }
    for (const node of parseInline(line, index)) push(node);
    if (nl) push({ type: 'text', text: nl });
    i += 1;
  }
  return out;
}

// ---------- emoji-only ----------

// One emoji: a flag, a keycap, or a pictograph with its modifiers, tags and
// ZWJ-joined parts. Sticky: read one at a time, left to right.
const EMOJI = /\p{RI}\p{RI}|[#*0-9]\uFE0F?\u20E3|\p{Extended_Pictographic}(?:\uFE0F|\p{Emoji_Modifier})?(?:[\u{E0020}-\u{E007E}]+\u{E007F})?(?:\u200D\p{Extended_Pictographic}(?:\uFE0F|\p{Emoji_Modifier})?)*/uy;
// Shown as a picture: not a pictograph drawn as text by default (©, ™, ↔ alone).
const PICTURE = /\p{Emoji_Presentation}|\uFE0F|\u20E3/u;
const MAX_EMOJI_ONLY = 3;

/** Whether a text is 1–3 emoji and nothing else (white space aside): shown larger. */
export function isEmojiOnly(text) {
  let n = 0;
  let i = 0;
  while (i < text.length) {
    if (SPACE.test(text[i])) {
      i += 1;
      continue;
    }
    EMOJI.lastIndex = i;
    const m = EMOJI.exec(text);
    if (!m || !PICTURE.test(m[0])) return false;
    n += 1;
    if (n > MAX_EMOJI_ONLY) return false;
    i = EMOJI.lastIndex;
  }
  return n > 0;
}

// ---------- DOM ----------

function span(className, text) {
  const s = document.createElement('span');
  s.className = className;
  s.textContent = text;
  return s;
}

function element(tag, children) {
  const e = document.createElement(tag);
  e.append(...children);
  return e;
}

function code(text) {
  const c = document.createElement('code');
  c.textContent = text;
  return c;
}

/** One node of the tree as DOM nodes (strings become text nodes). */
function toDom(node, me) {
  const kids = () => node.children.flatMap((n) => toDom(n, me));
  switch (node.type) {
    case 'text':
      return [node.text];
    case 'mark':
      return [span('md', node.text)];
    case 'strong':
    case 'em':
    case 's':
      return [element(node.type, kids())];
    case 'quote':
      return [element('blockquote', kids())];
    case 'code':
      return [span('md', node.open), code(node.text), span('md', node.close)];
    case 'pre':
      return [element('pre', [code(node.text)])];
    case 'link': {
      const a = document.createElement('a');
      a.href = node.href;
      a.setAttribute('rel', 'noopener noreferrer');
      a.setAttribute('target', '_blank');
      a.textContent = node.text;
      return [a];
    }
    case 'mention': {
      const s = span(node.name === me ? 'mention me' : 'mention', node.text);
      s.dataset.username = node.name;
      return [s];
    }
    default:
      throw new Error(`richtext: unknown node ${node.type}`);
  }
}

/**
 * A message's text as DOM nodes (to append to its .text): `names` are the
 * open room's usernames, `me` mine (a mention of me is marked "me").
 */
export function richNodes(text, names, me) {
  const lower = (me || '').toLowerCase();
  return parseRich(text, names).flatMap((n) => toDom(n, lower));
}
