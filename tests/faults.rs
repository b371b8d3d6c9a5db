//! Faults mid-stream on three nodes behind nginx, each on a PostgreSQL and a
//! Redis of the test's own (tests/common/services.rs) so that stopping them
//! disturbs nothing else: Redis stopped for 5 s, PostgreSQL restarted, one
//! node SIGKILLed. In each case every acknowledged message reaches every
//! member socket exactly once — live, or by the catch-up docs/protocol.md
//! documents (`resync`, or a reconnect, then `sync`) —, `seq` stays gap-free,
//! and every living node is ready again within 5 s of the fault's end.
//! (A single SQLite node killed mid-write: tests/crash.rs.)

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::cluster::{Cluster, connect_via_balancer, contiguous_prefix, steady_sender, sync_all};
use common::services::{OwnPostgres, OwnRedis};
use common::{Socket, seqs};
use serde_json::json;

/// Flags that make the nodes give up on an unreachable database quickly.
const QUICK_GIVE_UP: &[&str] = &[
    "--database-acquire-timeout-ms",
    "500",
    "--send-deadline-ms",
    "2000",
];

const SENDERS: usize = 3;
/// Each sender's pace: ~50 messages a second in all, for about 9 s.
const PAUSE: Duration = Duration::from_millis(50);
const MESSAGES_PER_SENDER: usize = 150;

/// What happened to the stream and to the receivers.
struct Outcome {
    /// Sends answered `unavailable` and sent again.
    unavailable: usize,
    /// Sends not answered within 3 s (or whose socket died), sent again.
    unanswered: usize,
    /// Receivers that heard `resync`.
    resynced: usize,
    /// Receivers whose node died.
    cut_off: usize,
    /// From the fault's end until every living node was ready.
    ready_after: Duration,
}

