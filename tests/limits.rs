//! Abuse limits, each with small settings: login and registration throttling
//! (per account, per address, X-Forwarded-For only from trusted proxies),
//! connection caps, handshake and ping timeouts, slow readers, body limits and
//! slowloris headers.

mod common;

use std::time::{Duration, Instant};

use common::raw::{next_text, polling_connected, raw_ack, raw_connect, raw_connected, raw_socket};
use common::{PASSWORD, Server, Socket};
use futures_util::SinkExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::{WebSocketStream, tungstenite};

/// `POST /api/v1/sessions` (or another JSON call) with optional extra headers:
/// status, error code and `Retry-After`.
async fn post(
    server: &Server,
    path: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, String, Option<u64>) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/api/v1{path}", server.url))
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| {
        v.to_str()
            .unwrap()
            .parse::<u64>()
            .expect("Retry-After in seconds")
    });
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code, retry_after)
}

async fn login(
    server: &Server,
    email: &str,
    password: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Option<u64>) {
    post(
        server,
        "/sessions",
        json!({"email": email, "password": password}),
        headers,
    )
    .await
}

#[tokio::test]
async fn logins_are_throttled_per_account_alike_for_unknown_accounts() {
    let server = Server::start_with(&[
        "--auth-attempts-per-account",
        "3",
        "--trusted-proxies",
        "127.0.0.0/8",
    ]);
    // Her first sign-in, from 127.0.0.1, was one of the three attempts.
    server.api().register("alice").await;
    let elsewhere = |n: usize| format!("203.0.113.{n}");
    // From addresses that never signed in to her account, two more.
    for n in 0..2 {
        let from = [("x-forwarded-for", elsewhere(n))];
        let from: Vec<(&str, &str)> = from.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = login(&server, "alice@example.test", "wrong password", &from).await;
        assert_eq!((r.0, r.1.as_str()), (401, "bad_credentials"));
    }
    // The budget is spent: even the right password, from a new address, waits.
    let from = [("x-forwarded-for", "203.0.113.9")];
    let (status, code, wait) = login(&server, "alice@example.test", PASSWORD, &from).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    let wait = wait.expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");

    // An account that does not exist is throttled the same way: nothing tells them apart.
    let mut ghost = Vec::new();
    for n in 0..4 {
        let from = elsewhere(10 + n);
        let from = [("x-forwarded-for", from.as_str())];
        let (status, code, wait) =
            login(&server, "ghost@example.test", "wrong password", &from).await;
        ghost.push((status, code, wait.is_some()));
    }
    let expected = |s: u16, c: &str, w: bool| (s, c.to_owned(), w);
    assert_eq!(
        ghost,
        vec![
            expected(401, "bad_credentials", false),
            expected(401, "bad_credentials", false),
            expected(401, "bad_credentials", false),
            expected(429, "rate_limited", true),
        ]
    );
    // Other accounts are not affected.
    let bob = server.api().register("bob").await;
    assert!(!bob.token.is_empty());
}

/// The attack the per-account budget used to allow: wrong passwords from
/// anywhere locked the real owner out. Now the owner, at an address they
/// signed in from before, still gets in.
#[tokio::test]
async fn a_flood_of_wrong_passwords_from_elsewhere_does_not_lock_the_owner_out() {
    let server = Server::start_with(&[
        "--auth-attempts-per-account",
        "10",
        "--trusted-proxies",
        "127.0.0.0/8",
    ]);
    let home = [("x-forwarded-for", "198.51.100.7")];
    let body = json!({"username": "alice", "email": "alice@example.test", "password": PASSWORD});
    assert_eq!(post(&server, "/users", body, &home).await.0, 201);
    assert_eq!(
        login(&server, "alice@example.test", PASSWORD, &home)
            .await
            .0,
        201
    );
    for n in 0..30 {
        let from = format!("203.0.113.{n}");
        let from = [("x-forwarded-for", from.as_str())];
        login(&server, "alice@example.test", "guess", &from).await;
    }
    let from = [("x-forwarded-for", "203.0.113.200")];
    assert_eq!(
        login(&server, "alice@example.test", "guess", &from).await.0,
        429,
        "the attacker is throttled"
    );
    let (status, code, _) = login(&server, "alice@example.test", PASSWORD, &home).await;
    assert_eq!((status, code.as_str()), (201, ""), "the owner gets in");
}

