//! The Engine.IO and Socket.IO framing, end to end: a script of long-polling
//! requests and WebSocket frames played against a whole node in-process — the
//! real router, socketioxide layer and Natter namespace, assembled by
//! `natter::app::single_node` as the server assembles them.
//!
//! An input is a script, one step a line (`#` starts a comment):
//!
//! ```text
//! poll                        polling handshake: GET /socket.io/?EIO=4&transport=polling
//! post 40{"token":"@token"}   POST the payload to the session (`\x1e` separates packets)
//! get                         GET the session's answers (waits a few milliseconds at most)
//! ws                          a new WebSocket: GET ?EIO=4&transport=websocket, upgraded
//! ws?EIO=4&transport=websocket&sid=@sid   a WebSocket upgrading the polling session
//! text 421["sync",{"rid":"@room"}]        a text frame on the last WebSocket
//! binary \x01\x02             a binary frame
//! frame 10 data               a raw frame: opcode and flags (hex digits; flags: 1 FIN,
//!                             2 RSV1, 4 RSV2, 8 RSV3), then the payload
//! wsclose                     a close frame
//! read                        reads the last WebSocket's answers (until it is quiet a few ms)
//! ```
//!
//! `VERB?QUERY` replaces a request's default query. `@sid` is the last session id
//! the server gave (the harness's placeholders, `@token`, `@room`…, are replaced
//! first). In data, `\xHH`, `\n`, `\r`, `\t` and `\\` are escapes, and `\{N}`
//! repeats the previous byte N times (for frames over the payload limit).
//!
//! With `SOCKET_FRAMES_TRACE` set, each step and each answer is printed on
//! stderr (to read what a seed or a crash does: `cargo fuzz run … FILE`).
//!
//! Invariants: nothing panics (a panic in a server task aborts the process:
//! libFuzzer's panic hook); no request is answered 5xx; every packet the server
//! sends is well formed: an open packet advertises the configured limits, an
//! event is one Natter emits, an ack is `{ok: true, …}` or exactly
//! `{error: {code}}` with a contract code, a connect error has a known message,
//! and nothing is binary (Natter's answers are JSON); a polling answer longer
//! than `--max-payload` is a single packet; a POST over `--max-payload` is
//! refused and a WebSocket frame over it closes the connection. After each input
//! every socket it opened is gone, and every `FRESH_CLIENT_EVERY` inputs a new
//! client still connects and authenticates.

#![no_main]

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{Method, Request, StatusCode};
use futures_util::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use libfuzzer_sys::fuzz_target;
use natter_fuzz::{Node, World, contract_code, run_node};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tower::{Service as _, ServiceExt as _};

/// Steps of one input beyond this are ignored: executions per second matter more.
const MAX_STEPS: usize = 64;
/// WebSockets and polling sessions one input may open: enough to go past the
/// per-user connection cap (20), so that refusal is reached too.
const MAX_WEBSOCKETS: usize = 8;
const MAX_POLLS: usize = 16;
/// The longest datum a `\{N}` repetition makes: four times the default payload limit.
const MAX_DATA: usize = 256 * 1024;
/// How long a polling GET or a WebSocket read waits for an answer that may not
/// come. Answers come from the same runtime (and SQLite's thread) within a
/// millisecond or two; an answer later than this is not checked, which loses
/// nothing but coverage.
const QUIET: Duration = Duration::from_millis(2);
/// At most this long for a step that should finish at once (a handshake, a POST,
/// a frame written): past it the step is given up, not reported. What takes
/// longer waits for something else (a polling GET for the ping interval, a
/// server that stopped reading), which a script may ask for.
const STEP: Duration = Duration::from_millis(50);
/// A WebSocket that got a frame over the limit must be closed by then: the
/// server refuses the frame as soon as it reads its header, on this very thread.
const CLOSED: Duration = Duration::from_secs(1);
/// Sockets are closed by tasks of the runtime; they have this long to be gone
/// after an input (a generous bound: the machine may be loaded).
const SETTLE: Duration = Duration::from_secs(5);
/// A fresh client connects and authenticates this often (and at the first input).
const FRESH_CLIENT_EVERY: u64 = 100;
/// A request body reaches the server in chunks of this size, as hyper hands a
/// body over from its reads of the connection.
const BODY_CHUNK: usize = 8 * 1024;
/// The in-process "network": bytes in flight each way.
const DUPLEX_BYTES: usize = 64 * 1024;
/// The peer every request comes from (the server reads it as `ConnectInfo`).
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);
/// Events a Natter node emits to sockets (not `probe`: its room has no socket).
const SERVER_EVENTS: [&str; 10] = [
    "message",
    "resync",
    "message-updated",
    "chat",
    "chat-removed",
    "presence",
    "typing",
    "read",
    "joined-chat",
    "shutting-down",
];
/// `connect_error` messages: Natter's refusals and socketioxide's unknown namespace.
const CONNECT_ERRORS: [&str; 3] = ["unauthorized", "too_many_connections", "Invalid namespace"];

