// Message text as rich text (static/js/richtext.js, the rule in
// docs/rendering.md) on the fake DOM: what becomes a link, the Markdown
// subset, mentions, emoji-only; and, for a corpus of hostile and odd texts,
// that only the allowed elements and attributes are ever created, every link
// is http(s), the text reads back unchanged, and long texts stay fast.
// node --test tests/js/
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { installFakeDom } from './fake-dom.mjs';

installFakeDom();
const { isEmojiOnly, parseRich, richNodes } = await import('../../static/js/richtext.js');

const NAMES = ['anna', 'ann.lee', 'bob', 'b_b', 'x-y', 'bo'];
const ME = 'anna';

/** The text rendered into a p, as the page does. */
function render(text, names = NAMES, me = ME) {
  const p = document.createElement('p');
  p.append(...richNodes(text, names, me));
  return p;
}

/** Every element under `root` (not root itself). */
function elements(root) {
  const out = [];
  const walk = (e) => e.children.forEach((c) => { out.push(c); walk(c); });
  walk(root);
  return out;
}

const tags = (root) => elements(root).map((e) => e.localName);
const only = (root, tag) => elements(root).filter((e) => e.localName === tag);
/** What shows: the text without the hidden Markdown markers (span.md). */
const shown = (e) => e.childNodes
  .map((n) => (n.nodeType === 3 ? n.data : n.classList.contains('md') ? '' : shown(n)))
  .join('');

const ALLOWED_TAGS = new Set(['a', 'strong', 'em', 's', 'code', 'pre', 'blockquote', 'span', 'br']);
const ALLOWED_ATTRS = new Set(['class', 'href', 'rel', 'target', 'data-username']);

