// The files waiting in the message box to go with the next message: each one
// picked (the paperclip button), pasted or dropped on the conversation
// becomes a chip above the box and starts uploading at once, to
// POST /api/v1/rooms/{rid}/attachments?name=… with the file as the body
// (XMLHttpRequest: fetch reports no upload progress). A chip shows a preview
// (the picture, or the file's name and size), the progress, and why an
// upload failed — a file over the server's limit is refused before it is
// sent —, with Retry when trying again may help; × removes it, stopping its
// upload. At most MAX_ATTACHMENTS per message. The composer (composer.js)
// sends the uploaded attachments' ids with the message once none is still
// uploading.
//
//   div.upload-tray[data-testid=upload-tray]
//     ul.upload-list > li.upload-chip[data-testid=upload-chip][data-state=queued|uploading|done|error][data-attachment-id]
//       span.upload-preview > (img.upload-thumb | span.file-icon)
//       span.upload-info > span.upload-name + span.upload-size + span.upload-state[data-testid=upload-state]
//                          + progress.upload-progress[data-testid=upload-progress]
//       (button.upload-retry[data-testid=upload-retry]) + button.upload-remove[data-testid=upload-remove]
//     p.upload-note[data-testid=upload-note][aria-live=polite]   (waiting to send, the limit…)
//     span.upload-live.visually-hidden[aria-live=polite]        (each file's news, for screen readers)

import { button, el } from './dom.js';
import { MAX_ATTACHMENTS, MAX_UPLOAD_BYTES, fileExt, humanSize, plural, uploadError, uploadRefusal } from './format.js';

/** Uploads running at once; the others wait their turn. */
const PARALLEL = 3;
const SVG_NS = 'http://www.w3.org/2000/svg';

/** Where a file for room `rid` is uploaded. */
export const uploadUrl = (rid, name) =>
  `/api/v1/rooms/${encodeURIComponent(rid)}/attachments?name=${encodeURIComponent(name)}`;

/** An upload's answer as JSON, or null. */
function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch (_) {
    return null;
  }
}

const isAttachment = (a) => Boolean(a) && typeof a === 'object' && typeof a.id === 'string' && a.id !== '';

/** A picture the browser can preview in the chip (before it is uploaded). */
const previewable = (file) => /^image\/(png|jpeg|gif|webp|avif|bmp)$/.test(file.type || '');

/** The file's extension in a small page-shaped icon. */
function fileIcon(name) {
  const icon = el('span', 'file-icon', fileExt(name));
  icon.setAttribute('aria-hidden', 'true');
  return icon;
}

function buildChip(item) {
  const { file } = item;
  const name = file.name || 'file';
  const chip = el('li', 'upload-chip');
  chip.setAttribute('data-testid', 'upload-chip');
  const preview = el('span', 'upload-preview');
  preview.setAttribute('aria-hidden', 'true');
  if (previewable(file) && typeof URL !== 'undefined' && typeof URL.createObjectURL === 'function') {
    item.objectUrl = URL.createObjectURL(file);
    const img = el('img', 'upload-thumb');
    img.setAttribute('alt', '');
    img.setAttribute('src', item.objectUrl);
    // Not drawable after all (or not allowed): the icon instead.
    img.addEventListener('error', () => img.replaceWith(fileIcon(name)));
    preview.append(img);
  } else {
    preview.append(fileIcon(name));
  }
  const info = el('span', 'upload-info');
  const nameEl = el('span', 'upload-name', name);
  nameEl.title = name;
  const stateEl = el('span', 'upload-state');
  stateEl.setAttribute('data-testid', 'upload-state');
  const progress = el('progress', 'upload-progress');
  progress.setAttribute('data-testid', 'upload-progress');
  progress.setAttribute('max', '100');
  progress.value = 0;
  progress.setAttribute('aria-label', `Upload of ${name}`);
  info.append(nameEl, el('span', 'upload-size', humanSize(file.size)), stateEl, progress);
  const retry = button('upload-retry', `Upload ${name} again`, 'upload-retry');
  retry.textContent = 'Retry';
  retry.hidden = true;
  const remove = button('upload-remove', `Remove ${name}`, 'upload-remove');
  remove.textContent = '×';
  chip.append(preview, info, retry, remove);
  Object.assign(item, { chip, stateEl, progressEl: progress, retryBtn: retry, removeBtn: remove });
  return chip;
}

/** Shows an item's state on its chip. */
function paint(item) {
  const { chip, stateEl: state, progressEl: progress, retryBtn: retry } = item;
  chip.dataset.state = item.state;
  state.classList.toggle('upload-error', item.state === 'error');
  const pct = Math.round(item.progress * 100);
  progress.value = pct;
  progress.hidden = item.state === 'done' || item.state === 'error';
  if (item.state === 'queued') state.textContent = 'Waiting…';
  else if (item.state === 'uploading') state.textContent = pct >= 100 ? 'Processing…' : `${pct}%`;
  else if (item.state === 'done') state.textContent = 'Ready';
  else state.textContent = item.error;
  // Cut to two lines on the chip: the whole reason as its tooltip (and in the live region).
  state.title = item.state === 'error' ? item.error : '';
  retry.hidden = !(item.state === 'error' && item.retryable);
  if (item.attachment) chip.dataset.attachmentId = item.attachment.id;
  else delete chip.dataset.attachmentId;
}