/// When the trace was asked for: its lines are stamped with the time since.
static TRACE: LazyLock<Option<Instant>> =
    LazyLock::new(|| std::env::var_os("SOCKET_FRAMES_TRACE").map(|_| Instant::now()));

macro_rules! trace {
    ($($arg:tt)*) => {
        if let Some(start) = *TRACE {
            eprintln!("{:>8.3?} {}", start.elapsed(), format_args!($($arg)*));
        }
    };
}

thread_local! {
    static INPUTS: Cell<u64> = const { Cell::new(0) };
}

fuzz_target!(|input: &[u8]| {
    trace!("= input");
    run_node(|world| async move {
        let node = world.node.as_ref().expect("a world with a node");
        let mut script = Script {
            node,
            sid: None,
            polls: Vec::new(),
            sockets: Vec::new(),
        };
        for line in world
            .expand(input)
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
            .take(MAX_STEPS)
        {
            if let Some(step) = Step::parse(line) {
                script.play(step).await;
                // The tasks the step woke run now (engineioxide queues a ping as
                // soon as a session opens): fewer answers depend on timing.
                tokio::task::yield_now().await;
            }
        }
        script.finish().await;
        let inputs = INPUTS.with(|n| {
            n.set(n.get() + 1);
            n.get()
        });
        if inputs % FRESH_CLIENT_EVERY == 1 {
            fresh_client(&world, node).await;
        }
    });
});

enum Step {
    Poll(Option<String>),
    Post(Option<String>, Vec<u8>),
    Get(Option<String>),
    Ws(Option<String>),
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Frame(FrameHeader, Vec<u8>),
    WsClose,
    Read,
}

impl Step {
    fn parse(line: &[u8]) -> Option<Step> {
        let (head, data) = match line.iter().position(|&b| b == b' ') {
            Some(at) => (&line[..at], unescape(&line[at + 1..])),
            None => (line, Vec::new()),
        };
        let head = std::str::from_utf8(head).ok()?;
        let (verb, query) = match head.split_once('?') {
            Some((verb, query)) => (verb, Some(query.to_owned())),
            None => (head, None),
        };
        Some(match verb {
            "poll" => Step::Poll(query),
            "post" => Step::Post(query, data),
            "get" => Step::Get(query),
            "ws" => Step::Ws(query),
            "text" => Step::Text(data),
            "binary" => Step::Binary(data),
            "frame" => {
                let [op, flags, payload @ ..] = &data[..] else {
                    return None;
                };
                let flags = hex(*flags)?;
                let header = FrameHeader {
                    is_final: flags & 1 != 0,
                    rsv1: flags & 2 != 0,
                    rsv2: flags & 4 != 0,
                    rsv3: flags & 8 != 0,
                    opcode: OpCode::from(hex(*op)?),
                    mask: None, // the client masks every frame it writes
                };
                let payload = payload.strip_prefix(b" ").unwrap_or(payload);
                Step::Frame(header, payload.to_vec())
            }
            "wsclose" => Step::WsClose,
            "read" => Step::Read,
            _ => return None,
        })
    }
}

/// For the trace: long data cut, bytes escaped.
impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = |data: &[u8]| {
            let cut = &data[..data.len().min(200)];
            format!("{} ({} bytes)", cut.escape_ascii(), data.len())
        };
        match self {
            Step::Poll(query) => write!(f, "poll {query:?}"),
            Step::Post(query, body) => write!(f, "post {query:?} {}", data(body)),
            Step::Get(query) => write!(f, "get {query:?}"),
            Step::Ws(query) => write!(f, "ws {query:?}"),
            Step::Text(text) => write!(f, "text {}", data(text)),
            Step::Binary(bytes) => write!(f, "binary {}", data(bytes)),
            Step::Frame(header, payload) => write!(f, "frame {header:?} {}", data(payload)),
            Step::WsClose => write!(f, "wsclose"),
            Step::Read => write!(f, "read"),
        }
    }
}

