//! A minimal Socket.IO v4 client over a plain WebSocket (`ws://` only).
//!
//! Only what a load generator needs, spoken directly on the Engine.IO v4
//! WebSocket transport (no HTTP long-polling, no upgrade dance):
//!
//! * connect to `ws://HOST/socket.io/?EIO=4&transport=websocket`;
//! * read the Engine.IO open packet `0{"sid":…,"pingInterval":…}`;
//! * join the default namespace with `40{auth json}` and wait for
//!   `40{"sid":…}` (accepted) or `44{"message":…}` (refused);
//! * answer every Engine.IO ping `2` with a pong `3`;
//! * events are `42["name",payload]`, events that want an acknowledgement are
//!   `42<id>["name",payload]`, and the server answers those with `43<id>[args…]`.
//!
//! Acknowledgement ids are sequential per socket, so they never collide
//! however many requests are in flight (unlike clients that draw them at
//! random from a small range). Binary packets (types 5 and 6) are not
//! supported: the Natter contract does not use them.
//!
//! Each [`Socket`] runs two tasks: a reader that answers pings, resolves
//! acknowledgements and forwards events (stamped with the instant the frame
//! was read) to an unbounded channel, and a writer that drains an outgoing
//! queue, batching whatever is queued into one flush.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Instant;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's TCP address.
    pub addr: SocketAddr,
    /// `ws://host:port/socket.io/?EIO=4&transport=websocket`.
    pub url: String,
    /// Extra `Origin` header, if any (token auth does not need one).
    pub origin: Option<String>,
    /// How long the TCP + WebSocket + namespace handshakes may take together.
    pub timeout: Duration,
}

impl Target {
    /// Builds the WebSocket URL from an `http://host:port` base URL.
    pub fn from_base(base: &url_lite::Base, timeout: Duration) -> Self {
        Self {
            addr: base.addr,
            url: format!(
                "ws://{}/socket.io/?EIO=4&transport=websocket",
                base.host_port
            ),
            origin: None,
            timeout,
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused the namespace connect (`44{"message": …}`).
    Refused(String),
    /// The handshakes did not finish within [`Target::timeout`].
    Timeout,
    /// TCP or WebSocket failure.
    Io(String),
    /// The server said something that is not Engine.IO/Socket.IO v4.
    Protocol(String),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused(m) => write!(f, "connection refused by the server: {m}"),
            Self::Timeout => f.write_str("connect timed out"),
            Self::Io(m) => write!(f, "connect failed: {m}"),
            Self::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// The socket is closed: nothing can be sent and no acknowledgement will come.
#[derive(Debug, Clone, Copy)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("socket closed")
    }
}

impl std::error::Error for Closed {}

/// Why [`Socket::call`] got no acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The socket closed before the acknowledgement came.
    Closed,
    /// No acknowledgement within the timeout (the socket is still open).
    Timeout,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("socket closed before the ack"),
            Self::Timeout => f.write_str("no ack in time"),
        }
    }
}

impl std::error::Error for CallError {}

/// A server → client event.
#[derive(Debug)]
pub struct Event {
    /// When the reader task read the frame (before JSON parsing).
    pub at: Instant,
    /// The event name (first element of the packet's array).
    pub name: String,
    /// The first argument, or `Null` when there is none.
    pub data: Value,
}

/// An acknowledgement: the instant it was read and its first argument.
pub type Ack = (Instant, Value);

type AckMap = Mutex<HashMap<u64, oneshot::Sender<Ack>>>;

type Ws = WebSocketStream<TcpStream>;

/// One connected Socket.IO client socket on the default namespace.
pub struct Socket {
    out: mpsc::UnboundedSender<Message>,
    acks: Arc<AckMap>,
    next_ack: AtomicU64,
    reader: JoinHandle<()>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The Socket.IO session id the server gave this socket.
    pub sid: String,
}

