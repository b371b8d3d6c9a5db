// The outbox: every message typed here is written to the browser's storage
// (IndexedDB) before it is sent, and leaves it only once the server has
// acknowledged it (or refused it for good). Whatever happens in between — the
// socket drops, the server restarts, the tab is reloaded or closed — the page
// that opens next sends it again with the same client_id, and the server
// stores a client_id once per (room, sender): exactly once, shown once.
//
// An entry: {client_id, user, rid, message, reply_to: seq|null,
// quote: {seq, sender_username, message}|null, attachments: [Attachment],
// created_at: ms}. `attachments` are the files uploaded for the message, as
// the server described them (their ids go with the message; the rest shows
// them while it waits); entries from before attachments have none. `user`
// keeps two accounts of one browser apart. Without IndexedDB (a private
// window of some browsers) the outbox lives in memory: the page still
// resends after a reconnect, but not after a reload.

const DB_NAME = 'natter';
const DB_VERSION = 1;
const STORE = 'outbox';

/** Entries at most; past it the page refuses to queue more (a budget, docs/protocol.md). */
export const OUTBOX_MAX = 500;

/** The `outgoing` payload for an entry: the same every time it is sent (same client_id, same attachments). */
export function payloadOf(entry) {
  const payload = { rid: entry.rid, message: entry.message, client_id: entry.client_id };
  if (entry.reply_to != null) payload.reply_to = entry.reply_to;
  const ids = (Array.isArray(entry.attachments) ? entry.attachments : []).map((a) => a?.id).filter((id) => typeof id === 'string');
  if (ids.length) payload.attachments = ids;
  return payload;
}

let opening = null;
const memory = new Map();

function openDb() {
  if (!opening) {
    opening = new Promise((resolve) => {
      if (typeof indexedDB === 'undefined') {
        resolve(null);
        return;
      }
      let req;
      try {
        req = indexedDB.open(DB_NAME, DB_VERSION);
      } catch (_) {
        resolve(null);
        return;
      }
      req.onupgradeneeded = () => {
        const store = req.result.createObjectStore(STORE, { keyPath: 'client_id' });
        store.createIndex('user', 'user');
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => resolve(null);
      req.onblocked = () => resolve(null);
    });
  }
  return opening;
}

/** Runs `fn(store)` in a transaction; resolves to the request's result once committed. */
async function run(mode, fn) {
  const db = await openDb();
  if (!db) return fn(null);
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const req = fn(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req ? req.result : undefined);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** Stores an entry; resolves once it is on disk. */
export const put = (entry) =>
  run('readwrite', (store) => {
    if (!store) {
      memory.set(entry.client_id, entry);
      return null;
    }
    return store.put(entry);
  });

/** Forgets an entry (sent, refused for good, or cancelled). */
export const remove = (clientId) =>
  run('readwrite', (store) => {
    if (!store) {
      memory.delete(clientId);
      return null;
    }
    return store.delete(clientId);
  });

/** Every entry of `user`, oldest first. */
export async function entriesOf(user) {
  const all = await run('readonly', (store) => (store ? store.index('user').getAll(user) : null));
  const list = all || [...memory.values()].filter((e) => e.user === user);
  return list.sort((a, b) => a.created_at - b.created_at);
}

/** Everything this browser keeps for Natter (logging out). */
export async function clearAll() {
  memory.clear();
  const db = await openDb();
  if (!db) return;
  await run('readwrite', (store) => store.clear());
}
