//! Test harness: the real `natter` binary on a random port with a temp data
//! dir, talked to over HTTP (reqwest) and Socket.IO (rust_socketio).

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod cluster;
pub mod raw;
pub mod room_lock;
pub mod s3;
pub mod services;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    pub data_dir: tempfile::TempDir,
}

/// Where [`Server::start_logging`] keeps the server's stderr, in its data dir.
const STDERR_FILE: &str = "stderr.log";

/// Cheap Argon2 so tests can register many users quickly; everything else default.
const TEST_FLAGS: &[&str] = &["--argon2-memory-kib", "64", "--argon2-iterations", "1"];

/// How to start a server beyond its flags (see [`Server::options`]).
#[derive(Debug, Default)]
pub struct Options {
    open_files: Option<u64>,
}

impl Options {
    /// Starts the server with this soft and hard open-file limit (`RLIMIT_NOFILE`),
    /// as `ulimit -n` would.
    pub fn open_files(mut self, limit: u64) -> Self {
        self.open_files = Some(limit);
        self
    }

    /// Like [`Server::start_with`], with these options.
    pub fn start_with(self, extra: &[&str]) -> Server {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Server::spawn(data_dir, extra, "warn", false, &self)
    }
}

impl Server {
    /// A server started with more than flags, e.g. `Server::options().open_files(256).start_with(&[])`.
    pub fn options() -> Options {
        Options::default()
    }

    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, extra)
    }

    /// Starts on an existing data dir (to test restarts).
    ///
    /// With `NATTER_TEST_STORE=postgres`, a server given no `--database-url` runs
    /// on a fresh PostgreSQL database instead of SQLite: the same suites then
    /// test both stores. The database is kept in `data_dir/postgres-url` so that
    /// a restart on the same data dir finds it again.
    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> Self {
        Self::spawn(data_dir, extra, "warn", false, &Options::default())
    }

    /// Like [`Server::start_with`], with `NATTER_LOG=filter` and stderr kept in a
    /// file that [`Server::log`] reads (to check what the server logs).
    pub fn start_logging(extra: &[&str], filter: &str) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::spawn(data_dir, extra, filter, true, &Options::default())
    }

    /// Everything the server wrote on stderr so far (see [`Server::start_logging`]).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.data_dir.path().join(STDERR_FILE)).expect("read the log");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn spawn(
        data_dir: tempfile::TempDir,
        extra: &[&str],
        log: &str,
        capture: bool,
        options: &Options,
    ) -> Self {
        let stderr = if capture {
            let file = std::fs::File::create(data_dir.path().join(STDERR_FILE)).unwrap();
            Stdio::from(file)
        } else {
            Stdio::inherit()
        };
        let mut database = Vec::new();
        let on_postgres = std::env::var("NATTER_TEST_STORE").is_ok_and(|v| v == "postgres");
        if on_postgres && !extra.contains(&"--database-url") {
            let remembered = data_dir.path().join("postgres-url");
            let url = std::fs::read_to_string(&remembered)
                .ok()
                .unwrap_or_else(|| {
                    let url = fresh_postgres_database()
                        .expect("NATTER_TEST_STORE=postgres needs PostgreSQL");
                    std::fs::write(&remembered, &url).unwrap();
                    url
                });
            database = vec!["--database-url".to_owned(), url];
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_natter"));
        if let Some(limit) = options.open_files {
            // SAFETY: between fork and exec the closure makes one system call
            // (setrlimit): it neither allocates nor takes a lock.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
            }
        }
        let mut child = command
            .arg("serve")
            .args(&database)
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .args(TEST_FLAGS)
            .args(extra)
            .env("NATTER_LOG", log)
            // Suites register and log in many users from one address; tests/limits.rs
            // sets small limits with flags, which win over these.
            .env("NATTER_AUTH_ATTEMPTS_PER_ACCOUNT", "100000")
            .env("NATTER_AUTH_ATTEMPTS_PER_ADDRESS", "100000")
            // Likewise the per-user budgets (tests/budgets.rs, sends_*_rate_*
            // set them small): a suite that sends in a loop must not depend on
            // the machine being slow enough to stay under 20 a second.
            .env("NATTER_SEND_RATE", "100000")
            .env("NATTER_SEND_BURST", "100000")
            .env("NATTER_EVENT_RATE", "100000")
            .env("NATTER_LOOKUPS_PER_HOUR", "100000")
            .env("NATTER_ADDS_PER_PERSON_PER_HOUR", "100000")
            // Suites search many times in a row; the search limit is tested with flags.
            .env("NATTER_SEARCH_RATE", "100000")
            .env("NATTER_SEARCH_BURST", "100000")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn natter");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the URL line");
        let url = line
            .trim()
            .strip_prefix("natter listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Server {
            child,
            url,
            data_dir,
        }
    }

    /// The server's process id (to read its memory and CPU from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1", self.url),
        }
    }

    /// One socket per user, connected in order, each recording every event
    /// (see [`Socket::connect_hearing_all`]).
    pub async fn hearing_all<const N: usize>(&self, users: [&TestUser; N]) -> [Socket; N] {
        let mut sockets = Vec::with_capacity(N);
        for user in users {
            sockets.push(Socket::connect_hearing_all(&self.url, &user.token).await);
        }
        let Ok(sockets) = sockets.try_into() else {
            unreachable!("one socket per user")
        };
        sockets
    }

    /// Sends SIGTERM and waits (10 s at most) for the process to exit by
    /// itself; hands back the exit status and the data dir.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let placeholder = tempfile::tempdir().expect("placeholder");
                return (status, std::mem::replace(&mut self.data_dir, placeholder));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit 10 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The PostgreSQL database the server runs on, when it runs on one
    /// (`NATTER_TEST_STORE=postgres`).
    pub fn postgres_url(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.path().join("postgres-url")).ok()
    }

    /// Stops the server and hands back its data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.data_dir, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registered, logged-in user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub email: String,
    pub token: String,
}

