//! Connection hygiene against hostile clients: deadlines for connections
//! that send nothing or go idle (HTTP/1, h2c, WebSocket), the cap per client
//! address, and the file descriptors kept for the people already connected.

mod common;

use std::time::{Duration, Instant};

use common::{Server, Socket};
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longer than any deadline under test may overrun by, on a busy machine.
const MARGIN: Duration = Duration::from_secs(3);

fn addr(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(addr(server)).await.expect("connect")
}

/// Reads (and drops) whatever comes until the server closes the connection;
/// how long that took from `since`. Panics if it is still open at `limit`.
async fn closed_after(stream: &mut TcpStream, since: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    let open_until = since + limit;
    loop {
        let left = open_until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("still open after {limit:?}"),
        }
    }
}

/// Whether the server has closed the connection (it says so within `within`).
async fn is_closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Sends `GET path` on an HTTP/1.1 keep-alive connection and reads the
/// response: status and body (`None` if the connection closed instead).
async fn get(stream: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: natter\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let status = head[9..12].parse().expect("status code");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    while received.len() < head_end + length {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&received[head_end..head_end + length]).into_owned();
    Some((status, body))
}

fn assert_closed_at_the_deadline(what: &str, took: Duration, deadline: Duration) {
    let early = deadline - Duration::from_millis(500);
    assert!(
        took >= early && took <= deadline + MARGIN,
        "{what}: closed after {took:?}, deadline {deadline:?}"
    );
}

#[tokio::test]
async fn http1_connections_that_send_nothing_or_go_idle_are_closed_after_the_header_timeout() {
    let server = Server::start_with(&["--header-timeout-secs", "2"]);
    let deadline = Duration::from_secs(2);
    let limit = deadline + MARGIN;
    let silent = async {
        let mut stream = connect(&server).await;
        closed_after(&mut stream, Instant::now(), limit).await
    };
    let part_of_a_head = async {
        let mut stream = connect(&server).await;
        let since = Instant::now();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: natter\r\n")
            .await
            .unwrap();
        closed_after(&mut stream, since, limit).await
    };
    // Not yet telling HTTP/1 from HTTP/2.
    let part_of_a_preface = async {
        let mut stream = connect(&server).await;
        let since = Instant::now();
        stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        closed_after(&mut stream, since, limit).await
    };
    let idle_keep_alive = async {
        let mut stream = connect(&server).await;
        let answer = get(&mut stream, "/healthz").await;
        assert_eq!(answer, Some((200, "ok".to_owned())));
        closed_after(&mut stream, Instant::now(), limit).await
    };
    let (silent, part_of_a_head, part_of_a_preface, idle_keep_alive) =
        tokio::join!(silent, part_of_a_head, part_of_a_preface, idle_keep_alive);
    assert_closed_at_the_deadline("nothing sent", silent, deadline);
    assert_closed_at_the_deadline("part of a request head", part_of_a_head, deadline);
    assert_closed_at_the_deadline("part of the HTTP/2 preface", part_of_a_preface, deadline);
    assert_closed_at_the_deadline("idle keep-alive", idle_keep_alive, deadline);
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_DATA: u8 = 0x0;
const H2_HEADERS: u8 = 0x1;
const H2_SETTINGS: u8 = 0x4;
const H2_END_STREAM: u8 = 0x1;
const H2_END_HEADERS: u8 = 0x4;

/// One HTTP/2 frame: 24-bit length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// The next frame's type, flags and stream; `None` once the connection is closed.
async fn h2_read_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await.ok()?;
    let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    Some((header[3], header[4], id))
}

#[tokio::test]
async fn h2c_connections_are_closed_after_the_header_timeout_of_idleness() {
    let server = Server::start_with(&["--header-timeout-secs", "2"]);
    let deadline = Duration::from_secs(2);
    let limit = deadline + MARGIN;
    let preface_only = async {
        let mut stream = connect(&server).await;
        let since = Instant::now();
        stream.write_all(H2_PREFACE).await.unwrap();
        closed_after(&mut stream, since, limit).await
    };
    let idle_after_a_request = async {
        let mut stream = connect(&server).await;
        // GET /healthz, HPACK-coded: :method GET, :scheme http (static
        // table entries 2 and 6), :path and :authority as literals.
        let mut fields = vec![0x82, 0x86, 0x04, 8];
        fields.extend(b"/healthz");
        fields.extend([0x01, 6]);
        fields.extend(b"natter");
        let mut request = H2_PREFACE.to_vec();
        request.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
        request.extend(h2_frame(
            H2_HEADERS,
            H2_END_STREAM | H2_END_HEADERS,
            1,
            &fields,
        ));
        stream.write_all(&request).await.unwrap();
        let mut answered = false;
        while let Some((kind, flags, id)) = h2_read_frame(&mut stream).await {
            answered |= id == 1 && kind == H2_HEADERS;
            let ends = id == 1 && flags & H2_END_STREAM != 0;
            if ends && (kind == H2_DATA || kind == H2_HEADERS) {
                break;
            }
        }
        assert!(answered, "no response to the request on stream 1");
        closed_after(&mut stream, Instant::now(), limit).await
    };
    let (preface_only, idle_after_a_request) = tokio::join!(preface_only, idle_after_a_request);
    assert_closed_at_the_deadline("h2c preface only", preface_only, deadline);
    assert_closed_at_the_deadline("h2c idle after a request", idle_after_a_request, deadline);
}