/// Kernel socket buffers and WebSocket buffers kept small: tens of thousands
/// of these may be open at once in the idle scenario.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(16 << 20))
}

/// Opens a socket, authenticating with `auth` (e.g. `{"token": "…"}`), from
/// the local address `bind` (port 0) when given. Returns the socket and the
/// receiver of its server → client events; the receiver ends when the socket
/// is closed (by either side).
pub async fn connect(
    target: &Target,
    auth: &Value,
    bind: Option<std::net::IpAddr>,
) -> Result<(Socket, mpsc::UnboundedReceiver<Event>), ConnectError> {
    match tokio::time::timeout(target.timeout, handshake(target, auth, bind)).await {
        Ok(Ok((ws, sid))) => Ok(spawn(ws, sid)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Timeout),
    }
}

async fn handshake(
    target: &Target,
    auth: &Value,
    bind: Option<std::net::IpAddr>,
) -> Result<(Ws, String), ConnectError> {
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let socket = if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0)).map_err(io)?;
    }
    let tcp = socket.connect(target.addr).await.map_err(io)?;
    tcp.set_nodelay(true).map_err(io)?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            target.url.as_str(),
        )
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    if let Some(origin) = &target.origin {
        request.headers_mut().insert(
            "origin",
            origin
                .parse()
                .map_err(|_| ConnectError::Io("bad origin".into()))?,
        );
    }
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(ws_config()))
        .await
        .map_err(|e| ConnectError::Io(e.to_string()))?;

    // Engine.IO open packet.
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(ConnectError::Protocol(format!(
            "expected the Engine.IO open packet, got {open:?}"
        )));
    }
    ws.send(Message::text(format!("40{auth}")))
        .await
        .map_err(|e| ConnectError::Io(e.to_string()))?;
    loop {
        let frame = next_text(&mut ws).await?;
        if let Some(probe) = frame.strip_prefix('2') {
            ws.send(Message::text(format!("3{probe}")))
                .await
                .map_err(|e| ConnectError::Io(e.to_string()))?;
            continue;
        }
        if let Some(rest) = frame.strip_prefix("40") {
            let body = strip_namespace(rest);
            let sid = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("sid").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            return Ok((ws, sid));
        }
        if let Some(rest) = frame.strip_prefix("44") {
            let body = strip_namespace(rest);
            let message = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| body.to_owned());
            return Err(ConnectError::Refused(message));
        }
        if frame.starts_with('1') || frame.starts_with("41") {
            return Err(ConnectError::Refused("closed during connect".into()));
        }
        // Anything else before the connect answer (noop `6`, stray events) is skipped.
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => {
                return Err(ConnectError::Io("closed during handshake".into()));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ConnectError::Io(e.to_string())),
        }
    }
}

/// Skips a `/namespace,` prefix (only the default namespace is used, but a
/// server may still spell it out).
fn strip_namespace(s: &str) -> &str {
    if s.starts_with('/') {
        match s.find(',') {
            Some(i) => &s[i + 1..],
            None => "",
        }
    } else {
        s
    }
}

/// A placeholder a frame may carry (in a test message's text): the writer
/// replaces it with the time the frame is handed to the socket, in
/// microseconds since the process epoch, zero-padded to the same width. So a
/// latency can be timed from the actual write, not from when the frame was
/// queued (a tokio wake-up may add up to a millisecond of the bench's own).
pub const WRITE_STAMP: &str = "~~~~~~~~~~~~~~~~~~~~";

/// `frame` with its [`WRITE_STAMP`], if any, replaced by the time now.
fn stamped(frame: Message) -> Message {
    match frame {
        Message::Text(text) => match text.as_str().find(WRITE_STAMP) {
            Some(at) => {
                let mut s = text.as_str().to_owned();
                let now = format!("{:020}", crate::stats::micros(Instant::now()));
                s.replace_range(at..at + WRITE_STAMP.len(), &now);
                Message::text(s)
            }
            None => Message::Text(text),
        },
        other => other,
    }
}

