// Message search in the sidebar: results as one types, each linking to the
// room at that message, the query's words marked.

import { chatItem } from './chatlist.js';
import { request } from './connection.js';
import { el, setTime } from './dom.js';
import { errorText, markWords, searchWords } from './format.js';
import { els, page } from './state.js';
import { showStatus } from './status.js';

/** A hit's text with the query words in <mark> (text nodes only, never markup). */
function marked(text, words) {
  const frag = document.createDocumentFragment();
  for (const piece of markWords(text, words)) frag.append(piece.mark ? el('mark', null, piece.text) : piece.text);
  return frag;
}

function result(m, words) {
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
  if (m.sender_id === page.meId) line.append(el('span', 'preview-prefix', 'You: '));
  else if (chatTitle && chatTitle !== m.sender_username) line.append(el('span', 'preview-prefix', `${m.sender_username}: `));
  line.append(marked(m.message, words));
  a.append(head, line);
  li.append(a);
  return li;
}

export function watchSearch() {
  const { searchForm: form, searchResults: results, body } = els;
  if (!form || !results) return;
  form.hidden = false;
  const q = form.elements.namedItem('q');
  let timer = 0;
  let asked = 0; // only the latest question's answer is shown

  const close = () => {
    results.hidden = true;
    results.replaceChildren();
    body.classList.remove('searching');
  };

  const show = (messages, words) => {
    body.classList.add('searching');
    results.hidden = false;
    if (!messages.length) results.replaceChildren(el('li', 'search-empty', 'No messages found.'));
    else results.replaceChildren(...messages.map((m) => result(m, words)));
  };

  async function search() {
    const text = q.value.trim();
    if (!text) {
      close();
      return;
    }
    const mine = ++asked;
    const ack = await request('search', { q: text, limit: 20 });
    if (mine !== asked) return;
    if (ack.ok && Array.isArray(ack.messages)) {
      show(ack.messages, searchWords(text));
    } else {
      show([], []);
      showStatus(errorText(ack.error?.code));
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    search();
  });
  q.addEventListener('input', () => {
    clearTimeout(timer);
    if (!q.value.trim()) close();
    else timer = setTimeout(search, 300);
  });
  q.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      q.value = '';
      close();
    }
  });
}