pub const PASSWORD: &str = "correct horse battery";

/// A JSON response: status and parsed body (Null when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Reply { status, body }
    }

    /// [`Api::call`] with `user`'s token.
    pub async fn call_as(
        &self,
        user: &TestUser,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.call(method, path, body, Some(&user.token)).await
    }

    /// Registers and logs in each of `names`, in order.
    pub async fn register_each<const N: usize>(&self, names: [&str; N]) -> [TestUser; N] {
        let mut users = Vec::with_capacity(N);
        for name in names {
            users.push(self.register(name).await);
        }
        users.try_into().expect("one user per name")
    }

    pub async fn register(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.test");
        let r = self
            .call(
                "POST",
                "/users",
                Some(json!({"username": name, "email": email, "password": PASSWORD})),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "register {name}: {:?}", r.body);
        self.log_in(name).await
    }

    /// Logs in the user `name` registered as (`NAME@example.test`).
    pub async fn log_in(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.test");
        let r = self.try_log_in(&email, PASSWORD).await;
        assert_eq!(r.status, 201, "login {name}: {:?}", r.body);
        TestUser {
            id: r.body["user"]["id"].as_str().unwrap().to_owned(),
            username: name.to_owned(),
            email,
            token: r.body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// A login's answer, whatever it is.
    pub async fn try_log_in(&self, email: &str, password: &str) -> Reply {
        let body = json!({"email": email, "password": password});
        self.call("POST", "/sessions", Some(body), None).await
    }

    /// A new session of `user`: a fresh login's token.
    pub async fn new_session(&self, user: &TestUser) -> String {
        let body = json!({"email": user.email, "password": PASSWORD});
        let r = self.call("POST", "/sessions", Some(body), None).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Opens the direct room of `a` with `b`; returns its id.
    pub async fn open_chat(&self, a: &TestUser, b: &TestUser) -> String {
        let r = self
            .call(
                "POST",
                "/chats",
                Some(json!({"email": b.email})),
                Some(&a.token),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{:?}", r.body);
        r.body["room_id"].as_str().unwrap().to_owned()
    }

    /// Creates a group owned by `owner` with `members` in it; returns its id.
    pub async fn create_group(
        &self,
        owner: &TestUser,
        title: &str,
        members: &[&TestUser],
    ) -> String {
        let emails: Vec<&str> = members.iter().map(|m| m.email.as_str()).collect();
        let r = self
            .call(
                "POST",
                "/groups",
                Some(json!({"title": title, "emails": emails})),
                Some(&owner.token),
            )
            .await;
        assert_eq!(r.status, 201, "create group {title}: {:?}", r.body);
        r.body["room_id"].as_str().unwrap().to_owned()
    }

    /// `owner` adds `user` to group `rid`; returns the group's `Chat`.
    pub async fn add_member(&self, owner: &TestUser, rid: &str, user: &TestUser) -> Value {
        let members = format!("/rooms/{rid}/members");
        let r = self
            .call_as(owner, "POST", &members, Some(json!({"email": user.email})))
            .await;
        assert_eq!(r.status, 200, "add {}: {:?}", user.username, r.body);
        r.body
    }

    /// `owner` removes `user` from group `rid`.
    pub async fn remove_member(&self, owner: &TestUser, rid: &str, user: &TestUser) {
        let member = format!("/rooms/{rid}/members/{}", user.id);
        let r = self.call_as(owner, "DELETE", &member, None).await;
        assert_eq!(r.status, 204, "remove {}: {:?}", user.username, r.body);
    }

    pub async fn history(&self, user: &TestUser, rid: &str, query: &str) -> Vec<Value> {
        let r = self
            .call(
                "GET",
                &format!("/rooms/{rid}/messages{query}"),
                None,
                Some(&user.token),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["messages"].as_array().unwrap().clone()
    }
}

/// The `seq`s of a list of messages.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect()
}

/// Everything a socket received, by event name, in arrival order.
type Inbox = Arc<Mutex<Vec<(String, Value)>>>;

pub struct Socket {
    client: Client,
    inbox: Inbox,
}

/// The inbox entry of a closed connection (the server disconnected the socket).
const CLOSED: &str = "(closed)";

/// Records the connection's close in the inbox, as a [`CLOSED`] entry.
fn record_close(
    inbox: &Inbox,
) -> impl FnMut(Payload, Client) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync + 'static
{
    let inbox = inbox.clone();
    move |_, _| {
        let inbox = inbox.clone();
        async move {
            inbox.lock().unwrap().push((CLOSED.to_owned(), Value::Null));
        }
        .boxed()
    }
}

fn first_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.remove(0),
        _ => Value::Null,
    }
}

/// Why a connection attempt failed, as the server told the client.
pub async fn connect_error(url: &str, auth: Value) -> String {
    connect_error_with(url, auth, &[]).await
}

/// Like [`connect_error`], with extra handshake headers (cookie, origin).
pub async fn connect_error_with(url: &str, auth: Value, headers: &[(&str, &str)]) -> String {
    let (tx, rx) = oneshot::channel::<String>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let mut builder = ClientBuilder::new(url);
    for (name, value) in headers {
        builder = builder.opening_header(*name, *value);
    }
    let client = builder
        .auth(auth)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on("error", move |payload, _| {
            let tx = tx.clone();
            async move {
                let text = match payload {
                    Payload::Text(v) => v.iter().map(Value::to_string).collect::<String>(),
                    #[allow(deprecated)]
                    Payload::String(s) => s,
                    Payload::Binary(_) => String::new(),
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(text);
                }
            }
            .boxed()
        })
        .connect()
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), rx).await;
    if let Ok(client) = client {
        let _ = client.disconnect().await;
    }
    got.expect("no connect_error within 5 s")
        .expect("error channel closed")
}