/**
 * The tray for room `rid`: `tray.root` goes in the message form. `maxBytes`
 * is the server's limit on one file; `onChange()` runs whenever what the
 * tray holds or their state changes; `canAdd()` says whether files may be
 * added now; `focusAfter` gets the focus when the last chip goes.
 */
export function createTray({ rid, maxBytes = MAX_UPLOAD_BYTES, onChange = () => {}, canAdd = () => true, focusAfter = null }) {
  // Always in the page (it takes no room while empty), so that its live regions are heard from the first file on.
  const root = el('div', 'upload-tray');
  root.setAttribute('data-testid', 'upload-tray');
  const list = el('ul', 'upload-list');
  list.setAttribute('aria-label', 'Files to send');
  const note = el('p', 'upload-note');
  note.setAttribute('data-testid', 'upload-note');
  note.setAttribute('aria-live', 'polite');
  note.hidden = true;
  const live = el('span', 'upload-live visually-hidden');
  live.setAttribute('aria-live', 'polite');
  root.append(list, note, live);

  let items = [];
  let waiters = [];
  let limitNoted = false; // the note says files were left out (the next files picked take it away)

  const busy = () => items.some((i) => i.state === 'queued' || i.state === 'uploading');

  function announce(text) {
    live.textContent = text;
  }

  function setNote(text) {
    limitNoted = false;
    note.textContent = text || '';
    note.hidden = !text;
    changed();
  }

  function changed() {
    if (!busy() && waiters.length) {
      const done = waiters;
      waiters = [];
      for (const resolve of done) resolve();
    }
    onChange();
  }

  function fail(item, error) {
    Object.assign(item, { state: 'error', error: error.text, retryable: error.retryable, progress: 0 });
    paint(item);
    announce(`${item.file.name || 'file'}: ${error.text}`);
  }

  function start(item) {
    const xhr = new XMLHttpRequest();
    Object.assign(item, { xhr, state: 'uploading', progress: 0 });
    paint(item);
    announce(`Uploading ${item.file.name || 'file'}`);
    const mine = () => item.xhr === xhr; // not removed (or started again) meanwhile
    const over = (status, body) => {
      if (!mine()) return;
      item.xhr = null;
      if (status >= 200 && status < 300 && isAttachment(body)) {
        Object.assign(item, { state: 'done', attachment: body, progress: 1 });
        paint(item);
        announce(`${item.file.name || 'file'} uploaded`);
      } else {
        fail(item, uploadError(status, body, maxBytes));
      }
      pump();
    };
    xhr.open('POST', uploadUrl(rid, item.file.name || 'file'));
    xhr.setRequestHeader('Accept', 'application/json');
    if (item.file.type) xhr.setRequestHeader('Content-Type', item.file.type);
    xhr.upload.onprogress = (e) => {
      if (!mine() || !e.lengthComputable || !(e.total > 0)) return;
      item.progress = Math.min(1, e.loaded / e.total);
      paint(item);
    };
    xhr.onload = () => over(xhr.status, parseJson(xhr.responseText));
    xhr.onerror = () => over(0, null);
    xhr.ontimeout = () => over(0, { error: { code: 'timeout' } });
    xhr.send(item.file);
  }

  /** Starts waiting uploads while fewer than PARALLEL run. */
  function pump() {
    let running = items.filter((i) => i.state === 'uploading').length;
    for (const item of items) {
      if (running >= PARALLEL) break;
      if (item.state !== 'queued') continue;
      start(item);
      running += 1;
    }
    changed();
  }

  function drop(item) {
    if (item.xhr) {
      const { xhr } = item;
      item.xhr = null;
      xhr.abort();
    }
    if (item.objectUrl) URL.revokeObjectURL(item.objectUrl);
    item.chip.remove();
    items = items.filter((i) => i !== item);
  }

  /** Adds files (a FileList or an array); those past the limit are left out, and the note says so. */
  function add(files) {
    const picked = Array.from(files || []);
    if (!picked.length || !canAdd()) return;
    const room = Math.max(0, MAX_ATTACHMENTS - items.length);
    const taken = picked.slice(0, room);
    const left = picked.length - taken.length;
    if (limitNoted) setNote('');
    for (const file of taken) {
      const item = { file, state: 'queued', progress: 0, error: '', retryable: false, attachment: null, xhr: null };
      list.append(buildChip(item));
      items.push(item);
      const refusal = uploadRefusal(file, maxBytes);
      if (refusal) fail(item, { text: refusal, retryable: false });
      else paint(item);
    }
    if (left) {
      setNote(`At most ${MAX_ATTACHMENTS} files go with one message: ${plural(left, 'file')} not added.`);
      limitNoted = true;
    }
    pump();
  }

  /** Removes a chip (stopping its upload); the focus goes to the next chip's ×, or to `focusAfter`. */
  function remove(item, refocus = false) {
    const i = items.indexOf(item);
    if (i < 0) return;
    drop(item);
    if (refocus) (items[Math.min(i, items.length - 1)]?.removeBtn || focusAfter)?.focus();
    announce(`${item.file.name || 'file'} removed`);
    pump();
  }

  list.addEventListener('click', (e) => {
    const chip = e.target.closest('.upload-chip');
    const item = items.find((i) => i.chip === chip);
    if (!item) return;
    if (e.target.closest('.upload-remove')) {
      remove(item, true);
    } else if (e.target.closest('.upload-retry')) {
      Object.assign(item, { state: 'queued', error: '', retryable: false });
      paint(item);
      item.removeBtn.focus();
      pump();
    }
  });

  return {
    root,
    add,
    /** Files in the tray, whatever their state. */
    get count() {
      return items.length;
    },
    /** Whether some file is still uploading (or waiting to). */
    get busy() {
      return busy();
    },
    /** Files that could not be uploaded (they must be removed, or retried, before sending). */
    get failed() {
      return items.filter((i) => i.state === 'error').length;
    },
    /** The uploaded attachments, in the order they were added. */
    uploaded: () => items.filter((i) => i.state === 'done').map((i) => i.attachment),
    /** Resolves once no file is uploading (at once if none is). */
    settled: () => (busy() ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve()),
    setNote,
    /** Empties the tray (the message went, with what was uploaded). */
    clear() {
      for (const item of [...items]) drop(item);
      setNote('');
    },
  };
}

