// Small DOM helpers: elements (text only ever through textContent), avatars,
// and <time> elements shown in local time.

import { formatFull, formatShort, hueOf, initial, parseTime } from './format.js';

export function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

export function button(className, label, testid) {
  const b = el('button', className);
  b.type = 'button';
  if (label) b.setAttribute('aria-label', label);
  if (label) b.title = label;
  if (testid) b.setAttribute('data-testid', testid);
  return b;
}

// ---------- avatars ----------

/** An avatar's colour from its name; its picture, when it has one (`data-avatar`). */
export function paintAvatar(avatar) {
  const name = avatar.dataset.name || avatar.textContent || '';
  avatar.style.setProperty('--hue', String(hueOf(name)));
  const picture = avatar.dataset.avatar;
  // Set through the CSSOM (the CSP allows no inline style attribute); the
  // address is the server's own /api/v1/users/ID/avatar?v=…
  avatar.style.backgroundImage = picture ? `url("${picture.replace(/["\\]/g, '')}")` : '';
  avatar.classList.toggle('has-picture', Boolean(picture));
}

export function setAvatar(avatar, name, picture) {
  avatar.dataset.name = name;
  avatar.textContent = initial(name);
  if (picture) avatar.dataset.avatar = picture;
  else delete avatar.dataset.avatar;
  paintAvatar(avatar);
}

export function makeAvatar(name, picture) {
  const span = el('span', 'avatar');
  span.setAttribute('aria-hidden', 'true');
  setAvatar(span, name, picture);
  return span;
}

/** How people see a member named: their display name, else their username. */
export const shownName = (m) => m.display_name || m.username;

// ---------- times ----------

export const timeOf = (t) => parseTime(t.dataset.ts, t.getAttribute('datetime'));

export function renderTime(t) {
  const d = timeOf(t);
  if (!d) return;
  t.textContent = formatShort(d);
  t.title = formatFull(d);
}

export function setTime(t, unixSeconds) {
  const d = new Date(unixSeconds * 1000);
  if (Number.isNaN(d.getTime())) return;
  t.dataset.ts = String(unixSeconds);
  t.setAttribute('datetime', d.toISOString());
  renderTime(t);
}

export const renderAllTimes = () => document.querySelectorAll('time[data-ts], time[datetime]').forEach(renderTime);

/** Restarts an element's "flash" animation. */
export function flash(e) {
  e.classList.remove('flash');
  void e.offsetWidth;
  e.classList.add('flash');
}
