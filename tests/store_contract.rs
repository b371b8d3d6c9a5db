//! The `Store` contract, written once against `dyn Store` and run against every
//! backend: `sqlite::*` on a temp file, `postgres::*` on a fresh database per
//! test on the server named by `NATTER_TEST_DATABASE_URL`.
//!
//! Without `NATTER_TEST_DATABASE_URL` the PostgreSQL variants FAIL, unless
//! `NATTER_SKIP_POSTGRES=1` says to skip them on purpose.
//!
//! "Another node" is a second store instance (its own pool) on the same
//! database, standing in for a second server process.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use natter::domain::model::{
    Attachment, BotToken, Chat, Grant, Invite, Member, Message, MessageKind, NotifyLevel,
    OutgoingWebhook, Page, PushSubscription, Quote, RoomAccess, RoomKind, RoomState, User, UserId,
    WebhookEvents, timestamp_of_millis,
};
use natter::domain::store::{
    GroupChange, MessageChange, NewBot, NewMessage, Outcome, PushEndpoint, ReadMarker, Revocation,
    SessionRecord, Store, StoreError, StoredAttachment, StoredSession,
};
use natter::store::postgres::{PoolSettings, PostgresStore};
use natter::store::sqlite::SqliteStore;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::Barrier;

#[path = "common/room_lock.rs"]
mod room_lock;
use room_lock::RoomLock;

/// A case that takes longer than this is deadlocked: fail it (and still clean up).
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

// ------------------------------------------------------------------ harness

#[derive(Clone)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    /// Opens one more store instance (its own pool) on the database.
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(path) => Arc::new(
                SqliteStore::open_file(path, SqliteSynchronous::Full)
                    .await
                    .expect("open the SQLite store"),
            ),
            Backend::Postgres(url) => Arc::new(
                PostgresStore::open(
                    url,
                    // The races here wait on row locks with more tasks than
                    // connections; on a busy machine that is a long wait, and
                    // this suite is about the races, not the pool's deadline.
                    PoolSettings {
                        acquire_timeout: Duration::from_secs(30),
                        ..PoolSettings::default()
                    },
                )
                .await
                .expect("open the PostgreSQL store"),
            ),
        }
    }
}

/// One fresh database and a store on it.
#[derive(Clone)]
struct Db {
    backend: Backend,
    store: Arc<dyn Store>,
}

impl Db {
    /// A second store instance on the same database: another server node.
    async fn another_node(&self) -> Arc<dyn Store> {
        self.backend.open().await
    }

    /// Holds what a `store_message` into `rid` must wait for, from outside
    /// the store: the room's row lock (PostgreSQL) or the write lock (SQLite).
    async fn hold_room_lock(&self, rid: &str) -> RoomLock {
        match &self.backend {
            Backend::Sqlite(path) => RoomLock::sqlite(path).await,
            Backend::Postgres(url) => RoomLock::postgres(url, rid).await,
        }
    }

    /// Waits until `n` sessions are blocked on a lock in this database.
    async fn wait_for_blocked_writers(&self, n: i64) {
        match &self.backend {
            // No lock view to ask: the writers are in SQLite's busy handler soon enough.
            Backend::Sqlite(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Backend::Postgres(url) => {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    // A fresh connection each time: pg_stat_activity is cached per transaction.
                    let mut conn = PgConnection::connect(url).await.expect("connect to PG");
                    let blocked: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .fetch_one(&mut conn)
                    .await
                    .expect("read pg_stat_activity");
                    conn.close().await.ok();
                    if blocked >= n {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "only {blocked} of {n} writers ever blocked on the room lock"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Runs `case` to completion or [`CASE_TIMEOUT`], returning its panic if any.
async fn run_case<F, Fut>(case: F, db: Db) -> std::thread::Result<()>
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    AssertUnwindSafe(async move {
        tokio::time::timeout(CASE_TIMEOUT, case(db))
            .await
            .expect("the case timed out: deadlock?");
    })
    .catch_unwind()
    .await
}

async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Backend::Sqlite(dir.path().join("natter.db"));
    let store = backend.open().await;
    if let Err(panic) = run_case(case, Db { backend, store }).await {
        std::panic::resume_unwind(panic);
    }
}

async fn with_postgres<F, Fut>(case: F)
where
    F: FnOnce(Db) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(server_url) = std::env::var("NATTER_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        if std::env::var("NATTER_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("SKIPPED (NATTER_SKIP_POSTGRES=1): this PostgreSQL variant did not run");
            return;
        }
        panic!(
            "NATTER_TEST_DATABASE_URL is not set, so the PostgreSQL variant of this contract \
             test cannot run. Set it to a server the tests may create databases on, e.g. \
             NATTER_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test, \
             or set NATTER_SKIP_POSTGRES=1 to skip the PostgreSQL variants on purpose."
        );
    };
    let mut admin = admin_connection(&server_url).await;
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).expect("random bytes");
    let name = format!(
        "natter_t_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot CREATE DATABASE {name}: {e}"));

    let backend = Backend::Postgres(url_with_database(&server_url, &name));
    let outcome = match AssertUnwindSafe(backend.open()).catch_unwind().await {
        Ok(store) => run_case(case, Db { backend, store }).await,
        Err(panic) => Err(panic),
    };

    // Drop the database whatever happened; FORCE ends pool connections still open.
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await;
    admin.close().await.ok();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.unwrap_or_else(|e| panic!("cannot DROP DATABASE {name}: {e}"));
}

/// A connection for CREATE/DROP DATABASE: to the URL's own database, or else
/// to the server's `postgres` maintenance database (the URL's may not exist).
async fn admin_connection(server_url: &str) -> PgConnection {
    let first = PgConnection::connect(server_url).await;
    match first {
        Ok(conn) => conn,
        Err(first_error) => PgConnection::connect(&url_with_database(server_url, "postgres"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to NATTER_TEST_DATABASE_URL ({first_error}) \
                     nor to its server's `postgres` database ({e})"
                )
            }),
    }
}

fn url_with_database(server_url: &str, database: &str) -> String {
    let mut url = url::Url::parse(server_url).expect("NATTER_TEST_DATABASE_URL is not a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// Declares each case once per backend: `sqlite::case` and `postgres::case`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::with_sqlite(crate::$case).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    crate::with_postgres(crate::$case).await
                }
            )*
        }
    };
}

contract!(
    create_user_and_conflicts,
    credentials_and_lookup,
    sessions_create_resolve_delete,
    sessions_are_listed_and_touched,
    every_ended_session_is_logged,
    expired_sessions_end_by_last_use_or_creation,
    a_log_reader_misses_no_revocation_racing_between_nodes,
    direct_room_is_one_per_pair,
    direct_room_race_makes_one_room,
    room_access_cases,
    room_ids_list_the_users_rooms,
    seq_counts_from_one_per_room,
    a_batch_is_one_transaction,
    client_id_resend_returns_the_stored_message,
    duplicate_resend_racing_behind_the_room_lock,
    messages_paging,
    mark_read_never_moves_back_and_counts_unread,
    chats_order_and_content,
    two_nodes_race_into_one_room,
    set_password_ends_every_session_of_that_user,
    a_disabled_users_sessions_never_resolve,
    ping_answers_even_while_a_writer_holds_the_lock,
    read_markers_answer_where_they_are,
    group_changes_store_their_system_message,
    removing_the_owner_passes_ownership_on,
    edits_and_deletions_are_the_senders_and_bump_revisions,
    reactions_toggle_per_user_and_emoji,
    replies_quote_the_message_as_it_is_now,
    search_finds_word_prefixes_in_the_users_rooms_only,
    a_search_past_its_deadline_stops_and_frees_its_connection,
    last_seen_is_kept,
    notify_levels_default_by_room_kind_and_are_each_members,
    push_subscriptions_are_kept_replaced_and_budgeted,
    push_targets_are_the_subscriptions_of_members_who_did_not_mute,
    attachments_are_claimed_once_and_go_with_their_message,
    an_invitations_last_use_goes_to_one_of_two_nodes,
    blocks_are_seen_from_either_side_and_on_every_node,
    group_invitations_wait_are_declined_and_a_no_is_remembered,
    accounts_are_paged_searched_counted_and_deleted,
    a_moderated_message_is_deleted_with_a_system_message_in_one_go,
    password_reset_links_are_capped_live_and_used_once,
    a_reset_links_use_and_an_accounts_last_place_go_to_one_of_two_nodes,
    bots_tokens_and_their_deletion,
    incoming_webhooks_have_their_own_bot,
    outgoing_webhooks_target_their_owners_rooms,
);

// ------------------------------------------------------------------ helpers

async fn user(store: &dyn Store, name: &str) -> User {
    store
        .create_user(
            name,
            &format!("{name}@example.com"),
            &format!("hash-of-{name}"),
            1,
        )
        .await
        .expect("create user")
}

fn new_message(
    rid: &str,
    sender: &User,
    body: &str,
    client_id: Option<&str>,
    now_ms: i64,
) -> NewMessage {
    NewMessage {
        rid: rid.to_owned(),
        sender: sender.clone(),
        body: body.to_owned(),
        client_id: client_id.map(str::to_owned),
        reply_to: None,
        attachments: Vec::new(),
        now_ms,
    }
}

/// The public id the cases give the session of `token`.
fn id_of(token: &[u8]) -> String {
    token.iter().map(|b| format!("{b:02x}")).collect()
}

async fn open_session(store: &dyn Store, token: &[u8], user: &User, now_ms: i64) {
    store
        .create_session(token, &id_of(token), user.id, now_ms)
        .await
        .expect("create session");
}

/// Whose live session `token` is.
async fn owner(store: &dyn Store, token: &[u8]) -> Option<User> {
    store.session(token).await.unwrap().map(|s| s.user)
}

async fn send(store: &dyn Store, rid: &str, sender: &User, body: &str, now_ms: i64) -> Message {
    let (message, outcome) = store
        .store_message(new_message(rid, sender, body, None, now_ms))
        .await
        .expect("store message");
    assert_eq!(outcome, Outcome::Created);
    message
}

async fn room(store: &dyn Store, rid: &str, a: &User, b: &User, now_ms: i64) -> String {
    let (rid, outcome) = store
        .open_direct_room(rid, a.id, b.id, now_ms)
        .await
        .expect("open direct room");
    assert_eq!(outcome, Outcome::Created);
    rid
}

async fn all_messages(store: &dyn Store, rid: &str) -> Vec<Message> {
    store
        .messages(
            rid,
            Page {
                before: None,
                after: Some(0),
                limit: 100_000,
            },
        )
        .await
        .expect("read messages")
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

async fn page(
    store: &dyn Store,
    rid: &str,
    before: Option<i64>,
    after: Option<i64>,
    limit: i64,
) -> Vec<i64> {
    let messages = store
        .messages(
            rid,
            Page {
                before,
                after,
                limit,
            },
        )
        .await
        .expect("read a page");
    seqs(&messages)
}

async fn unread_of(store: &dyn Store, me: &User, rid: &str) -> i64 {
    store
        .chats(me.id)
        .await
        .expect("chats")
        .into_iter()
        .find(|c| c.room_id == rid)
        .expect("the room is in the chat list")
        .unread
}

async fn last_seq(store: &dyn Store, rid: &str, member: &User) -> i64 {
    match store
        .room_access(rid, member.id)
        .await
        .expect("room access")
    {
        RoomAccess::Member(room) => room.last_seq,
        other => panic!("expected membership, got {other:?}"),
    }
}

/// Who a member is, leaving out their read marker and presence.
fn member(u: &User) -> (UserId, String) {
    (u.id, u.username.clone())
}

fn who(members: &[Member]) -> Vec<(UserId, String)> {
    members.iter().map(|m| (m.id, m.username.clone())).collect()
}

// -------------------------------------------------------------------- cases

/// Readiness probes must not queue behind writes: `ping` answers while
/// another connection holds what a send waits for.
async fn ping_answers_even_while_a_writer_holds_the_lock(db: Db) {
    let store = &*db.store;
    store.ping().await.expect("ping on an empty database");
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "r-ping", &alice, &bob, 1).await;
    let lock = db.hold_room_lock(&rid).await;
    let pinged = tokio::time::timeout(Duration::from_secs(5), store.ping()).await;
    lock.release().await;
    pinged
        .expect("ping waited for the writer's lock")
        .expect("ping while the lock is held");
}

async fn create_user_and_conflicts(db: Db) {
    let store = &*db.store;
    let alice = store
        .create_user("alice", "alice@example.com", "h1", 10)
        .await
        .expect("create alice");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.email, "alice@example.com");
    let bob = store
        .create_user("bob", "bob@example.com", "h2", 10)
        .await
        .expect("create bob");
    assert_ne!(alice.id, bob.id);

    let same_username = store
        .create_user("alice", "other@example.com", "h3", 11)
        .await;
    assert!(
        matches!(same_username, Err(StoreError::Conflict)),
        "duplicate username: {same_username:?}"
    );
    let same_email = store
        .create_user("carol", "alice@example.com", "h4", 11)
        .await;
    assert!(
        matches!(same_email, Err(StoreError::Conflict)),
        "duplicate email: {same_email:?}"
    );
    // The refused writes left nothing behind.
    assert_eq!(
        store.user_by_email("other@example.com").await.unwrap(),
        None
    );
    let carol = store
        .create_user("carol", "carol@example.com", "h5", 12)
        .await
        .expect("carol is free after the refusal");
    assert!(carol.id != alice.id && carol.id != bob.id);
}