impl Socket {
    /// Connects with a bearer token over WebSocket and records every event.
    pub async fn connect(url: &str, token: &str) -> Socket {
        Self::connect_with(url, json!({ "token": token }), TransportType::Websocket).await
    }

    pub async fn connect_with(url: &str, auth: Value, transport: TransportType) -> Socket {
        Self::connect_with_headers(url, auth, transport, &[]).await
    }

    /// Connects with extra handshake headers (a browser's cookie and origin).
    pub async fn connect_with_headers(
        url: &str,
        auth: Value,
        transport: TransportType,
        headers: &[(&str, &str)],
    ) -> Socket {
        Self::try_connect(url, auth, transport, headers)
            .await
            .unwrap_or_else(|e| panic!("socket connect: {e}"))
    }

    /// Connects and waits (5 s at most) for the server to accept the connection.
    pub async fn try_connect(
        url: &str,
        auth: Value,
        transport: TransportType,
        headers: &[(&str, &str)],
    ) -> Result<Socket, String> {
        let inbox: Inbox = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let ready_tx = Arc::new(Mutex::new(Some(ready_tx)));
        let mut builder = ClientBuilder::new(url);
        for (name, value) in headers {
            builder = builder.opening_header(*name, *value);
        }
        let mut builder = builder
            .auth(auth)
            .transport_type(transport)
            .reconnect(false)
            .on(rust_socketio::Event::Connect, move |_, _| {
                let ready_tx = ready_tx.clone();
                async move {
                    if let Some(tx) = ready_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
                .boxed()
            })
            .on(rust_socketio::Event::Close, record_close(&inbox));
        for event in ["message", "joined-chat", "shutting-down"] {
            let inbox = inbox.clone();
            builder = builder.on(event, move |payload, _| {
                let inbox = inbox.clone();
                async move {
                    inbox
                        .lock()
                        .unwrap()
                        .push((event.to_owned(), first_value(payload)));
                }
                .boxed()
            });
        }
        let client = builder.connect().await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), ready_rx).await {
            Ok(Ok(())) => Ok(Socket { client, inbox }),
            _ => {
                let _ = client.disconnect().await;
                Err("not connected within 5 s".into())
            }
        }
    }

    /// Emits and waits for the ack's first argument.
    pub async fn ack(&self, event: &str, payload: Value) -> Value {
        self.try_ack(event, payload, Duration::from_secs(10))
            .await
            .expect("no ack within 10 s")
    }

    /// Like [`Socket::ack`], but `None` when the connection is gone or no ack came in time.
    pub async fn try_ack(&self, event: &str, payload: Value, timeout: Duration) -> Option<Value> {
        let (tx, rx) = oneshot::channel::<Value>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, payload, timeout, move |p, _| {
                let tx = tx.clone();
                async move {
                    // rust_socketio hands an ack's arguments over as one array.
                    let args = first_value(p);
                    let first = match args {
                        Value::Array(mut args) if !args.is_empty() => args.remove(0),
                        other => other,
                    };
                    if let Some(tx) = tx.lock().unwrap().take() {
                        let _ = tx.send(first);
                    }
                }
                .boxed()
            })
            .await
            .ok()?;
        tokio::time::timeout(timeout, rx).await.ok()?.ok()
    }

    /// Emits without asking for an ack.
    pub async fn emit(&self, event: &str, payload: Value) {
        self.try_emit(event, payload).await.expect("emit");
    }

    /// Emits without asking for an ack; fails if the connection is gone.
    pub async fn try_emit(&self, event: &str, payload: Value) -> Result<(), rust_socketio::Error> {
        self.client.emit(event, payload).await
    }

    /// Payloads received so far for `event`.
    pub fn received(&self, event: &str) -> Vec<Value> {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(e, _)| e == event)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits until `count` payloads of `event` arrived (or 10 s passed), then returns them.
    pub async fn wait_for(&self, event: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received(event);
            if got.len() >= count || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`Socket::connect`], but records every event the server emits, not
    /// only those of the base protocol (`chat`, `presence`, `typing`, `read`, …).
    pub async fn connect_hearing_all(url: &str, token: &str) -> Socket {
        let inbox: Inbox = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let ready_tx = Arc::new(Mutex::new(Some(ready_tx)));
        let recorder = inbox.clone();
        let client = ClientBuilder::new(url)
            .auth(json!({ "token": token }))
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .on(rust_socketio::Event::Connect, move |_, _| {
                let ready_tx = ready_tx.clone();
                async move {
                    if let Some(tx) = ready_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                }
                .boxed()
            })
            .on(rust_socketio::Event::Close, record_close(&inbox))
            .on_any(move |event, payload, _| {
                let inbox = recorder.clone();
                async move {
                    inbox
                        .lock()
                        .unwrap()
                        .push((event.as_str().to_owned(), first_value(payload)));
                }
                .boxed()
            })
            .connect()
            .await
            .unwrap_or_else(|e| panic!("socket connect: {e}"));
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("not connected within 5 s")
            .expect("connect channel closed");
        Socket { client, inbox }
    }

    /// Waits (10 s at most) for a payload of `event` that `matches`, and returns it.
    pub async fn wait_for_match(&self, event: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.received(event).into_iter().find(&matches) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching {event:?} within 10 s; got {:?}",
                self.received(event)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `text` to room `rid`, which must be accepted; returns the message as stored.
    pub async fn say(&self, rid: &str, text: &str) -> Value {
        let ack = self
            .ack("outgoing", json!({"rid": rid, "message": text}))
            .await;
        assert_eq!(ack["ok"], true, "outgoing {text:?}: {ack}");
        ack["message"].clone()
    }

    /// Waits (10 s at most) for a `message` that reads `text`, and returns it.
    pub async fn hears(&self, text: &str) -> Value {
        self.wait_for_match("message", |m| m["message"] == text)
            .await
    }

    /// Whether the server has closed this socket.
    pub fn closed(&self) -> bool {
        !self.received(CLOSED).is_empty()
    }

    /// Waits (up to `within`) for the server to close this socket; `true` if it did.
    pub async fn closed_within(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.closed() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    pub async fn close(self) {
        let _ = self.client.disconnect().await;
    }
}

/// What `socket` received of `event` about room `rid`.
pub fn from_room(socket: &Socket, event: &str, rid: &str) -> Vec<Value> {
    socket
        .received(event)
        .into_iter()
        .filter(|p| p["rid"] == rid)
        .collect()
}

/// Lets in-flight broadcasts land before asserting that something did NOT arrive.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// A fresh, empty PostgreSQL database on the server of `NATTER_TEST_DATABASE_URL`,
/// or `None` (with a note) when `NATTER_SKIP_POSTGRES=1` says there is none.
pub fn fresh_postgres_database() -> Option<String> {
    let Ok(base) = std::env::var("NATTER_TEST_DATABASE_URL") else {
        assert!(
            std::env::var("NATTER_SKIP_POSTGRES").is_ok_and(|v| v == "1"),
            "set NATTER_TEST_DATABASE_URL (or NATTER_SKIP_POSTGRES=1): scripts/test does it"
        );
        eprintln!("NATTER_SKIP_POSTGRES=1: skipped");
        return None;
    };
    // Named after the run's database, so that scripts/test drops them with it.
    let (server, base_name) = base.rsplit_once('/').expect("database URL has a path");
    let name = format!("{base_name}_{}", random_suffix());
    let status = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            &base,
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .expect("run psql");
    assert!(status.success(), "could not create database {name}");
    Some(format!("{server}/{name}"))
}

/// A short random lowercase suffix for names that must not collide across runs.
pub fn random_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}{:x}{n}", std::process::id())
}

