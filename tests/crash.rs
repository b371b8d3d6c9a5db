//! Crash safety: several users send at once into several rooms (over Socket.IO
//! and the JSON API, one request in flight per connection), the server is
//! SIGKILLed at a random moment, restarted on the same data, and the senders
//! carry on — resending what was in flight with the same `client_id`, as a
//! client does. After several kills every acknowledged message must be stored
//! exactly once, with the `seq` its ack gave, and every room's `seq` must run
//! 1..=n without a gap. Runs on SQLite, and on PostgreSQL with
//! NATTER_TEST_STORE=postgres.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Server, Socket, TestUser};
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// Kills per test.
const ROUNDS: usize = 4;
/// The kill comes this long after every sender got its first ack, picked at random.
const KILL_WINDOW_MS: std::ops::Range<u64> = 0..1200;
/// Bounds each sender's loop even if the kill never came.
const MAX_SENDS_PER_ROUND: usize = 20_000;

const UNLIMITED: [&str; 4] = ["--send-rate", "1000000", "--send-burst", "1000000"];

fn random_below(n: u64) -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random bytes");
    u64::from_le_bytes(bytes) % n
}

/// A message a sender has sent but has no ack for yet.
#[derive(Debug, Clone)]
struct Pending {
    client_id: String,
}

/// One sender: a user writing into one room over one connection.
#[derive(Clone)]
struct Lane {
    name: String,
    user: TestUser,
    rid: String,
    via_socket: bool,
}

/// What a lane saw in one round.
struct LaneRound {
    /// client_id → the `seq` its ack carried.
    acked: Vec<(String, i64)>,
    /// Sent when the server died, never acknowledged: to resend.
    unacked: Option<Pending>,
}

enum Conn {
    Socket(Socket),
    Http(reqwest::Client, String),
}

impl Conn {
    /// Sends and waits for the ack: `Some(seq)`, or `None` if the server is gone.
    async fn send(&self, lane: &Lane, client_id: &str) -> Option<i64> {
        let body = json!({"rid": lane.rid, "message": client_id, "client_id": client_id});
        let message = match self {
            Conn::Socket(socket) => {
                let ack = socket
                    .try_ack("outgoing", body, Duration::from_secs(5))
                    .await?;
                assert_eq!(ack["ok"], true, "{ack}");
                ack["message"].clone()
            }
            Conn::Http(http, base) => {
                let res = http
                    .post(format!("{base}/rooms/{}/messages", lane.rid))
                    .bearer_auth(&lane.user.token)
                    .json(&body)
                    .send()
                    .await
                    .ok()?;
                let status = res.status().as_u16();
                let message: Value = res.json().await.ok()?;
                assert_eq!(status, 201, "{message}");
                message
            }
        };
        assert_eq!(message["client_id"], client_id);
        assert_eq!(message["rid"], lane.rid.as_str());
        Some(message["seq"].as_i64().unwrap())
    }
}

async fn run_lane(
    url: String,
    lane: Lane,
    round: usize,
    resend: Option<Pending>,
    ready: Arc<Barrier>,
    acks: Arc<AtomicUsize>,
) -> LaneRound {
    let conn = if lane.via_socket {
        Conn::Socket(Socket::connect(&url, &lane.user.token).await)
    } else {
        Conn::Http(reqwest::Client::new(), format!("{url}/api/v1"))
    };
    ready.wait().await;
    let mut acked = Vec::new();
    let fresh = (0..MAX_SENDS_PER_ROUND).map(|i| Pending {
        client_id: format!("{}-r{round}-{i}", lane.name),
    });
    for pending in resend.into_iter().chain(fresh) {
        match conn.send(&lane, &pending.client_id).await {
            Some(seq) => {
                acked.push((pending.client_id, seq));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                return LaneRound {
                    acked,
                    unacked: Some(pending),
                };
            }
        }
    }
    LaneRound {
        acked,
        unacked: None,
    }
}