async fn credentials_and_lookup(db: Db) {
    let store = &*db.store;
    let alice = store
        .create_user("alice", "alice@example.com", "$argon2id$fake", 10)
        .await
        .unwrap();
    assert_eq!(
        store.credentials("alice@example.com").await.unwrap(),
        Some((alice.clone(), "$argon2id$fake".to_owned()))
    );
    assert_eq!(store.credentials("nobody@example.com").await.unwrap(), None);
    assert_eq!(
        store.user_by_email("alice@example.com").await.unwrap(),
        Some(alice)
    );
    assert_eq!(
        store.user_by_email("nobody@example.com").await.unwrap(),
        None
    );
    // Keys no row can have (PostgreSQL text cannot hold NUL) are "not found", not errors.
    assert_eq!(
        store.user_by_email("nul\0@example.com").await.unwrap(),
        None
    );
    assert_eq!(store.credentials("nul\0@example.com").await.unwrap(), None);
}

async fn sessions_create_resolve_delete(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let token_a = [0xAAu8; 32];
    let token_b = [0x00u8, 0xFF, 0x10, 0x80]; // any bytes, not text
    open_session(store, &token_a, &alice, 5).await;
    open_session(store, &token_b, &bob, 6).await;
    assert_eq!(
        store.session(&token_a).await.unwrap(),
        Some(StoredSession {
            user: alice.clone(),
            id: id_of(&token_a),
            created_at: 5,
            last_used_at: 5,
        })
    );
    assert_eq!(owner(store, &token_b).await, Some(bob.clone()));
    assert_eq!(store.session(&[0xABu8; 32]).await.unwrap(), None);

    // Another node sees the same sessions.
    let other = db.another_node().await;
    assert_eq!(owner(&*other, &token_a).await, Some(alice.clone()));

    // Only its owner ends a session by its id; the answer is its token hash.
    assert_eq!(
        store.end_session(bob.id, &id_of(&token_a)).await.unwrap(),
        None
    );
    assert_eq!(owner(store, &token_a).await, Some(alice.clone()));
    assert_eq!(
        store.end_session(alice.id, &id_of(&token_a)).await.unwrap(),
        Some(token_a.to_vec())
    );
    assert_eq!(owner(store, &token_a).await, None);
    assert_eq!(owner(&*other, &token_a).await, None);
    assert_eq!(owner(store, &token_b).await, Some(bob));
    // Ending what is gone, or what never was, finds nothing.
    assert_eq!(
        store.end_session(alice.id, &id_of(&token_a)).await.unwrap(),
        None
    );
    assert_eq!(store.end_session(alice.id, "nul\0").await.unwrap(), None);
}

async fn sessions_are_listed_and_touched(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    for (token, at) in [([1u8; 32], 5), ([2u8; 32], 6), ([3u8; 32], 7)] {
        open_session(store, &token, &alice, at).await;
    }
    open_session(store, &[4u8; 32], &bob, 8).await;
    store.touch_session(&[1u8; 32], 20).await.unwrap();
    // A use recorded late (a slower node) never moves it back.
    store.touch_session(&[1u8; 32], 10).await.unwrap();
    store.touch_session(&[9u8; 32], 30).await.unwrap(); // no such session: nothing
    let other = db.another_node().await;
    assert_eq!(
        other
            .session(&[1u8; 32])
            .await
            .unwrap()
            .map(|s| s.last_used_at),
        Some(20)
    );
    let record = |token: [u8; 32], created_at, last_used_at| SessionRecord {
        id: id_of(&token),
        created_at,
        last_used_at,
    };
    assert_eq!(
        store.sessions(alice.id).await.unwrap(),
        [
            record([1u8; 32], 5, 20),
            record([3u8; 32], 7, 7),
            record([2u8; 32], 6, 6)
        ]
    );
    assert_eq!(store.sessions(bob.id).await.unwrap().len(), 1);
}

async fn every_ended_session_is_logged(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    assert_eq!(store.last_revocation_id().await.unwrap(), 0);
    assert_eq!(store.revocations_after(0, 100).await.unwrap(), []);
    for (token, who) in [
        (1u8, &alice),
        (2, &alice),
        (3, &alice),
        (4, &bob),
        (5, &bob),
    ] {
        open_session(store, &[token; 32], who, 5).await;
    }
    // Each way a session ends: by its id, a new password, disabling, expiry.
    store
        .end_session(alice.id, &id_of(&[1u8; 32]))
        .await
        .unwrap();
    store
        .set_password(alice.id, "$argon2id$new", None)
        .await
        .unwrap();
    open_session(store, &[6u8; 32], &bob, 50).await;
    store.disable_user(bob.id, 60).await.unwrap();
    open_session(store, &[7u8; 32], &alice, 100).await;
    assert_eq!(store.end_expired_sessions(101, 0).await.unwrap(), 1);

    let other = db.another_node().await;
    let log = other.revocations_after(0, 100).await.unwrap();
    let ended = |log: &[Revocation]| -> Vec<(u8, UserId)> {
        log.iter().map(|r| (r.token_hash[0], r.user_id)).collect()
    };
    // The sessions one statement ends come in any order among themselves.
    let mut by_step = ended(&log);
    by_step[1..3].sort_unstable();
    by_step[3..6].sort_unstable();
    assert_eq!(
        by_step,
        [
            (1, alice.id),
            (2, alice.id),
            (3, alice.id),
            (4, bob.id),
            (5, bob.id),
            (6, bob.id),
            (7, alice.id)
        ]
    );
    assert!(log.windows(2).all(|w| w[0].id < w[1].id), "{log:?}");
    assert!(log.iter().all(|r| r.token_hash.len() == 32));
    assert_eq!(store.last_revocation_id().await.unwrap(), log[6].id);
    // Walking the log: after an id, at most `limit`.
    assert_eq!(
        store.revocations_after(log[1].id, 2).await.unwrap(),
        log[2..4]
    );
    assert_eq!(store.revocations_after(log[6].id, 100).await.unwrap(), []);

    // Pruning forgets what was logged before a time (the log's own clock: now).
    assert_eq!(store.prune_revocations(0).await.unwrap(), 0);
    let far_future = 4_000_000_000_000;
    assert_eq!(store.prune_revocations(far_future).await.unwrap(), 7);
    assert_eq!(store.revocations_after(0, 100).await.unwrap(), []);
    // Ids are never handed out again, even once the newest entries are gone:
    // a reader waiting after the last one it saw does not miss the next.
    open_session(store, &[8u8; 32], &alice, 200).await;
    store
        .end_session(alice.id, &id_of(&[8u8; 32]))
        .await
        .unwrap();
    let next = store.revocations_after(log[6].id, 100).await.unwrap();
    assert_eq!(ended(&next), [(8, alice.id)]);
}

async fn expired_sessions_end_by_last_use_or_creation(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    open_session(store, &[1u8; 32], &alice, 100).await; // unused since 100
    open_session(store, &[2u8; 32], &alice, 100).await;
    store.touch_session(&[2u8; 32], 500).await.unwrap(); // used, but made at 100
    open_session(store, &[3u8; 32], &alice, 300).await; // recent
    // Nothing that old yet: nothing ends, nothing is logged.
    assert_eq!(store.end_expired_sessions(100, 100).await.unwrap(), 0);
    assert_eq!(store.last_revocation_id().await.unwrap(), 0);

    assert_eq!(store.end_expired_sessions(250, 150).await.unwrap(), 2);
    assert_eq!(owner(store, &[1u8; 32]).await, None);
    assert_eq!(owner(store, &[2u8; 32]).await, None);
    assert_eq!(owner(store, &[3u8; 32]).await, Some(alice));
    let mut logged: Vec<u8> = store
        .revocations_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.token_hash[0])
        .collect();
    logged.sort_unstable();
    assert_eq!(logged, [1, 2]);
    assert_eq!(store.end_expired_sessions(250, 150).await.unwrap(), 0);
}

/// Two nodes end sessions at once while a reader walks the log "after the
/// last id I saw", as every node's session watch does: it must see them all.
async fn a_log_reader_misses_no_revocation_racing_between_nodes(db: Db) {
    const SESSIONS: usize = 200;
    const READ: i64 = 7;
    let alice = user(&*db.store, "alice").await;
    let nodes = [db.store.clone(), db.another_node().await];
    let tokens: Vec<[u8; 32]> = (0..SESSIONS)
        .map(|i| {
            let mut token = [0u8; 32];
            token[..8].copy_from_slice(&(i as u64).to_be_bytes());
            token
        })
        .collect();
    for token in &tokens {
        open_session(&*nodes[0], token, &alice, 5).await;
    }
    let reader = db.another_node().await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let walk = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut after, mut seen) = (0, Vec::new());
            loop {
                // Read `done` first: a walk that starts after it finds everything.
                let last_walk = done.load(std::sync::atomic::Ordering::SeqCst);
                loop {
                    let read = reader.revocations_after(after, READ).await.unwrap();
                    let Some(last) = read.last() else { break };
                    after = last.id;
                    seen.extend(read.into_iter().map(|r| r.token_hash));
                }
                if last_walk {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let enders = tokens.chunks(SESSIONS / 8).enumerate().map(|(i, chunk)| {
        let node = nodes[i % 2].clone();
        let alice = alice.clone();
        async move {
            for token in chunk {
                let ended = node.end_session(alice.id, &id_of(token)).await.unwrap();
                assert!(ended.is_some());
            }
        }
    });
    futures_util::future::join_all(enders).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut seen = walk.await.unwrap();
    seen.sort_unstable();
    let mut all: Vec<Vec<u8>> = tokens.iter().map(|t| t.to_vec()).collect();
    all.sort_unstable();
    assert_eq!(seen.len(), all.len(), "the reader skipped revocations");
    assert_eq!(seen, all);
}

async fn direct_room_is_one_per_pair(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;

    let (rid, outcome) = store
        .open_direct_room("room-ab", alice.id, bob.id, 100)
        .await
        .unwrap();
    assert_eq!((rid.as_str(), outcome), ("room-ab", Outcome::Created));
    // From the other side, with another proposed id: the same room.
    let (again, outcome) = store
        .open_direct_room("room-ba", bob.id, alice.id, 200)
        .await
        .unwrap();
    assert_eq!((again.as_str(), outcome), ("room-ab", Outcome::Existing));
    let (again, outcome) = store
        .open_direct_room("room-ab2", alice.id, bob.id, 300)
        .await
        .unwrap();
    assert_eq!((again.as_str(), outcome), ("room-ab", Outcome::Existing));

    let (ac, outcome) = store
        .open_direct_room("room-ac", carol.id, alice.id, 400)
        .await
        .unwrap();
    assert_eq!((ac.as_str(), outcome), ("room-ac", Outcome::Created));

    assert_eq!(
        store.room_access("room-ba", alice.id).await.unwrap(),
        RoomAccess::NoSuchRoom
    );
    let chats = store.chats(alice.id).await.unwrap();
    assert_eq!(chats.len(), 2);
    assert_eq!(store.chats(bob.id).await.unwrap().len(), 1);
}

async fn direct_room_race_makes_one_room(db: Db) {
    let nodes = [db.store.clone(), db.another_node().await];
    let alice = user(&*nodes[0], "alice").await;
    let bob = user(&*nodes[0], "bob").await;

    const TASKS: usize = 20;
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = nodes[i % 2].clone();
            let barrier = barrier.clone();
            // Both orders at once: alice adds bob while bob adds alice.
            let (a, b) = if i % 4 < 2 {
                (alice.id, bob.id)
            } else {
                (bob.id, alice.id)
            };
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .open_direct_room(&format!("race-{i}"), a, b, 1000 + i as i64)
                    .await
                    .expect("open_direct_room must not fail under a race")
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    let rids: HashSet<&str> = results.iter().map(|(rid, _)| rid.as_str()).collect();
    assert_eq!(rids.len(), 1, "one room for the pair, got {rids:?}");
    let created = results
        .iter()
        .filter(|(_, o)| *o == Outcome::Created)
        .count();
    assert_eq!(
        created, 1,
        "exactly one opener created the room: {results:?}"
    );
    let rid = results[0].0.clone();
    assert!(rid.starts_with("race-"));

    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let chats = nodes[1].chats(me.id).await.unwrap();
        assert_eq!(chats.len(), 1, "{}: one chat", me.username);
        assert_eq!(chats[0].room_id, rid);
        assert_eq!(chats[0].title, other.username);
        assert_eq!(who(&chats[0].members), vec![member(&alice), member(&bob)]);
    }
}

async fn room_ids_list_the_users_rooms(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    assert!(store.room_ids(alice.id).await.unwrap().is_empty());
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let ac = room(store, "room-ac", &alice, &carol, 101).await;
    let mut mine = store.room_ids(alice.id).await.unwrap();
    mine.sort();
    let mut expected = vec![ab.clone(), ac];
    expected.sort();
    assert_eq!(mine, expected);
    assert_eq!(store.room_ids(bob.id).await.unwrap(), vec![ab]);
}