/** The safety rules, for any text. */
function assertSafe(text, names = NAMES) {
  const p = render(text, names);
  for (const e of elements(p)) {
    assert.ok(ALLOWED_TAGS.has(e.localName), `<${e.localName}> from ${JSON.stringify(text.slice(0, 80))}`);
    for (const k of e.attrs.keys()) assert.ok(ALLOWED_ATTRS.has(k), `attribute ${k} from ${JSON.stringify(text.slice(0, 80))}`);
    if (e.localName === 'a') {
      assert.match(e.href, /^https?:\/\//, `href ${e.href}`);
      assert.equal(e.getAttribute('rel'), 'noopener noreferrer');
      assert.equal(e.getAttribute('target'), '_blank');
    } else {
      assert.equal(e.hasAttribute('href'), false);
    }
  }
  assert.equal(p.textContent, text, 'the text reads back as it was sent');
  return p;
}

describe('links', () => {
  it('http, https and www. addresses become links that open apart', () => {
    const p = assertSafe('see https://example.com/a?b=1#c and www.rust-lang.org or HTTP://EXAMPLE.ORG');
    assert.deepEqual(only(p, 'a').map((a) => [a.textContent, a.href]), [
      ['https://example.com/a?b=1#c', 'https://example.com/a?b=1#c'],
      ['www.rust-lang.org', 'https://www.rust-lang.org/'],
      ['HTTP://EXAMPLE.ORG', 'http://example.org/'],
    ]);
  });

  it('trailing punctuation and unmatched brackets stay outside; matched ones inside', () => {
    const cases = [
      ['Look: https://example.com.', 'https://example.com'],
      ['(see https://example.com/x)', 'https://example.com/x'],
      ['https://example.com/x?, right', 'https://example.com/x'],
      ['"https://example.com/q"', 'https://example.com/q'],
      ['https://en.wikipedia.org/wiki/Rust_(language)', 'https://en.wikipedia.org/wiki/Rust_(language)'],
      ['(https://en.wikipedia.org/wiki/Rust_(language))', 'https://en.wikipedia.org/wiki/Rust_(language)'],
      ['**https://example.com/b**', 'https://example.com/b'],
      ['https://example.com/a_b_c!', 'https://example.com/a_b_c'],
    ];
    for (const [text, link] of cases) {
      const links = only(assertSafe(text), 'a');
      assert.deepEqual(links.map((a) => a.textContent), [link], text);
    }
  });

  it('no other scheme is ever a link', () => {
    for (const text of [
      'javascript:alert(1)', 'JaVaScRiPt:alert(1)', '[x](javascript:alert(1))', 'data:text/html,<script>alert(1)</script>',
      'vbscript:msgbox(1)', 'ftp://example.com', 'mailto:ann@example.com', 'file:///etc/passwd', 'xhttps://example.com',
      'http://', 'https://.', 'www.', 'http://javascript:alert(1)', '//example.com', 'https:example.com',
    ]) {
      assert.deepEqual(tags(assertSafe(text)).filter((t) => t === 'a'), [], text);
    }
  });

  it('a Markdown link is text, its address a plain link only if it is http(s)', () => {
    const p = assertSafe('[docs](https://example.com/docs)');
    assert.deepEqual(only(p, 'a').map((a) => a.textContent), ['https://example.com/docs']);
    assert.ok(p.textContent.startsWith('[docs]('));
  });

  it('a quote character ends a link: no attribute can be broken out of', () => {
    const p = assertSafe('https://example.com/"onmouseover="alert(1)" <b>');
    assert.deepEqual(only(p, 'a').map((a) => a.href), ['https://example.com/']);
  });
});

describe('Markdown subset', () => {
  it('bold, italic (both markers), strike, inline code', () => {
    const p = assertSafe('**bold** *it* _also_ ~~gone~~ `x < y`');
    assert.deepEqual(only(p, 'strong').map(shown), ['bold']);
    assert.deepEqual(only(p, 'em').map(shown), ['it', 'also']);
    assert.deepEqual(only(p, 's').map(shown), ['gone']);
    assert.deepEqual(only(p, 'code').map((c) => c.textContent), ['x < y']);
    assert.equal(shown(p), 'bold it also gone x < y', 'the markers do not show');
  });

  it('***both*** and nesting across kinds', () => {
    const p = assertSafe('***both*** and **bold _in it_**');
    assert.deepEqual(tags(p).filter((t) => t !== 'span'), ['strong', 'em', 'strong', 'em']);
    assert.equal(shown(only(p, 'strong')[1]), 'bold in it');
  });

  it('code is literal: no links, emphasis or mentions inside', () => {
    const p = assertSafe('`**not** https://example.com @bob`');
    assert.deepEqual(tags(p).filter((t) => t !== 'span'), ['code']);
    const block = assertSafe('```js\nlet a = **b**; // https://example.com @bob\n<b>x</b>\n```');
    assert.deepEqual(tags(block).filter((t) => t !== 'span'), ['pre', 'code']);
    assert.equal(only(block, 'code')[0].textContent, 'let a = **b**; // https://example.com @bob\n<b>x</b>');
  });

  it('longer backtick runs hold shorter ones', () => {
    assert.deepEqual(only(assertSafe('``a ` b``'), 'code').map((c) => c.textContent), ['a ` b']);
  });

  it('"> " lines are one quote, with inline Markdown; the text goes on after it', () => {
    const p = assertSafe('before\n> one *two*\n> three\n>\nafter');
    const [quote] = only(p, 'blockquote');
    assert.equal(shown(quote), 'one two\nthree\n');
    assert.deepEqual(only(quote, 'em').map(shown), ['two']);
    assert.equal(shown(p), 'beforeone two\nthree\nafter', 'the newlines around the block are the block');
    assert.equal(only(assertSafe('>not a quote'), 'blockquote').length, 0);
  });

  it('unbalanced markers stay as text', () => {
    for (const text of [
      '**a', 'a**', '*a', 'a*', '_a', 'a_', '~~a', 'a~~', '`a', '```\nno end', '~a~', '****a****', '__a__', '* a *',
      '2 * 3 * 4', 'snake_case_name', 'a ** b', '**', '~~', '``', '`',
    ]) {
      const p = assertSafe(text);
      assert.deepEqual(tags(p), [], text);
      assert.equal(shown(p), text, text);
    }
  });

  it('overlapping markers nest or stay text, never cross', () => {
    for (const [text, want] of [
      ['**_x**_', ['strong']],
      ['_**x_**', ['em']],
      ['*a **b* c**', ['em']],
      ['~~**x~~**', ['s']],
      ['**a***b*', ['strong', 'em']],
    ]) {
      assert.deepEqual(tags(assertSafe(text)).filter((t) => t !== 'span'), want, text);
    }
    assert.equal(shown(render('**_x**_')), '_x_');
  });

  it('every character stays in the tree, in order', () => {
    const flat = (nodes) => nodes.map((n) => (n.children ? flat(n.children) : n.type === 'code' ? n.open + n.text + n.close : n.text)).join('');
    for (const text of ['a **b** `c` d\n> e _f_\n```\ng\n```\nh @bob www.x.org ~~i~~', '```\n```', '> \n>', '\n\n**\n**']) {
      assert.equal(flat(parseRich(text, NAMES)), text);
    }
  });
});

describe('mentions', () => {
  it('@member is highlighted, @me more; the name is the longest member name', () => {
    const p = assertSafe('@anna and @BOB, @ann.lee. @bo');
    assert.deepEqual(only(p, 'span').filter((s) => s.classList.contains('mention')).map((s) => [s.textContent, s.className, s.dataset.username]), [
      ['@anna', 'mention me', 'anna'],
      ['@BOB', 'mention', 'bob'],
      ['@ann.lee', 'mention', 'ann.lee'],
      ['@bo', 'mention', 'bo'],
    ]);
  });

  it('the rule of format.js mentions(): not inside a word on either side, members only', () => {
    const mentioned = (text) => only(assertSafe(text), 'span').filter((s) => s.classList.contains('mention')).map((s) => s.textContent);
    assert.deepEqual(mentioned('mail@bob.com'), []);
    assert.deepEqual(mentioned('@bobby'), []);
    assert.deepEqual(mentioned('@bob_2'), []);
    assert.deepEqual(mentioned('@carol'), []);
    assert.deepEqual(mentioned('é@bob'), []);
    assert.deepEqual(mentioned('@@bob'), ['@bob']);
    assert.deepEqual(mentioned('(@b_b) @x-y!'), ['@b_b', '@x-y']);
    assert.deepEqual(mentioned('@bob@bob'), ['@bob']);
    assert.deepEqual(mentioned('@bob.lee'), ['@bob'], 'a dot ends a name');
    assert.deepEqual(mentioned('https://example.com/@bob'), [], 'inside a link');
    assert.deepEqual(mentioned('**@bob**'), ['@bob']);
    assert.deepEqual(mentioned('@'), []);
    assert.deepEqual(mentioned('@@'), []);
  });

  it('odd member names are matched as text, never as patterns', () => {
    const names = ['a.b', 'a*b', '(x)', '.*', '', 'élise', 'ü'];
    for (const text of ['@a.b @axb @(x) @.* @élise @ü @ @aXb', '@a*b*']) assertSafe(text, names);
    const spans = only(render('@.* @axb', names), 'span').map((s) => s.textContent);
    assert.deepEqual(spans, ['@.*']);
  });
});

describe('emoji-only', () => {
  it('one to three emoji (with modifiers, flags, sequences), white space allowed', () => {
    for (const yes of ['👍', ' 😂 ', '👍🏽 ❤️', '🇫🇷🇩🇪', '👨‍👩‍👧‍👦', '🏳️‍🌈', '❤️‍🔥', '🏴󠁧󠁢󠁥󠁮󠁧󠁿', '1️⃣', '😀\n😀\n😀']) {
      assert.ok(isEmojiOnly(yes), yes);
    }
    for (const no of ['', ' ', 'a👍', '👍 ok', '👍👍👍👍', '☺', '©', '1', '#', ':)', '**👍**', '👍.']) {
      assert.ok(!isEmojiOnly(no), JSON.stringify(no));
    }
  });
});

describe('hostile and long texts', () => {
  const corpus = [
    '<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '"><svg onload=alert(1)>', "'; alert(1); '",
    '<a href="javascript:alert(1)">x</a>', '[x](javascript:alert(1))', '[x]( javascript:alert(1) )', '![x](https://e.example/i.png)',
    'https://e.example/<script>alert(1)</script>', 'www.e.example/"><img src=x onerror=alert(1)>', '```<script>\n</script>```',
    '`<img src=x onerror=alert(1)>`', '> <iframe src=javascript:alert(1)>', '**<b>x</b>**', '@<script>', '&lt;b&gt; &amp;',
    '\u202etxt.exe', '\u0000\u0001', 'https://e.example/\u202e', '\ud800', 'a\r\nb\r\n> c\r\n```\r\nd\r\n```',
  ];

  it('only allowed elements and attributes, http(s) links, the text unchanged', () => {
    for (const text of corpus) assertSafe(text);
  });

  // A quadratic reading of 4000 characters would still pass in time; of
  // 100,000 it would not (minutes, not milliseconds).
  const patterns = ['*', '_', '~', '`', '**', '*a ', 'a* ', '_a ', 'a_ ', '**_', '~~a ', '` ``', '@', '@bo', '@@b',
    'http://a.b/(', 'https://x.y/)', 'www.a', '-www.a:', '(http://[', ',https://.', '> ', '```\n', '\n', '[(', '*a*', '👍',
    '**a ~~a _a `', 'a~~**_`'];

  it('4,000 characters of any one pattern: safe and quick', () => {
    for (const p of patterns) {
      const text = p.repeat(Math.ceil(4000 / p.length)).slice(0, 4000);
      const t0 = performance.now();
      assertSafe(text);
      isEmojiOnly(text);
      assert.ok(performance.now() - t0 < 1000, `${JSON.stringify(p)} x 4000 took ${performance.now() - t0} ms`);
    }
  });

  it('100,000 characters of any one pattern: linear time', () => {
    for (const p of patterns) {
      const text = p.repeat(Math.ceil(100000 / p.length)).slice(0, 100000);
      const t0 = performance.now();
      parseRich(text, NAMES);
      isEmojiOnly(text);
      assert.ok(performance.now() - t0 < 3000, `${JSON.stringify(p)} x 100000 took ${performance.now() - t0} ms`);
    }
  });

  it('deep nesting builds without running out of stack', () => {
    const text = `${'**a ~~a '.repeat(250)}x${'~~**'.repeat(250)}`;
    const p = assertSafe(text);
    assert.equal(only(p, 'strong').length, 250);
  });
});