/// Streams messages from dave to erin through nginx while `fault` runs
/// (starting 1 s in; it returns when the fault is over), then checks every
/// receiver, as a client of the contract would have caught up.
async fn stream_through<F: std::future::Future<Output = ()>>(
    cluster: &mut Cluster,
    fault: impl FnOnce(&mut Cluster) -> F,
) -> Outcome {
    let api = cluster.api();
    let dave = api.register("dave").await;
    let erin = api.register("erin").await;
    let rid = api.open_chat(&dave, &erin).await;

    // Two of erin's sockets on each node.
    let mut receivers: Vec<Socket> = Vec::new();
    for i in 0..3 {
        for _ in 0..2 {
            let socket = Socket::connect_hearing_all(&cluster.node(i).url, &erin.token).await;
            assert_eq!(
                socket.ack("join-chat", json!({"rid": rid})).await["ok"],
                true
            );
            receivers.push(socket);
        }
    }
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            tokio::spawn(steady_sender(
                cluster.url.clone(),
                dave.token.clone(),
                rid.clone(),
                format!("s{s}"),
                MESSAGES_PER_SENDER,
                PAUSE,
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    fault(cluster).await;
    let ready_after = cluster.ready_after().await;

    let mut acked = Vec::new();
    let (mut unavailable, mut unanswered) = (0, 0);
    for sender in senders {
        let sent = sender.await.expect("sender finished");
        unavailable += sent.unavailable;
        unanswered += sent.unanswered;
        acked.extend(sent.acked);
    }
    let total = (SENDERS * MESSAGES_PER_SENDER) as i64;
    assert_eq!(acked.len() as i64, total);

    // Stored once each, in one gap-free `seq`, as acknowledged.
    let reader = connect_via_balancer(&cluster.url, &dave.token).await;
    let stored = sync_all(&reader, &rid, 0).await;
    reader.close().await;
    assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
    let ids: HashSet<&str> = stored
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as i64, total, "no message stored twice");
    for m in &acked {
        let same = stored.iter().find(|s| s["seq"] == m["seq"]).unwrap();
        assert_eq!(same, m, "the ack matches what is stored");
    }

    // Every receiver: nothing live twice; all of it live, or once it caught up.
    common::settle().await;
    let (mut resynced, mut cut_off) = (0, 0);
    for (i, socket) in receivers.into_iter().enumerate() {
        let live: Vec<i64> = seqs(&socket.received("message"));
        let seen: HashSet<i64> = live.iter().copied().collect();
        assert_eq!(seen.len(), live.len(), "receiver {i} heard a message twice");
        let told = !socket.received("resync").is_empty();
        // Its client reconnects (to another node) once it sees the socket
        // die, which may take it until a ping times out.
        let closed = cluster.nodes[i / 2].is_none();
        resynced += usize::from(told);
        cut_off += usize::from(closed);
        if !told && !closed {
            // Sent through several nodes, messages arrive in the order they
            // reached Redis (docs/protocol.md), which `seq` puts right.
            let mut in_order = live.clone();
            in_order.sort_unstable();
            assert_eq!(
                in_order,
                (1..=total).collect::<Vec<_>>(),
                "receiver {i} (node {}) was not told to catch up, so it hears everything live",
                i / 2
            );
            socket.close().await;
            continue;
        }
        // What the client does on `resync` or after reconnecting: sync from
        // the last `seq` it holds in order, and drop what it already has.
        socket.close().await;
        let fresh = connect_via_balancer(&cluster.url, &erin.token).await;
        let after = contiguous_prefix(&seen);
        let synced = sync_all(&fresh, &rid, after).await;
        assert_eq!(
            seqs(&synced),
            ((after + 1)..=total).collect::<Vec<_>>(),
            "receiver {i}: sync returns exactly what follows"
        );
        let all: HashSet<i64> = seen.into_iter().chain(seqs(&synced)).collect();
        assert_eq!(all.len() as i64, total, "receiver {i} has every message");
        fresh.close().await;
    }
    Outcome {
        unavailable,
        unanswered,
        resynced,
        cut_off,
        ready_after,
    }
}

/// A PostgreSQL and a Redis of the test's own, and three nodes on them.
async fn own_cluster() -> (OwnPostgres, OwnRedis, Cluster) {
    let postgres = OwnPostgres::start();
    let redis = OwnRedis::start();
    let cluster = Cluster::start(&postgres.url(), &redis.url(), QUICK_GIVE_UP).await;
    (postgres, redis, cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stopped_for_five_seconds_mid_stream() {
    let (_postgres, mut redis, mut cluster) = own_cluster().await;
    let outcome = stream_through(&mut cluster, |_| async {
        redis.stop();
        tokio::time::sleep(Duration::from_secs(5)).await;
        redis.resume();
    })
    .await;
    eprintln!(
        "Redis down 5 s: {} receivers resynced, ready {:?} after restart",
        outcome.resynced, outcome.ready_after
    );
    assert!(outcome.resynced >= 1, "the outage was noticed");
    assert!(outcome.ready_after < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_stream() {
    let (postgres, _redis, mut cluster) = own_cluster().await;
    let outcome = stream_through(&mut cluster, |_| async {
        postgres.stop();
        tokio::time::sleep(Duration::from_secs(2)).await;
        postgres.resume();
    })
    .await;
    eprintln!(
        "PostgreSQL down 2 s: {} sends answered unavailable, {} receivers resynced, ready {:?} after restart",
        outcome.unavailable, outcome.resynced, outcome.ready_after
    );
    assert!(outcome.unavailable >= 1, "the outage was noticed");
    assert_eq!(
        outcome.unanswered, 0,
        "every send is answered within its deadline (2 s), ok or unavailable"
    );
    assert!(outcome.ready_after < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_stream() {
    let (_postgres, _redis, mut cluster) = own_cluster().await;
    let outcome = stream_through(&mut cluster, |cluster| {
        drop(cluster.nodes[2].take()); // SIGKILL
        async {}
    })
    .await;
    assert_eq!(outcome.cut_off, 2, "node 2's receivers lost their socket");
    assert!(outcome.ready_after < Duration::from_secs(5));
}
