// What one does to a message in the history: the actions toolbar (react,
// reply, edit, delete) on hover or focus, and on a touch screen a sheet of
// the same actions that a tap on the message opens; reaction chips (six
// quick ones, and any emoji from the grid, picker.js); quotes that scroll to
// the quoted message.

import { summaryOf } from './attachments.js';
import { setReply } from './composer.js';
import { request } from './connection.js';
import { applyAcked, findBySeq, seqOf } from './conversation.js';
import { flash } from './dom.js';
import { errorText, messageLength, tooLongText } from './format.js';
import { MESSAGE, buildActions, buildEditForm, senderOf, setDeleteConfirm, textOf } from './markup.js';
import { closeEmojiPicker, emojiPickerOpen, openEmojiPicker } from './picker.js';
import { els, page, room } from './state.js';
import { showStatus } from './status.js';

// A touch screen (no hover): a tap opens the actions, shown as a sheet (app.css).
const touchScreen = () => window.matchMedia('(hover: none), (pointer: coarse)').matches;

const tools = buildActions();
const { bar, edit: editBtn, del: deleteBtn, picker, more: moreBtn } = tools;

const actionable = (li) =>
  li && li.dataset.seq && !li.classList.contains('system') && !li.classList.contains('deleted') && !li.querySelector('.edit-form');

/** The message whose toolbar is open (the toolbar sits inside its bubble). */
const actionsOwner = () => (bar.isConnected ? bar.closest(MESSAGE) : null);

function showActions(li) {
  if (!actionable(li) || room.gone || page.moreAfter) return;
  if (actionsOwner() === li) return;
  const mine = li.classList.contains('mine');
  editBtn.hidden = !mine;
  deleteBtn.hidden = !mine;
  picker.hidden = true;
  setDeleteConfirm(deleteBtn, false);
  bar.classList.toggle('left', mine);
  li.querySelector('.bubble')?.append(bar);
}

function hideActions() {
  if (moreBtn.getAttribute('aria-expanded') === 'true') closeEmojiPicker(false);
  picker.hidden = true;
  setDeleteConfirm(deleteBtn, false);
  bar.remove();
}

/** What a request about a message answered: the changed message, or why not. */
function changed(ack) {
  if (ack.ok && ack.message) {
    applyAcked(ack.message);
    return true;
  }
  showStatus(errorText(ack.error?.code));
  return false;
}

async function react(li, emoji) {
  changed(await request('react', { rid: page.rid, seq: seqOf(li), emoji }));
}

async function remove(li) {
  hideActions();
  changed(await request('delete-message', { rid: page.rid, seq: seqOf(li) }));
}

function startEdit(li) {
  const text = li.querySelector('.text');
  if (!text) return;
  hideActions();
  const { form, area, save, cancel } = buildEditForm(text.textContent);
  text.hidden = true;
  text.after(form);
  li.classList.add('editing');
  area.focus();
  area.setSelectionRange(area.value.length, area.value.length);
  const close = () => {
    form.remove();
    text.hidden = false;
    li.classList.remove('editing');
  };
  cancel.addEventListener('click', close);
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') close();
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const message = area.value.trim();
    if (!message || message === text.textContent) {
      close();
      return;
    }
    const length = messageLength(message);
    if (length > page.maxChars) {
      showStatus(tooLongText(length, page.maxChars));
      return;
    }
    save.disabled = true;
    const ack = await request('edit-message', { rid: page.rid, seq: seqOf(li), message });
    save.disabled = false;
    if (ack.ok && ack.message) close();
    changed(ack);
  });
}

function onClick(e) {
  const quote = e.target.closest('.quote');
  if (quote) {
    const target = findBySeq(quote.dataset.replySeq);
    if (target) {
      e.preventDefault();
      target.scrollIntoView({ block: 'center', behavior: 'smooth' });
      flash(target);
    }
    return;
  }
  const chip = e.target.closest('.reaction');
  if (chip) {
    const li = chip.closest(MESSAGE);
    if (li && !room.gone) react(li, chip.dataset.emoji);
    return;
  }
  const tapped = e.target.closest(MESSAGE);
  if (touchScreen() && tapped && !bar.contains(e.target) && !e.target.closest('a, button, .edit-form')) {
    if (actionsOwner() === tapped) hideActions();
    else showActions(tapped);
    return;
  }
  const li = actionsOwner();
  if (!li || !bar.contains(e.target)) return;
  const emoji = e.target.closest('.emoji');
  if (emoji) {
    hideActions();
    react(li, emoji.dataset.emoji);
  } else if (e.target.closest('.emoji-more')) {
    if (emojiPickerOpen()) {
      closeEmojiPicker();
      return;
    }
    openEmojiPicker(moreBtn, (picked) => {
      hideActions();
      react(li, picked);
    });
  } else if (e.target.closest('[data-testid="action-react"]')) {
    picker.hidden = !picker.hidden;
  } else if (e.target.closest('[data-testid="action-reply"]')) {
    hideActions();
    setReply({ seq: seqOf(li), sender_username: senderOf(li) || '', message: textOf(li) || summaryOf(li) });
  } else if (e.target.closest('[data-testid="action-edit"]')) {
    startEdit(li);
  } else if (e.target.closest('[data-testid="action-delete"]')) {
    // Two clicks, so a slip of the mouse deletes nothing.
    if (deleteBtn.classList.contains('confirm')) remove(li);
    else setDeleteConfirm(deleteBtn, true);
  }
}

export function watchActions() {
  const { history } = els;
  if (!history) return;
  // An open picker or a pending "Delete?" keeps the toolbar where it is.
  const busy = () => !picker.hidden || deleteBtn.classList.contains('confirm');
  history.addEventListener('mouseover', (e) => {
    if (touchScreen()) return;
    const li = e.target.closest(MESSAGE);
    if (li && li !== actionsOwner() && !busy()) showActions(li);
  });
  history.addEventListener('mouseleave', () => {
    if (!busy()) hideActions();
  });
  document.addEventListener('click', (e) => {
    // A tap on the message itself toggles its sheet (onClick); the emoji grid
    // opened from the toolbar keeps it.
    if (!bar.isConnected || bar.contains(e.target) || e.target.closest('.emoji-panel')) return;
    if (e.target.closest(MESSAGE) !== actionsOwner()) hideActions();
  });
  history.addEventListener('focusin', (e) => {
    if (touchScreen()) return;
    const li = e.target.closest(MESSAGE);
    if (li && !bar.contains(e.target)) showActions(li);
  });
  history.addEventListener('click', onClick);
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && bar.isConnected) hideActions();
  });
}