/// `store_messages`: every message of a batch stored in order, resends inside
/// the batch recognised, and a failing message leaves nothing of the batch behind.
async fn a_batch_is_one_transaction(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let ac = room(store, "room-ac", &alice, &carol, 100).await;
    let batch = vec![
        new_message(&ac, &alice, "c1", None, 200),
        new_message(&ab, &alice, "a1", Some("k"), 201),
        new_message(&ab, &bob, "a2", None, 202),
        new_message(&ab, &alice, "a1 again", Some("k"), 203),
        new_message(&ac, &carol, "c2", None, 204),
    ];
    let stored = store.store_messages(&batch).await.expect("batch");
    let summary: Vec<(&str, i64, Outcome)> = stored
        .iter()
        .map(|(m, o)| (m.message.as_str(), m.seq, *o))
        .collect();
    assert_eq!(
        summary,
        [
            ("c1", 1, Outcome::Created),
            ("a1", 1, Outcome::Created),
            ("a2", 2, Outcome::Created),
            ("a1", 1, Outcome::Existing),
            ("c2", 2, Outcome::Created),
        ]
    );
    // A message for a missing room fails the batch, and nothing of it is kept.
    let doomed = vec![
        new_message(&ab, &alice, "lost", None, 300),
        new_message("no-such-room", &alice, "x", None, 301),
    ];
    assert!(store.store_messages(&doomed).await.is_err());
    let seqs: Vec<i64> = all_messages(store, &ab)
        .await
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(
        seqs,
        [1, 2],
        "the failed batch left no message and no seq gap"
    );
    assert_eq!(send(store, &ab, &bob, "next", 302).await.seq, 3);
}

async fn room_access_cases(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;

    assert_eq!(
        store.room_access("no-such-room", alice.id).await.unwrap(),
        RoomAccess::NoSuchRoom
    );
    assert_eq!(
        store.room_access(&rid, carol.id).await.unwrap(),
        RoomAccess::NotMember
    );
    assert_eq!(
        store.room_access(&rid, alice.id).await.unwrap(),
        RoomAccess::Member(RoomState {
            kind: RoomKind::Direct,
            owner_id: None,
            last_seq: 0,
            last_rev: 0,
        })
    );
    send(store, &rid, &bob, "hi", 200).await;
    send(store, &rid, &alice, "hey", 201).await;
    assert_eq!(
        store.room_access(&rid, bob.id).await.unwrap(),
        RoomAccess::Member(RoomState {
            kind: RoomKind::Direct,
            owner_id: None,
            last_seq: 2,
            last_rev: 0,
        })
    );

    // A room id no room can have (PostgreSQL text cannot hold NUL) is just no room.
    assert_eq!(
        store.room_access("bad\0rid", alice.id).await.unwrap(),
        RoomAccess::NoSuchRoom
    );
    assert!(
        store
            .messages(
                "bad\0rid",
                Page {
                    before: None,
                    after: None,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .is_empty()
    );
    store.mark_read("bad\0rid", alice.id, 1).await.unwrap();

    // Storing into a room that does not exist is an error, not a new room.
    let missing = store
        .store_message(new_message("no-such-room", &alice, "x", None, 300))
        .await;
    assert!(
        matches!(missing, Err(StoreError::Database(_))),
        "{missing:?}"
    );
    assert_eq!(
        store.room_access("no-such-room", alice.id).await.unwrap(),
        RoomAccess::NoSuchRoom
    );
}

async fn seq_counts_from_one_per_room(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let ac = room(store, "room-ac", &alice, &carol, 100).await;

    let mut ids = HashSet::new();
    for i in 1..=5 {
        let sender = if i % 2 == 0 { &bob } else { &alice };
        let body = format!("message {i}");
        let message = send(store, &ab, sender, &body, 1000 + i).await;
        assert_eq!(message.seq, i);
        assert_eq!(message.rid, ab);
        assert_eq!(message.sender_id, sender.id);
        assert_eq!(message.sender_username, sender.username);
        assert_eq!(message.message, body);
        assert_eq!(message.timestamp, timestamp_of_millis(1000 + i));
        assert_eq!(message.client_id, None);
        assert!(ids.insert(message.id), "message ids are unique");
    }
    // Each room counts on its own.
    assert_eq!(send(store, &ac, &carol, "first", 2000).await.seq, 1);
    assert_eq!(send(store, &ab, &alice, "sixth", 2001).await.seq, 6);

    // What was returned is what is stored.
    let stored = all_messages(store, &ab).await;
    assert_eq!(seqs(&stored), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(stored[1].message, "message 2");
    assert_eq!(stored[1].sender_username, "bob");
    assert_eq!(stored[1].timestamp, timestamp_of_millis(1002));
}

async fn client_id_resend_returns_the_stored_message(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let ac = room(store, "room-ac", &alice, &carol, 100).await;

    let (first, outcome) = store
        .store_message(new_message(&ab, &alice, "hello", Some("c-1"), 1000))
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Created);
    assert_eq!(first.seq, 1);
    assert_eq!(first.client_id.as_deref(), Some("c-1"));

    // A resend (even with another body and time) returns the stored message.
    for node in [db.store.clone(), db.another_node().await] {
        let (again, outcome) = node
            .store_message(new_message(
                &ab,
                &alice,
                "hello (resent)",
                Some("c-1"),
                5000,
            ))
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Existing);
        assert_eq!(again, first);
    }
    assert_eq!(all_messages(store, &ab).await, vec![first.clone()]);
    assert_eq!(
        last_seq(store, &ab, &alice).await,
        1,
        "a resend uses no seq"
    );

    // The key is (room, sender, client_id): another sender or room is a new message.
    let (by_bob, outcome) = store
        .store_message(new_message(&ab, &bob, "bob's", Some("c-1"), 1001))
        .await
        .unwrap();
    assert_eq!((by_bob.seq, outcome), (2, Outcome::Created));
    let (elsewhere, outcome) = store
        .store_message(new_message(&ac, &alice, "to carol", Some("c-1"), 1002))
        .await
        .unwrap();
    assert_eq!((elsewhere.seq, outcome), (1, Outcome::Created));

    // Without a client_id nothing is deduplicated.
    let one = send(store, &ab, &alice, "same", 1003).await;
    let two = send(store, &ab, &alice, "same", 1003).await;
    assert_eq!((one.seq, two.seq), (3, 4));
    assert_eq!(seqs(&all_messages(store, &ab).await), vec![1, 2, 3, 4]);
}

/// Two resends of one client_id, from two nodes, both past the "already
/// stored?" check and queued on the room: the loser must return the winner's
/// message and leave no gap in `seq` behind it.
async fn duplicate_resend_racing_behind_the_room_lock(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;

    let lock = db.hold_room_lock(&rid).await;
    let nodes = [db.store.clone(), db.another_node().await];
    let tasks: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let node = node.clone();
            let (rid, alice) = (rid.clone(), alice.clone());
            tokio::spawn(async move {
                node.store_message(new_message(
                    &rid,
                    &alice,
                    &format!("attempt {i}"),
                    Some("dup"),
                    1000 + i as i64,
                ))
                .await
                .expect("a racing resend must not fail")
            })
        })
        .collect();
    db.wait_for_blocked_writers(2).await;
    lock.release().await;
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    let outcomes: Vec<Outcome> = results.iter().map(|(_, o)| *o).collect();
    assert!(
        outcomes.contains(&Outcome::Created) && outcomes.contains(&Outcome::Existing),
        "one Created and one Existing, got {outcomes:?}"
    );
    assert_eq!(
        results[0].0, results[1].0,
        "both got the one stored message"
    );
    assert_eq!(results[0].0.seq, 1);

    assert_eq!(all_messages(store, &rid).await.len(), 1);
    assert_eq!(
        last_seq(store, &rid, &alice).await,
        1,
        "the loser's seq was rolled back"
    );
    assert_eq!(send(store, &rid, &bob, "next", 2000).await.seq, 2, "no gap");
}

async fn messages_paging(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    let empty = room(store, "room-empty", &bob, &user(store, "carol").await, 100).await;
    for i in 1..=10 {
        send(store, &rid, &alice, &format!("m{i}"), 1000 + i).await;
    }

    // Newest page, ascending.
    assert_eq!(page(store, &rid, None, None, 3).await, vec![8, 9, 10]);
    // Before: the newest `limit` below it.
    assert_eq!(page(store, &rid, Some(8), None, 3).await, vec![5, 6, 7]);
    assert_eq!(page(store, &rid, Some(3), None, 5).await, vec![1, 2]);
    assert_eq!(page(store, &rid, Some(1), None, 5).await, Vec::<i64>::new());
    // After: the oldest `limit` above it.
    assert_eq!(page(store, &rid, None, Some(2), 3).await, vec![3, 4, 5]);
    assert_eq!(page(store, &rid, None, Some(8), 5).await, vec![9, 10]);
    assert_eq!(
        page(store, &rid, None, Some(10), 5).await,
        Vec::<i64>::new()
    );
    // After and before: a window, both bounds exclusive, oldest first.
    assert_eq!(page(store, &rid, Some(6), Some(2), 10).await, vec![3, 4, 5]);
    assert_eq!(page(store, &rid, Some(9), Some(2), 2).await, vec![3, 4]);
    assert_eq!(
        page(store, &rid, Some(3), Some(2), 10).await,
        Vec::<i64>::new()
    );
    // Limits.
    assert_eq!(
        page(store, &rid, None, None, 100).await,
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(page(store, &rid, None, None, 1).await, vec![10]);
    // Empty and unknown rooms.
    assert_eq!(page(store, &empty, None, None, 10).await, Vec::<i64>::new());
    assert_eq!(
        page(store, "no-such-room", None, Some(0), 10).await,
        Vec::<i64>::new()
    );

    let window = store
        .messages(
            &rid,
            Page {
                before: Some(5),
                after: Some(3),
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].message, "m4");
    assert_eq!(window[0].sender_username, "alice");
    assert_eq!(window[0].rid, rid);
}

async fn mark_read_never_moves_back_and_counts_unread(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;

    assert_eq!(unread_of(store, &alice, &rid).await, 0);
    for i in 1..=3 {
        send(store, &rid, &alice, &format!("a{i}"), 1000 + i).await; // seq 1..=3
    }
    for i in 4..=5 {
        send(store, &rid, &bob, &format!("b{i}"), 1000 + i).await; // seq 4..=5
    }
    // Only others' messages count.
    assert_eq!(unread_of(store, &alice, &rid).await, 2);
    assert_eq!(unread_of(store, &bob, &rid).await, 3);

    store.mark_read(&rid, bob.id, 2).await.unwrap();
    assert_eq!(unread_of(store, &bob, &rid).await, 1);
    // Never back.
    store.mark_read(&rid, bob.id, 1).await.unwrap();
    assert_eq!(unread_of(store, &bob, &rid).await, 1);
    store.mark_read(&rid, bob.id, 5).await.unwrap();
    assert_eq!(unread_of(store, &bob, &rid).await, 0);
    store.mark_read(&rid, bob.id, 3).await.unwrap();
    assert_eq!(unread_of(store, &bob, &rid).await, 0);

    // Alice's marker is her own.
    assert_eq!(unread_of(store, &alice, &rid).await, 2);
    store.mark_read(&rid, alice.id, 4).await.unwrap();
    assert_eq!(unread_of(store, &alice, &rid).await, 1);

    // New messages count again; concurrent markers keep the highest.
    send(store, &rid, &alice, "a6", 1006).await;
    assert_eq!(unread_of(store, &bob, &rid).await, 1);
    let other = db.another_node().await;
    let (x, y) = tokio::join!(
        store.mark_read(&rid, bob.id, 6),
        other.mark_read(&rid, bob.id, 5)
    );
    x.unwrap();
    y.unwrap();
    assert_eq!(unread_of(store, &bob, &rid).await, 0);

    // A non-member's marker is a no-op, not an error.
    store.mark_read(&rid, carol.id, 6).await.unwrap();
    assert!(store.chats(carol.id).await.unwrap().is_empty());
}

async fn chats_order_and_content(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;
    assert!(store.chats(alice.id).await.unwrap().is_empty());

    let ab = room(store, "room-ab", &bob, &alice, 1000).await;
    let ac = room(store, "room-ac", &alice, &carol, 2000).await;
    let titles = |chats: &[natter::domain::model::Chat]| -> Vec<String> {
        chats.iter().map(|c| c.title.clone()).collect()
    };

    // Most recently active first; a new room is active when created.
    let chats = store.chats(alice.id).await.unwrap();
    assert_eq!(titles(&chats), vec!["carol", "bob"]);
    assert_eq!(chats[0].room_id, ac);
    assert_eq!(chats[0].kind, RoomKind::Direct);
    assert_eq!(who(&chats[0].members), vec![member(&alice), member(&carol)]);
    assert_eq!(chats[0].last_message, None);
    assert_eq!(chats[0].unread, 0);

    // A message moves its room to the top and becomes its last message.
    let (first, _) = store
        .store_message(new_message(&ab, &alice, "first", Some("c-first"), 3000))
        .await
        .unwrap();
    let last = send(store, &ab, &bob, "second", 3001).await;
    let chats = store.chats(alice.id).await.unwrap();
    assert_eq!(titles(&chats), vec!["bob", "carol"]);
    assert_eq!(chats[0].room_id, ab);
    assert_eq!(who(&chats[0].members), vec![member(&alice), member(&bob)]);
    assert_eq!(chats[0].last_message.as_ref(), Some(&last));
    assert_eq!(chats[0].unread, 1);

    // Bob sees the same room titled after alice; carol and dave are not in it.
    let bobs = store.chats(bob.id).await.unwrap();
    assert_eq!(titles(&bobs), vec!["alice"]);
    assert_eq!(bobs[0].last_message.as_ref(), Some(&last));
    assert_eq!(bobs[0].unread, 1);
    assert_eq!(titles(&store.chats(carol.id).await.unwrap()), vec!["alice"]);
    assert!(store.chats(dave.id).await.unwrap().is_empty());

    // Activity elsewhere reorders again.
    send(store, &ac, &carol, "hi alice", 4000).await;
    let chats = store.chats(alice.id).await.unwrap();
    assert_eq!(titles(&chats), vec!["carol", "bob"]);
    // A resend is no activity and no new last message.
    let (resent, outcome) = store
        .store_message(new_message(&ab, &alice, "first", Some("c-first"), 4500))
        .await
        .unwrap();
    assert_eq!((resent, outcome), (first, Outcome::Existing));
    let chats = store.chats(alice.id).await.unwrap();
    assert_eq!(titles(&chats), vec!["carol", "bob"]);
    assert_eq!(chats[1].last_message.as_ref(), Some(&last));
    assert_eq!(
        chats[0].last_message.as_ref().map(|m| m.message.as_str()),
        Some("hi alice")
    );
    assert_eq!((chats[0].unread, chats[1].unread), (1, 1));

    // Equal activity: ordered by room id, bytewise.
    let ad = room(store, "a-room", &dave, &alice, 5000).await;
    let bd = room(store, "B-room", &bob, &dave, 5000).await;
    let daves = store.chats(dave.id).await.unwrap();
    assert_eq!(
        daves.iter().map(|c| c.room_id.as_str()).collect::<Vec<_>>(),
        vec![bd.as_str(), ad.as_str()]
    );
    assert_eq!(titles(&daves), vec!["bob", "alice"]);
}

/// Two nodes store 200 messages each into one room at once, with duplicate
/// resends racing each other across the nodes: `seq` is exactly 1..=400 and
/// every client_id is stored once.
async fn two_nodes_race_into_one_room(db: Db) {
    const PER_NODE: usize = 200;
    const TOTAL: usize = 2 * PER_NODE;
    let nodes = [db.store.clone(), db.another_node().await];
    let alice = user(&*nodes[0], "alice").await;
    let bob = user(&*nodes[0], "bob").await;
    let rid = room(&*nodes[0], "room-ab", &alice, &bob, 100).await;

    // Message k goes through node k % 2; every 8th is also resent from the
    // other node twice (three racing sends of one client_id) unless it is one
    // of the every-5th that have no client_id at all.
    struct Send {
        node: usize,
        k: usize,
        client_id: Option<String>,
    }
    let mut sends = Vec::new();
    for k in 0..TOTAL {
        let client_id = (k % 5 != 0).then(|| format!("cid-{k}"));
        sends.push(Send {
            node: k % 2,
            k,
            client_id: client_id.clone(),
        });
        if k % 8 == 1 && client_id.is_some() {
            for _ in 0..2 {
                sends.push(Send {
                    node: (k + 1) % 2,
                    k,
                    client_id: client_id.clone(),
                });
            }
        }
    }
    let barrier = Arc::new(Barrier::new(sends.len()));
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|send| {
            let store = nodes[send.node].clone();
            let barrier = barrier.clone();
            let sender = if send.k % 4 < 2 {
                alice.clone()
            } else {
                bob.clone()
            };
            let rid = rid.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store
                    .store_message(new_message(
                        &rid,
                        &sender,
                        &format!("message {}", send.k),
                        send.client_id.as_deref(),
                        10_000 + send.k as i64,
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("store_message {} failed: {e:?}", send.k));
                (send.k, result)
            })
        })
        .collect();
    let mut by_k: HashMap<usize, Vec<(Message, Outcome)>> = HashMap::new();
    for task in tasks {
        let (k, result) = task.await.expect("task");
        by_k.entry(k).or_default().push(result);
    }

    assert_eq!(by_k.len(), TOTAL);
    for (k, results) in &by_k {
        let created = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Created)
            .count();
        assert_eq!(
            created, 1,
            "message {k}: exactly one send created it: {results:?}"
        );
        let first = &results[0].0;
        for (message, _) in results {
            assert_eq!(
                message, first,
                "message {k}: every resend got the stored message"
            );
        }
        assert_eq!(first.message, format!("message {k}"));
    }

    let stored = all_messages(&*nodes[1], &rid).await;
    assert_eq!(
        seqs(&stored),
        (1..=TOTAL as i64).collect::<Vec<_>>(),
        "seq 1..={TOTAL}, no gaps"
    );
    let ids: HashSet<i64> = stored.iter().map(|m| m.id).collect();
    assert_eq!(ids.len(), TOTAL);
    let mut client_ids: Vec<&str> = stored
        .iter()
        .filter_map(|m| m.client_id.as_deref())
        .collect();
    let with_client_id = client_ids.len();
    client_ids.sort_unstable();
    client_ids.dedup();
    assert_eq!(
        client_ids.len(),
        with_client_id,
        "each client_id stored once"
    );
    assert_eq!(with_client_id, (0..TOTAL).filter(|k| k % 5 != 0).count());
    // What each sender was told is what is stored.
    let stored_by_id: HashMap<i64, &Message> = stored.iter().map(|m| (m.id, m)).collect();
    for results in by_k.values() {
        let told = &results[0].0;
        assert_eq!(stored_by_id.get(&told.id), Some(&told));
    }
    assert_eq!(last_seq(&*nodes[0], &rid, &alice).await, TOTAL as i64);
    let chat = nodes[0].chats(alice.id).await.unwrap().remove(0);
    assert_eq!(chat.last_message.map(|m| m.seq), Some(TOTAL as i64));
}