/// From one address, wrong passwords past the free ones make each next try
/// wait longer; the right password, once allowed, clears the backoff.
#[tokio::test]
async fn wrong_passwords_from_one_address_back_off() {
    let server = Server::start();
    server.api().register("alice").await;
    for _ in 0..5 {
        let r = login(&server, "alice@example.test", "guess", &[]).await;
        assert_eq!(r.0, 401);
    }
    // The sixth wrong one is answered, and sets a wait of one second.
    assert_eq!(
        login(&server, "alice@example.test", "guess", &[]).await.0,
        401
    );
    let (status, _, wait) = login(&server, "alice@example.test", PASSWORD, &[]).await;
    assert_eq!((status, wait), (429, Some(1)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login(&server, "alice@example.test", "guess", &[]).await.0,
        401
    );
    let (status, _, wait) = login(&server, "alice@example.test", "guess", &[]).await;
    assert_eq!((status, wait), (429, Some(2)), "twice as long");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        login(&server, "alice@example.test", PASSWORD, &[]).await.0,
        201
    );
    assert_eq!(
        login(&server, "alice@example.test", "guess", &[]).await.0,
        401,
        "cleared"
    );
}

#[tokio::test]
async fn attempts_are_throttled_per_address_and_forwarded_for_is_ignored_from_clients() {
    let server = Server::start_with(&["--auth-attempts-per-address", "3"]);
    for n in 0..3 {
        let r = login(
            &server,
            &format!("user{n}@example.test"),
            "wrong password",
            &[],
        )
        .await;
        assert_eq!(r.0, 401);
    }
    // Any account, and a forged X-Forwarded-For does not buy a new budget.
    let forged = [("x-forwarded-for", "203.0.113.77")];
    let (status, code, wait) =
        login(&server, "other@example.test", "wrong password", &forged).await;
    assert_eq!(
        (status, code.as_str(), wait.is_some()),
        (429, "rate_limited", true)
    );
    // Registration has its own budget per address.
    for n in 0..3 {
        let body = json!({"username": format!("new{n}"), "email": format!("new{n}@example.test"), "password": PASSWORD});
        assert_eq!(post(&server, "/users", body, &[]).await.0, 201);
    }
    let body = json!({"username": "new9", "email": "new9@example.test", "password": PASSWORD});
    let (status, code, wait) = post(&server, "/users", body, &[]).await;
    assert_eq!(
        (status, code.as_str(), wait.is_some()),
        (429, "rate_limited", true)
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let server = Server::start_with(&[
        "--auth-attempts-per-address",
        "2",
        "--trusted-proxies",
        "10.9.9.9,127.0.0.0/8",
    ]);
    let first = [("x-forwarded-for", "203.0.113.1")];
    let second = [("x-forwarded-for", "203.0.113.2")];
    for n in 0..2 {
        let r = login(
            &server,
            &format!("a{n}@example.test"),
            "wrong password",
            &first,
        )
        .await;
        assert_eq!(r.0, 401);
    }
    assert_eq!(login(&server, "a9@example.test", "x", &first).await.0, 429);
    assert_eq!(login(&server, "b0@example.test", "x", &second).await.0, 401);
    // What the client wrote before our proxy's entry is not believed.
    let spoofed = [("x-forwarded-for", "198.51.100.5, 203.0.113.1")];
    assert_eq!(
        login(&server, "a8@example.test", "x", &spoofed).await.0,
        429
    );
}

#[tokio::test]
async fn the_login_page_says_when_to_try_again() {
    let server = Server::start_with(&["--auth-attempts-per-account", "2"]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut last = None;
    for _ in 0..3 {
        let response = http
            .post(format!("{}/login", server.url))
            .form(&[
                ("email", "carol@example.test"),
                ("password", "wrong password"),
            ])
            .send()
            .await
            .unwrap();
        last = Some(response);
    }
    let response = last.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let page = response.text().await.unwrap();
    assert!(page.contains("too many attempts; try again in"), "{page}");
    assert!(page.contains("login-form"), "the form is shown again");
}

fn assert_too_many(refused: Result<WebSocketStream<TcpStream>, String>) {
    let Err(packet) = refused else {
        panic!("admitted over the cap");
    };
    assert_eq!(packet, r#"44{"message":"too_many_connections"}"#);
}

/// Retries until the connection is admitted (a freed place is given back asynchronously).
async fn connect_eventually(
    server: &Server,
    token: &str,
    within: Duration,
) -> WebSocketStream<TcpStream> {
    let deadline = Instant::now() + within;
    loop {
        match raw_connect(server, token).await {
            Ok(ws) => return ws,
            Err(packet) if Instant::now() < deadline => {
                assert!(packet.contains("too_many_connections"), "{packet}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(packet) => panic!("still refused after {within:?}: {packet}"),
        }
    }
}

#[tokio::test]
async fn connections_are_capped_per_user_and_in_total() {
    let server = Server::start_with(&["--max-connections-per-user", "2", "--max-connections", "3"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let mut a1 = raw_connected(&server, &alice.token).await;
    let _a2 = raw_connected(&server, &alice.token).await;
    assert_too_many(raw_connect(&server, &alice.token).await);
    let _b1 = raw_connected(&server, &bob.token).await;
    assert_too_many(raw_connect(&server, &bob.token).await);
    // A closed socket gives its place back.
    a1.close(None).await.unwrap();
    let mut b2 = connect_eventually(&server, &bob.token, Duration::from_secs(5)).await;
    let rid = api.open_chat(&alice, &bob).await;
    let ack = raw_ack(&mut b2, "join-chat", json!({"rid": rid})).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// Reads (answering nothing) until the server closes; how long that took.
async fn time_to_close(ws: &mut WebSocketStream<TcpStream>, limit: Duration) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(limit, async { while next_text(ws).await.is_some() {} })
        .await
        .unwrap_or_else(|_| panic!("still open after {limit:?}"));
    start.elapsed()
}

#[tokio::test]
async fn a_transport_that_never_joins_the_namespace_is_closed() {
    let server = Server::start_with(&["--connect-timeout-secs", "1"]);
    let mut ws = raw_socket(&server).await;
    let open = next_text(&mut ws).await.expect("open packet");
    assert!(open.starts_with('0'), "{open}");
    // No CONNECT packet: closed after the connect timeout, well before a ping is due.
    time_to_close(&mut ws, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_dropped() {
    let server = Server::start_with(&["--ping-interval-secs", "1", "--ping-timeout-secs", "1"]);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let mut silent = raw_connected(&server, &alice.token).await;
    let answering = Socket::connect(&server.url, &bob.token).await;
    // Pings are read but never answered.
    time_to_close(&mut silent, Duration::from_secs(6)).await;
    // A client that answers stays, over several ping rounds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ack = answering.ack("join-chat", json!({"rid": rid})).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// A server for a client that stalls: one connection per user, a queue of 16
/// packets, sends and commits as fast as the test posts.
const STALLING_FLAGS: &[&str] = &[
    "--max-connections-per-user",
    "1",
    "--socket-buffer",
    "16",
    "--send-rate",
    "100000",
    "--send-burst",
    "100000",
    "--sqlite-synchronous",
    "normal",
];

/// Bob posts `count` messages of 3,000 characters in the room.
async fn bob_posts_long_messages(
    api: &common::Api,
    bob: &common::TestUser,
    rid: &str,
    count: usize,
) {
    let text = "x".repeat(3000);
    for n in 0..count {
        let r = api
            .call(
                "POST",
                &format!("/rooms/{rid}/messages"),
                Some(json!({"message": format!("{n} {text}")})),
                Some(&bob.token),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
}

#[tokio::test]
async fn a_socket_that_does_not_read_is_dropped_and_the_others_keep_working() {
    let server = Server::start_with(&[STALLING_FLAGS, &["--write-timeout-secs", "2"]].concat());
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    // Alice's only allowed socket connects, then never reads again.
    let mut stalled = raw_connected(&server, &alice.token).await;
    assert_too_many(raw_connect(&server, &alice.token).await);
    let listener = Socket::connect(&server.url, &bob.token).await;

    // Far more than her receive window, the kernel buffers and her queue hold.
    let total = 300;
    bob_posts_long_messages(&api, &bob, &rid, total).await;
    // The others are served in full while she stalls.
    assert_eq!(listener.wait_for("message", total).await.len(), total);
    // The server drops her: her place is free again, and she can catch up with sync.
    let mut again = connect_eventually(&server, &alice.token, Duration::from_secs(20)).await;
    let synced = raw_ack(
        &mut again,
        "sync",
        json!({"rid": rid, "after_seq": 0, "limit": 200}),
    )
    .await;
    assert_eq!(
        synced["messages"].as_array().map(Vec::len),
        Some(200),
        "{synced}"
    );

    // What she got before the cut is less than was sent: she was not buffered for.
    let mut received = 0;
    while let Ok(Some(text)) =
        tokio::time::timeout(Duration::from_secs(5), next_text(&mut stalled)).await
    {
        if text.starts_with("42[\"message\"") {
            received += 1;
        }
    }
    assert!(received < total, "received all {received} messages");
}

/// A client that asks for answers and never reads them fills its socket's
/// queue; the answer that does not fit closes its connection at once (the
/// client cannot be told: the disconnect packet would not fit either), long
/// before the heartbeat (45 s) or the write timeout (60 s) would. Before the
/// fix in vendor/socketioxide (`disconnect`), the socket stayed open.
#[tokio::test]
async fn a_socket_whose_answer_cannot_be_queued_is_closed_at_once() {
    let server = Server::start_with(STALLING_FLAGS);
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    bob_posts_long_messages(&api, &bob, &rid, 200).await;
    // Alice's one allowed socket asks for 100 pages of 0.6 MB: more than the
    // kernel's buffers and her queue of 16 hold. She reads nothing.
    let mut stalled = raw_connected(&server, &alice.token).await;
    let sync = json!(["sync", {"rid": rid, "after_seq": 0, "limit": 200}]);
    for n in 0..100 {
        stalled
            .feed(tungstenite::Message::Text(format!("42{n}{sync}").into()))
            .await
            .unwrap();
    }
    stalled.flush().await.unwrap();
    // Her place is free again well within the heartbeat's 45 s.
    connect_eventually(&server, &alice.token, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn bodies_over_the_payload_limit_are_refused() {
    let server = Server::start_with(&["--max-payload", "2048"]);
    let body =
        json!({"username": "alice", "email": "alice@example.test", "password": "p".repeat(3000)});
    let (status, code, _) = post(&server, "/users", body, &[]).await;
    assert_eq!((status, code.as_str()), (413, "too_long"));
    let body =
        json!({"username": "alice", "email": "alice@example.test", "password": "p".repeat(1000)});
    assert_eq!(post(&server, "/users", body, &[]).await.0, 201);
}

/// A long-polling payload over `--max-payload` is refused whole, as a WebSocket
/// frame over it is: the packets ahead of the limit used to be handled (a message
/// stored) although the request was answered 413 (found by the `socket_frames`
/// fuzz target; fixed in vendor/engineioxide).
#[tokio::test]
async fn a_polling_payload_over_the_limit_is_refused_whole() {
    let server = Server::start();
    let api = server.api();
    let [alice, bob] = api.register_each(["alice", "bob"]).await;
    let rid = api.open_chat(&alice, &bob).await;
    let (http, session) = polling_connected(&server, &alice.token).await;
    // A send, then a packet that takes the payload past the default 64 KiB: the
    // body reaches the server in several reads, the send in the first.
    let send = format!(
        "421{}",
        json!(["outgoing", {"rid": rid, "message": "over"}])
    );
    let body = format!("{send}\u{1e}4{}", "x".repeat(70_000));
    let r = http.post(&session).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    common::settle().await;
    assert_eq!(api.history(&alice, &rid, "").await, Vec::<Value>::new());
    // Its session is closed, as for any payload it cannot decode.
    let r = http.get(&session).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn a_client_that_dribbles_its_headers_is_cut_off() {
    let server = Server::start_with(&["--header-timeout-secs", "1"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let start = Instant::now();
    // One byte every 200 ms: each read is prompt, the headers never end.
    let request = b"GET /healthz HTTP/1.1\r\nHost: natter\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in request.iter().cycle().take(50) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(closed, "still open after {:?}", start.elapsed());
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // A prompt client is served as usual.
    let r = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
