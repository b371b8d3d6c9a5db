// The Socket.IO connection: connecting and reconnecting, the connection badge,
// requests with acks and time-outs. The vendored client
// (static/vendor/socket.io.min.js, a classic script) defines `io` globally.

import { showStatus } from './status.js';

export const ACK_TIMEOUT_MS = 10000;

const CONN_LABEL = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };

/**
 * Shows the connection state in every .conn badge, and on <body data-conn>:
 * while not connected, presence is unknown (the CSS greys its dots).
 */
export function setConn(state) {
  document.body.dataset.conn = state;
  for (const c of document.querySelectorAll('.conn')) {
    c.dataset.state = state;
    c.title = CONN_LABEL[state];
    const label = c.querySelector('.conn-label');
    if (label) label.textContent = CONN_LABEL[state];
  }
}

/** Whether the Socket.IO client loaded. */
export const available = () => typeof globalThis.io === 'function';

let socket = null;

/**
 * Connects. `onConnect` runs on every (re)connection, `onResync` when the
 * server says live events may have been lost (its link to the other nodes
 * blinked): both should catch up.
 */
export function connect({ onConnect, onResync }) {
  socket = globalThis.io({ path: '/socket.io/', transports: ['websocket', 'polling'] });
  setConn('connecting');

  socket.on('connect', () => {
    setConn('connected');
    onConnect();
  });

  socket.on('disconnect', (reason) => {
    setConn('reconnecting');
    // The client does not retry by itself after a server-side disconnect; do it, gently.
    if (reason === 'io server disconnect') setTimeout(() => socket.connect(), 2000);
  });

  socket.io.on('reconnect_attempt', () => setConn('reconnecting'));

  socket.on('resync', () => onResync());

  // The server is stopping (a restart or a deploy): the connection drops next
  // and the client reconnects by itself.
  socket.on('shutting-down', () => showStatus('The server is restarting; reconnecting…'));

  socket.on('connect_error', (err) => {
    if (err && err.message === 'unauthorized') {
      window.location.assign('/login');
      return;
    }
    setConn('reconnecting');
    // A refusal by the server's middleware is not retried by the client.
    if (!socket.active) setTimeout(() => socket.connect(), 3000);
  });
}

export const isConnected = () => Boolean(socket && socket.connected);

/** Listens to a server event. */
export const on = (event, handler) => socket.on(event, handler);

/** Emits without waiting for an answer. */
export const emit = (event, payload) => socket.emit(event, payload);

/** Emits with an ack: `callback(err, ack)`, err set on a time-out. */
export const emitWithAck = (event, payload, callback) => socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, callback);

/** Emits with an ack; resolves to the ack, or to {error: {code}} on a time-out. */
export function request(event, payload) {
  return new Promise((resolve) => {
    emitWithAck(event, payload, (err, ack) => {
      if (err) resolve({ error: { code: socket.connected ? 'timeout' : 'offline' } });
      else resolve(ack && typeof ack === 'object' ? ack : { error: { code: 'invalid' } });
    });
  });
}