async fn set_password_ends_every_session_of_that_user(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    open_session(store, &[1u8; 32], &alice, 5).await;
    open_session(store, &[2u8; 32], &alice, 6).await;
    open_session(store, &[3u8; 32], &bob, 7).await;

    store
        .set_password(alice.id, "$argon2id$new", None)
        .await
        .unwrap();
    assert_eq!(
        store.credentials("alice@example.com").await.unwrap(),
        Some((alice.clone(), "$argon2id$new".to_owned()))
    );
    let other = db.another_node().await;
    for token in [[1u8; 32], [2u8; 32]] {
        assert_eq!(owner(store, &token).await, None);
        assert_eq!(owner(&*other, &token).await, None);
    }
    assert_eq!(owner(store, &[3u8; 32]).await, Some(bob));
    // A login after the reset works as before.
    open_session(store, &[4u8; 32], &alice, 8).await;
    assert_eq!(owner(store, &[4u8; 32]).await, Some(alice));
}

async fn a_disabled_users_sessions_never_resolve(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    open_session(store, &[1u8; 32], &alice, 5).await;
    open_session(store, &[3u8; 32], &bob, 5).await;
    assert!(!store.is_disabled(alice.id).await.unwrap());

    store.disable_user(alice.id, 10).await.unwrap();
    let other = db.another_node().await;
    assert!(store.is_disabled(alice.id).await.unwrap());
    assert!(other.is_disabled(alice.id).await.unwrap());
    assert!(!store.is_disabled(bob.id).await.unwrap());
    assert!(!store.is_disabled(alice.id + bob.id + 100).await.unwrap());
    assert_eq!(owner(store, &[1u8; 32]).await, None);
    assert_eq!(owner(&*other, &[1u8; 32]).await, None);
    // A session stored by a login that raced with the disabling resolves to no one.
    open_session(store, &[2u8; 32], &alice, 11).await;
    assert_eq!(owner(store, &[2u8; 32]).await, None);
    assert_eq!(owner(store, &[3u8; 32]).await, Some(bob));
    // The account stays (their messages keep a sender); disabling again is harmless.
    assert_eq!(
        store.user_by_email("alice@example.com").await.unwrap(),
        Some(alice.clone())
    );
    store.disable_user(alice.id, 12).await.unwrap();
    assert!(store.is_disabled(alice.id).await.unwrap());
}

async fn read_markers_answer_where_they_are(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    for i in 1..=3 {
        send(store, &rid, &alice, &format!("a{i}"), 1000 + i).await;
    }
    let marker = |read_seq, unread, moved| ReadMarker {
        read_seq,
        unread,
        moved,
    };
    assert_eq!(
        store.mark_read(&rid, bob.id, 2).await.unwrap(),
        marker(2, 1, true)
    );
    // Not back: it stays, says so, and still counts.
    assert_eq!(
        store.mark_read(&rid, bob.id, 1).await.unwrap(),
        marker(2, 1, false)
    );
    assert_eq!(
        store.mark_read(&rid, bob.id, 3).await.unwrap(),
        marker(3, 0, true)
    );
    let chat = store.chat(&rid, bob.id).await.unwrap().expect("bob's chat");
    assert_eq!(chat.last_read_seq, 3);
    let alices_view = store.chat(&rid, alice.id).await.unwrap().unwrap();
    let bob_there = alices_view.members.iter().find(|m| m.id == bob.id).unwrap();
    assert_eq!(bob_there.read_seq, 3, "others see how far bob read");
}