/// Decodes the escapes of a step's data (see the module's documentation).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let [first, tail @ ..] = rest {
        rest = tail;
        if *first != b'\\' {
            out.push(*first);
            continue;
        }
        let simple = match rest.first() {
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            Some(b'\\') => Some(b'\\'),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            rest = &rest[1..];
        } else if let [b'x', hi, lo, tail @ ..] = rest
            && let (Some(hi), Some(lo)) = (hex(*hi), hex(*lo))
        {
            out.push(hi << 4 | lo);
            rest = tail;
        } else if let Some((n, tail)) = repetition(rest)
            && let Some(&last) = out.last()
        {
            out.resize(out.len() + n.min(MAX_DATA.saturating_sub(out.len())), last);
            rest = tail;
        } else {
            // Not an escape: the backslash stands for itself.
            out.push(b'\\');
        }
    }
    out
}

/// `{N}` (after a backslash): N, saturated, and what follows.
fn repetition(data: &[u8]) -> Option<(usize, &[u8])> {
    let tail = data.strip_prefix(b"{")?;
    let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = tail[digits..].strip_prefix(b"}")?;
    let n = std::str::from_utf8(&tail[..digits]).ok()?;
    Some((n.parse().unwrap_or(usize::MAX), rest)).filter(|_| digits > 0)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|d| d as u8)
}

struct Socket {
    ws: WebSocketStream<DuplexStream>,
    /// A frame over `--max-payload` was written: the server must close the connection.
    oversized: bool,
}

struct Script<'a> {
    node: &'a Node,
    /// The last session id the server gave (`@sid`).
    sid: Option<String>,
    /// Polling sessions opened, closed at the end.
    polls: Vec<String>,
    sockets: Vec<Socket>,
}

