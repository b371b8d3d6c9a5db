// Natter chat page, the entry module (<script type="module">): live messages
// over Socket.IO, optimistic sending, local times, groups, presence, typing,
// read receipts, edits, replies, reactions, search, an offline outbox and
// notifications; installable (a service worker and a manifest). Messages
// show as rich text (links, Markdown, mentions: richtext.js), with their
// pictures and files (attachments.js); the box is multi-line, with mentions,
// an emoji grid and files to attach (uploads.js). No framework, no build
// step: the modules in static/js/ are served as they are. The page works
// without script too (history as rendered, the message form posts).

import { chatItem, setUnread, updateTitle } from './js/chatlist.js';
import { watchActions } from './js/actions.js';
import { watchBlocked } from './js/blocked.js';
import { flushOutbox, restoreOutbox, watchComposer } from './js/composer.js';
import { available, connect, on, setConn } from './js/connection.js';
import {
  applyUpdate, joinAndSync, markUnread, receiveMessage, receiveRead, regroup, renderTexts, showStart, sync,
  watchLoadOlder, watchReading,
} from './js/conversation.js';
import { paintAvatar, renderAllTimes } from './js/dom.js';
import {
  applyChat, receivePresence, refreshChats, removeChat, renderPresence, watchGroupPanel,
} from './js/header.js';
import { notifyMessage, setLevel, watchNotifications } from './js/notify.js';
import { watchOffline } from './js/pwa.js';
import { watchSearch } from './js/search.js';
import { els, page, room } from './js/state.js';
import { setTyping } from './js/typing.js';

// ---------- what the server rendered, in local time and live state ----------

renderAllTimes();
renderTexts();
markUnread();
document.querySelectorAll('.avatar').forEach(paintAvatar);
const openItem = chatItem(page.rid);
if (openItem && !document.hidden) setUnread(openItem, 0);
updateTitle();
renderPresence();
regroup();
showStart();
setInterval(() => {
  renderAllTimes();
  regroup();
  renderPresence();
}, 60000);
if (els.input && window.matchMedia('(min-width: 700px)').matches) els.input.focus({ preventScroll: true });

// ---------- live: everything below needs the socket ----------

if (!available()) {
  // The search form and the group controls stay hidden.
  setConn('offline');
} else {
  const catchUp = (join) => {
    if (!page.rid || room.gone) return;
    if (!join) sync();
    else joinAndSync().then((member) => member || removeChat(page.rid));
  };
  connect({
    onConnect: () => {
      catchUp(true);
      flushOutbox();
      refreshChats();
    },
    onResync: () => catchUp(false),
  });
  watchReading();

  on('message', (m) => {
    receiveMessage(m);
    notifyMessage(m);
  });
  on('message-updated', (m) => applyUpdate(m));
  on('chat', (chat) => {
    applyChat(chat);
    setLevel(chat?.room_id, chat?.notify);
  });
  on('chat-removed', (ev) => {
    if (ev && typeof ev.rid === 'string') removeChat(ev.rid);
  });
  on('presence', receivePresence);
  on('typing', (ev) => {
    if (!ev || typeof ev.rid !== 'string' || typeof ev.user_id !== 'string') return;
    setTyping(ev.rid, ev.user_id, ev.username, Boolean(ev.typing));
  });
  on('read', receiveRead);

  watchComposer();
  restoreOutbox();
  watchActions();
  watchGroupPanel();
  watchSearch();
  watchLoadOlder();
  watchBlocked(els.history);
  watchNotifications();
}
watchOffline();