async fn group_changes_store_their_system_message(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let create = GroupChange::Create {
        title: "Trip",
        members: &[bob.id],
    };
    let first = store
        .change_group("group-1", &alice, create, "alice created", 100)
        .await
        .unwrap();
    assert_eq!((first.seq, first.kind), (1, MessageKind::System));
    assert_eq!(first.message, "alice created");
    let chat = store.chat("group-1", bob.id).await.unwrap().unwrap();
    assert_eq!(chat.kind, RoomKind::Group);
    assert_eq!(chat.title, "Trip");
    assert_eq!(chat.owner_id, Some(alice.id));
    assert_eq!(who(&chat.members), vec![member(&alice), member(&bob)]);
    assert_eq!(chat.last_message.map(|m| m.seq), Some(1));

    let add = GroupChange::Add { user: carol.id };
    store
        .change_group("group-1", &alice, add, "alice added carol", 101)
        .await
        .unwrap();
    assert!(matches!(
        store
            .change_group("group-1", &alice, add, "again", 102)
            .await,
        Err(StoreError::Conflict)
    ));
    let rename = GroupChange::Rename { title: "Trip 2" };
    store
        .change_group("group-1", &bob, rename, "bob renamed", 103)
        .await
        .unwrap();
    let remove = GroupChange::Remove { user: bob.id };
    store
        .change_group("group-1", &alice, remove, "alice removed bob", 104)
        .await
        .unwrap();
    assert!(matches!(
        store
            .change_group("group-1", &alice, remove, "again", 105)
            .await,
        Err(StoreError::Conflict)
    ));
    // A refused change stores nothing: seqs stay gap-free.
    let history = all_messages(store, "group-1").await;
    assert_eq!(seqs(&history), vec![1, 2, 3, 4]);
    assert!(history.iter().all(|m| m.kind == MessageKind::System));
    assert_eq!(
        store.room_access("group-1", bob.id).await.unwrap(),
        RoomAccess::NotMember
    );
    assert!(store.chat("group-1", bob.id).await.unwrap().is_none());
    let members = store.members("group-1").await.unwrap();
    assert_eq!(who(&members), vec![member(&alice), member(&carol)]);
    let title = store
        .chat("group-1", carol.id)
        .await
        .unwrap()
        .unwrap()
        .title;
    assert_eq!(title, "Trip 2");
    // A creation that names a member twice is refused whole.
    assert!(matches!(
        store
            .change_group(
                "group-2",
                &alice,
                GroupChange::Create {
                    title: "x",
                    members: &[bob.id, bob.id]
                },
                "dup",
                106
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.room_access("group-2", alice.id).await.unwrap(),
        RoomAccess::NoSuchRoom,
        "a failed creation leaves no room behind"
    );
}

async fn removing_the_owner_passes_ownership_on(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let create = GroupChange::Create {
        title: "G",
        members: &[carol.id],
    };
    store
        .change_group("g", &alice, create, "created", 100)
        .await
        .unwrap();
    let add = GroupChange::Add { user: bob.id };
    store
        .change_group("g", &alice, add, "added", 200)
        .await
        .unwrap();
    let leave = GroupChange::Remove { user: alice.id };
    store
        .change_group("g", &alice, leave, "left", 300)
        .await
        .unwrap();
    // Carol joined first (with alice); bob later.
    let chat = store.chat("g", bob.id).await.unwrap().unwrap();
    assert_eq!(chat.owner_id, Some(carol.id));
    // A member who is not the owner leaving changes nothing.
    let leave = GroupChange::Remove { user: bob.id };
    store
        .change_group("g", &bob, leave, "left", 400)
        .await
        .unwrap();
    let chat = store.chat("g", carol.id).await.unwrap().unwrap();
    assert_eq!(chat.owner_id, Some(carol.id));
}

async fn edits_and_deletions_are_the_senders_and_bump_revisions(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    send(store, &rid, &alice, "one", 1001).await;
    send(store, &rid, &bob, "two", 1002).await;

    let edited = store
        .change_message(&rid, 1, alice.id, MessageChange::Edit("one!"), 2000)
        .await
        .unwrap()
        .expect("alice edits her message");
    assert_eq!(edited.message, "one!");
    assert_eq!(edited.edited_at, Some(timestamp_of_millis(2000)));
    assert_eq!(edited.rev, 1);
    assert!(
        store
            .change_message(&rid, 2, alice.id, MessageChange::Edit("x"), 2001)
            .await
            .unwrap()
            .is_none(),
        "not alice's message"
    );
    assert!(
        store
            .change_message(&rid, 9, alice.id, MessageChange::Delete, 2001)
            .await
            .unwrap()
            .is_none(),
        "no such message"
    );
    let deleted = store
        .change_message(&rid, 2, bob.id, MessageChange::Delete, 2002)
        .await
        .unwrap()
        .expect("bob deletes his message");
    assert!(deleted.deleted);
    assert_eq!(deleted.message, "");
    assert_eq!(deleted.rev, 2, "a refused change takes no revision");
    assert!(
        store
            .change_message(&rid, 2, bob.id, MessageChange::Edit("back"), 2003)
            .await
            .unwrap()
            .is_none(),
        "a deleted message stays deleted"
    );
    let changed = store.changes(&rid, 0, 100).await.unwrap();
    assert_eq!(seqs(&changed), vec![1, 2]);
    assert_eq!(seqs(&store.changes(&rid, 1, 100).await.unwrap()), vec![2]);
    match store.room_access(&rid, alice.id).await.unwrap() {
        RoomAccess::Member(room) => assert_eq!(room.last_rev, 2),
        other => panic!("{other:?}"),
    }
    let stored = store.message(&rid, 2).await.unwrap().unwrap();
    assert_eq!(stored, deleted);
}

async fn reactions_toggle_per_user_and_emoji(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    send(store, &rid, &alice, "hi", 1001).await;

    store
        .toggle_reaction(&rid, 1, bob.id, "👍", 2000)
        .await
        .unwrap();
    store
        .toggle_reaction(&rid, 1, alice.id, "🎉", 2001)
        .await
        .unwrap();
    let both = store
        .toggle_reaction(&rid, 1, alice.id, "👍", 2002)
        .await
        .unwrap()
        .unwrap();
    let summary: Vec<(&str, Vec<UserId>)> = both
        .reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.user_ids.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![("👍", vec![bob.id, alice.id]), ("🎉", vec![alice.id])]
    );
    assert_eq!(both.reactions[0].count, 2);
    assert_eq!(both.rev, 3);
    let toggled_off = store
        .toggle_reaction(&rid, 1, bob.id, "👍", 2003)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(toggled_off.reactions[0].user_ids, vec![alice.id]);
    // History carries them too.
    assert_eq!(
        all_messages(store, &rid).await[0].reactions,
        toggled_off.reactions
    );
    assert!(
        store
            .toggle_reaction(&rid, 7, bob.id, "👍", 2004)
            .await
            .unwrap()
            .is_none()
    );
    // Deleting a message takes its reactions with it.
    let deleted = store
        .change_message(&rid, 1, alice.id, MessageChange::Delete, 2005)
        .await
        .unwrap()
        .unwrap();
    assert!(deleted.reactions.is_empty());
    assert!(
        store
            .toggle_reaction(&rid, 1, bob.id, "👍", 2006)
            .await
            .unwrap()
            .is_none(),
        "no reactions to a deleted message"
    );
}

async fn replies_quote_the_message_as_it_is_now(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    let long = "x".repeat(300);
    send(store, &rid, &alice, &long, 1001).await;
    let quote = Quote {
        seq: 1,
        sender_username: "alice".into(),
        message: "x".repeat(200),
        deleted: false,
    };
    let mut reply = new_message(&rid, &bob, "answer", None, 1002);
    reply.reply_to = Some(quote.clone());
    let (stored, _) = store.store_message(reply).await.unwrap();
    assert_eq!(stored.reply_to.as_ref(), Some(&quote));
    assert_eq!(all_messages(store, &rid).await[1].reply_to, Some(quote));
    store
        .change_message(&rid, 1, alice.id, MessageChange::Delete, 2000)
        .await
        .unwrap();
    let now = all_messages(store, &rid).await[1].reply_to.clone().unwrap();
    assert!(now.deleted && now.message.is_empty(), "{now:?}");
}

async fn search_finds_word_prefixes_in_the_users_rooms_only(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let bc = room(store, "room-bc", &bob, &carol, 100).await;
    send(store, &ab, &alice, "Planning the trip to Lisbon", 1001).await;
    send(store, &ab, &bob, "the plane leaves at nine", 1002).await;
    send(store, &bc, &carol, "secret plans for lisbon", 1003).await;
    send(store, &ab, &alice, "unrelated", 1004).await;
    let bodies = |found: Vec<Message>| found.into_iter().map(|m| m.message).collect::<Vec<_>>();

    let found = search(store, alice.id, &["plan"], 10).await;
    assert_eq!(
        bodies(found),
        vec!["the plane leaves at nine", "Planning the trip to Lisbon"],
        "newest first, prefixes, any case, only alice's rooms"
    );
    let found = search(store, bob.id, &["lisbon"], 10).await;
    assert_eq!(found.len(), 2);
    let found = search(store, bob.id, &["lisbon", "plan"], 10).await;
    assert_eq!(found.len(), 2, "every word must match");
    let found = search(store, bob.id, &["lisbon", "nine"], 10).await;
    assert!(found.is_empty());
    assert_eq!(search(store, bob.id, &["plan"], 1).await.len(), 1);
    // Edits are searched as they are now; deleted messages not at all.
    store
        .change_message(
            &ab,
            2,
            bob.id,
            MessageChange::Edit("the train leaves"),
            2000,
        )
        .await
        .unwrap();
    store
        .change_message(&bc, 1, carol.id, MessageChange::Delete, 2001)
        .await
        .unwrap();
    assert_eq!(
        bodies(search(store, bob.id, &["lisbon"], 10).await),
        vec!["Planning the trip to Lisbon"]
    );
    assert_eq!(
        bodies(search(store, alice.id, &["train"], 10).await),
        vec!["the train leaves"]
    );
    // System messages are not searched.
    let create = GroupChange::Create {
        title: "Lisbon",
        members: &[],
    };
    store
        .change_group("g", &alice, create, "alice created the group Lisbon", 3000)
        .await
        .unwrap();
    assert_eq!(search(store, alice.id, &["lisbon"], 10).await.len(), 1);
}

/// A search of `words` by `user` that must not time out.
async fn search(store: &dyn Store, user: UserId, words: &[&str], limit: i64) -> Vec<Message> {
    let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    store
        .search(user, &words, limit, deadline)
        .await
        .expect("search")
}

async fn a_search_past_its_deadline_stops_and_frees_its_connection(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let bc = room(store, "room-bc", &bob, &carol, 100).await;
    // Many hits, none in carol's rooms, and many messages in her room that
    // do not match: her search walks one or the other, whichever the
    // database starts from (PostgreSQL's planner chooses, and once it knew
    // her room was empty it answered within the millisecond).
    for batch in 0..10 {
        let sends: Vec<NewMessage> =
            (0..1000)
                .map(|i| new_message(&ab, &alice, &format!("about plan {batch} {i}"), None, 1000))
                .chain((0..1000).map(|i| {
                    new_message(&bc, &carol, &format!("zulu time {batch} {i}"), None, 1000)
                }))
                .collect();
        store.store_messages(&sends).await.expect("store a batch");
    }
    let words = vec!["a".to_owned()];
    let started = Instant::now();
    let late = store
        .search(
            carol.id,
            &words,
            20,
            Instant::now() + Duration::from_millis(1),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::TimedOut)),
        "past the deadline: {:?}",
        late.map(|found| found.len())
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped at the deadline, not at the end: {:?}",
        started.elapsed()
    );
    // Every connection serves again, none left with a stop armed: more
    // searches than any pool has connections.
    for _ in 0..12 {
        assert_eq!(search(store, alice.id, &["about"], 2).await.len(), 2);
        assert!(search(store, carol.id, &["about"], 2).await.is_empty());
    }
}

async fn last_seen_is_kept(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    let seen = |members: Vec<Member>| members.into_iter().map(|m| m.last_seen).collect::<Vec<_>>();
    assert_eq!(seen(store.members(&rid).await.unwrap()), vec![None, None]);
    store.set_last_seen(bob.id, 5000).await.unwrap();
    assert_eq!(
        seen(store.members(&rid).await.unwrap()),
        vec![None, Some(timestamp_of_millis(5000))]
    );
    let chat = store.chat(&rid, alice.id).await.unwrap().unwrap();
    assert_eq!(
        seen(chat.members),
        vec![None, Some(timestamp_of_millis(5000))]
    );
}

async fn notify_levels_default_by_room_kind_and_are_each_members(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let create = GroupChange::Create {
        title: "Trip",
        members: &[bob.id, carol.id],
    };
    store
        .change_group("group-1", &alice, create, "alice created", 200)
        .await
        .unwrap();
    let level = |chats: Vec<Chat>, rid: &str| {
        chats
            .into_iter()
            .find(|c| c.room_id == rid)
            .expect("in the list")
            .notify
    };

    // Never chosen: a direct room's is `all`, a group's `mentions`.
    let alices = store.chats(alice.id).await.unwrap();
    assert_eq!(level(alices.clone(), &ab), NotifyLevel::All);
    assert_eq!(level(alices, "group-1"), NotifyLevel::Mentions);

    // Chosen: for that member only, in the list and in the single chat alike.
    assert!(
        store
            .set_notify(&ab, bob.id, NotifyLevel::None)
            .await
            .unwrap()
    );
    assert_eq!(
        level(store.chats(bob.id).await.unwrap(), &ab),
        NotifyLevel::None
    );
    let bobs = store.chat(&ab, bob.id).await.unwrap().unwrap();
    assert_eq!(bobs.notify, NotifyLevel::None);
    assert_eq!(
        store.chat(&ab, alice.id).await.unwrap().unwrap().notify,
        NotifyLevel::All
    );
    assert!(
        store
            .set_notify("group-1", carol.id, NotifyLevel::All)
            .await
            .unwrap()
    );
    let carols = store.chat("group-1", carol.id).await.unwrap().unwrap();
    assert_eq!(carols.notify, NotifyLevel::All);
    assert!(
        store
            .set_notify(&ab, bob.id, NotifyLevel::Mentions)
            .await
            .unwrap()
    );
    assert_eq!(
        store.chat(&ab, bob.id).await.unwrap().unwrap().notify,
        NotifyLevel::Mentions
    );

    // Not a member, or no such room: nothing to set.
    assert!(
        !store
            .set_notify(&ab, carol.id, NotifyLevel::All)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_notify("no-room", alice.id, NotifyLevel::All)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_notify("nul\0room", alice.id, NotifyLevel::All)
            .await
            .unwrap()
    );
}

fn endpoint(url: &str, keys: &str) -> PushEndpoint {
    PushEndpoint {
        url: url.to_owned(),
        p256dh: format!("p256dh-{keys}"),
        auth: format!("auth-{keys}"),
    }
}

fn endpoints(subscriptions: &[PushSubscription]) -> Vec<&str> {
    subscriptions.iter().map(|s| s.endpoint.as_str()).collect()
}

async fn push_subscriptions_are_kept_replaced_and_budgeted(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    open_session(store, b"alice-1", &alice, 10).await;
    open_session(store, b"alice-2", &alice, 10).await;
    open_session(store, b"bob-1", &bob, 10).await;
    assert!(!store.any_push_subscription().await.unwrap());

    let one = endpoint("https://push.example/1", "a");
    let (first, outcome) = store
        .save_push_subscription(alice.id, b"alice-1", &one, 10, 1000)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Created);
    assert_eq!(first.endpoint, one.url);
    assert_eq!(first.created_at, timestamp_of_millis(1000));
    assert!(store.any_push_subscription().await.unwrap());
    assert_eq!(
        store.push_subscriptions(alice.id).await.unwrap(),
        vec![first.clone()]
    );

    // The same endpoint again: the same row, with the new keys and owner.
    let again = endpoint("https://push.example/1", "b");
    let (replaced, outcome) = store
        .save_push_subscription(alice.id, b"alice-2", &again, 10, 2000)
        .await
        .unwrap();
    assert_eq!((replaced.id, outcome), (first.id, Outcome::Existing));
    let (taken, outcome) = store
        .save_push_subscription(bob.id, b"bob-1", &again, 10, 3000)
        .await
        .unwrap();
    assert_eq!((taken.id, outcome), (first.id, Outcome::Existing));
    assert!(store.push_subscriptions(alice.id).await.unwrap().is_empty());
    assert_eq!(
        endpoints(&store.push_subscriptions(bob.id).await.unwrap()),
        [one.url.as_str()]
    );

    // Past the budget, the oldest others go; newest first.
    for (n, at) in [(2, 4000), (3, 5000), (4, 6000)] {
        let url = format!("https://push.example/{n}");
        store
            .save_push_subscription(alice.id, b"alice-1", &endpoint(&url, "k"), 2, at)
            .await
            .unwrap();
    }
    assert_eq!(
        endpoints(&store.push_subscriptions(alice.id).await.unwrap()),
        ["https://push.example/4", "https://push.example/3"]
    );
    assert_eq!(
        store.push_subscriptions(bob.id).await.unwrap().len(),
        1,
        "others' stay"
    );

    // Deleted by their owner only.
    let bobs = store.push_subscriptions(bob.id).await.unwrap()[0].id;
    assert!(
        !store
            .delete_push_subscription(alice.id, bobs)
            .await
            .unwrap()
    );
    assert!(store.delete_push_subscription(bob.id, bobs).await.unwrap());
    assert!(!store.delete_push_subscription(bob.id, bobs).await.unwrap());
    assert!(store.push_subscriptions(bob.id).await.unwrap().is_empty());

    // A session's end ends the subscriptions made with it.
    store
        .save_push_subscription(
            alice.id,
            b"alice-2",
            &endpoint("https://push.example/5", "k"),
            10,
            7000,
        )
        .await
        .unwrap();
    assert!(
        store
            .end_session(alice.id, &id_of(b"alice-1"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        endpoints(&store.push_subscriptions(alice.id).await.unwrap()),
        ["https://push.example/5"]
    );
    // One made with a session that has ended is refused.
    let late = store
        .save_push_subscription(
            alice.id,
            b"alice-1",
            &endpoint("https://push.example/6", "k"),
            10,
            8000,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Conflict)), "{late:?}");
    store
        .set_password(alice.id, "new-hash", None)
        .await
        .unwrap();
    assert!(store.push_subscriptions(alice.id).await.unwrap().is_empty());
    assert!(!store.any_push_subscription().await.unwrap());
}

