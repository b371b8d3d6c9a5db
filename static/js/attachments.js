// A message's attachments as the reader sees them (docs/rendering.md,
// "Attachments"): pictures (PNG, JPEG, GIF, WebP whose size is known) as
// their thumbnail (or the file, without one), in a box sized from their width and height before it
// loads, linking to the file in a new tab; any other file as a chip — an
// icon with its extension, the name, the size — that downloads it. Built
// from DOM nodes only: a name is only ever text, and only paths on this site
// become links or images. markup.js puts them in a message's bubble, above
// its text (the caption); templates/attachments.html renders the same.
//
//   div.attachments[data-testid=attachments][data-ids]
//     a.attachment.attachment-image[data-testid=attachment-image][data-attachment-id][href][target=_blank][rel]
//       > img.attachment-thumb[src=thumbnail_url or url][alt=name][width][height][loading=lazy]
//     a.attachment.attachment-file[data-testid=attachment-file][data-attachment-id][href][download]
//       > span.file-icon + span.file-body > span.file-name + span.file-size

import { el } from './dom.js';
import { attachmentSummary, attachmentUrl, boxSize, fileExt, humanSize, isInline, pictureSrc } from './format.js';

/** Attachments as the server describes them: objects with a string id (anything else is left out). */
export const validAttachments = (list) =>
  (Array.isArray(list) ? list : []).filter((a) => a && typeof a === 'object' && typeof a.id === 'string' && a.id);

const nameOf = (a) => (typeof a.name === 'string' && a.name) || 'file';

function imageLink(a) {
  const link = el('a', 'attachment attachment-image');
  link.setAttribute('data-testid', 'attachment-image');
  link.dataset.attachmentId = a.id;
  link.setAttribute('href', attachmentUrl(a));
  link.setAttribute('target', '_blank');
  link.setAttribute('rel', 'noopener noreferrer');
  const size = humanSize(a.size);
  link.title = size ? `${nameOf(a)} (${size})` : nameOf(a);
  const box = boxSize(a.width, a.height);
  const img = el('img', 'attachment-thumb');
  img.setAttribute('src', pictureSrc(a));
  img.setAttribute('alt', nameOf(a));
  // The box is there before the picture: nothing below it moves when it loads.
  img.setAttribute('width', String(box.width));
  img.setAttribute('height', String(box.height));
  img.setAttribute('loading', 'lazy');
  img.setAttribute('decoding', 'async');
  link.append(img);
  return link;
}

function fileLink(a) {
  const link = el('a', 'attachment attachment-file');
  link.setAttribute('data-testid', 'attachment-file');
  link.dataset.attachmentId = a.id;
  link.setAttribute('href', attachmentUrl(a));
  link.setAttribute('download', nameOf(a));
  const icon = el('span', 'file-icon', fileExt(nameOf(a)));
  icon.setAttribute('aria-hidden', 'true');
  const body = el('span', 'file-body');
  const name = el('span', 'file-name', nameOf(a));
  name.title = nameOf(a);
  body.append(name, el('span', 'file-size', humanSize(a.size)));
  link.append(icon, body);
  return link;
}

/** One attachment: a picture or a file chip. */
export const buildAttachment = (a) => (isInline(a) ? imageLink(a) : fileLink(a));

/** A message's attachments (pictures first, as sent, then files), or null when it has none. */
export function buildAttachments(list) {
  const valid = validAttachments(list);
  if (!valid.length) return null;
  const box = el('div', 'attachments');
  box.setAttribute('data-testid', 'attachments');
  box.dataset.ids = valid.map((a) => a.id).join(' ');
  box.append(...valid.filter(isInline).map(imageLink), ...valid.filter((a) => !isInline(a)).map(fileLink));
  return box;
}

/**
 * Shows `list` in a message (li), above its text; none when it is empty (a
 * deleted message). The same attachments are left as they are (a reaction or
 * an edit does not load the pictures again).
 */
export function setAttachments(li, list) {
  const bubble = li.querySelector('.bubble');
  if (!bubble) return;
  const shown = bubble.querySelector('.attachments');
  const valid = validAttachments(list);
  const ids = valid.map((a) => a.id).join(' ');
  if (shown && shown.dataset.ids === ids) return;
  shown?.remove();
  const box = buildAttachments(valid);
  if (!box) return;
  const text = bubble.querySelector('.text');
  if (text) text.before(box);
  else bubble.append(box);
}

/** What a shown message's attachments read as in text ("📎 name"), from its bubble; '' for none. */
export function summaryOf(li) {
  const names = Array.from(li.querySelectorAll('.attachment'), (a) =>
    a.querySelector('img')?.getAttribute('alt') ?? a.querySelector('.file-name')?.textContent ?? '');
  return attachmentSummary(names.map((name) => ({ name })));
}