impl Script<'_> {
    fn max_payload(&self) -> usize {
        self.node.args.max_payload as usize
    }

    /// A step's query, or its default; `@sid` replaced.
    fn query(&self, query: Option<String>, default: &str) -> String {
        let query = query.unwrap_or_else(|| default.to_owned());
        query.replace("@sid", self.sid.as_deref().unwrap_or(""))
    }

    async fn play(&mut self, step: Step) {
        trace!("> {step:?}");
        match step {
            Step::Poll(query) => {
                if self.polls.len() >= MAX_POLLS {
                    return;
                }
                let query = self.query(query, "EIO=4&transport=polling");
                let Some((status, body)) = self.request(Method::GET, &query, vec![], STEP).await
                else {
                    return;
                };
                if status == StatusCode::OK
                    && let Some(sid) = self.check_payload(&body)
                {
                    self.polls.push(sid.clone());
                    self.sid = Some(sid);
                }
            }
            Step::Post(query, data) => {
                let query = self.query(query, "EIO=4&transport=polling&sid=@sid");
                let oversized = data.len() > self.max_payload();
                if let Some((status, _)) = self.request(Method::POST, &query, data, STEP).await {
                    assert!(
                        !(oversized && status.is_success()),
                        "a POST over --max-payload was accepted"
                    );
                }
            }
            Step::Get(query) => {
                let query = self.query(query, "EIO=4&transport=polling&sid=@sid");
                let get = self.request(Method::GET, &query, vec![], QUIET).await;
                if let Some((StatusCode::OK, body)) = get {
                    self.check_payload(&body);
                }
            }
            Step::Ws(query) => {
                if self.sockets.len() >= MAX_WEBSOCKETS {
                    return;
                }
                let query = self.query(query, "EIO=4&transport=websocket");
                let Some(mut ws) = open_websocket(&self.node.app, &query).await else {
                    return;
                };
                // A new session's open packet comes at once; an upgrade has none.
                if !query.contains("sid=")
                    && let Ok(Some(Ok(message))) = timeout(QUIET, ws.next()).await
                    && let Some(sid) = self.check_message(message)
                {
                    self.sid = Some(sid);
                }
                self.sockets.push(Socket {
                    ws,
                    oversized: false,
                });
            }
            Step::Text(data) => {
                let oversized = data.len() > self.max_payload();
                let message = match String::from_utf8(data) {
                    Ok(text) => Message::text(text),
                    // Not UTF-8: written as a raw text frame, for the server to refuse.
                    Err(e) => Message::Frame(Frame::message(
                        e.into_bytes(),
                        OpCode::Data(Data::Text),
                        true,
                    )),
                };
                self.send(message, oversized).await;
            }
            Step::Binary(data) => {
                let oversized = data.len() > self.max_payload();
                self.send(Message::binary(data), oversized).await;
            }
            Step::Frame(header, data) => {
                let frame = Frame::from_payload(header, data.into());
                self.send(Message::Frame(frame), false).await;
            }
            Step::WsClose => self.send(Message::Close(None), false).await,
            Step::Read => {
                if let Some(mut socket) = self.sockets.pop() {
                    self.read(&mut socket, QUIET).await;
                    self.sockets.push(socket);
                }
            }
        }
    }

    /// Reads and checks a WebSocket's messages until none comes for `quiet`;
    /// whether the connection ended.
    async fn read(&self, socket: &mut Socket, quiet: Duration) -> bool {
        loop {
            match timeout(quiet, socket.ws.next()).await {
                Ok(Some(Ok(message))) => {
                    self.check_message(message);
                }
                Ok(Some(Err(_)) | None) => return true,
                Err(_) => return false,
            }
        }
    }

    /// A request to the Engine.IO endpoint, as a client on `PEER` sends it;
    /// given up after `wait` (a polling GET waits for something to send).
    async fn request(
        &self,
        method: Method,
        query: &str,
        body: Vec<u8>,
        wait: Duration,
    ) -> Option<(StatusCode, Bytes)> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/socket.io/?{query}"))
            .header(HOST, "natter.test")
            .header(CONTENT_TYPE, "text/plain;charset=UTF-8")
            .body(chunked(body))
            .ok()?;
        request.extensions_mut().insert(ConnectInfo(PEER));
        let response = timeout(wait, self.node.app.clone().oneshot(request)).await;
        let response = response.ok()?.unwrap_or_else(|e| match e {});
        let status = response.status();
        assert!(!status.is_server_error(), "{status} for {query}");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .ok()?;
        trace!("< {status} {}", body[..body.len().min(200)].escape_ascii());
        Some((status, body))
    }

    /// Writes a message on the last WebSocket.
    async fn send(&mut self, message: Message, oversized: bool) {
        let Some(socket) = self.sockets.last_mut() else {
            return;
        };
        // A server that does not read (a script may make it wait) is not a
        // finding: the frame is given up. A write that failed (the server
        // closed the connection at the frame's header) counts as written.
        if timeout(STEP, socket.ws.send(message)).await.is_ok() {
            socket.oversized |= oversized;
        }
    }

    /// Checks a polling answer; the session id if it opens a session.
    fn check_payload(&self, body: &[u8]) -> Option<String> {
        let body = std::str::from_utf8(body).expect("polling answers are text");
        if body.is_empty() {
            return None; // the session closed while the request waited
        }
        assert!(
            body.len() <= self.max_payload() || !body.contains('\x1e'),
            "a polling answer of {} bytes holds several packets",
            body.len()
        );
        let mut opened = None;
        for packet in body.split('\x1e') {
            if let Some(sid) = self.check_packet(packet) {
                opened = Some(sid);
            }
        }
        opened
    }

    /// Checks a WebSocket message; the session id if it opens a session.
    fn check_message(&self, message: Message) -> Option<String> {
        match message {
            Message::Text(text) => self.check_packet(&text),
            Message::Binary(_) => panic!("a binary frame: Natter's answers are JSON"),
            _ => None,
        }
    }

    /// Checks an Engine.IO packet from the server; the session id of an open packet.
    fn check_packet(&self, packet: &str) -> Option<String> {
        trace!("< {packet}");
        let (kind, rest) = packet.split_at_checked(1).expect("an empty packet");
        match kind {
            "0" => {
                let open: Value = serde_json::from_str(rest).expect("open packet is JSON");
                assert_eq!(
                    open["maxPayload"],
                    u64::from(self.node.args.max_payload),
                    "{packet}"
                );
                assert_eq!(
                    open["pingInterval"],
                    self.node.args.ping_interval_secs * 1000,
                    "{packet}"
                );
                return Some(open["sid"].as_str().expect("a sid").to_owned());
            }
            // close, ping, pong (`3probe`), noop
            "1" | "2" | "3" | "6" => {}
            "4" => check_socket_io(rest),
            _ => panic!("not a packet the server sends: {packet:?}"),
        }
        None
    }

    /// Closes every session the input opened, reading what is left on each
    /// WebSocket first; then waits for the server's sockets to be gone.
    async fn finish(mut self) {
        for mut socket in std::mem::take(&mut self.sockets) {
            let quiet = if socket.oversized { CLOSED } else { QUIET };
            let ended = self.read(&mut socket, quiet).await;
            assert!(
                ended || !socket.oversized,
                "a WebSocket frame over --max-payload did not close the connection"
            );
        }
        for sid in std::mem::take(&mut self.polls) {
            let query = format!("EIO=4&transport=polling&sid={sid}");
            self.request(Method::POST, &query, b"1".to_vec(), STEP)
                .await;
        }
        trace!("= closed");
        let settled = timeout(SETTLE, async {
            while self.node.fanout.census().await.sockets > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        assert!(
            settled.await.is_ok(),
            "sockets still connected {SETTLE:?} after their transports were closed"
        );
    }
}

/// Checks a Socket.IO packet from the server (the body of an Engine.IO message).
fn check_socket_io(packet: &str) {
    let (kind, rest) = packet
        .split_at_checked(1)
        .expect("an empty Socket.IO packet");
    // Natter has one namespace; socketioxide answers others (`/ns,`) with a connect error.
    let rest = match rest.strip_prefix('/') {
        Some(ns) => ns.split_once(',').map_or("", |(_, rest)| rest),
        None => rest,
    };
    match kind {
        "0" => {
            let connected: Value = serde_json::from_str(rest).expect("connect packet is JSON");
            assert!(connected["sid"].is_string(), "{packet}");
        }
        "1" => {}
        "2" => {
            let event: Value = serde_json::from_str(rest).expect("event is JSON");
            let name = event[0].as_str().unwrap_or_default();
            assert!(SERVER_EVENTS.contains(&name), "{packet}");
        }
        "3" => {
            let json = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            assert!(json.len() < rest.len(), "an ack without an id: {packet}");
            let args: Value = serde_json::from_str(json).expect("ack is JSON");
            let [answer] = args.as_array().map(Vec::as_slice).unwrap_or_default() else {
                panic!("an ack is one answer: {packet}");
            };
            check_answer(answer);
        }
        "4" => {
            let error: Value = serde_json::from_str(rest).expect("connect error is JSON");
            let message = error["message"].as_str().unwrap_or_default();
            assert!(CONNECT_ERRORS.contains(&message), "{packet}");
        }
        _ => panic!("not a packet Natter sends: {packet:?}"),
    }
}

/// An event's answer: `{ok: true, …}` or exactly `{error: {code}}` with a contract code.
fn check_answer(answer: &Value) {
    if answer["ok"] == true {
        return;
    }
    let error = answer
        .as_object()
        .filter(|o| o.len() == 1)
        .map(|o| &o["error"]);
    let code = error
        .and_then(Value::as_object)
        .filter(|e| e.len() == 1)
        .and_then(|e| e["code"].as_str());
    match code {
        Some(code) => assert!(contract_code(code), "{answer}"),
        None => panic!("neither a success nor the contract's error: {answer}"),
    }
}

/// `body` as a stream of `BODY_CHUNK`-byte frames.
fn chunked(body: Vec<u8>) -> Body {
    let chunks: Vec<Result<Bytes, Infallible>> = body
        .chunks(BODY_CHUNK)
        .map(|chunk| Ok(Bytes::copy_from_slice(chunk)))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// A WebSocket to the node, served by hyper over an in-memory pipe as
/// `http::server` serves a TCP connection, upgraded by the client's handshake.
async fn open_websocket(app: &Router, query: &str) -> Option<WebSocketStream<DuplexStream>> {
    let (client, server) = tokio::io::duplex(DUPLEX_BYTES);
    let app = app.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(PEER));
        app.clone().call(request)
    });
    tokio::spawn(async move {
        let _ = Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(server), service)
            .await;
    });
    let url = format!("ws://natter.test/socket.io/?{query}");
    let handshake = tokio_tungstenite::client_async(url, client);
    let (ws, _) = timeout(STEP, handshake).await.ok()?.ok()?;
    Some(ws)
}

