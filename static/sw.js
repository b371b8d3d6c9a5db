// Natter's service worker, served at /sw.js (so that its scope is the whole
// site) with two constants put in front by the server (src/http/assets.rs):
// VERSION, a digest of every embedded asset, and SHELL_FILES, their URLs.
// A new build has a new VERSION, so the browser installs this worker again
// and the old caches go.
//
// - The app shell (CSS, scripts, icons) is cached at install and served from
//   the cache first.
// - Chat pages go to the network first; each one that loads is kept, and
//   served when the network or the server is down, so Natter opens offline
//   with the chats and the unsent messages (the outbox) this browser has.
// - The JSON API and Socket.IO are never cached.
// - Pushes become notifications (unless a Natter tab is in front); a click
//   opens the chat.
/* global VERSION, SHELL_FILES */

const SHELL = `natter-shell-${VERSION}`;
const PAGES = `natter-pages-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((cache) => cache.addAll(SHELL_FILES))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n !== SHELL && n !== PAGES).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

/** The pages kept for offline use: the chat pages, whatever room they show. */
const keepable = (url) => url.origin === self.location.origin && url.pathname === '/chat/';

async function keep(request, response) {
  if (response.ok && response.type === 'basic' && !response.redirected) {
    const cache = await caches.open(PAGES);
    await cache.put(request, response);
  }
}

async function page(request) {
  try {
    const response = await fetch(request);
    if (keepable(new URL(request.url))) await keep(request, response.clone());
    return response;
  } catch (err) {
    const cache = await caches.open(PAGES);
    // This room's page as last seen; or the chat list (any room's page shows it).
    const copy = (await cache.match(request)) || (await cache.match('/chat/', { ignoreSearch: true }));
    if (copy) return copy;
    throw err;
  }
}

async function asset(request) {
  const cached = await caches.match(request, { cacheName: SHELL });
  return cached || fetch(request);
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === 'navigate') event.respondWith(page(request));
  else if (url.pathname.startsWith('/static/')) event.respondWith(asset(request));
});

self.addEventListener('message', (event) => {
  const msg = event.data || {};
  if (msg.type === 'keep-page' && typeof msg.url === 'string') {
    const url = new URL(msg.url);
    if (!keepable(url)) return;
    const request = new Request(url.href, { credentials: 'same-origin' });
    event.waitUntil(fetch(request).then((res) => keep(request, res)).catch(() => {}));
  } else if (msg.type === 'logout') {
    // Pages hold people's messages: a signed-out browser keeps none.
    event.waitUntil(caches.delete(PAGES));
  }
});

// ---------- Web Push ----------

/** Whether a Natter tab is visible and focused (it notifies by itself then). */
async function tabInFront() {
  const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  return tabs.some((c) => c.visibilityState === 'visible' && c.focused);
}

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) {
    data = { title: 'Natter', body: event.data ? event.data.text() : '' };
  }
  event.waitUntil(
    tabInFront().then((front) => {
      if (front) return undefined;
      return self.registration.showNotification(data.title || 'Natter', {
        body: data.body || '',
        tag: data.rid ? `natter-${data.rid}` : 'natter',
        icon: '/static/icon-192.png',
        badge: '/static/icon-192.png',
        data: { url: data.url || '/chat/' },
      });
    }),
  );
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || '/chat/', self.location.origin).href;
  event.waitUntil(
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((tabs) => {
      const same = tabs.find((c) => c.url === url) || tabs[0];
      if (same) return same.focus().then((c) => (c.url === url ? c : c.navigate(url)));
      return self.clients.openWindow(url);
    }),
  );
});
