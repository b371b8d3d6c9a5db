// Natter as an installable app: registers the service worker (/sw.js, which
// keeps the app shell and the chat pages last seen for offline use), asks it
// to keep this page, and clears what this browser keeps when the person logs out.

import { unsubscribePush } from './notify.js';
import * as outbox from './outbox.js';
import { page } from './state.js';

// Logging out waits this long at most for the clean-up before it goes ahead.
const CLEANUP_MS = 2000;

async function register() {
  try {
    await navigator.serviceWorker.register('/sw.js');
    const reg = await navigator.serviceWorker.ready;
    // The page was loaded before the worker controlled it (the first visit):
    // the worker fetches a copy of its own, so the page opens offline too.
    reg.active?.postMessage({ type: 'keep-page', url: window.location.href });
  } catch (_) {
    // No service worker (plain http on a non-local host, or disabled): online only.
  }
}

async function cleanUp() {
  await Promise.allSettled([
    unsubscribePush(),
    outbox.clearAll(),
    navigator.serviceWorker?.controller?.postMessage({ type: 'logout' }),
  ]);
}

function watchLogout() {
  const form = document.querySelector('.logout-form');
  if (!form) return;
  form.addEventListener('submit', async (e) => {
    if (form.dataset.cleaned) return;
    e.preventDefault();
    const unsent = (await outbox.entriesOf(page.meId).catch(() => [])).length;
    // Unsent messages would stay in this browser for the next sign-in of the same person; a
    // shared computer should not keep them, so logging out drops them, after asking.
    if (unsent && !window.confirm(`${unsent} message(s) not sent yet will be lost. Log out anyway?`)) return;
    await Promise.race([cleanUp(), new Promise((r) => setTimeout(r, CLEANUP_MS))]);
    form.dataset.cleaned = 'true';
    form.requestSubmit();
  });
}

export function watchOffline() {
  if ('serviceWorker' in navigator) register();
  watchLogout();
}
