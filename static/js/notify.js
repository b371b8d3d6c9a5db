// Telling the person about messages when Natter is not in front of them:
// desktop notifications (Notification API) while a tab is open but hidden or
// unfocused, an optional sound, the unread count on the favicon, each chat's
// notification level (all / mentions / none, kept by the server so every
// device follows it), and Web Push for when no tab is open (the service
// worker, /sw.js, shows those).

import { chatItem } from './chatlist.js';
import { button, el } from './dom.js';
import { attachmentSummary, badgeText, defaultLevel, errorText, worthNotifying } from './format.js';
import { els, page, room } from './state.js';
import { showStatus } from './status.js';

const SOUND_KEY = 'natter.sound';
const LEVELS = [
  ['all', 'All messages'],
  ['mentions', 'Mentions only'],
  ['none', 'Muted'],
];
// A notification's text is cut here (the server cuts pushes the same way).
const BODY_CHARS = 200;

const supported = () => typeof Notification === 'function';

/** The level of a chat: what the server said (data-notify), or the default for its kind. */
function levelOf(rid) {
  if (rid === page.rid && els.body.dataset.notify) return els.body.dataset.notify;
  const li = chatItem(rid);
  if (li?.dataset.notify) return li.dataset.notify;
  return defaultLevel(rid === page.rid ? room.kind : li?.dataset.kind);
}

/** Whether the person is looking at this page now. */
const looking = () => document.visibilityState === 'visible' && document.hasFocus();

function openChat(rid) {
  window.focus();
  if (rid === page.rid) return;
  window.location.assign(`/chat/?rid=${encodeURIComponent(rid)}`);
}

// ---------- sound ----------

let audio = null;

function beep() {
  try {
    audio = audio || new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.08, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + 0.25);
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.25);
  } catch (_) {
    // No audio output, or the browser wants a gesture first: stay silent.
  }
}

const soundOn = () => localStorage.getItem(SOUND_KEY) === 'on';

// ---------- notifications for live messages ----------

/** A `message` event from someone else: a notification, if it deserves one. */
export function notifyMessage(m) {
  if (!m || m.sender_id === page.meId || m.kind === 'system' || m.deleted) return;
  if (looking() && m.rid === page.rid) return;
  if (!worthNotifying(levelOf(m.rid), m.message, page.meName)) return;
  if (soundOn()) beep();
  if (!supported() || Notification.permission !== 'granted' || looking()) return;
  const li = chatItem(m.rid);
  const group = (li?.dataset.kind || (m.rid === page.rid ? room.kind : '')) === 'group';
  const title = group ? `${m.sender_username} in ${li?.querySelector('.chat-title')?.textContent || 'a group'}` : m.sender_username;
  const text = m.message || attachmentSummary(m.attachments);
  const n = new Notification(title, {
    body: text.length > BODY_CHARS ? `${text.slice(0, BODY_CHARS)}…` : text,
    tag: `natter-${m.rid}`,
    icon: '/static/icon-192.png',
    data: { rid: m.rid },
  });
  n.onclick = () => {
    n.close();
    openChat(m.rid);
  };
}

// ---------- the favicon badge ----------

let iconImage = null;
let iconLink = null;
let plainIcon = '';

/** The unread count drawn on the tab's icon (the title carries it too). */
export function setFaviconBadge(total) {
  iconLink = iconLink || document.querySelector('link[rel="icon"]');
  if (!iconLink) return;
  plainIcon = plainIcon || iconLink.href;
  if (!total) {
    iconLink.href = plainIcon;
    return;
  }
  const draw = () => {
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 64;
    const g = canvas.getContext('2d');
    if (!g) return;
    g.drawImage(iconImage, 0, 0, 64, 64);
    const text = badgeText(total);
    g.fillStyle = '#e0245e';
    g.beginPath();
    g.arc(44, 20, 20, 0, 2 * Math.PI);
    g.fill();
    g.fillStyle = '#fff';
    g.font = `bold ${text.length > 2 ? 18 : 26}px system-ui, sans-serif`;
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(text, 44, 21);
    iconLink.href = canvas.toDataURL('image/png');
    iconLink.dataset.badge = text;
  };
  if (iconImage?.complete) {
    draw();
    return;
  }
  iconImage = new Image();
  iconImage.onload = draw;
  iconImage.src = plainIcon;
}

// ---------- Web Push ----------