async fn push_targets_are_the_subscriptions_of_members_who_did_not_mute(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;
    let ab = room(store, "room-ab", &alice, &bob, 100).await;
    let cd = room(store, "room-cd", &carol, &dave, 100).await;
    let create = GroupChange::Create {
        title: "Trip",
        members: &[bob.id, carol.id],
    };
    store
        .change_group("group-1", &alice, create, "alice created", 200)
        .await
        .unwrap();
    for (who, n) in [(&alice, 1), (&bob, 2), (&bob, 3), (&carol, 4), (&dave, 5)] {
        let token = format!("session-{n}");
        open_session(store, token.as_bytes(), who, 10).await;
        let url = format!("https://push.example/{n}");
        store
            .save_push_subscription(
                who.id,
                token.as_bytes(),
                &endpoint(&url, &n.to_string()),
                10,
                n,
            )
            .await
            .unwrap();
    }
    let targets = |rids: &[&str]| {
        let rids: Vec<String> = rids.iter().map(|r| r.to_string()).collect();
        async move {
            let mut found: Vec<(String, String, NotifyLevel)> = store
                .push_targets(&rids)
                .await
                .unwrap()
                .into_iter()
                .map(|t| (t.rid, t.endpoint.url, t.notify))
                .collect();
            found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            found
        }
    };
    let target =
        |rid: &str, n: u32, notify| (rid.to_owned(), format!("https://push.example/{n}"), notify);
    use NotifyLevel::{All, Mentions};
    assert_eq!(
        targets(&[&ab, "group-1", "no-room"]).await,
        vec![
            target("group-1", 1, Mentions),
            target("group-1", 2, Mentions),
            target("group-1", 3, Mentions),
            target("group-1", 4, Mentions),
            target(&ab, 1, All),
            target(&ab, 2, All),
            target(&ab, 3, All),
        ]
    );
    // What a push needs besides: whose, their name, the room's kind and title, the keys.
    let bobs = store.push_targets(&["group-1".to_owned()]).await.unwrap();
    let bobs = bobs
        .iter()
        .find(|t| t.endpoint.url.ends_with("/2"))
        .unwrap();
    assert_eq!((bobs.user_id, bobs.username.as_str()), (bob.id, "bob"));
    assert_eq!(
        (bobs.room_kind, bobs.room_title.as_deref()),
        (RoomKind::Group, Some("Trip"))
    );
    assert_eq!(bobs.endpoint, endpoint("https://push.example/2", "2"));
    let direct = store.push_targets(std::slice::from_ref(&ab)).await.unwrap();
    assert!(
        direct
            .iter()
            .all(|t| t.room_kind == RoomKind::Direct && t.room_title.is_none())
    );

    // Muted: none of that member's subscriptions; chose `all`: said so.
    store
        .set_notify(&ab, bob.id, NotifyLevel::None)
        .await
        .unwrap();
    store.set_notify("group-1", carol.id, All).await.unwrap();
    // Disabled: none either.
    store.disable_user(alice.id, 300).await.unwrap();
    assert_eq!(
        targets(&[&ab, "group-1", &cd]).await,
        vec![
            target("group-1", 2, Mentions),
            target("group-1", 3, Mentions),
            target("group-1", 4, All),
            target(&cd, 4, All),
            target(&cd, 5, All),
        ]
    );
    assert!(targets(&[]).await.is_empty());
    assert!(targets(&["nul\0room"]).await.is_empty());
}

/// An upload of `uploader` into `rid`, kept under file key `file` (64 hex digits).
fn upload_of(id: &str, rid: &str, uploader: &User, file: char, now_ms: i64) -> StoredAttachment {
    StoredAttachment {
        attachment: Attachment {
            id: id.to_owned(),
            name: format!("{id}.png"),
            content_type: "image/png".to_owned(),
            size: 1234,
            width: Some(40),
            height: Some(30),
            has_thumbnail: true,
        },
        rid: rid.to_owned(),
        uploader_id: uploader.id,
        message_id: None,
        file_key: file.to_string().repeat(64),
        thumbnail_key: Some("f".repeat(64)),
        thumbnail_type: Some("image/jpeg".to_owned()),
        created_at: now_ms,
    }
}

async fn attachments_are_claimed_once_and_go_with_their_message(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-ab", &alice, &bob, 100).await;
    let a1 = upload_of("a1", &rid, &alice, 'a', 1000);
    let a2 = upload_of("a2", &rid, &alice, 'b', 1001);
    store.create_attachment(&a1).await.unwrap();
    store.create_attachment(&a2).await.unwrap();
    assert!(matches!(
        store.create_attachment(&a1).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.attachment("a1").await.unwrap(), Some(a1.clone()));
    assert_eq!(store.attachment("nope").await.unwrap(), None);

    // Sent: the message carries them, and they are its own.
    let mut new = new_message(&rid, &alice, "two files", Some("c1"), 2000);
    new.attachments = vec![a1.attachment.clone(), a2.attachment.clone()];
    let (message, outcome) = store.store_message(new.clone()).await.unwrap();
    assert_eq!(outcome, Outcome::Created);
    assert_eq!(message.attachments, new.attachments);
    assert_eq!(
        all_messages(store, &rid).await[0].attachments,
        new.attachments
    );
    let claimed = store.attachment("a1").await.unwrap().unwrap();
    assert_eq!(claimed.message_id, Some(message.id));
    // A resend finds the message; another message cannot take them.
    let (again, outcome) = store.store_message(new).await.unwrap();
    assert_eq!((again.seq, outcome), (message.seq, Outcome::Existing));
    let mut thief = new_message(&rid, &alice, "again", None, 2001);
    thief.attachments = vec![a1.attachment.clone()];
    assert!(matches!(
        store.store_message(thief.clone()).await,
        Err(StoreError::Conflict)
    ));
    // Nor can a batch, and nothing of it is stored.
    let batch = [new_message(&rid, &bob, "innocent", None, 2002), thief];
    assert!(store.store_messages(&batch).await.is_err());
    assert_eq!(all_messages(store, &rid).await.len(), 1);
    // Nor someone else, with a fresh upload of alice's.
    let a3 = upload_of("a3", &rid, &alice, 'c', 1002);
    store.create_attachment(&a3).await.unwrap();
    let mut bobs = new_message(&rid, &bob, "mine", None, 2003);
    bobs.attachments = vec![a3.attachment.clone()];
    assert!(matches!(
        store.store_message(bobs).await,
        Err(StoreError::Conflict)
    ));

    let keys = |c: char| c.to_string().repeat(64);
    let mut in_use = store
        .files_in_use(&[keys('a'), keys('c'), keys('f'), keys('0')])
        .await
        .unwrap();
    in_use.sort();
    assert_eq!(in_use, vec![keys('a'), keys('c'), keys('f')]);

    // Deleting the message deletes its attachments; the unsent one expires.
    let deleted = store
        .change_message(&rid, message.seq, alice.id, MessageChange::Delete, 3000)
        .await
        .unwrap()
        .unwrap();
    assert!(deleted.attachments.is_empty());
    assert_eq!(store.attachment("a1").await.unwrap(), None);
    assert_eq!(store.attachment("a2").await.unwrap(), None);
    assert_eq!(store.expire_unsent_attachments(1002).await.unwrap(), 0);
    assert_eq!(store.expire_unsent_attachments(1003).await.unwrap(), 1);
    assert_eq!(store.attachment("a3").await.unwrap(), None);
    assert!(
        store
            .files_in_use(&[keys('a'), keys('c'), keys('f')])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_invitations_last_use_goes_to_one_of_two_nodes(db: Db) {
    let store = &*db.store;
    let ann = user(store, "ann").await;
    assert!(
        store.is_admin(ann.id).await.unwrap(),
        "the first account is the admin"
    );
    let bob = user(store, "bob").await;
    assert!(!store.is_admin(bob.id).await.unwrap());
    let invite = |code: &str, max_uses: i64, expires_at: i64| Invite {
        code: code.to_owned(),
        created_by: ann.id,
        room_id: None,
        max_uses,
        uses: 0,
        expires_at,
        revoked: false,
        created_at: 1000,
    };
    store
        .create_invite(&invite("once", 1, 10_000))
        .await
        .unwrap();
    store.create_invite(&invite("old", 5, 2_000)).await.unwrap();
    let other = db.another_node().await;
    let barrier = Arc::new(Barrier::new(2));
    let race = |node: Arc<dyn Store>| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            node.use_invite("once", 5_000).await.unwrap()
        })
    };
    let (a, b) = (race(db.store.clone()), race(other));
    let won = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(won.iter().filter(|w| w.is_some()).count(), 1, "{won:?}");
    assert_eq!(
        store.use_invite("once", 5_000).await.unwrap(),
        None,
        "used up"
    );
    store.give_back_invite("once").await.unwrap();
    assert_eq!(
        store.use_invite("once", 5_000).await.unwrap().unwrap().uses,
        1
    );
    assert_eq!(
        store.use_invite("old", 2_000).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.use_invite("nope", 0).await.unwrap(), None);
    assert!(
        !store
            .revoke_invite("old", Some(bob.id), 3_000)
            .await
            .unwrap(),
        "not bob's"
    );
    assert!(store.revoke_invite("old", None, 3_000).await.unwrap());
    let listed = store.invites(Some(ann.id)).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|i| i.code == "old" && i.revoked));
    assert!(store.invites(Some(bob.id)).await.unwrap().is_empty());
    store.set_admin(bob.id).await.unwrap();
    assert!(store.is_admin(bob.id).await.unwrap());
    // A disabled creator's invitations register nobody.
    store
        .create_invite(&invite("later", 3, 10_000))
        .await
        .unwrap();
    store.disable_user(ann.id, 6_000).await.unwrap();
    assert_eq!(store.use_invite("later", 7_000).await.unwrap(), None);
}

// ------------------------------------------------------- accounts (issue 16)

async fn blocks_are_seen_from_either_side_and_on_every_node(db: Db) {
    let store = &*db.store;
    let [ann, bob, cyd] = [
        user(store, "ann").await,
        user(store, "bob").await,
        user(store, "cyd").await,
    ];
    let rid = room(store, "room-ab", &ann, &bob, 1).await;
    let other = db.another_node().await;
    assert!(store.share_a_room(ann.id, bob.id).await.unwrap());
    assert!(!store.share_a_room(ann.id, cyd.id).await.unwrap());
    assert!(!store.direct_room_blocked(&rid).await.unwrap());

    store.block(ann.id, bob.id, 10).await.unwrap();
    store.block(ann.id, bob.id, 11).await.unwrap();
    store.block(ann.id, cyd.id, 12).await.unwrap();
    for store in [store, &*other] {
        assert!(store.blocked_either_way(ann.id, bob.id).await.unwrap());
        assert!(store.blocked_either_way(bob.id, ann.id).await.unwrap());
        assert!(!store.blocked_either_way(bob.id, cyd.id).await.unwrap());
        assert!(store.direct_room_blocked(&rid).await.unwrap());
    }
    let blocked: Vec<String> = store
        .blocked_by(ann.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.username)
        .collect();
    assert_eq!(blocked, ["cyd", "bob"], "most recent first");
    assert!(store.blocked_by(bob.id).await.unwrap().is_empty());

    assert!(store.unblock(ann.id, bob.id).await.unwrap());
    assert!(!store.unblock(ann.id, bob.id).await.unwrap());
    assert!(!other.direct_room_blocked(&rid).await.unwrap());
}

async fn group_invitations_wait_are_declined_and_a_no_is_remembered(db: Db) {
    let store = &*db.store;
    let ann = user(store, "ann").await;
    let eve = user(store, "eve").await;
    let create = GroupChange::Create {
        title: "Club",
        members: &[],
    };
    store
        .change_group("club", &ann, create, "created", 1)
        .await
        .unwrap();
    assert_eq!(
        store.group_invitation_state("club", eve.id).await.unwrap(),
        None
    );
    assert!(
        store
            .invite_to_group("club", eve.id, ann.id, 10, 0, 5)
            .await
            .unwrap()
    );
    // Pending: asking again makes nothing new.
    assert!(
        !store
            .invite_to_group("club", eve.id, ann.id, 11, 0, 5)
            .await
            .unwrap()
    );
    assert_eq!(
        store.group_invitation_state("club", eve.id).await.unwrap(),
        Some(None)
    );
    let pending = store.group_invitations(eve.id).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].title.as_str(),
            pending[0].invited_by_username.as_str()
        ),
        ("Club", "ann")
    );

    assert!(store.decline_group("club", eve.id, 20).await.unwrap());
    assert!(!store.decline_group("club", eve.id, 21).await.unwrap());
    assert!(store.group_invitations(eve.id).await.unwrap().is_empty());
    // A "no" since the cutoff holds; one before it is asked anew.
    assert!(
        !store
            .invite_to_group("club", eve.id, ann.id, 30, 20, 5)
            .await
            .unwrap()
    );
    assert_eq!(
        store.group_invitation_state("club", eve.id).await.unwrap(),
        Some(Some(20))
    );
    assert!(
        store
            .invite_to_group("club", eve.id, ann.id, 40, 21, 5)
            .await
            .unwrap()
    );
    assert!(store.take_group_invitation("club", eve.id).await.unwrap());
    assert!(!store.take_group_invitation("club", eve.id).await.unwrap());

    // At most `max_pending` pending at once.
    for i in 0..2 {
        let create = GroupChange::Create {
            title: "More",
            members: &[],
        };
        let rid = format!("more-{i}");
        store
            .change_group(&rid, &ann, create, "created", 50)
            .await
            .unwrap();
        assert!(
            store
                .invite_to_group(&rid, eve.id, ann.id, 51, 0, 2)
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .invite_to_group("club", eve.id, ann.id, 52, 0, 2)
            .await
            .unwrap()
    );
    assert_eq!(
        store.group_invitation_state("club", eve.id).await.unwrap(),
        None
    );

    assert!(!store.left_group("club", ann.id).await.unwrap());
    store
        .note_departure("club", ann.id, true, 60)
        .await
        .unwrap();
    assert!(
        db.another_node()
            .await
            .left_group("club", ann.id)
            .await
            .unwrap()
    );
    store
        .note_departure("club", ann.id, false, 61)
        .await
        .unwrap();
    assert!(!store.left_group("club", ann.id).await.unwrap());
}

