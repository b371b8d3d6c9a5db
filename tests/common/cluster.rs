//! Three Natter nodes on one PostgreSQL database and one Redis, behind nginx
//! (deploy/nginx.conf itself, pointed at the test's ports), and the clients
//! that stream through it: senders that resend until acknowledged, and
//! receivers that catch up as docs/protocol.md says.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::time::Duration;

use rust_socketio::TransportType;
use serde_json::{Value, json};

use super::{Api, Server, Socket, free_port, fresh_postgres_database, random_suffix, redis_url};

pub struct Cluster {
    pub nodes: Vec<Option<Server>>,
    /// The nodes' PostgreSQL database (what `natter user` is pointed at).
    pub database: String,
    nginx: Child,
    /// The load balancer's URL: what clients use.
    pub url: String,
    _nginx_dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

/// A cluster on a fresh database of the machine's PostgreSQL and on its
/// Redis, or `None` when there is no PostgreSQL to test with.
pub async fn cluster() -> Option<Cluster> {
    Some(Cluster::start(&fresh_postgres_database()?, &redis_url(), &[]).await)
}

impl Cluster {
    /// Three nodes on `database` and `redis` (with their own channel prefix),
    /// started with `extra` flags too, and nginx in front.
    pub async fn start(database: &str, redis: &str, extra: &[&str]) -> Cluster {
        let prefix = format!("natter-test-{}", random_suffix());
        let mut flags = vec![
            "--database-url",
            database,
            "--redis-url",
            redis,
            "--redis-prefix",
            &prefix,
            "--send-rate",
            "100000",
            "--send-burst",
            "100000",
        ];
        flags.extend_from_slice(extra);
        let nodes: Vec<Server> = (0..3).map(|_| Server::start_with(&flags)).collect();

        let port = free_port();
        let mut conf =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
                .unwrap();
        conf = conf.replace("listen 127.0.0.1:8080", &format!("listen 127.0.0.1:{port}"));
        for (i, node) in nodes.iter().enumerate() {
            let addr = node.url.trim_start_matches("http://");
            conf = conf.replace(&format!("127.0.0.1:808{}", i + 1), addr);
        }
        let dir = tempfile::tempdir().unwrap();
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let globals = format!(
            "daemon off; master_process off; pid {0}/nginx.pid; error_log {0}/error.log;",
            dir.path().display()
        );
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", &globals])
            .spawn()
            .expect("nginx is installed (apt-get install nginx)");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/healthz"))
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Cluster {
            nodes: nodes.into_iter().map(Some).collect(),
            database: database.to_owned(),
            nginx,
            url,
            _nginx_dir: dir,
        }
    }

    pub fn node(&self, i: usize) -> &Server {
        self.nodes[i].as_ref().expect("node is alive")
    }

    pub fn api(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1", self.url),
        }
    }

    /// How long until every living node's `/readyz` answers 200 (panics
    /// after 30 s).
    pub async fn ready_after(&self) -> Duration {
        let started = tokio::time::Instant::now();
        let http = reqwest::Client::new();
        for node in self.nodes.iter().flatten() {
            loop {
                let ready = http
                    .get(format!("{}/readyz", node.url))
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ready {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{} not ready after 30 s",
                    node.url
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        started.elapsed()
    }
}

/// Connects through nginx, retrying while the balancer still offers a dead node.
pub async fn connect_via_balancer(url: &str, token: &str) -> Socket {
    for _ in 0..50 {
        let auth = json!({ "token": token });
        match Socket::try_connect(url, auth, TransportType::Websocket, &[]).await {
            Ok(socket) => return socket,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    panic!("could not connect through nginx");
}

/// What a [`steady_sender`] got done.
#[derive(Debug, Default)]
pub struct Sent {
    /// The acknowledged messages, as acknowledged.
    pub acked: Vec<Value>,
    /// Sends answered `unavailable` (then sent again).
    pub unavailable: usize,
    /// Sends that got no answer in time, or whose socket closed (then sent
    /// again after reconnecting).
    pub unanswered: usize,
}

/// Sends `count` messages one at a time, `pause` apart, through `url`. Like
/// a client of the contract, it sends a message again with the same
/// `client_id` until it is acknowledged: after an `unavailable` answer, and
/// after reconnecting when its socket is gone or the ack does not come.
pub async fn steady_sender(
    url: String,
    token: String,
    rid: String,
    name: String,
    count: usize,
    pause: Duration,
) -> Sent {
    let mut socket = connect_via_balancer(&url, &token).await;
    let mut sent = Sent::default();
    for i in 0..count {
        let id = format!("{name}-{i}");
        let payload = json!({"rid": rid, "message": id, "client_id": id});
        loop {
            match socket
                .try_ack("outgoing", payload.clone(), Duration::from_secs(3))
                .await
            {
                Some(ack) if ack["ok"] == true => {
                    sent.acked.push(ack["message"].clone());
                    break;
                }
                Some(ack) => {
                    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
                    sent.unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    sent.unanswered += 1;
                    socket.close().await;
                    socket = connect_via_balancer(&url, &token).await;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
    socket.close().await;
    sent
}

/// The longest run 1, 2, 3, … at the start of `seqs` (as a client would track it).
pub fn contiguous_prefix(seqs: &HashSet<i64>) -> i64 {
    let mut last = 0;
    while seqs.contains(&(last + 1)) {
        last += 1;
    }
    last
}

/// Every message of room `rid` after `after_seq`, by `sync` pages of 200.
pub async fn sync_all(socket: &Socket, rid: &str, after_seq: i64) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut after = after_seq;
    loop {
        let ack = socket
            .ack(
                "sync",
                json!({"rid": rid, "after_seq": after, "limit": 200}),
            )
            .await;
        let page = ack["messages"].as_array().expect("sync answers messages");
        match page.last() {
            Some(last) => after = last["seq"].as_i64().unwrap(),
            None => return all,
        }
        all.extend(page.iter().cloned());
    }
}