#[tokio::test]
async fn an_upgraded_websocket_is_left_to_engine_io_deadlines() {
    let server = Server::start_with(&["--header-timeout-secs", "1", "--connect-timeout-secs", "3"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let connected = Socket::connect(&server.url, &alice.token).await;

    // A WebSocket that never sends the Socket.IO CONNECT: the connect
    // timeout closes it, not the header timeout.
    let mut silent = engine_io_websocket(&server).await;
    let since = Instant::now();
    let limit = Duration::from_secs(3) + MARGIN;
    tokio::time::timeout(limit, async {
        while let Some(Ok(frame)) = silent.next().await {
            if matches!(frame, WsMessage::Close(_)) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still open after {limit:?}"));
    assert_closed_at_the_deadline(
        "a silent WebSocket",
        since.elapsed(),
        Duration::from_secs(3),
    );

    // The connected socket was silent far longer than the header timeout
    // (the first ping is 25 s away), and is still served.
    let ack = connected.ack("join-chat", json!({"rid": rid})).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// A WebSocket to the Engine.IO endpoint, upgraded and then left alone.
async fn engine_io_websocket(server: &Server) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", addr(server));
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake");
    ws
}

#[tokio::test]
async fn an_address_at_its_cap_gives_up_its_oldest_idle_connection() {
    let server = Server::start_with(&["--max-connections-per-address", "8"]);
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(&server).await);
    }
    let mut newcomer = connect(&server).await;
    assert_eq!(
        get(&mut newcomer, "/healthz").await,
        Some((200, "ok".to_owned())),
        "the ninth connection is served"
    );
    assert!(
        is_closed(&mut idle[0], Duration::from_secs(2)).await,
        "the oldest idle connection made room"
    );
    for (n, stream) in idle.iter_mut().enumerate().skip(1) {
        assert!(
            !is_closed(stream, Duration::from_millis(100)).await,
            "connection {n} was closed too"
        );
    }
}

#[tokio::test]
async fn an_address_whose_connections_are_all_busy_is_refused() {
    // Engine.IO sessions that neither connect nor answer pings stay open a minute.
    let server = Server::start_with(&[
        "--max-connections-per-address",
        "8",
        "--connect-timeout-secs",
        "60",
        "--ping-timeout-secs",
        "60",
    ]);
    // Four WebSockets (busy for good), and four long polls in flight: each
    // opens an Engine.IO session, takes the first ping, then waits for the
    // next packet (a ping interval away).
    let mut websockets = Vec::new();
    for _ in 0..4 {
        websockets.push(engine_io_websocket(&server).await);
    }
    let mut polling = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&server).await;
        let (status, open) = get(&mut stream, "/socket.io/?EIO=4&transport=polling")
            .await
            .expect("handshake");
        assert_eq!(status, 200, "{open}");
        let sid = open.split('"').nth(3).expect("sid").to_owned();
        let poll = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        assert_eq!(get(&mut stream, &poll).await, Some((200, "2".to_owned())));
        let request = format!("GET {poll} HTTP/1.1\r\nHost: natter\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        polling.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut newcomer = connect(&server).await;
    assert_eq!(
        get(&mut newcomer, "/healthz").await,
        None,
        "a ninth connection while all eight are busy"
    );

    // Nobody's request was cut to make room.
    for (n, stream) in polling.iter_mut().enumerate() {
        assert!(
            !is_closed(stream, Duration::from_millis(100)).await,
            "long poll {n} was cut"
        );
    }
}

#[tokio::test]
async fn with_few_file_descriptors_the_connected_and_healthz_keep_working() {
    // Soft and hard limit 256: whatever the reserve, 300 connections do not fit.
    let server = Server::options()
        .open_files(256)
        .start_with(&["--max-connections-per-address", "1000"]);
    rlimit::increase_nofile_limit(1024).expect("room for 300 connections in the test");
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let connected = Socket::connect(&server.url, &alice.token).await;
    assert_eq!(
        connected.ack("join-chat", json!({"rid": rid})).await["ok"],
        true
    );

    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(connect(&server).await);
    }
    let health = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .expect("/healthz answered despite the flood");
    assert_eq!(health.status().as_u16(), 200);
    connected.say(&rid, "still here").await;
}
