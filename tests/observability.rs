//! What operators see: `/readyz`, Prometheus `/metrics`, request ids in the
//! JSON log, and that no password, token or secret ever reaches the log.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use common::room_lock::RoomLock;
use common::{
    PASSWORD, Server, Socket, free_port, fresh_postgres_database, random_suffix, redis_url,
};
use reqwest::header::SET_COOKIE;
use reqwest::redirect::Policy;
use rust_socketio::TransportType;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

// ------------------------------------------------------------------ helpers

/// `url` with its host and port replaced by `127.0.0.1:port`.
fn via_port(url: &str, port: u16) -> String {
    let mut url = url::Url::parse(url).expect("a URL");
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    url.to_string()
}

/// The address a database or Redis URL points at.
fn target_of(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).expect("a URL");
    let default = if url.scheme() == "redis" { 6379 } else { 5432 };
    let host = url.host_str().expect("a host");
    let port = url.port().unwrap_or(default);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap()
}

/// A TCP relay to `target`: what the server under test talks to instead of the
/// real PostgreSQL or Redis, so that the test can take that dependency away.
struct Relay {
    port: u16,
    target: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(port: u16, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            // Dropped with this task: aborting it closes every relayed connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, target, task }
    }

    /// Closes the listener and every connection: the dependency is gone.
    async fn stop(self) -> (u16, SocketAddr) {
        self.task.abort();
        let _ = self.task.await;
        (self.port, self.target)
    }
}

