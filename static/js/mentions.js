// Mentions in the message box: typing "@" and the start of a name offers the
// open room's members whose username starts with it, in a listbox above the
// box. Arrow keys move, Enter or Tab picks, Escape closes, a click picks;
// picking writes "@username ". The box keeps the focus and points at the
// active option (aria-activedescendant), as a combobox's list does.

import { el, makeAvatar } from './dom.js';
import { mentionQuery, namesStarting } from './format.js';
import { page, room } from './state.js';

const LIST_ID = 'mention-list';

let input = null;
let list = null;
let query = null; // {at, end, prefix} of the mention being typed
let names = [];
let active = 0;

const optionId = (i) => `${LIST_ID}-${i}`;
const isOpen = () => Boolean(list && !list.hidden);

function close() {
  if (!list) return;
  list.hidden = true;
  list.replaceChildren();
  names = [];
  query = null;
  input.removeAttribute('aria-activedescendant');
}

function setActive(i) {
  active = (i + names.length) % names.length;
  list.querySelectorAll('[role="option"]').forEach((o, n) => o.setAttribute('aria-selected', String(n === active)));
  input.setAttribute('aria-activedescendant', optionId(active));
  list.children[active]?.scrollIntoView({ block: 'nearest' });
}

/** Offers the members matching what is typed at the caret, or closes. */
function update() {
  const caret = input.selectionStart;
  query = caret === input.selectionEnd ? mentionQuery(input.value, caret) : null;
  const members = [...room.members.values()].map((m) => m.username);
  const found = query ? namesStarting(members, query.prefix, page.meName) : [];
  if (!found.length) {
    close();
    return;
  }
  const kept = names[active];
  names = found;
  list.replaceChildren(
    ...names.map((name, i) => {
      const option = el('li', 'mention-option');
      option.id = optionId(i);
      option.setAttribute('role', 'option');
      option.setAttribute('data-testid', 'mention-option');
      option.dataset.username = name;
      option.append(makeAvatar(name), el('span', 'mention-name', name));
      return option;
    }),
  );
  list.hidden = false;
  setActive(Math.max(0, names.indexOf(kept)));
}

function pick(i) {
  const name = names[i];
  const { at, end } = query;
  // One space after the name: the one already there, or a new one.
  const upTo = input.value[end] === ' ' ? end + 1 : end;
  input.setRangeText(`@${name} `, at, upTo, 'end');
  close();
  input.focus();
  input.dispatchEvent(new Event('input', { bubbles: true }));
}

/**
 * The box's keys while the list is open (arrows, Enter, Tab, Escape);
 * true if the key was for the list (the box then does nothing else with it).
 */
export function mentionKey(e) {
  if (!isOpen() || e.isComposing) return false;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    setActive(active + (e.key === 'ArrowDown' ? 1 : -1));
  } else if ((e.key === 'Enter' && !e.shiftKey) || (e.key === 'Tab' && !e.shiftKey)) {
    pick(active);
  } else if (e.key === 'Escape') {
    close();
  } else {
    return false;
  }
  e.preventDefault();
  return true;
}

/** Watches the message box `box` (a textarea in `form`) for mentions being typed. */
export function watchMentions(box, form) {
  input = box;
  list = el('ul', 'mention-list');
  list.id = LIST_ID;
  list.setAttribute('role', 'listbox');
  list.setAttribute('aria-label', 'Members to mention');
  list.setAttribute('data-testid', 'mention-list');
  list.hidden = true;
  form.append(list);
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-controls', LIST_ID);
  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('keyup', (e) => {
    if (['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) update();
  });
  input.addEventListener('blur', close);
  // A press on an option keeps the focus (and the caret) in the box.
  list.addEventListener('mousedown', (e) => e.preventDefault());
  list.addEventListener('click', (e) => {
    const option = e.target.closest('[role="option"]');
    if (option) pick(names.indexOf(option.dataset.username));
  });
}