fn spawn(ws: Ws, sid: String) -> (Socket, mpsc::UnboundedReceiver<Event>) {
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel::<Event>();
    let acks: Arc<AckMap> = Arc::new(Mutex::new(HashMap::new()));

    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            let mut closing = matches!(first, Message::Close(_));
            if sink.feed(stamped(first)).await.is_err() {
                return;
            }
            while !closing {
                let Ok(more) = out_rx.try_recv() else { break };
                closing = matches!(more, Message::Close(_));
                if sink.feed(stamped(more)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() || closing {
                return;
            }
        }
        let _ = sink.close().await;
    });

    let reader_acks = acks.clone();
    let pong_tx = out_tx.clone();
    let reader = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let at = Instant::now();
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let text = text.as_str();
            let Some(kind) = text.as_bytes().first() else {
                continue;
            };
            let packet = text.get(1..).unwrap_or("");
            let keep = match kind {
                // Engine.IO ping → pong (echoing any probe payload).
                b'2' => {
                    let _ = pong_tx.send(Message::text(format!("3{packet}")));
                    true
                }
                // Engine.IO close.
                b'1' => false,
                // Engine.IO message carrying a Socket.IO packet; false: disconnected.
                b'4' => handle_packet(packet, at, &reader_acks, &ev_tx),
                _ => true,
            };
            if !keep {
                break;
            }
        }
        // Dropping the senders fails every pending acknowledgement.
        reader_acks.lock().expect("ack map").clear();
    });

    (
        Socket {
            out: out_tx,
            acks,
            next_ack: AtomicU64::new(0),
            reader,
            writer: Mutex::new(Some(writer)),
            sid,
        },
        ev_rx,
    )
}

/// Handles one Socket.IO packet; returns false when the server disconnected us.
fn handle_packet(
    packet: &str,
    at: Instant,
    acks: &AckMap,
    events: &mpsc::UnboundedSender<Event>,
) -> bool {
    let Some(kind) = packet.as_bytes().first() else {
        return true;
    };
    let rest = strip_namespace(packet.get(1..).unwrap_or(""));
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse::<u64>().ok();
    let body = &rest[digits..];
    match kind {
        // EVENT
        b'2' => {
            if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body)
                && !args.is_empty()
            {
                let name = match args.remove(0) {
                    Value::String(s) => s,
                    _ => return true,
                };
                let data = if args.is_empty() {
                    Value::Null
                } else {
                    args.swap_remove(0)
                };
                let _ = events.send(Event { at, name, data });
            }
            true
        }
        // ACK
        b'3' => {
            if let Some(id) = id {
                let waiter = acks.lock().expect("ack map").remove(&id);
                if let Some(waiter) = waiter {
                    let data = match serde_json::from_str::<Value>(body) {
                        Ok(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
                        Ok(_) | Err(_) => Value::Null,
                    };
                    let _ = waiter.send((at, data));
                }
            }
            true
        }
        // DISCONNECT
        b'1' => false,
        _ => true,
    }
}