async fn accounts_are_paged_searched_counted_and_deleted(db: Db) {
    let store = &*db.store;
    let [ann, bea, bob] = [
        user(store, "ann").await,
        user(store, "bea").await,
        user(store, "bob").await,
    ];
    let rid = room(store, "room-ab", &ann, &bob, 1).await;
    send(store, &rid, &bob, "from bob", 2).await;
    store
        .set_profile(bea.id, Some("Beatrix_%"), true)
        .await
        .unwrap();
    let names = |accounts: Vec<natter::domain::model::Account>| -> Vec<String> {
        accounts.into_iter().map(|a| a.username).collect()
    };
    assert_eq!(
        names(store.accounts(None, 0, 2).await.unwrap()),
        ["ann", "bea"]
    );
    assert_eq!(
        names(store.accounts(None, bea.id, 10).await.unwrap()),
        ["bob"]
    );
    assert_eq!(
        names(store.accounts(Some("b"), 0, 10).await.unwrap()),
        ["bea", "bob"]
    );
    assert_eq!(
        names(store.accounts(Some("beatrix_%"), 0, 10).await.unwrap()),
        ["bea"]
    );
    assert_eq!(
        names(store.accounts(Some("b_"), 0, 10).await.unwrap()),
        Vec::<String>::new()
    );
    // Found: bob shares a room with ann; bea is in the directory.
    let found: Vec<String> = store
        .find_people(ann.id, "b", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.username)
        .collect();
    assert_eq!(found, ["bea", "bob"]);
    assert!(
        store
            .find_people(bea.id, "bob", 10)
            .await
            .unwrap()
            .is_empty()
    );

    store.disable_user(bea.id, 3).await.unwrap();
    let counts = store.counts().await.unwrap();
    assert_eq!(
        (
            counts.users,
            counts.disabled_users,
            counts.direct_rooms,
            counts.messages
        ),
        (3, 1, 1, 1)
    );
    store.enable_user(bea.id).await.unwrap();
    assert!(!store.is_disabled(bea.id).await.unwrap());

    assert_eq!(store.setting("who").await.unwrap(), None);
    store.set_setting("who", Some(b"one")).await.unwrap();
    store.set_setting("who", Some(b"two")).await.unwrap();
    assert_eq!(
        db.another_node().await.setting("who").await.unwrap(),
        Some(b"two".to_vec())
    );
    store.set_setting("who", None).await.unwrap();
    assert_eq!(store.setting("who").await.unwrap(), None);

    let key = "a".repeat(64);
    assert_eq!(store.set_avatar(bob.id, Some(&key)).await.unwrap(), None);
    let keys = vec![key.clone()];
    assert_eq!(store.files_in_use(&keys).await.unwrap(), keys);
    open_session(store, &[7u8; 32], &bob, 4).await;
    store.block(bob.id, ann.id, 5).await.unwrap();
    assert_eq!(
        store.delete_account(bob.id, false, 6).await.unwrap(),
        Some(Some(key.clone()))
    );
    assert_eq!(store.delete_account(bob.id, false, 7).await.unwrap(), None);
    assert_eq!(owner(store, &[7u8; 32]).await, None);
    assert_eq!(store.credentials("bob@example.com").await.unwrap(), None);
    assert_eq!(store.user_by_id(bob.id).await.unwrap(), None);
    assert!(store.files_in_use(&keys).await.unwrap().is_empty());
    assert!(!store.blocked_either_way(bob.id, ann.id).await.unwrap());
    let kept = all_messages(store, &rid).await;
    assert_eq!(kept[0].message, "from bob");
    assert_eq!(kept[0].sender_username, format!("deleted user #{}", bob.id));
    let account = store.accounts(None, bob.id - 1, 1).await.unwrap();
    assert!(account[0].deleted && account[0].disabled);
    assert_eq!(store.counts().await.unwrap().users, 2);
}

async fn a_moderated_message_is_deleted_with_a_system_message_in_one_go(db: Db) {
    let store = &*db.store;
    let [ann, bob, mod_] = [
        user(store, "ann").await,
        user(store, "bob").await,
        user(store, "mod").await,
    ];
    let rid = room(store, "room-ab", &ann, &bob, 1).await;
    send(store, &rid, &bob, "spam", 2).await;
    let (deleted, note) = store
        .moderate_message(&rid, 1, &mod_, "removed", 3)
        .await
        .unwrap()
        .unwrap();
    assert!(deleted.deleted && deleted.message.is_empty() && deleted.rev > 0);
    assert_eq!(
        (note.seq, note.kind, note.sender_id),
        (2, MessageKind::System, mod_.id)
    );
    assert_eq!(seqs(&all_messages(store, &rid).await), [1, 2]);
    assert_eq!(
        store
            .moderate_message(&rid, 1, &mod_, "again", 4)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .moderate_message(&rid, 2, &mod_, "a note", 4)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .moderate_message("nope", 1, &mod_, "x", 4)
            .await
            .unwrap(),
        None
    );
}

// ------------------------------------------------------- password resets

async fn password_reset_links_are_capped_live_and_used_once(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let link = |n: u8| [n; 32];
    for n in 1..=3 {
        assert!(
            store
                .create_password_reset(&link(n), alice.id, 1000, 2000, 3)
                .await
                .unwrap()
        );
    }
    assert!(
        !store
            .create_password_reset(&link(4), alice.id, 1100, 2100, 3)
            .await
            .unwrap(),
        "three live links at most"
    );
    assert_eq!(
        store.password_reset(&link(1), 1500).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.password_reset(&link(4), 1500).await.unwrap(), None);
    assert_eq!(
        store.password_reset(&link(1), 2000).await.unwrap(),
        None,
        "expired at its time"
    );
    // Once they expired, the account may have new ones; the old are gone.
    assert!(
        store
            .create_password_reset(&link(5), alice.id, 2500, 5000, 3)
            .await
            .unwrap()
    );
    assert!(
        store
            .create_password_reset(&link(6), alice.id, 2500, 5000, 3)
            .await
            .unwrap()
    );
    assert_eq!(store.password_reset(&link(1), 1500).await.unwrap(), None);

    open_session(store, &[1u8; 32], &alice, 5).await;
    open_session(store, &[2u8; 32], &alice, 6).await;
    open_session(store, &[3u8; 32], &bob, 7).await;
    let before = store.last_revocation_id().await.unwrap();
    assert_eq!(
        store
            .use_password_reset(&link(5), "$argon2id$reset", 3000)
            .await
            .unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.credentials("alice@example.com").await.unwrap(),
        Some((alice.clone(), "$argon2id$reset".to_owned()))
    );
    let other = db.another_node().await;
    for token in [[1u8; 32], [2u8; 32]] {
        assert_eq!(owner(store, &token).await, None);
        assert_eq!(owner(&*other, &token).await, None);
    }
    assert_eq!(owner(store, &[3u8; 32]).await, Some(bob.clone()));
    let revoked: Vec<UserId> = store
        .revocations_after(before, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.user_id)
        .collect();
    assert_eq!(
        revoked,
        [alice.id, alice.id],
        "every session logged as ended"
    );
    for used_or_ended in [link(5), link(6)] {
        assert_eq!(
            store
                .use_password_reset(&used_or_ended, "$argon2id$again", 3000)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        store
            .credentials("alice@example.com")
            .await
            .unwrap()
            .unwrap()
            .1,
        "$argon2id$reset"
    );
    assert_eq!(
        store
            .use_password_reset(&link(9), "$argon2id$x", 3000)
            .await
            .unwrap(),
        None,
        "unknown"
    );

    // A disabled account's links do nothing, and it gets no new one.
    assert!(
        store
            .create_password_reset(&link(7), bob.id, 3000, 9000, 3)
            .await
            .unwrap()
    );
    store.disable_user(bob.id, 3500).await.unwrap();
    assert_eq!(store.password_reset(&link(7), 4000).await.unwrap(), None);
    assert_eq!(
        store
            .use_password_reset(&link(7), "$argon2id$x", 4000)
            .await
            .unwrap(),
        None
    );
    assert!(
        !store
            .create_password_reset(&link(8), bob.id, 4000, 9000, 3)
            .await
            .unwrap()
    );
}

async fn a_reset_links_use_and_an_accounts_last_place_go_to_one_of_two_nodes(db: Db) {
    let store = &*db.store;
    let alice = user(store, "alice").await;
    let other = db.another_node().await;
    assert!(
        store
            .create_password_reset(&[1u8; 32], alice.id, 1000, 9000, 2)
            .await
            .unwrap()
    );
    // Two requests race for the account's last live place.
    let barrier = Arc::new(Barrier::new(2));
    let make = |node: Arc<dyn Store>, link: u8| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            node.create_password_reset(&[link; 32], alice.id, 1000, 9000, 2)
                .await
                .unwrap()
        })
    };
    let (a, b) = (make(db.store.clone(), 2), make(other.clone(), 3));
    let made = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    // Two uses of one link race: one sets the password.
    let barrier = Arc::new(Barrier::new(2));
    let use_it = |node: Arc<dyn Store>, hash: &'static str| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            node.use_password_reset(&[1u8; 32], hash, 2000)
                .await
                .unwrap()
        })
    };
    let (a, b) = (
        use_it(db.store.clone(), "$argon2id$a"),
        use_it(other, "$argon2id$b"),
    );
    let used = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(used.iter().filter(|u| u.is_some()).count(), 1, "{used:?}");
    let hash = store
        .credentials("alice@example.com")
        .await
        .unwrap()
        .unwrap()
        .1;
    let winner = if used[0].is_some() {
        "$argon2id$a"
    } else {
        "$argon2id$b"
    };
    assert_eq!(hash, winner);
}

// ------------------------------------------------------ bots and webhooks

fn new_bot<'a>(owner: &User, username: &'a str, email: &'a str) -> NewBot<'a> {
    NewBot {
        owner: owner.id,
        username,
        email,
        password_hash: "unknowable",
        now_ms: 1000,
    }
}

async fn bots_tokens_and_their_deletion(db: Db) {
    let store = &*db.store;
    let ann = user(store, "ann").await;
    let bob = user(store, "bob").await;
    let bot = store
        .create_bot(new_bot(&ann, "helper", "helper@bots.invalid"))
        .await
        .unwrap();
    assert_eq!(bot.owner_id, ann.id);
    assert!(matches!(
        store
            .create_bot(new_bot(&ann, "bob", "other@bots.invalid"))
            .await,
        Err(StoreError::Conflict)
    ));
    let listed = store.bots(ann.id).await.unwrap();
    assert_eq!(listed, vec![bot.clone()]);
    assert!(store.bots(bob.id).await.unwrap().is_empty());
    let token = BotToken {
        id: "t1".into(),
        bot_id: bot.user.id,
        grant: Grant {
            read: true,
            send: false,
            rooms: Some(vec!["r1".into(), "r2".into()]),
        },
        created_at: 2000,
    };
    store.create_bot_token(b"hash-1", &token).await.unwrap();
    assert_eq!(
        store.bot_tokens(bot.user.id).await.unwrap(),
        vec![token.clone()]
    );
    let (found, found_token) = store.bot_token(b"hash-1").await.unwrap().unwrap();
    assert_eq!((found.id, found_token), (bot.user.id, token.clone()));
    assert_eq!(store.bot_token(b"hash-2").await.unwrap(), None);
    assert!(!store.delete_bot_token(bot.user.id, "nope").await.unwrap());
    assert!(
        !store.delete_bot(bob.id, bot.user.id, 3000).await.unwrap(),
        "not bob's"
    );
    store
        .create_bot_token(
            b"hash-2",
            &BotToken {
                id: "t2".into(),
                ..token
            },
        )
        .await
        .unwrap();
    assert!(store.delete_bot_token(bot.user.id, "t2").await.unwrap());
    assert_eq!(store.bot_token(b"hash-2").await.unwrap(), None);
    let hook = OutgoingWebhook {
        id: "w1".into(),
        owner_id: bot.user.id,
        url: "https://example.com/".into(),
        secret: "whsec_x".into(),
        events: WebhookEvents {
            message: true,
            mention: true,
        },
        rooms: None,
        created_at: 2500,
    };
    store.create_outgoing_webhook(&hook).await.unwrap();
    assert!(store.delete_bot(ann.id, bot.user.id, 3000).await.unwrap());
    assert_eq!(
        store.bot_token(b"hash-1").await.unwrap(),
        None,
        "tokens go with the bot"
    );
    assert!(
        store
            .outgoing_webhooks(bot.user.id)
            .await
            .unwrap()
            .is_empty(),
        "and its webhooks"
    );
    assert!(store.bots(ann.id).await.unwrap().is_empty());
    assert!(!store.delete_bot(ann.id, bot.user.id, 3000).await.unwrap());
    // A disabled owner's bots' tokens stop too.
    let other = store
        .create_bot(new_bot(&ann, "other", "other@bots.invalid"))
        .await
        .unwrap();
    let token = BotToken {
        id: "t3".into(),
        bot_id: other.user.id,
        grant: Grant {
            read: true,
            send: true,
            rooms: None,
        },
        created_at: 4000,
    };
    store.create_bot_token(b"hash-3", &token).await.unwrap();
    assert!(store.bot_token(b"hash-3").await.unwrap().is_some());
    store.disable_user(ann.id, 5000).await.unwrap();
    assert_eq!(store.bot_token(b"hash-3").await.unwrap(), None);
}

