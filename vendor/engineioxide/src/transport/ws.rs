//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{
    future::{Future, poll_fn},
    pin::pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, PacketBuf, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, queue::QueueRx, socket::InternalRx,
    transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (mut parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    // Natter patch: the key is answered here and of no use after, while the
    // socket keeps `parts` for its life: a map with one header left still holds
    // a whole table (0.6 KiB), so an emptied one is replaced by an unallocated one.
    let ws_key = parts
        .headers
        .remove(http::header::SEC_WEBSOCKET_KEY)
        .ok_or(Error::InvalidWebSocketKey)?;
    if parts.headers.is_empty() {
        parts.headers = http::HeaderMap::new();
    }

    tokio::spawn(async move {
        let conn = hyper::upgrade::on(req)
            .await
            .map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            Ok(conn) => on_init(engine.clone(), conn, protocol, sid, parts).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match res {
            Ok(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws connection started")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub async fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    let (socket, ws) = if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => return Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => return Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                (socket, ws)
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        engine.start_heartbeat(&socket);
        (socket, ws)
    };
    // Natter patch: the connection runs in a task of its own, so the setup's
    // state (the request head, the upgrade handshake's futures) is freed now
    // rather than kept for the connection's life.
    tokio::spawn(run_connection(engine, socket, Box::new(ws)));
    Ok(())
}

/// Natter patch: one task reads and writes a WebSocket connection.
///
/// The published crate split the stream (a `BiLock`) and ran a reader task and
/// a writer task per connection, each keeping its future's state for the
/// connection's life: 5.5 KiB per idle socket (docs/benchmarks.md, "Speed II,
/// fifth round"). Here one future owns the stream and, each time it wakes:
/// - writes what is queued, as far as the stream takes it without waiting,
///   and flushes once the queue is drained (several packets in one `send(2)`);
/// - reads the client's next frame, whatever is being written (a client slow
///   to read still has its pongs and requests handled);
/// - notices the session's end.
///
/// While idle its future holds the stream (boxed) and the wait: 208 bytes.
async fn run_connection<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    // Boxed: an async fn's arguments are kept apart from its locals, so a
    // stream passed by value would be carried twice.
    mut ws: Box<WebSocketStream<S>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock.
    let lock = Box::pin(
        socket
            .internal_rx
            .lock()
            .with_cancellation_token(&socket.cancellation_token),
    );
    let Some(mut internal_rx) = lock.await else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before the ws connection started");
        return;
    };
    let protocol = socket.protocol;
    let mut cancelled = pin!(socket.cancellation_token.cancelled());
    let mut output = Output::default();
    // A packet the last polling request took but could not send goes first.
    if let Some(packets) = internal_rx.peeked_packet.take() {
        output.batch = Some((packets, 0));
    }

    let end = loop {
        let buffered_rx = &mut internal_rx.buffered_rx;
        let event = poll_fn(|cx| {
            if let Poll::Ready(end) = output.poll_write(cx, &mut ws, buffered_rx, protocol) {
                return Poll::Ready(end);
            }
            if let Poll::Ready(frame) = ws.poll_next_unpin(cx) {
                return Poll::Ready(Event::Frame(frame));
            }
            cancelled.as_mut().poll(cx).map(|()| Event::Ended)
        })
        .await;
        match event {
            Event::Frame(Some(Ok(msg))) => match on_ws_message(&engine, &socket, msg) {
                Ok(true) => {}
                Ok(false) => break Some(Ok(())),
                Err(e) => break Some(Err(e)),
            },
            Event::Frame(Some(Err(e))) | Event::WriteFailed(e) => break Some(Err(e.into())),
            Event::Frame(None) => break Some(Ok(())),
            Event::Ended => break None,
        }
    };
    Box::pin(finish(&engine, &socket, ws, internal_rx, output, end)).await;
}

/// What a WebSocket connection's task woke for.
enum Event {
    /// A frame from the client; `None` when it closed the connection.
    Frame(Option<Result<Message, tungstenite::Error>>),
    /// Writing to the client failed.
    WriteFailed(tungstenite::Error),
    /// The session ended (or its queue was closed).
    Ended,
}

/// The batch of packets being written, taken from the socket's queue (in the
/// box it waited in, so an idle connection holds no buffer of its own), and
/// whether the stream holds frames not yet flushed.
#[derive(Default)]
struct Output {
    /// The batch, and how many of its packets went to the stream.
    batch: Option<(Box<PacketBuf>, usize)>,
    unflushed: bool,
}

impl Output {
    /// The next frame of the batch, if any is left.
    fn next_frame(&mut self, protocol: ProtocolVersion) -> Option<Message> {
        let (packets, written) = self.batch.as_mut()?;
        while *written < packets.len() {
            let packet = std::mem::replace(&mut packets[*written], Packet::Noop);
            *written += 1;
            if let Some(frame) = frame(protocol, packet) {
                return Some(frame);
            }
        }
        self.batch = None;
        None
    }

    /// The frames left of the batch.
    fn rest(&mut self, protocol: ProtocolVersion) -> Vec<Message> {
        std::iter::from_fn(|| self.next_frame(protocol)).collect()
    }

    /// Writes what is queued as far as the stream takes it without waiting,
    /// then flushes once nothing is left: `Ready` only when writing failed or
    /// the queue was closed.
    fn poll_write<S>(
        &mut self,
        cx: &mut Context<'_>,
        ws: &mut WebSocketStream<S>,
        queue: &mut QueueRx,
        protocol: ProtocolVersion,
    ) -> Poll<Event>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if self.batch.is_none() {
                match queue.poll_recv(cx) {
                    Poll::Ready(Some(packets)) => self.batch = Some((packets, 0)),
                    Poll::Ready(None) => return Poll::Ready(Event::Ended),
                    Poll::Pending => break,
                }
            }
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Event::WriteFailed(e)),
                Poll::Pending => return Poll::Pending,
            }
            if let Some(frame) = self.next_frame(protocol) {
                if let Err(e) = ws.start_send_unpin(frame) {
                    return Poll::Ready(Event::WriteFailed(e));
                }
                self.unflushed = true;
            }
        }
        if self.unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Event::WriteFailed(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// The WebSocket frame of `packet` (none for a Noop).
fn frame(protocol: ProtocolVersion, packet: Packet) -> Option<Message> {
    Some(match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) if protocol == ProtocolVersion::V3 => {
            // v3 protocol requires packet type as the first byte.
            // This requires a new buffer. This is OK as it is only for the V3 protocol.
            let mut buff = Vec::with_capacity(bin.len() + 1);
            buff.push(0x04);
            buff.extend(bin);
            Message::Binary(buff.into())
        }
        Packet::Binary(bin) | Packet::BinaryV3(bin) => Message::Binary(bin),
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => return None,
        packet => {
            let packet: String = packet.try_into().unwrap();
            Message::Text(packet.into())
        }
    })
}

