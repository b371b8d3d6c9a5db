//! Benchmarks of the message hot path: what one chat message costs the server.
//!
//! Run with `cargo bench --bench hot_path`. Each group isolates one stage a
//! message goes through, from cheapest to dearest:
//!
//! - `validate/message_body`: [`rules::message_body`] on a 100- and a
//!   4000-character body (the contract's maximum). Every send from every door
//!   passes through it; it trims, scans for NUL and counts characters, so its
//!   cost grows with the body and should stay far below the store's.
//! - `send/one`: one awaited [`Natter::send`] — validation, the membership
//!   cache (warm, as for any member who has sent before), the rate limiter, and
//!   the SQLite store with its commit — under `synchronous = NORMAL` and `FULL`.
//!   A lone sender never shares a commit, so this is the latency of an ack on
//!   an idle server, and `FULL` shows what the per-commit fsync costs.
//! - `send/batch`: 64 concurrent sends per iteration (`join_all`), reported
//!   as messages per second. Concurrent sends share one transaction (group
//!   commit), so the gap between this and `send/one` is what group commit buys,
//!   most of all under `FULL`, where the fsync is paid once per batch.
//! - `encode/broadcast`: serialising one stored [`Message`] as the Socket.IO
//!   event payload `["message", message]` with serde_json, reported in bytes.
//!   Every broadcast pays this once before fanning out to the room.
//!
//! The store benchmarks each open their own SQLite file in a fresh temporary
//! directory, create two users with [`Store::create_user`] and their direct
//! room with [`Store::open_direct_room`], and raise the send rate limit so it
//! never refuses. Sends carry no `client_id`, so each one stores a new message.
//! Measurement times are kept short so the whole run takes a few minutes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::sqlite::SqliteSynchronous;
use tempfile::TempDir;
use tokio::runtime::Runtime;

use natter::domain::budget::BudgetLimits;
use natter::domain::connections::ConnectionLimits;
use natter::domain::model::{Message, MessageKind, User};
use natter::domain::password::HashCost;
use natter::domain::rules::{self, Limits};
use natter::domain::store::Store;
use natter::domain::throttle::ThrottleLimits;
use natter::domain::{Natter, Send};
use natter::store::sqlite::SqliteStore;

/// Concurrent sends per `send/batch` iteration.
const BATCH: usize = 64;

/// The two durability settings an operator can choose between.
const SYNC_MODES: [(&str, SqliteSynchronous); 2] = [
    ("normal", SqliteSynchronous::Normal),
    ("full", SqliteSynchronous::Full),
];

/// A body of exactly `chars` characters that reads like a message.
fn body(chars: usize) -> String {
    "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(chars)
        .collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A SQLite-backed server with two members of one direct room.
struct Fixture {
    natter: Natter,
    alice: User,
    bob: User,
    rid: String,
    /// Holds the database file; removed on drop.
    _dir: TempDir,
}

impl Fixture {
    /// Must run inside `rt`: the store spawns its group-commit task there.
    async fn new(synchronous: SqliteSynchronous) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open_file(&dir.path().join("natter.db"), synchronous)
            .await
            .expect("open the SQLite store");
        // The store never checks the hash; no password is hashed here.
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$bench$bench";
        let alice = store
            .create_user("alice", "alice@example.test", hash, 0)
            .await
            .expect("create alice");
        let bob = store
            .create_user("bob", "bob@example.test", hash, 0)
            .await
            .expect("create bob");
        let (rid, _) = store
            .open_direct_room("benchroom0000000000001", alice.id, bob.id, 0)
            .await
            .expect("open the direct room");
        let store: Arc<dyn Store> = Arc::new(store);
        // The defaults, but no budget refuses: refusals are not what is measured.
        let natter = Natter::new(store, Limits::default(), HashCost::default())
            .and_then(|n| {
                n.with_abuse_limits(
                    ThrottleLimits::default(),
                    ConnectionLimits::default(),
                    BudgetLimits::unlimited(),
                )
            })
            .expect("a Natter instance");
        let fixture = Fixture {
            natter,
            alice,
            bob,
            rid,
            _dir: dir,
        };
        // Warm the membership cache, as for any member who has sent before.
        let warm_up = json!("warm-up");
        for user in [&fixture.alice, &fixture.bob] {
            fixture.send(user, &warm_up).await;
        }
        fixture
    }

    async fn send(&self, user: &User, message: &Value) -> Message {
        let send = Send {
            rid: &self.rid,
            body: rules::message_body(message, self.natter.limits()),
            client_id: Ok(None),
            reply_to: Ok(None),
            attachments: Ok(Vec::new()),
            origin: None,
        };
        self.natter.send(user, send).await.expect("send")
    }
}

fn validate(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("validate/message_body");
    for chars in [100, 4000] {
        let raw = Value::String(body(chars));
        group.throughput(Throughput::Bytes(raw.as_str().map_or(0, str::len) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(chars), &raw, |b, raw| {
            b.iter(|| rules::message_body(black_box(raw), &limits).expect("a valid body"));
        });
    }
    group.finish();
}

fn send_one(c: &mut Criterion) {
    let rt = runtime();
    let message = Value::String(body(100));
    let mut group = c.benchmark_group("send/one");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, synchronous) in SYNC_MODES {
        let fixture = rt.block_on(Fixture::new(synchronous));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let (fixture, message) = (&fixture, &message);
            b.to_async(&rt)
                .iter(|| async move { fixture.send(&fixture.alice, message).await });
        });
        let _guard = rt.enter();
        drop(fixture);
    }
    group.finish();
}

fn send_batch(c: &mut Criterion) {
    let rt = runtime();
    let message = Value::String(body(100));
    let mut group = c.benchmark_group("send/batch");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, synchronous) in SYNC_MODES {
        let fixture = rt.block_on(Fixture::new(synchronous));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let (fixture, message) = (&fixture, &message);
            b.to_async(&rt).iter(|| async move {
                // Both members talk at once, as in a busy room.
                let sends = (0..BATCH).map(|i| {
                    let user = if i % 2 == 0 {
                        &fixture.alice
                    } else {
                        &fixture.bob
                    };
                    fixture.send(user, message)
                });
                join_all(sends).await
            });
        });
        let _guard = rt.enter();
        drop(fixture);
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let message = Message {
        id: 1_234_567,
        rid: "benchroom0000000000001".to_owned(),
        seq: 98_765,
        sender_id: 42,
        sender_username: "alice".to_owned(),
        message: body(100),
        timestamp: 1_760_000_000.123,
        client_id: Some("c-01J9Z8Y7X6W5V4T3S2R1Q0P9N8".to_owned()),
        kind: MessageKind::Text,
        reply_to: None,
        reactions: Vec::new(),
        attachments: Vec::new(),
        edited_at: None,
        deleted: false,
        rev: 0,
    };
    let payload = ("message", &message);
    let bytes = serde_json::to_vec(&payload).expect("serialise").len();
    let mut group = c.benchmark_group("encode/broadcast");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("message_100_chars", |b| {
        b.iter(|| serde_json::to_vec(black_box(&payload)).expect("serialise"));
    });
    group.finish();
}

criterion_group!(benches, validate, send_one, send_batch, encode);
criterion_main!(benches);