/// A new client still gets a session, connects with the user's token and is
/// answered the namespace's connect packet; then it leaves.
async fn fresh_client(world: &World, node: &Node) {
    let mut client = Script {
        node,
        sid: None,
        polls: Vec::new(),
        sockets: Vec::new(),
    };
    client.play(Step::Poll(None)).await;
    let sid = client.sid.clone().expect("a new client gets a session");
    let connect = format!("40{{\"token\":\"{}\"}}", world.token).into_bytes();
    client.play(Step::Post(None, connect)).await;
    let query = format!("EIO=4&transport=polling&sid={sid}");
    let answered = timeout(SETTLE, async {
        loop {
            // engineioxide pings as soon as a session opens: the answer may come after it.
            let (_, body) = client
                .request(Method::GET, &query, vec![], SETTLE)
                .await
                .expect("an answer");
            client.check_payload(&body);
            let body = String::from_utf8(body.to_vec()).expect("text");
            if let Some(packet) = body
                .split('\x1e')
                .find(|p| p.starts_with("40") || p.starts_with("44"))
            {
                break packet.to_owned();
            }
        }
    });
    let packet = answered.await.expect("a new client is answered");
    assert!(
        packet.starts_with("40{"),
        "a new client is connected: {packet}"
    );
    client.finish().await;
}