/// Ends a WebSocket connection's session (unless it ended first), and writes
/// what is still queued and the close frame.
async fn finish<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    mut ws: Box<WebSocketStream<S>>,
    mut internal_rx: tokio::sync::MutexGuard<'_, InternalRx>,
    mut output: Output,
    end: Option<Result<(), Error>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match end {
        Some(Err(ref e)) => {
            let reason =
                Option::<DisconnectReason>::from(e).unwrap_or(DisconnectReason::TransportError);

            #[cfg(feature = "tracing")]
            tracing::debug!("error when handling packet: {:?}", e);
            engine.close_session(socket.id, reason);
        }
        Some(Ok(())) => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "ws transport was closed");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
        }
        None => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "socket is closing");
        }
    }

    // What is still queued goes out (a server-side disconnect queues its
    // packets, then ends the session), then the close frame; but the lock is
    // released first, so that the session's end (which waits for it) does not
    // wait for a client that does not read. A client that reads, however
    // slowly, gets the ping timeout's time for it.
    let mut frames = output.rest(socket.protocol);
    while let Ok(packets) = internal_rx.buffered_rx.try_recv() {
        output.batch = Some((packets, 0));
        frames.extend(output.rest(socket.protocol));
    }
    drop(internal_rx);
    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");
    let closed = async {
        for frame in frames {
            ws.feed(frame).await?;
        }
        ws.flush().await?;
        ws.as_mut().close(None).await
    };
    let _ = tokio::time::timeout(engine.config.ping_timeout, closed).await;
}