async fn incoming_webhooks_have_their_own_bot(db: Db) {
    let store = &*db.store;
    let ann = user(store, "ann").await;
    let bob = user(store, "bob").await;
    let rid = room(store, "room-1", &ann, &bob, 1000).await;
    let hook = store
        .create_incoming_webhook(
            b"secret-1",
            "w1",
            &rid,
            new_bot(&ann, "ci", "ci@bots.invalid"),
        )
        .await
        .unwrap();
    assert_eq!(
        (hook.room_id.as_str(), hook.created_by),
        (rid.as_str(), ann.id)
    );
    assert_eq!(hook.bot.username, "ci");
    assert!(matches!(
        store
            .create_incoming_webhook(
                b"secret-2",
                "w2",
                &rid,
                new_bot(&ann, "ci", "ci2@bots.invalid")
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert!(
        store.incoming_webhooks(&rid).await.unwrap().len() == 1,
        "the failed one left nothing"
    );
    assert_eq!(store.count_incoming_webhooks(ann.id).await.unwrap(), 1);
    assert!(
        store.bots(ann.id).await.unwrap().is_empty(),
        "not listed as a bot"
    );
    assert_eq!(
        store.incoming_webhook(b"secret-1").await.unwrap(),
        Some(hook.clone())
    );
    assert_eq!(store.incoming_webhook(b"secret-x").await.unwrap(), None);
    // Its bot sends like anyone (it is no member of the room).
    let sent = send(store, &rid, &hook.bot, "build passed", 2000).await;
    assert_eq!(sent.sender_username, "ci");
    assert!(
        !store
            .delete_incoming_webhook("other", "w1", 3000)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_incoming_webhook(&rid, "w1", 3000)
            .await
            .unwrap()
    );
    assert_eq!(store.incoming_webhook(b"secret-1").await.unwrap(), None);
    assert!(store.incoming_webhooks(&rid).await.unwrap().is_empty());
    assert_eq!(
        all_messages(store, &rid).await[0].sender_username,
        "ci",
        "its messages stay"
    );
    // A disabled creator's webhook answers nothing.
    let again = store
        .create_incoming_webhook(
            b"secret-3",
            "w3",
            &rid,
            new_bot(&bob, "cd", "cd@bots.invalid"),
        )
        .await
        .unwrap();
    assert!(store.incoming_webhook(b"secret-3").await.unwrap().is_some());
    store.disable_user(bob.id, 4000).await.unwrap();
    assert_eq!(store.incoming_webhook(b"secret-3").await.unwrap(), None);
    assert_eq!(again.created_by, bob.id);
}

async fn outgoing_webhooks_target_their_owners_rooms(db: Db) {
    let store = &*db.store;
    let ann = user(store, "ann").await;
    let bob = user(store, "bob").await;
    let cyd = user(store, "cyd").await;
    let rid = room(store, "room-1", &ann, &bob, 1000).await;
    assert!(!store.any_outgoing_webhook().await.unwrap());
    let hook = |id: &str, owner: &User| OutgoingWebhook {
        id: id.to_owned(),
        owner_id: owner.id,
        url: format!("https://example.com/{id}"),
        secret: format!("whsec_{id}"),
        events: WebhookEvents {
            message: true,
            mention: false,
        },
        rooms: Some(vec![rid.clone()]),
        created_at: 2000,
    };
    store
        .create_outgoing_webhook(&hook("h1", &bob))
        .await
        .unwrap();
    store
        .create_outgoing_webhook(&hook("h2", &cyd))
        .await
        .unwrap();
    assert!(store.any_outgoing_webhook().await.unwrap());
    assert_eq!(
        store.outgoing_webhooks(bob.id).await.unwrap(),
        vec![hook("h1", &bob)]
    );
    let targets = store.webhook_targets(&rid).await.unwrap();
    assert_eq!(
        targets,
        vec![(hook("h1", &bob), "bob".to_owned())],
        "cyd is no member"
    );
    assert!(
        !store.delete_outgoing_webhook(ann.id, "h1").await.unwrap(),
        "not ann's"
    );
    store.disable_user(bob.id, 3000).await.unwrap();
    assert!(store.webhook_targets(&rid).await.unwrap().is_empty());
    assert!(store.delete_outgoing_webhook(bob.id, "h1").await.unwrap());
    assert!(store.outgoing_webhooks(bob.id).await.unwrap().is_empty());
}

/// The fuzz targets run on SQLite in memory (`sqlite::memory:`), which the
/// message writer thread and the search index's thread (their own
/// connections; the index another in-memory database) must share with
/// sqlx's: the batch and search cases pass there too.
#[tokio::test]
async fn an_in_memory_sqlite_store_stores_batches_and_searches() {
    let in_memory = || async {
        let store = SqliteStore::open("sqlite::memory:", SqliteSynchronous::Off)
            .await
            .expect("in-memory store");
        Db {
            // Not reopened by these cases: an in-memory database has no path.
            backend: Backend::Sqlite(PathBuf::new()),
            store: Arc::new(store),
        }
    };
    tokio::time::timeout(CASE_TIMEOUT, a_batch_is_one_transaction(in_memory().await))
        .await
        .expect("in time");
    tokio::time::timeout(
        CASE_TIMEOUT,
        search_finds_word_prefixes_in_the_users_rooms_only(in_memory().await),
    )
    .await
    .expect("in time");
}

/// Under steady traffic the write-ahead log is rewound and reused, not grown:
/// with only the background checkpointer, new frames always arrived before it
/// finished, nothing could rewind the log, and it grew by every commit (22
/// MB/s at 500 msgs/s). 4,000 single-message commits write ~44,000 frames
/// (~170 MiB); the log must stay within a few checkpoint rounds of frames.
#[tokio::test]
async fn the_sqlite_write_ahead_log_stays_bounded_under_steady_writes() {
    let file = SqliteFile::new(SqliteSynchronous::Normal).await;
    let (store, alice, rid) = (&file.store, &file.alice, &file.rid);
    let wal = file.dir.path().join("natter.db-wal");
    let mut largest = 0;
    for n in 0..4000 {
        let batch = [new_message(rid, alice, "steady", None, 200 + n)];
        store.store_messages(&batch).await.expect("store");
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    assert!(
        largest < 64 * 1024 * 1024,
        "the WAL reached {largest} bytes"
    );
    store.close().await;
}

/// SQLite's full-text index lives in a file of its own beside the database
/// (`natter.db-search`), filled behind the commits up to a mark. The mark
/// must mean this database's rows: a lost index is rebuilt, and so is one
/// that went further than a backup restored over its database (going on from
/// its mark, it would skip the messages that take the restored ids again,
/// and keep the words of edits the backup never saw).
#[tokio::test]
async fn the_sqlite_search_index_is_rebuilt_when_lost_or_ahead_of_a_restored_backup() {
    let SqliteFile {
        dir,
        path,
        store,
        alice,
        bob,
        rid,
    } = SqliteFile::new(SqliteSynchronous::Full).await;
    let open = || SqliteStore::open_file(&path, SqliteSynchronous::Full);
    let backup = dir.path().join("backup.db");
    send(&store, &rid, &alice, "apple one", 1001).await;
    send(&store, &rid, &bob, "banana two", 1002).await;
    assert_eq!(bodies_found(&store, alice.id, "apple").await, ["apple one"]);
    store.backup_into(&backup).await.expect("backup");
    send(&store, &rid, &alice, "cherry three", 1003).await;
    store
        .change_message(&rid, 1, alice.id, MessageChange::Edit("avocado"), 2000)
        .await
        .unwrap();
    assert_eq!(bodies_found(&store, alice.id, "avocado").await, ["avocado"]);
    store.close().await;

    // Lost: built again from the messages as they are.
    remove_search_index(dir.path());
    let store = open().await.expect("reopen without the index");
    assert_eq!(bodies_found(&store, alice.id, "avocado").await, ["avocado"]);
    assert_eq!(
        bodies_found(&store, alice.id, "cherry").await,
        ["cherry three"]
    );
    assert!(bodies_found(&store, alice.id, "apple").await.is_empty());
    store.close().await;

    // Damaged: replaced by a new one, not a server that cannot start.
    std::fs::write(dir.path().join("natter.db-search"), vec![0x5a; 8192]).unwrap();
    let store = open().await.expect("reopen over a damaged index");
    assert_eq!(bodies_found(&store, alice.id, "avocado").await, ["avocado"]);
    store.close().await;

    // The backup restored under an index that has seen more.
    for name in ["natter.db", "natter.db-wal", "natter.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(name));
    }
    std::fs::copy(&backup, &path).expect("restore the backup");
    let store = open().await.expect("reopen the backup");
    assert_eq!(bodies_found(&store, alice.id, "apple").await, ["apple one"]);
    assert!(bodies_found(&store, alice.id, "avocado").await.is_empty());
    assert!(bodies_found(&store, alice.id, "cherry").await.is_empty());
    // The third message again, under the id "cherry" had.
    send(&store, &rid, &bob, "date four", 1004).await;
    assert_eq!(bodies_found(&store, alice.id, "date").await, ["date four"]);
    store.close().await;
}

/// Edits and deletions reach the index through a log in the database, cut
/// back behind the index (by the store's checkpointer, every second) down to
/// the row the index's mark names.
#[tokio::test]
async fn the_sqlite_search_change_log_is_cut_back_behind_the_index() {
    // The directory is bound: dropping it would delete the files under the store.
    let SqliteFile {
        dir: _dir,
        path,
        store,
        alice,
        bob,
        rid,
    } = SqliteFile::new(SqliteSynchronous::Full).await;
    send(&store, &rid, &alice, "draft", 1001).await;
    for n in 0..50 {
        let body = format!("draft number{n}");
        store
            .change_message(&rid, 1, alice.id, MessageChange::Edit(&body), 2000 + n)
            .await
            .unwrap();
    }
    let found = search(&store, bob.id, &["number49"], 10).await;
    assert_eq!(found.len(), 1);
    assert!(search(&store, bob.id, &["number48"], 10).await.is_empty());
    let log = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (rows, last): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM search_changes")
                .fetch_one(&log)
                .await
                .unwrap();
        if (rows, last) == (1, 50) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the log still has {rows} rows, up to {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log.close().await;
    store.close().await;
}

/// The bodies of what `user` finds with `word`, newest first.
async fn bodies_found(store: &dyn Store, user: UserId, word: &str) -> Vec<String> {
    search(store, user, &[word], 10)
        .await
        .into_iter()
        .map(|m| m.message)
        .collect()
}

/// The index's thread stopped in the middle of a rebuild (the store closed,
/// as on SIGTERM): the close does not wait for the whole rebuild, and the
/// next start goes on from the mark the last finished step left.
#[tokio::test]
async fn a_search_index_stopped_in_the_middle_of_a_rebuild_goes_on_from_its_mark() {
    const BATCHES: usize = 100;
    let SqliteFile {
        dir,
        path,
        store,
        alice,
        bob,
        rid,
    } = SqliteFile::new(SqliteSynchronous::Normal).await;
    let open = || SqliteStore::open_file(&path, SqliteSynchronous::Normal);
    for batch in 0..BATCHES {
        let sends: Vec<NewMessage> = (0..1000)
            .map(|i| new_message(&rid, &alice, &format!("batch{batch} line{i}"), None, 1000))
            .collect();
        store.store_messages(&sends).await.expect("store a batch");
    }
    store.close().await;
    remove_search_index(dir.path());

    // A rebuild of 100,000 messages is 25 steps; the close lets it finish one.
    open()
        .await
        .expect("reopen without the index")
        .close()
        .await;
    let index = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.path().join("natter.db-search").display()
    ))
    .await
    .unwrap();
    let mark: Option<i64> = sqlx::query_scalar("SELECT message_id FROM indexed")
        .fetch_optional(&index)
        .await
        .unwrap();
    index.close().await;
    assert!(
        mark.unwrap_or(0) < (BATCHES * 1000) as i64,
        "the close waited for the whole rebuild: {mark:?}"
    );

    let store = open().await.expect("reopen");
    assert_eq!(bodies_found(&store, bob.id, "batch0").await.len(), 10);
    assert_eq!(
        bodies_found(&store, bob.id, "line999")
            .await
            .first()
            .map(String::as_str),
        Some(format!("batch{} line999", BATCHES - 1).as_str())
    );
    store.close().await;
}

/// A SQLite store on a file of its own (`natter.db` in a temporary
/// directory), with alice and bob and their room `room-ab`.
struct SqliteFile {
    dir: tempfile::TempDir,
    path: PathBuf,
    store: SqliteStore,
    alice: User,
    bob: User,
    rid: String,
}

impl SqliteFile {
    async fn new(synchronous: SqliteSynchronous) -> SqliteFile {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("natter.db");
        let store = SqliteStore::open_file(&path, synchronous)
            .await
            .expect("open the SQLite store");
        let alice = user(&store, "alice").await;
        let bob = user(&store, "bob").await;
        let rid = room(&store, "room-ab", &alice, &bob, 100).await;
        SqliteFile {
            dir,
            path,
            store,
            alice,
            bob,
            rid,
        }
    }
}

/// Removes the search index's files from `dir` (its store closed).
fn remove_search_index(dir: &Path) {
    for name in [
        "natter.db-search",
        "natter.db-search-wal",
        "natter.db-search-shm",
    ] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}