/// Races `member`'s `join-chat` of group `rid` (from `member_socket`) against
/// `owner` removing them (through `owner_api`), `rounds` times, adding them
/// back between rounds. After each removal the owner sends a message; the
/// `witness` (another member's socket) hears every one, and the member's
/// socket must hear none: a socket left subscribed by the race would.
/// Returns how many joins were answered `ok` (the join won the race).
pub async fn race_join_against_removal(
    owner_api: &Api,
    owner: &TestUser,
    member: &TestUser,
    rid: &str,
    member_socket: &Socket,
    witness: &Socket,
    rounds: usize,
) -> usize {
    let messages = format!("/rooms/{rid}/messages");
    let mut joins_first = 0;
    for round in 0..rounds {
        owner_api.add_member(owner, rid, member).await;
        let join = member_socket.ack("join-chat", json!({ "rid": rid }));
        let (joined, ()) = tokio::join!(join, owner_api.remove_member(owner, rid, member));
        if joined["ok"] == true {
            joins_first += 1;
        } else {
            assert_eq!(
                joined["error"]["code"], "not_member",
                "round {round}: {joined}"
            );
        }
        let text = format!("after removal {round}");
        let r = owner_api
            .call_as(owner, "POST", &messages, Some(json!({ "message": text })))
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    witness
        .hears(&format!("after removal {}", rounds - 1))
        .await;
    settle().await;
    let leaked: Vec<Value> = member_socket
        .received("message")
        .into_iter()
        .filter(|m| {
            m["message"]
                .as_str()
                .is_some_and(|t| t.starts_with("after removal"))
        })
        .collect();
    assert!(
        leaked.is_empty(),
        "a removed member's socket heard {} of {rounds} messages sent after the removal: {:?}",
        leaked.len(),
        leaked.iter().map(|m| &m["message"]).collect::<Vec<_>>()
    );
    joins_first
}

/// A port that was free a moment ago (the OS picked it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The machine's Redis (`NATTER_TEST_REDIS_URL` to use another).
pub fn redis_url() -> String {
    std::env::var("NATTER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
