// The emoji grid (emoji.js's groups), shared by the message box (an emoji
// goes in at the caret) and the reactions (any emoji, not only the six quick
// ones). One panel for the page, opened next to the button that asked for it
// (a sheet on touch screens, app.css): a tab per group scrolls to it, arrow
// keys move between emoji, Enter or a click picks, Escape or a click
// elsewhere closes and gives the focus back to the button.

import { button, el } from './dom.js';
import { EMOJI_GROUPS } from './emoji.js';

const COLUMNS = 8; // app.css lays the grid out in as many columns
const GAP_PX = 6;

let panel = null;
let cells = [];
let current = 0; // the cell that has tabindex=0
let opener = null;
let onPick = null;

function setCurrent(i, focus) {
  cells[current].tabIndex = -1;
  current = Math.max(0, Math.min(cells.length - 1, i));
  cells[current].tabIndex = 0;
  if (focus) cells[current].focus();
}

function build() {
  panel = el('div', 'emoji-panel');
  panel.setAttribute('role', 'dialog');
  panel.setAttribute('aria-label', 'Emoji');
  panel.setAttribute('data-testid', 'emoji-panel');
  panel.hidden = true;
  const tabs = el('div', 'emoji-tabs');
  const body = el('div', 'emoji-body');
  for (const group of EMOJI_GROUPS) {
    const tab = button('emoji-tab', group.name);
    tab.textContent = group.emoji[0];
    tab.dataset.group = group.id;
    tabs.append(tab);
    const section = el('div', 'emoji-section');
    section.dataset.group = group.id;
    const title = el('p', 'emoji-section-title', group.name);
    title.id = `emoji-group-${group.id}`;
    const grid = el('div', 'emoji-grid');
    grid.setAttribute('role', 'group');
    grid.setAttribute('aria-labelledby', title.id);
    for (const emoji of group.emoji) {
      const cell = button('emoji-cell');
      cell.textContent = emoji;
      cell.dataset.emoji = emoji;
      cell.tabIndex = -1;
      cell.dataset.index = String(cells.length);
      cells.push(cell);
      grid.append(cell);
    }
    section.append(title, grid);
    body.append(section);
  }
  cells[0].tabIndex = 0;
  panel.append(tabs, body);
  document.body.append(panel);

  panel.addEventListener('click', (e) => {
    const cell = e.target.closest('.emoji-cell');
    if (cell) {
      const pick = onPick;
      closeEmojiPicker();
      pick(cell.dataset.emoji);
      return;
    }
    const tab = e.target.closest('.emoji-tab');
    if (tab) {
      const section = body.querySelector(`.emoji-section[data-group="${tab.dataset.group}"]`);
      body.scrollTop = section.offsetTop - body.offsetTop;
      setCurrent(Number(section.querySelector('.emoji-cell').dataset.index), true);
    }
  });
  panel.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      closeEmojiPicker();
      return;
    }
    if (!e.target.classList.contains('emoji-cell')) return;
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -COLUMNS, ArrowDown: COLUMNS }[e.key];
    if (step) {
      e.preventDefault();
      setCurrent(Number(e.target.dataset.index) + step, true);
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      setCurrent(e.key === 'Home' ? 0 : cells.length - 1, true);
    }
  });
  // A press anywhere else closes it (the button that opened it toggles it itself).
  document.addEventListener('pointerdown', (e) => {
    if (!panel.hidden && !panel.contains(e.target) && !opener?.contains(e.target)) closeEmojiPicker(false);
  });
}

/** Places the open panel above the button (below it if there is no room), inside the window. */
function place(anchor) {
  const a = anchor.getBoundingClientRect();
  const w = panel.offsetWidth;
  const h = panel.offsetHeight;
  const top = a.top - h - GAP_PX >= 0 ? a.top - h - GAP_PX : Math.min(a.bottom + GAP_PX, window.innerHeight - h);
  const left = Math.min(Math.max(GAP_PX, a.right - w), window.innerWidth - w - GAP_PX);
  panel.style.top = `${Math.max(0, top)}px`;
  panel.style.left = `${Math.max(0, left)}px`;
}

export const emojiPickerOpen = () => Boolean(panel && !panel.hidden);

/** Opens the grid next to `anchor` (a button, marked expanded); `pick(emoji)` gets the choice. */
export function openEmojiPicker(anchor, pick) {
  if (!panel) build();
  if (emojiPickerOpen()) closeEmojiPicker(false);
  opener = anchor;
  onPick = pick;
  anchor.setAttribute('aria-expanded', 'true');
  panel.hidden = false;
  place(anchor);
  cells[current].focus();
}

/** Closes the grid; the focus goes back to the button that opened it unless `refocus` is false. */
export function closeEmojiPicker(refocus = true) {
  if (!emojiPickerOpen()) return;
  panel.hidden = true;
  opener?.setAttribute('aria-expanded', 'false');
  if (refocus && opener?.isConnected) opener.focus();
  opener = null;
  onPick = null;
}

/** Makes `btn` open and close the grid; `pick(emoji)` gets the choice. */
export function emojiButton(btn, pick) {
  btn.setAttribute('aria-haspopup', 'dialog');
  btn.setAttribute('aria-expanded', 'false');
  btn.addEventListener('click', () => {
    if (emojiPickerOpen() && opener === btn) closeEmojiPicker();
    else openEmojiPicker(btn, pick);
  });
}