/// Handles one frame from the client; `false` when it ends the connection.
fn on_ws_message<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<bool, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                Ok(false)
            }
            Packet::Pong | Packet::Ping => {
                socket.heard_heartbeat();
                Ok(true)
            }
            Packet::Message(msg) => {
                engine.handler.on_message(msg, socket.clone());
                Ok(true)
            }
            p => Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
            Ok(true)
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            Ok(false)
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
            Ok(true)
        }
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    // Natter patch: queued even when the queue is full (it then ends no waiting
    // request, but nothing waits for room: `queue.rs`).
    socket
        .internal_tx
        .send_control(Packet::Noop)
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    pub(super) struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    pub(super) fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    fn engine() -> Arc<EngineIo<StubHandler>> {
        Arc::new(EngineIo::new(
            Arc::new(StubHandler),
            EngineIoConfig::default(),
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    /// What the client sends is handled while nothing is written, and what is
    /// queued is written while the client is silent: one task does both.
    #[tokio::test]
    async fn one_task_reads_and_writes() {
        #[derive(Debug)]
        struct Echo;
        impl EngineIoHandler for Echo {
            type Data = ();
            fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
            fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
            fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
                socket.emit(Str::from(format!("echo {msg}"))).unwrap();
            }
            fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
        }
        let engine = Arc::new(EngineIo::new(Arc::new(Echo), EngineIoConfig::default()));
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let connection = tokio::spawn(run_connection(engine, socket.clone(), Box::new(server)));

        for i in 0..3 {
            socket.emit(Str::from(format!("first {i}"))).unwrap();
        }
        for i in 0..3 {
            let msg = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
            assert_eq!(msg.unwrap().unwrap(), Message::text(format!("4first {i}")));
        }
        client.send(Message::text("4hi")).await.unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next()).await.unwrap();
        assert_eq!(msg.unwrap().unwrap(), Message::text("4echo hi"));

        // The client's close frame ends the connection, and the task with it.
        client.close(None).await.unwrap();
        tokio::time::timeout(TIMEOUT, connection)
            .await
            .expect("the connection should end")
            .unwrap();
    }

    /// An idle connection keeps its task's state for as long as it is open:
    /// it must stay small (docs/benchmarks.md, "Speed II, fifth round": 2.4 KiB
    /// with the stream inline and the writes' state in it, 0.2 KiB now).
    #[tokio::test]
    async fn an_idle_connection_keeps_little_state() {
        let (server, _client) = ws_pair().await;
        let connection = run_connection(engine(), socket(), Box::new(server));
        let size = std::mem::size_of_val(&connection);
        assert!(size <= 384, "the connection's future is {size} bytes");
    }

    /// A write to a client that does not read stops when the session ends,
    /// and the queue's lock is released (the session's end waits for it).
    #[tokio::test]
    async fn a_write_to_a_client_that_does_not_read_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        // What is left is given the ping timeout once the lock is released.
        let config = EngineIoConfig {
            ping_timeout: Duration::from_millis(500),
            ..EngineIoConfig::default()
        };
        let engine = Arc::new(EngineIo::new(Arc::new(StubHandler), config));
        let connection = tokio::spawn(run_connection(engine, socket.clone(), Box::new(server)));
        // Far more than the 1 KiB pipe holds: the write waits for the client.
        socket.emit(Str::from("x".repeat(64 * 1024))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!connection.is_finished(), "the write should be waiting");

        socket.cancellation_token.cancel();
        drop(
            tokio::time::timeout(TIMEOUT, socket.internal_rx.lock())
                .await
                .expect("the connection should release the queue"),
        );
        tokio::time::timeout(TIMEOUT * 2, connection)
            .await
            .expect("the connection should end")
            .unwrap();
    }

    /// Records what the client sends.
    #[derive(Debug)]
    struct Recorder(tokio::sync::mpsc::UnboundedSender<Str>);
    impl EngineIoHandler for Recorder {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, msg: Str, _: Arc<Socket<()>>) {
            self.0.send(msg).unwrap();
        }
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    /// A client that does not read what it is sent still has its frames read
    /// (its pongs, its requests), as when a task of its own read them.
    #[tokio::test]
    async fn the_client_is_heard_while_its_writes_wait() {
        let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
        let engine = Arc::new(EngineIo::new(
            Arc::new(Recorder(heard)),
            EngineIoConfig::default(),
        ));
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        tokio::spawn(run_connection(engine, socket.clone(), Box::new(server)));
        // Far more than the 1 KiB pipe holds: the writes wait for the client.
        for _ in 0..64 {
            socket.emit(Str::from("x".repeat(1024))).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;

        client.send(Message::text("4hi")).await.unwrap();
        let msg = tokio::time::timeout(TIMEOUT, hearing.recv())
            .await
            .expect("the frame should be read while the writes wait");
        assert_eq!(msg.unwrap(), "hi");
    }

    /// A server-side close: what was queued before it goes out, then the
    /// Engine.IO close packet and the WebSocket close frame.
    #[tokio::test]
    async fn what_was_queued_before_a_close_goes_out_first() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let connection = tokio::spawn(run_connection(engine(), socket.clone(), Box::new(server)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        socket.emit(Str::from("bye")).unwrap();
        socket.close(DisconnectReason::ClosingServer);
        socket.cancellation_token.cancel();

        let mut frames = Vec::new();
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(TIMEOUT, client.next()).await {
            frames.push(frame);
        }
        assert_eq!(frames[..2], [Message::text("4bye"), Message::text("1")]);
        assert!(matches!(frames[2], Message::Close(_)), "{frames:?}");
        tokio::time::timeout(TIMEOUT, connection)
            .await
            .expect("the connection should end")
            .unwrap();
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn the_connection_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;

        let polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(run_connection(engine(), socket.clone(), Box::new(server)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !writer.is_finished(),
            "the connection should wait for the lock"
        );

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the connection should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    #[tokio::test]
    async fn a_connection_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;

        let _polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(run_connection(engine(), socket.clone(), Box::new(server)));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the connection should stop")
            .unwrap();
    }
}