/** A paperclip, drawn. */
function paperclip() {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '22');
  svg.setAttribute('height', '22');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute(
    'd',
    'M21.4 11.1l-8.5 8.5a5.5 5.5 0 0 1-7.8-7.8l8.5-8.5a3.7 3.7 0 0 1 5.2 5.2l-8.5 8.5a1.8 1.8 0 0 1-2.6-2.6l7.8-7.8',
  );
  path.setAttribute('fill', 'none');
  path.setAttribute('stroke', 'currentColor');
  path.setAttribute('stroke-width', '2');
  path.setAttribute('stroke-linecap', 'round');
  path.setAttribute('stroke-linejoin', 'round');
  svg.append(path);
  return svg;
}

const carriesFiles = (e) => Array.from(e.dataTransfer?.types || []).includes('Files');

/**
 * The ways in for files: the paperclip button (placed before `before`) with
 * its hidden file input, pasting into `input`, and dropping on `dropZone`
 * (the conversation). A file dropped anywhere else on the page is ignored
 * rather than opened in the tab, which would lose what was typed.
 */
export function watchFiles(tray, { input, before, dropZone }) {
  const picker = el('input', 'attach-input');
  picker.type = 'file';
  picker.setAttribute('multiple', '');
  picker.hidden = true;
  picker.tabIndex = -1;
  picker.setAttribute('aria-hidden', 'true');
  picker.setAttribute('data-testid', 'attach-input');
  const btn = button('attach-toggle', 'Attach files', 'attach-button');
  btn.append(paperclip());
  btn.addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    tray.add(picker.files);
    picker.value = ''; // the same file may be picked again
    input.focus();
  });
  before.before(btn, picker);

  input.addEventListener('paste', (e) => {
    const files = e.clipboardData?.files;
    if (!files || !files.length) return;
    // A copied file also comes as its name, or its picture as markup: only the file goes in.
    e.preventDefault();
    tray.add(files);
  });

  if (dropZone) {
    const over = (e) => {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
      dropZone.classList.add('drop-target');
    };
    dropZone.addEventListener('dragenter', over);
    dropZone.addEventListener('dragover', over);
    dropZone.addEventListener('dragleave', (e) => {
      if (!e.relatedTarget || !dropZone.contains(e.relatedTarget)) dropZone.classList.remove('drop-target');
    });
    dropZone.addEventListener('drop', (e) => {
      dropZone.classList.remove('drop-target');
      if (!carriesFiles(e)) return;
      e.preventDefault();
      tray.add(e.dataTransfer.files);
      input.focus();
    });
  }
  const elsewhere = (e) => {
    if (!carriesFiles(e) || dropZone?.contains(e.target)) return;
    e.preventDefault();
    if (e.type === 'dragover') e.dataTransfer.dropEffect = 'none';
  };
  document.addEventListener('dragover', elsewhere);
  document.addEventListener('drop', elsewhere);
  return btn;
}