impl Socket {
    fn event_frame(event: &str, id: Option<u64>, data: &Value) -> Message {
        let name = Value::String(event.to_owned());
        match id {
            Some(id) => Message::text(format!("42{id}[{name},{data}]")),
            None => Message::text(format!("42[{name},{data}]")),
        }
    }

    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, event: &str, data: &Value) -> Result<(), Closed> {
        self.out
            .send(Self::event_frame(event, None, data))
            .map_err(|_| Closed)
    }

    /// Sends an event asking for an acknowledgement; the returned receiver
    /// yields the acknowledgement's first argument and the instant it was
    /// read, or fails when the socket closes first.
    pub fn emit_with_ack(
        &self,
        event: &str,
        data: &Value,
    ) -> Result<oneshot::Receiver<Ack>, Closed> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().expect("ack map").insert(id, tx);
        if self
            .out
            .send(Self::event_frame(event, Some(id), data))
            .is_err()
        {
            self.acks.lock().expect("ack map").remove(&id);
            return Err(Closed);
        }
        Ok(rx)
    }

    /// Emits and waits for the acknowledgement, at most `timeout`.
    pub async fn call(
        &self,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let rx = self
            .emit_with_ack(event, data)
            .map_err(|_| CallError::Closed)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((_, v))) => Ok(v),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// True while the reader task runs (the server has not closed the socket).
    pub fn is_open(&self) -> bool {
        !self.reader.is_finished()
    }

    /// Leaves politely: Socket.IO disconnect `41`, then a WebSocket close,
    /// waiting at most `timeout` for them to be written.
    pub async fn close(&self, timeout: Duration) {
        let _ = self.out.send(Message::text("41"));
        let _ = self.out.send(Message::Close(None));
        let writer = self.writer.lock().expect("writer").take();
        if let Some(writer) = writer {
            let _ = tokio::time::timeout(timeout, writer).await;
        }
    }

    /// Drops the TCP connection without any goodbye, like a lost network.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(writer) = self.writer.get_mut().ok().and_then(Option::take) {
            writer.abort();
        }
    }
}

/// Parsing of the `--url` base (`http://host:port`), kept tiny on purpose.
pub mod url_lite {
    use std::net::{SocketAddr, ToSocketAddrs};

    /// A parsed `http://host:port` base URL.
    #[derive(Debug, Clone)]
    pub struct Base {
        /// `http://host:port` without a trailing slash.
        pub http: String,
        /// `host:port` as written.
        pub host_port: String,
        /// The first address `host:port` resolves to.
        pub addr: SocketAddr,
    }

    /// Parses `http://host[:port][/]`; https is not supported (loopback benches).
    pub fn parse(url: &str) -> anyhow::Result<Base> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("--url must start with http:// (got {url})"))?;
        let host_port = rest.trim_end_matches('/');
        if host_port.contains('/') {
            anyhow::bail!("--url must be a bare base URL like http://127.0.0.1:8080");
        }
        let with_port = if host_port
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host_port.to_owned()
        } else {
            format!("{host_port}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host_port} does not resolve"))?;
        Ok(Base {
            http: format!("http://{host_port}"),
            host_port: host_port.to_owned(),
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_and_event_packets_are_parsed() {
        let acks: AckMap = Mutex::new(HashMap::new());
        let (tx, mut rx) = oneshot::channel();
        acks.lock().unwrap().insert(17, tx);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        assert!(handle_packet(r#"317[{"ok":true}]"#, now, &acks, &ev_tx));
        assert_eq!(rx.try_recv().unwrap().1["ok"], true);
        assert!(handle_packet(
            r#"2["message",{"seq":3}]"#,
            now,
            &acks,
            &ev_tx
        ));
        let ev = ev_rx.try_recv().unwrap();
        assert_eq!(ev.name, "message");
        assert_eq!(ev.data["seq"], 3);
        assert!(handle_packet(r#"2/,["x"]"#, now, &acks, &ev_tx));
        assert_eq!(ev_rx.try_recv().unwrap().data, Value::Null);
        assert!(!handle_packet("1", now, &acks, &ev_tx));
    }

    #[test]
    fn event_frames_are_encoded() {
        let data = serde_json::json!({"rid": "r\"1"});
        let m = Socket::event_frame("join-chat", Some(5), &data);
        assert_eq!(m.to_text().unwrap(), r#"425["join-chat",{"rid":"r\"1"}]"#);
        let m = Socket::event_frame("x", None, &Value::Null);
        assert_eq!(m.to_text().unwrap(), r#"42["x",null]"#);
    }

    #[test]
    fn base_urls() {
        let b = url_lite::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(b.http, "http://127.0.0.1:8080");
        assert_eq!(b.addr.port(), 8080);
        assert!(url_lite::parse("https://x").is_err());
    }
}