/// Every message of a room, read through the JSON API page by page.
async fn all_messages(server: &Server, reader: &TestUser, rid: &str) -> Vec<Value> {
    let api = server.api();
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["seq"].as_i64().unwrap());
        let page = api
            .history(reader, rid, &format!("?after={after}&limit=200"))
            .await;
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn kill_and_restart_while_sending(extra: &[&str]) {
    let mut flags = UNLIMITED.to_vec();
    flags.extend_from_slice(extra);
    let mut server = Server::start_with(&flags);
    let api = server.api();
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(api.register(name).await);
    }
    // Three rooms (one per pair); each member sends into each of their rooms,
    // half of them over Socket.IO, half over the JSON API.
    let mut lanes = Vec::new();
    let mut rooms = Vec::new();
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let rid = api.open_chat(&users[a], &users[b]).await;
        for sender in [a, b] {
            lanes.push(Lane {
                name: format!("{}-{}", users[sender].username, rooms.len()),
                user: users[sender].clone(),
                rid: rid.clone(),
                via_socket: lanes.len() % 2 == 0,
            });
        }
        rooms.push((rid, users[a].clone()));
    }

    let mut acked: HashMap<String, (String, i64)> = HashMap::new();
    let mut sent: HashSet<String> = HashSet::new();
    let mut unacked: Vec<Option<Pending>> = vec![None; lanes.len()];
    for round in 0..ROUNDS {
        let ready = Arc::new(Barrier::new(lanes.len() + 1));
        let acks = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = lanes
            .iter()
            .zip(&unacked)
            .map(|(lane, resend)| {
                tokio::spawn(run_lane(
                    server.url.clone(),
                    lane.clone(),
                    round,
                    resend.clone(),
                    ready.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        ready.wait().await;
        // Every sender under way (and the server warm), then a random moment.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acks.load(Ordering::Relaxed) < lanes.len() {
            assert!(tokio::time::Instant::now() < deadline, "no sends acked");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delay = KILL_WINDOW_MS.start + random_below(KILL_WINDOW_MS.end - KILL_WINDOW_MS.start);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let dir = server.stop(); // SIGKILL
        let mut round_acks = 0;
        let mut in_flight = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.expect("a sender panicked");
            round_acks += result.acked.len();
            for (client_id, seq) in result.acked {
                sent.insert(client_id.clone());
                let earlier = acked.insert(client_id.clone(), (lanes[i].rid.clone(), seq));
                // A resend of a message stored before the kill gets the same seq back.
                if let Some((_, earlier_seq)) = earlier {
                    assert_eq!(earlier_seq, seq, "{client_id} acked twice, differently");
                }
            }
            if let Some(pending) = &result.unacked {
                sent.insert(pending.client_id.clone());
                in_flight += 1;
            }
            unacked[i] = result.unacked;
        }
        eprintln!(
            "round {round}: SIGKILL {delay} ms into the stream, {round_acks} acks, {in_flight} sends in flight"
        );
        server = Server::start_in(dir, &flags);
    }

    let mut stored_ids = HashSet::new();
    for (rid, reader) in &rooms {
        let messages = all_messages(&server, reader, rid).await;
        let seqs = common::seqs(&messages);
        assert_eq!(
            seqs,
            (1..=messages.len() as i64).collect::<Vec<_>>(),
            "room {rid}: seq must be 1..=n"
        );
        for m in &messages {
            let client_id = m["client_id"].as_str().expect("every send had a client_id");
            assert_eq!(m["message"], client_id);
            assert!(sent.contains(client_id), "{client_id} was never sent");
            assert!(
                stored_ids.insert(client_id.to_owned()),
                "{client_id} stored twice"
            );
            if let Some((acked_rid, acked_seq)) = acked.get(client_id) {
                assert_eq!((acked_rid, *acked_seq), (rid, m["seq"].as_i64().unwrap()));
            }
        }
    }
    let lost: Vec<&String> = acked
        .keys()
        .filter(|id| !stored_ids.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    eprintln!(
        "{} acknowledged messages, all stored once; {} stored in all",
        acked.len(),
        stored_ids.len()
    );
}

/// The default, `--sqlite-synchronous full` (or PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_repeated_sigkill() {
    kill_and_restart_while_sending(&[]).await;
}

/// `normal` promises the same through a process crash (not through power loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_repeated_sigkill_with_synchronous_normal() {
    if std::env::var("NATTER_TEST_STORE").is_ok_and(|v| v == "postgres") {
        eprintln!("a SQLite setting: runs in the SQLite pass");
        return;
    }
    kill_and_restart_while_sending(&["--sqlite-synchronous", "normal"]).await;
}