function keyBytes(base64url) {
  const b64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

const api = (method, path, body) =>
  fetch(`/api/v1${path}`, {
    method,
    credentials: 'same-origin',
    headers: body ? { 'Content-Type': 'application/json', Accept: 'application/json' } : { Accept: 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });

/**
 * Subscribes this browser to Web Push and gives the subscription to the
 * server (on every page load once allowed: the server keeps a subscription
 * only as long as the session that made it). Resolves to true when pushes can reach it; false where the browser
 * has no push service (some have none; notifications then work while a tab is open).
 */
export async function subscribePush() {
  if (!('serviceWorker' in navigator) || typeof PushManager !== 'function') return false;
  try {
    const reg = await navigator.serviceWorker.ready;
    const res = await api('GET', '/push/key');
    if (!res.ok) return false;
    const { public_key: key } = await res.json();
    const wanted = keyBytes(key);
    let sub = await reg.pushManager.getSubscription();
    // Made with another server key (the server's secret was rotated): that one can no longer be used.
    const made = sub?.options?.applicationServerKey;
    if (sub && made && !sameBytes(new Uint8Array(made), wanted)) {
      await sub.unsubscribe();
      sub = null;
    }
    sub = sub || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: wanted }));
    const saved = await api('POST', '/push/subscriptions', sub.toJSON());
    return saved.ok;
  } catch (_) {
    return false;
  }
}

/**
 * Logging out: the server forgets the subscription with the session that
 * made it; the browser's own goes too, and the next sign-in makes a new one.
 */
export async function unsubscribePush() {
  if (!('serviceWorker' in navigator)) return;
  const reg = await navigator.serviceWorker.getRegistration();
  const sub = await reg?.pushManager?.getSubscription();
  await sub?.unsubscribe();
}

// ---------- controls ----------

function permissionText() {
  if (!supported()) return 'This browser cannot show notifications.';
  if (Notification.permission === 'granted') return 'Notifications are on.';
  if (Notification.permission === 'denied') return 'Notifications are blocked in the browser settings.';
  return 'Notifications are off.';
}

/** The bell in the sidebar: turn notifications on, and the sound. */
function buildSettings() {
  const header = document.querySelector('.sidebar-header');
  if (!header) return;
  const bell = button('btn btn-ghost btn-small bell', 'Notifications', 'notifications-button');
  bell.textContent = '🔔';
  bell.setAttribute('aria-expanded', 'false');
  const panel = el('div', 'notify-panel');
  panel.setAttribute('data-testid', 'notifications-panel');
  panel.hidden = true;
  const state = el('p', 'notify-state', permissionText());
  const enable = button('btn btn-primary btn-small', null, 'notifications-enable');
  enable.textContent = 'Turn on';
  enable.hidden = !supported() || Notification.permission !== 'default';
  const soundLabel = el('label', 'notify-sound');
  const sound = el('input');
  sound.type = 'checkbox';
  sound.checked = soundOn();
  sound.setAttribute('data-testid', 'notifications-sound');
  soundLabel.append(sound, ' Play a sound');
  panel.append(state, enable, soundLabel);
  bell.addEventListener('click', () => {
    panel.hidden = !panel.hidden;
    bell.setAttribute('aria-expanded', String(!panel.hidden));
  });
  enable.addEventListener('click', async () => {
    const answer = await Notification.requestPermission();
    state.textContent = permissionText();
    enable.hidden = answer !== 'default';
    if (answer === 'granted' && !(await subscribePush())) {
      state.textContent = 'Notifications are on while Natter is open (this browser has no push service).';
    }
  });
  sound.addEventListener('change', () => localStorage.setItem(SOUND_KEY, sound.checked ? 'on' : 'off'));
  header.querySelector('.logout-form')?.before(bell);
  header.after(panel);
}

/** The open chat's level, in its header. */
function buildLevelPicker() {
  const header = document.querySelector('.room-header');
  if (!header || !page.rid) return;
  const select = el('select', 'notify-level');
  select.setAttribute('data-testid', 'notify-level');
  select.setAttribute('aria-label', 'Notifications for this chat');
  select.title = 'Notifications for this chat';
  for (const [value, label] of LEVELS) {
    const option = el('option', null, label);
    option.value = value;
    select.append(option);
  }
  select.value = levelOf(page.rid);
  select.addEventListener('change', async () => {
    const wanted = select.value;
    select.disabled = true;
    try {
      const res = await api('PUT', `/rooms/${encodeURIComponent(page.rid)}/notify`, { notify: wanted });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body?.error?.code || 'invalid');
      setLevel(page.rid, body.notify || wanted);
    } catch (e) {
      select.value = levelOf(page.rid);
      showStatus(errorText(e.message === 'Failed to fetch' ? 'offline' : e.message));
    } finally {
      select.disabled = false;
    }
  });
  header.append(select);
}

/** A chat's level changed (here, or on another device: its `chat` event). */
export function setLevel(rid, level) {
  if (!level) return;
  const li = chatItem(rid);
  if (li) li.dataset.notify = level;
  if (rid === page.rid) {
    els.body.dataset.notify = level;
    const select = document.querySelector('[data-testid="notify-level"]');
    if (select) select.value = level;
  }
}

export function watchNotifications() {
  buildSettings();
  buildLevelPicker();
  // Already allowed: keep the server's copy of this browser's subscription current.
  if (supported() && Notification.permission === 'granted') subscribePush();
}
