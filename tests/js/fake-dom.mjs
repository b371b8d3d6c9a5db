// Just enough of a DOM for static/js/markup.js and dom.js to build elements in
// node (no jsdom: no npm dependencies), and to serialise them as HTML.
// Selectors: compounds like `time`, `.text`, `li.message[data-seq]`,
// `[data-testid="seen"]`, `.mine:not([data-seq])`, and descendants of them
// (`.meta time`). Events are dispatched to listeners and bubble up the
// parents (no capture phase). installFakePage() adds a document to hold a
// page (body, getElementById, focus), for modules that read the page.

const dataAttr = (key) => `data-${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
const dataKey = (attr) => attr.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const escapeText = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const escapeAttr = (s) => escapeText(s).replace(/"/g, '&quot;');

class Text {
  constructor(data) {
    this.nodeType = 3;
    this.data = String(data);
    this.parentNode = null;
  }

  get textContent() {
    return this.data;
  }

  get outerHTML() {
    return escapeText(this.data);
  }
}

const REFLECTED = {
  id: 'id', title: 'title', href: 'href', type: 'type', name: 'name', tabIndex: 'tabindex', rows: 'rows', maxLength: 'maxlength',
};

class Element {
  constructor(tag) {
    this.nodeType = 1;
    this.tagName = tag.toUpperCase();
    this.localName = tag.toLowerCase();
    this.attrs = new Map();
    this.childNodes = [];
    this.parentNode = null;
    this.value = '';
    this.disabled = false;
    this.listeners = {};
    this.style = { props: {}, setProperty(k, v) { this.props[k] = v; } };
    const el = this;
    this.dataset = new Proxy({}, {
      get: (_, k) => (typeof k === 'string' ? el.attrs.get(dataAttr(k)) : undefined),
      set: (_, k, v) => { el.attrs.set(dataAttr(k), String(v)); return true; },
      deleteProperty: (_, k) => { el.attrs.delete(dataAttr(k)); return true; },
      has: (_, k) => el.attrs.has(dataAttr(k)),
      ownKeys: () => [...el.attrs.keys()].filter((a) => a.startsWith('data-')).map(dataKey),
      getOwnPropertyDescriptor: (_, k) => (el.attrs.has(dataAttr(k))
        ? { value: el.attrs.get(dataAttr(k)), enumerable: true, configurable: true } : undefined),
    });
    this.classList = {
      list: () => (el.attrs.get('class') || '').split(/\s+/).filter(Boolean),
      write: (l) => el.attrs.set('class', l.join(' ')),
      contains: (c) => el.classList.list().includes(c),
      add: (...cs) => el.classList.write([...new Set([...el.classList.list(), ...cs])]),
      remove: (...cs) => el.classList.write(el.classList.list().filter((x) => !cs.includes(x))),
      toggle: (c, force) => {
        const on = force === undefined ? !el.classList.contains(c) : Boolean(force);
        if (on) el.classList.add(c);
        else el.classList.remove(c);
        return on;
      },
    };
  }

  get className() { return this.attrs.get('class') || ''; }
  set className(v) { this.attrs.set('class', String(v)); }
  get hidden() { return this.attrs.has('hidden'); }
  set hidden(v) { if (v) this.attrs.set('hidden', ''); else this.attrs.delete('hidden'); }

  setAttribute(k, v) { this.attrs.set(k, String(v)); }
  getAttribute(k) { return this.attrs.has(k) ? this.attrs.get(k) : null; }
  hasAttribute(k) { return this.attrs.has(k); }
  removeAttribute(k) { this.attrs.delete(k); }

  get children() { return this.childNodes.filter((n) => n.nodeType === 1); }
  get parentElement() { return this.parentNode; }
  get firstElementChild() { return this.children[0] || null; }

  get textContent() { return this.childNodes.map((n) => n.textContent).join(''); }
  set textContent(v) { this.replaceChildren(String(v)); }

  #adopt(nodes) {
    return nodes.flatMap((n) => {
      if (n instanceof Fragment) {
        const kids = n.childNodes;
        n.childNodes = [];
        return kids;
      }
      const node = typeof n === 'string' ? new Text(n) : n;
      node.parentNode?.removeChild(node);
      return [node];
    }).map((n) => { n.parentNode = this; return n; });
  }

  removeChild(n) {
    this.childNodes = this.childNodes.filter((c) => c !== n);
    n.parentNode = null;
  }

  append(...nodes) { this.childNodes.push(...this.#adopt(nodes)); }
  prepend(...nodes) { this.childNodes.unshift(...this.#adopt(nodes)); }
  replaceChildren(...nodes) {
    for (const c of this.childNodes) c.parentNode = null;
    this.childNodes = [];
    this.append(...nodes);
  }

  after(...nodes) {
    const parent = this.parentNode;
    if (!parent) return;
    const adopted = parent.#adopt(nodes);
    parent.childNodes.splice(parent.childNodes.indexOf(this) + 1, 0, ...adopted);
  }

  before(...nodes) {
    const parent = this.parentNode;
    if (!parent) return;
    const adopted = parent.#adopt(nodes);
    parent.childNodes.splice(parent.childNodes.indexOf(this), 0, ...adopted);
  }

  insertBefore(node, ref) {
    if (!ref) this.append(node);
    else ref.before(node);
    return node;
  }

  replaceWith(...nodes) {
    this.after(...nodes);
    this.remove();
  }

  contains(node) {
    for (let e = node; e; e = e.parentNode) if (e === this) return true;
    return false;
  }

  get isConnected() {
    let e = this;
    while (e.parentNode) e = e.parentNode;
    return e === globalThis.document;
  }

  remove() { this.parentNode?.removeChild(this); }

  // ---------- events ----------

  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  removeEventListener(type, fn) { this.listeners[type] = (this.listeners[type] || []).filter((f) => f !== fn); }

  /** Calls the listeners of this element, then (if the event bubbles) of each parent. */
  dispatchEvent(event) {
    if (!event.target) Object.defineProperty(event, 'target', { value: this, configurable: true });
    for (let e = this; e; e = e.parentNode) {
      Object.defineProperty(event, 'currentTarget', { value: e, configurable: true });
      for (const fn of [...(e.listeners?.[event.type] || [])]) fn.call(e, event);
      if (!event.bubbles || event.cancelBubble) break;
    }
    return !event.defaultPrevented;
  }

  click() { this.dispatchEvent(fakeEvent('click')); }
  focus() { if (globalThis.document) globalThis.document.activeElement = this; }
  blur() {}
  scrollIntoView() {}
  getBoundingClientRect() { return { top: 0, bottom: 0, left: 0, right: 0, width: 0, height: 0 }; }

  /** A form's fields by name. */
  get elements() { return { namedItem: (name) => this.querySelector(`[name="${name}"]`) }; }

  /** A form's submit: its listeners run; nothing posts. */
  requestSubmit() { this.dispatchEvent(fakeEvent('submit', { cancelable: true })); }

  matches(selector) {
    // Descendant combinators: the last compound here, the others on ancestors in order.
    const parts = selector.trim().split(/\s+/);
    if (!this.#matchesOne(parts.pop())) return false;
    let e = this.parentNode;
    while (parts.length && e) {
      if (e.#matchesOne(parts[parts.length - 1])) parts.pop();
      e = e.parentNode;
    }
    return parts.length === 0;
  }

  #matchesOne(selector) {
    // `:not(compound)`, as many as there are: each must not match.
    const nots = [];
    const rest = selector.trim().replace(/:not\(([^()]*)\)/g, (_, inner) => {
      nots.push(inner);
      return '';
    });
    if (nots.some((n) => this.#matchesOne(n))) return false;
    // A tag, then classes and attributes in any order.
    const m = /^([a-z0-9]*)((?:\.[\w-]+|\[[^\]]+\])*)$/i.exec(rest);
    if (!m) throw new Error(`fake-dom: unsupported selector ${selector}`);
    const [, tag, parts] = m;
    const attrs = (parts.match(/\[[^\]]+\]/g) || []).join('');
    const classes = parts.replace(/\[[^\]]+\]/g, '');
    if (tag && tag.toLowerCase() !== this.localName) return false;
    for (const c of classes.split('.').filter(Boolean)) if (!this.classList.contains(c)) return false;
    for (const [, k, v] of attrs.matchAll(/\[([\w-]+)(?:="([^"]*)")?\]/g)) {
      if (!this.attrs.has(k) || (v !== undefined && this.attrs.get(k) !== v)) return false;
    }
    return true;
  }

  querySelectorAll(selector) {
    const out = [];
    const walk = (e) => {
      for (const c of e.children) {
        if (c.matches(selector)) out.push(c);
        walk(c);
      }
    };
    walk(this);
    return out;
  }

  querySelector(selector) { return this.querySelectorAll(selector)[0] || null; }

  closest(selector) {
    for (let e = this; e; e = e.parentNode) if (e.nodeType === 1 && e.matches(selector)) return e;
    return null;
  }

  get outerHTML() {
    const attrs = [...this.attrs].map(([k, v]) => (v === '' && k === 'hidden' ? ` ${k}` : ` ${k}="${escapeAttr(v)}"`)).join('');
    return `<${this.localName}${attrs}>${this.childNodes.map((n) => n.outerHTML).join('')}</${this.localName}>`;
  }
}

for (const [prop, attr] of Object.entries(REFLECTED)) {
  Object.defineProperty(Element.prototype, prop, {
    get() { return this.attrs.get(attr) ?? ''; },
    set(v) { this.attrs.set(attr, String(v)); },
  });
}

class Fragment {
  constructor() { this.childNodes = []; }
  append(...nodes) { for (const n of nodes) this.childNodes.push(typeof n === 'string' ? new Text(n) : n); }
}

/** An event as the page's code uses it: type, bubbling, preventDefault; `props` added (key, clipboardData…). */
export function fakeEvent(type, props = {}) {
  return {
    type,
    bubbles: true,
    cancelable: true,
    defaultPrevented: false,
    cancelBubble: false,
    preventDefault() { this.defaultPrevented = true; },
    stopPropagation() { this.cancelBubble = true; },
    ...props,
  };
}

/** Installs `document` (and nothing else) on globalThis. */
export function installFakeDom() {
  globalThis.document = {
    createElement: (tag) => new Element(tag),
    createElementNS: (_, tag) => new Element(tag),
    createDocumentFragment: () => new Fragment(),
  };
}

/**
 * Installs a document holding a page: `build(el)` fills the body (`el(tag,
 * attrs, ...children)` makes elements), after which modules that read the
 * page at import (state.js) find it. Also `window` (globalThis) with what
 * the page's modules ask of it. Returns the document.
 */
export function installFakePage(bodyAttrs, build) {
  const doc = new Element('#document');
  const html = new Element('html');
  const body = new Element('body');
  doc.append(html);
  html.append(body);
  const make = (tag, attrs = {}, ...children) => {
    const e = new Element(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    e.append(...children);
    return e;
  };
  for (const [k, v] of Object.entries(bodyAttrs)) body.setAttribute(k, v);
  body.append(...build(make));
  Object.assign(doc, {
    body,
    documentElement: html,
    activeElement: body,
    hidden: false,
    visibilityState: 'visible',
    title: '',
    hasFocus: () => true,
    createElement: (tag) => new Element(tag),
    createElementNS: (_, tag) => new Element(tag),
    createDocumentFragment: () => new Fragment(),
    getElementById: (id) => doc.querySelector(`[id="${id}"]`),
  });
  globalThis.document = doc;
  globalThis.window = globalThis;
  globalThis.matchMedia = () => ({ matches: false, addEventListener() {} });
  globalThis.requestAnimationFrame = (fn) => setTimeout(fn, 0);
  return doc;
}

/** Every class name and data-testid in a tree. */
export function namesIn(root) {
  const classes = new Set();
  const testids = new Set();
  const walk = (e) => {
    e.classList.list().forEach((c) => classes.add(c));
    if (e.attrs.has('data-testid')) testids.add(e.attrs.get('data-testid'));
    e.children.forEach(walk);
  };
  walk(root);
  return { classes, testids };
}