async fn readyz(server: &Server) -> (u16, Value) {
    let r = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Asks `/readyz` until it answers `status` (10 s at most); returns the body.
async fn readyz_until(server: &Server, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = readyz(server).await;
        if got == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz still {got} {body}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Labels = HashMap<String, String>;

/// One scrape of `/metrics`: every sample by name and labels.
struct Scrape(HashMap<String, Vec<(Labels, f64)>>);

impl Scrape {
    async fn take(metrics_url: &str) -> Scrape {
        let r = reqwest::get(metrics_url).await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let mut samples: HashMap<_, Vec<_>> = HashMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            samples
                .entry(name.to_owned())
                .or_default()
                .push((labels, value.parse().expect("a number")));
        }
        Scrape(samples)
    }

    /// The sample of `name` with these labels (others ignored); 0 when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .get(name)
            .into_iter()
            .flatten()
            .filter(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.get(*k).is_some_and(|h| h == v))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

// ------------------------------------------------------------------ /readyz

#[tokio::test]
async fn readyz_answers_when_the_database_does() {
    let server = Server::start();
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ready": true, "checks": {"database": "ok"}}));
}

#[tokio::test]
async fn readyz_checks_redis_too() {
    let prefix = format!("natter-test-{}", random_suffix());
    let server = Server::start_with(&["--redis-url", &redis_url(), "--redis-prefix", &prefix]);
    let (status, body) = readyz(&server).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"ready": true, "checks": {"database": "ok", "redis": "ok"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_redis_is_unreachable() {
    let relay = Relay::start(0, target_of(&redis_url())).await;
    let url = via_port(&redis_url(), relay.port);
    let prefix = format!("natter-test-{}", random_suffix());
    let server = Server::start_with(&["--redis-url", &url, "--redis-prefix", &prefix]);
    readyz_until(&server, 200).await;

    let (port, target) = relay.stop().await;
    let body = readyz_until(&server, 503).await;
    assert_eq!(
        body,
        json!({"ready": false, "checks": {"database": "ok", "redis": "failed"}})
    );

    // Redis is back: the link reconnects and resubscribes by itself, and
    // the node is ready again without a restart.
    let _relay = Relay::start(port, target).await;
    let body = readyz_until(&server, 200).await;
    assert_eq!(body["checks"]["redis"], json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_postgres_is_unreachable() {
    let Some(database) = fresh_postgres_database() else {
        return;
    };
    let relay = Relay::start(0, target_of(&database)).await;
    let url = via_port(&database, relay.port);
    let server = Server::start_with(&["--database-url", &url]);
    readyz_until(&server, 200).await;
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let socket = Socket::connect(&server.url, &alice.token).await;

    let (port, target) = relay.stop().await;
    let body = readyz_until(&server, 503).await;
    assert_eq!(
        body,
        json!({"ready": false, "checks": {"database": "failed"}})
    );
    // Every door answers "try again" (the pool's wait, 2 s by default), not
    // "internal" or "unauthorized" — a client that heard those would give up.
    let asked = std::time::Instant::now();
    let r = reqwest::Client::new()
        .get(format!("{}/chats", api.base))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let ack = socket
        .ack(
            "outgoing",
            json!({"rid": rid, "message": "while it is down"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    let refused = common::connect_error(&server.url, json!({"token": bob.token})).await;
    assert!(
        refused.contains(r#"\"message\":\"unavailable\""#),
        "{refused}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "three answers in {:?}",
        asked.elapsed()
    );

    let _relay = Relay::start(port, target).await;
    readyz_until(&server, 200).await;
    let ack = socket
        .ack("outgoing", json!({"rid": rid, "message": "back"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let server = Server::start_logging(&[], "info");
    readyz_until(&server, 200).await;
    let log = server.log();
    assert!(log.contains("serving"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escape codes in {log:?}");
}

// ----------------------------------------------------------------- /metrics

#[tokio::test]
async fn metrics_count_traffic_on_their_own_listener() {
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&["--metrics-addr", &metrics_addr]);
    let metrics = format!("http://{metrics_addr}/metrics");
    let public = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        404,
        "/metrics is not on the public listener"
    );

    let before = Scrape::take(&metrics).await;
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;
    let wrong = json!({"email": alice.email, "password": "not the password"});
    assert_eq!(
        api.call("POST", "/sessions", Some(wrong), None)
            .await
            .status,
        401
    );
    assert_eq!(api.call("GET", "/nowhere", None, None).await.status, 404);

    let a = Socket::connect(&server.url, &alice.token).await;
    let b = Socket::connect(&server.url, &bob.token).await;
    for i in 0..5 {
        let ack = a
            .ack(
                "outgoing",
                json!({"rid": rid, "message": format!("m{i}"), "client_id": format!("c{i}")}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // A resend is acked with the stored message, not stored again.
    let resend = a
        .ack(
            "outgoing",
            json!({"rid": rid, "message": "m0", "client_id": "c0"}),
        )
        .await;
    assert_eq!(resend["message"]["seq"], 1);
    let refused = a
        .ack(
            "outgoing",
            json!({"rid": "no-such-room-at-all", "message": "x"}),
        )
        .await;
    assert_eq!(refused["error"]["code"], "no_such_room");

    let after = Scrape::take(&metrics).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    assert_eq!(delta("natter_messages_stored_total", &[]), 5.0);
    // Every outgoing is acked, stored or not; sends were one at a time, so
    // the six that reached the store made six batches of one.
    assert_eq!(delta("natter_ack_seconds_count", &[]), 7.0);
    assert_eq!(delta("natter_store_batch_size_count", &[]), 6.0);
    assert_eq!(delta("natter_store_batch_size_sum", &[]), 6.0);
    assert_eq!(delta("natter_store_commit_seconds_count", &[]), 6.0);
    assert_eq!(
        delta("natter_ack_seconds_bucket", &[("le", "+Inf")]),
        7.0,
        "a histogram, with buckets"
    );
    let error =
        |code: &str, via: &str| delta("natter_errors_total", &[("code", code), ("via", via)]);
    assert_eq!(error("bad_credentials", "http"), 1.0);
    assert_eq!(error("not_found", "http"), 1.0);
    assert_eq!(error("no_such_room", "socketio"), 1.0);
    let requests = |method: &str, route: &str, status: &str| {
        delta(
            "natter_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/api/v1/users", "201"), 2.0);
    assert_eq!(requests("POST", "/api/v1/sessions", "201"), 2.0);
    assert_eq!(requests("POST", "/api/v1/sessions", "401"), 1.0);
    assert_eq!(requests("POST", "/api/v1/chats", "201"), 1.0);
    assert_eq!(after.get("natter_socketio_connections", &[]), 2.0);
    assert_eq!(after.get("natter_socketio_users", &[]), 2.0);
    assert_eq!(after.get("natter_socketio_rooms", &[]), 1.0);

    b.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = Scrape::take(&metrics).await;
        let open = now.get("natter_socketio_connections", &[]);
        if open == 1.0 {
            assert_eq!(now.get("natter_socketio_users", &[]), 1.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} sockets still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.close().await;
}

#[test]
fn a_busy_metrics_address_fails_the_start() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            &addr,
            "--data-dir",
        ])
        .arg(dir.path())
        .env("NATTER_LOG", "off")
        .output()
        .expect("run natter");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it printed its URL: it served");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr} for metrics")),
        "{err}"
    );
}

// --------------------------------------------------------------------- logs

/// The JSON log lines of the server so far.
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Group commit's budget: one transaction stores at most 1,024 messages,
/// however many wait. The database is held (SQLite's write lock, or the
/// room's row on PostgreSQL) while 1,300 sends queue up behind the one
/// being stored; once it is let go, the next batch is a full one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stores_at_most_1024_messages() {
    const SENDS: usize = 1300;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&[
        "--metrics-addr",
        &metrics_addr,
        "--send-rate",
        "100000",
        "--send-burst",
        "100000",
        "--send-deadline-ms",
        "60000",
    ]);
    let metrics = format!("http://{metrics_addr}/metrics");
    let api = server.api();
    let [alice, bob] = api.register_each(["alice", "bob"]).await;
    let rid = api.open_chat(&alice, &bob).await;
    let a = Socket::connect(&server.url, &alice.token).await;

    let held = match server.postgres_url() {
        Some(url) => RoomLock::postgres(&url, &rid).await,
        None => RoomLock::sqlite(&server.data_dir.path().join("natter.db")).await,
    };
    let before = Scrape::take(&metrics).await;
    // Without acks: the test client cannot wait for 1,300 at once.
    for i in 0..SENDS {
        let send = json!({"rid": rid, "message": format!("m{i}"), "client_id": format!("c{i}")});
        a.emit("outgoing", send).await;
    }
    // Every send reaches the server's queue while the database is held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    held.release().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let stored = |scrape: &Scrape| scrape.get("natter_messages_stored_total", &[]);
    while stored(&Scrape::take(&metrics).await) - stored(&before) < SENDS as f64 {
        assert!(
            std::time::Instant::now() < deadline,
            "not all stored in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = Scrape::take(&metrics).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.get(name, labels) - before.get(name, labels);
    let batches = delta("natter_store_batch_size_count", &[]);
    assert_eq!(delta("natter_store_batch_size_sum", &[]), SENDS as f64);
    assert_eq!(
        delta("natter_store_batch_size_bucket", &[("le", "1024")]),
        batches,
        "no batch above 1,024"
    );
    assert!(
        delta("natter_store_batch_size_bucket", &[("le", "512")]) < batches,
        "the sends that waited made a batch above 512 ({batches} batches)"
    );
}

#[tokio::test]
async fn every_response_has_a_request_id_that_its_log_line_repeats() {
    let server = Server::start_logging(&["--log-format", "json"], "info");
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/login?next=hide-me-from-the-log", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    // A proxy's id is kept.
    let r = http
        .get(format!("{}/healthz", server.url))
        .header("x-request-id", "from-the-proxy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "from-the-proxy-1");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (mine, proxied) = loop {
        let lines = json_lines(&server);
        let of = |id: &str| {
            lines
                .iter()
                .find(|l| l["span"]["request_id"] == id && l["fields"]["status"] == 200)
                .cloned()
        };
        if let (Some(mine), Some(proxied)) = (of(&id), of("from-the-proxy-1")) {
            break (mine, proxied);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line for {id}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(mine["span"]["method"], "GET");
    assert_eq!(mine["span"]["path"], "/login", "the path without its query");
    assert!(mine["fields"]["latency"].is_string(), "{mine}");
    assert_eq!(proxied["span"]["path"], "/healthz");
    assert!(!server.log().contains("hide-me-from-the-log"));
}

/// Lowercase hex of the bytes (how some crates print payloads).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cookie signing secret: a file in the data dir, or on PostgreSQL a row.
fn cookie_secret(server: &Server) -> Vec<u8> {
    let dir = server.data_dir.path();
    if let Ok(url) = std::fs::read_to_string(dir.join("postgres-url")) {
        let out = std::process::Command::new("psql")
            .args([url.trim(), "-At", "-c"])
            .arg("SELECT encode(value, 'hex') FROM settings WHERE key = 'cookie_secret'")
            .output()
            .expect("run psql");
        let hex = String::from_utf8(out.stdout).unwrap();
        let hex = hex.trim();
        assert_eq!(hex.len(), 128, "{hex:?}");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    } else {
        std::fs::read(dir.join("cookie-secret")).expect("the cookie secret")
    }
}

#[tokio::test]
async fn no_password_token_or_secret_reaches_the_log_even_at_trace() {
    let server = Server::start_logging(&["--log-format", "json"], "trace");
    // The API: register, log in, use the token, log out.
    let api = server.api();
    let alice = api.register("alice").await;
    let bob = api.register("bob").await;
    let rid = api.open_chat(&alice, &bob).await;

    // The web form: register, log in (the session cookie), log out at the end.
    let browser = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let form = |path: &str, fields: &[(&str, &str)]| {
        browser
            .post(format!("{}{path}", server.url))
            .form(fields)
            .send()
    };
    let r = form(
        "/register",
        &[
            ("username", "carol"),
            ("email", "carol@example.test"),
            ("password", PASSWORD),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let r = form(
        "/login",
        &[("email", "carol@example.test"), ("password", PASSWORD)],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let set_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let cookie_token = cookie.split_once('=').unwrap().1.to_owned();
    let chat_page = browser
        .get(format!("{}/chat/", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(chat_page.status(), 200);

    // Sockets: a token over WebSocket and over long-polling, the cookie.
    let a = Socket::connect(&server.url, &alice.token).await;
    let polling = Socket::connect_with(
        &server.url,
        json!({"token": bob.token}),
        TransportType::Polling,
    )
    .await;
    let by_cookie = Socket::connect_with_headers(
        &server.url,
        json!({}),
        TransportType::Websocket,
        &[("Cookie", &cookie), ("Origin", &server.url)],
    )
    .await;
    assert_eq!(a.ack("join-chat", json!({"rid": rid})).await["ok"], true);
    for i in 0..3 {
        let ack = a
            .ack(
                "outgoing",
                json!({"rid": rid, "message": format!("hello {i}")}),
            )
            .await;
        assert_eq!(ack["ok"], true);
    }
    assert_eq!(polling.wait_for("message", 3).await.len(), 3);

    // Logging out, both ways.
    let r = api
        .call("DELETE", "/sessions/current", None, Some(&alice.token))
        .await;
    assert_eq!(r.status, 204);
    let r = browser
        .post(format!("{}/logout", server.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    for socket in [a, polling, by_cookie] {
        socket.close().await;
    }
    common::settle().await;

    let log = server.log();
    // The log is real: trace level was on and requests were logged.
    assert!(log.lines().count() > 50, "{log}");
    assert!(
        log.contains("\"TRACE\""),
        "no trace line at NATTER_LOG=trace"
    );
    assert!(log.contains("finished processing request"));

    let mut secrets = vec![
        ("the password".to_owned(), PASSWORD.to_owned()),
        ("alice's token".to_owned(), alice.token.clone()),
        ("bob's token".to_owned(), bob.token.clone()),
        ("the session cookie".to_owned(), cookie_token.clone()),
    ];
    for (what, value) in secrets.clone() {
        secrets.push((format!("{what} in hex"), hex(value.as_bytes())));
    }
    let secret = cookie_secret(&server);
    secrets.push(("the cookie secret in hex".into(), hex(&secret)));
    // Or a part of it, in case a line is cut.
    secrets.push(("the cookie secret's start".into(), hex(&secret[..16])));
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        secrets.push(("the cookie secret in base64".into(), engine.encode(&secret)));
    }
    let leaks: Vec<String> = secrets
        .iter()
        .flat_map(|(what, value)| {
            log.lines()
                .filter(|line| line.contains(value.as_str()))
                .map(move |line| format!("{what}: {line}"))
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );
}
