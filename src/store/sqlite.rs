//! The embedded default: SQLite in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly
//! one connection and each write transaction starts with `BEGIN IMMEDIATE`:
//! writers queue in our pool instead of failing with SQLITE_BUSY, and `seq`
//! allocation is serialised per database. Reads use their own pool and, thanks
//! to WAL, never wait for the writer.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::batch::{self, Plan, json};
use super::{quote_of_json, reactions_of_json};
use crate::domain::model::{
    Chat, Member, Message, MessageKind, Page, RoomAccess, RoomKind, RoomState, User, UserId,
    direct_title, timestamp_of_millis,
};
use crate::domain::store::{
    GroupChange, MessageChange, NewMessage, Outcome, ReadMarker, Revocation, SessionRecord, Store,
    StoreError, StoreResult, StoredSession,
};

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// One connection that copies the WAL into the database file (see `open`).
    checkpointer: SqlitePool,
    checkpoints: tokio::task::JoinHandle<()>,
}

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Columns of a message row `m` joined with its sender `u`, in the order
/// `message_of_row` reads. The quoted message and the reactions come as JSON
/// from subqueries, so that every read of messages is one statement.
/// The quoted message comes whole; [`quote_of_json`] cuts it.
const MESSAGE_COLUMNS: &str =
    "m.id, m.room_id, m.seq, m.sender_id, u.username, m.body, m.created_at, m.client_id,
     m.kind, m.edited_at, m.deleted_at IS NOT NULL, m.rev,
     (SELECT json_array(q.seq, qu.username, q.body,
                        q.deleted_at IS NOT NULL)
        FROM messages q JOIN users qu ON qu.id = q.sender_id
       WHERE q.room_id = m.room_id AND q.seq = m.reply_to_seq),
     (SELECT json_group_array(json_array(x.emoji, x.user_id)) FROM
        (SELECT emoji, user_id FROM reactions WHERE message_id = m.id
          ORDER BY created_at, user_id) x)";

fn message_of_row(row: &SqliteRow) -> Message {
    Message {
        id: row.get(0),
        rid: row.get(1),
        seq: row.get(2),
        sender_id: row.get(3),
        sender_username: row.get(4),
        message: row.get(5),
        timestamp: timestamp_of_millis(row.get(6)),
        client_id: row.get(7),
        kind: MessageKind::parse(row.get(8)),
        edited_at: row.get::<Option<i64>, _>(9).map(timestamp_of_millis),
        deleted: row.get(10),
        rev: row.get(11),
        reply_to: quote_of_json(row.get(12)),
        reactions: reactions_of_json(row.get(13)),
    }
}

/// Columns of a member row `rm` joined with its user `u`, for `member_of_row`.
const MEMBER_COLUMNS: &str = "u.id, u.username, rm.last_read_seq, u.last_seen_at";

fn member_of_row(row: &SqliteRow) -> Member {
    Member {
        id: row.get(0),
        username: row.get(1),
        read_seq: row.get(2),
        online: false,
        last_seen: row.get::<Option<i64>, _>(3).map(timestamp_of_millis),
    }
}

fn user_of_row(row: &SqliteRow) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        email: row.get(2),
    }
}

/// SQLite virtual-machine steps between two looks at the clock: a look costs
/// tens of nanoseconds, and this many steps take tens of microseconds.
const PROGRESS_STEPS: i32 = 1000;

/// A reader connection running one query that must stop at a deadline, or as
/// soon as its future is dropped (the client went away).
///
/// The query runs on sqlx's worker thread, which goes on whether or not
/// anyone awaits it; only SQLite itself can stop it. A progress handler,
/// called every [`PROGRESS_STEPS`] steps, interrupts it once the deadline has
/// passed or the `cancelled` flag is up (`SQLITE_INTERRUPT`: the statement
/// ends, the connection is sound).
struct Interruptible {
    conn: PoolConnection<Sqlite>,
    /// Set on drop before the query ended: the handler stops it at its next call.
    cancelled: Arc<AtomicBool>,
    /// Set by the handler when it stopped the query: a failure then means "timed out".
    stopped: Arc<AtomicBool>,
    finished: bool,
}

impl Interruptible {
    async fn new(mut conn: PoolConnection<Sqlite>, deadline: Instant) -> StoreResult<Self> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (cancel, stop) = (cancelled.clone(), stopped.clone());
        conn.lock_handle()
            .await?
            .set_progress_handler(PROGRESS_STEPS, move || {
                let go_on = !cancel.load(Ordering::Relaxed) && Instant::now() < deadline;
                if !go_on {
                    stop.store(true, Ordering::Relaxed);
                }
                go_on
            });
        Ok(Interruptible {
            conn,
            cancelled,
            stopped,
            finished: false,
        })
    }

    /// The query's outcome, once it ended; the handler is removed so that the
    /// connection goes back to the pool as it came.
    async fn finish<T>(mut self, outcome: sqlx::Result<T>) -> StoreResult<T> {
        self.conn.lock_handle().await?.remove_progress_handler();
        self.finished = true;
        match outcome {
            Err(_) if self.stopped.load(Ordering::Relaxed) => Err(StoreError::TimedOut),
            other => Ok(other?),
        }
    }
}

impl Drop for Interruptible {
    /// Dropped before [`Interruptible::finish`]: the caller went away while
    /// the query ran (or waited for the worker). Stop it, and close the
    /// connection rather than return it with the handler armed: closing
    /// waits for the worker to finish the interrupted statement, so shutdown
    /// never finds the pool busy for longer than that.
    fn drop(&mut self) {
        if !self.finished {
            self.cancelled.store(true, Ordering::Relaxed);
            self.conn.close_on_drop();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and runs pending migrations.
    ///
    /// `synchronous = FULL` (the default) makes every commit reach the disk
    /// before the ack: acknowledged messages survive a power cut, not only a crash.
    pub async fn open(url: &str, synchronous: SqliteSynchronous) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // By default the commit that fills the WAL to 1,000 pages also copies
        // it into the database and syncs it: a stall of tens of milliseconds
        // for every send queued behind that commit (the p90 of send latency at
        // 500 msgs/s). A background connection checkpoints instead, beside the
        // writer (a PASSIVE checkpoint never blocks it).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let checkpoints = tokio::spawn(checkpoint_loop(checkpointer.clone()));
        Ok(SqliteStore {
            reader,
            writer,
            checkpointer,
            checkpoints,
        })
    }

    /// Opens `path` as a SQLite file.
    pub async fn open_file(path: &Path, synchronous: SqliteSynchronous) -> anyhow::Result<Self> {
        Self::open(&format!("sqlite://{}", path.display()), synchronous).await
    }

    /// Writes a consistent copy of the database to `path`, which must not exist
    /// or be empty, with `VACUUM INTO`: it reads one snapshot in one read
    /// transaction, so writers (a running server) carry on meanwhile under WAL.
    pub async fn backup_into(&self, path: &Path) -> anyhow::Result<()> {
        let target = path
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", path.display()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.reader)
            .await?;
        Ok(())
    }

    /// Runs `update` on the user and deletes all their sessions, in one transaction.
    async fn update_user_ending_sessions(
        &self,
        update: sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments>,
        user_id: UserId,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        update.execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's chats (only `only`, if given), most recently active first.
    /// Four set-based queries, whatever the number of rooms.
    async fn chats_of(&self, user_id: UserId, only: Option<&str>) -> StoreResult<Vec<Chat>> {
        // id, kind, title, owner, the user's read marker
        type RoomRow = (String, String, Option<String>, Option<i64>, i64);
        let rooms: Vec<RoomRow> = sqlx::query_as(
            "SELECT r.id, r.kind, r.title, r.owner_id, mine.last_read_seq FROM room_members mine
             JOIN rooms r ON r.id = mine.room_id
             WHERE mine.user_id = ? AND (? IS NULL OR r.id = ?)
             ORDER BY r.last_activity DESC, r.id",
        )
        .bind(user_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;
        let members = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS}, rm.room_id FROM room_members mine
             JOIN room_members rm ON rm.room_id = mine.room_id
             JOIN users u ON u.id = rm.user_id
             WHERE mine.user_id = ? AND (? IS NULL OR mine.room_id = ?)
             ORDER BY rm.joined_at, u.id"
        )))
        .bind(user_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;
        let last_messages = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM room_members mine
             JOIN rooms r ON r.id = mine.room_id
             JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
             JOIN users u ON u.id = m.sender_id
             WHERE mine.user_id = ? AND (? IS NULL OR r.id = ?)"
        )))
        .bind(user_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;
        let unread: Vec<(String, i64)> = sqlx::query_as(
            "SELECT mine.room_id, COUNT(*) FROM room_members mine
             JOIN messages m ON m.room_id = mine.room_id
               AND m.seq > mine.last_read_seq AND m.sender_id != mine.user_id
             WHERE mine.user_id = ? AND (? IS NULL OR mine.room_id = ?)
             GROUP BY mine.room_id",
        )
        .bind(user_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;

        let members: Vec<(String, Member)> = members
            .iter()
            .map(|row| (row.get(4), member_of_row(row)))
            .collect();
        let last_messages: Vec<Message> = last_messages.iter().map(message_of_row).collect();
        Ok(rooms
            .into_iter()
            .map(|(rid, kind, title, owner_id, last_read_seq)| {
                let room_members: Vec<Member> = members
                    .iter()
                    .filter(|(r, _)| *r == rid)
                    .map(|(_, m)| m.clone())
                    .collect();
                Chat {
                    title: title.unwrap_or_else(|| direct_title(&room_members, user_id)),
                    last_message: last_messages.iter().find(|m| m.rid == rid).cloned(),
                    unread: unread
                        .iter()
                        .find(|(r, _)| *r == rid)
                        .map_or(0, |(_, n)| *n),
                    kind: RoomKind::parse(&kind),
                    owner_id,
                    members: room_members,
                    last_read_seq,
                    room_id: rid,
                }
            })
            .collect())
    }

    async fn write_tx(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }
}

/// A store dropped without [`Store::close`] (a test's, a fuzz target's) must
/// not leave its checkpointer running: the task holds a pool, and with it
/// the database (all of it, for an in-memory one).
impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpoints.abort();
    }
}

async fn checkpoint_loop(pool: SqlitePool) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Hands out the room's next revision (inside the write transaction).
async fn next_rev(tx: &mut Transaction<'static, Sqlite>, rid: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("UPDATE rooms SET last_rev = last_rev + 1 WHERE id = ? RETURNING last_rev")
        .bind(rid)
        .fetch_one(&mut **tx)
        .await
}

/// One message of a room (inside a write transaction: to answer with what it wrote).
async fn message_in<'e>(
    db: impl sqlx::Executor<'e, Database = Sqlite>,
    rid: &str,
    seq: i64,
) -> sqlx::Result<Option<Message>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
         WHERE m.room_id = ? AND m.seq = ?"
    )))
    .bind(rid)
    .bind(seq)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(message_of_row))
}

fn conflict_or_db(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => e.into(),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        // The reader pool: a long write batch must not make the node look down.
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_user(
        &self,
        username: &str,
        email: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<User> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, email, password_hash, created_at)
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(username)
        .bind(email)
        .bind(password_hash)
        .bind(now_ms)
        .fetch_one(&self.writer)
        .await
        .map_err(conflict_or_db)?;
        Ok(User {
            id,
            username: username.to_owned(),
            email: email.to_owned(),
        })
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, username, email FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(user_of_row))
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        let row =
            sqlx::query("SELECT id, username, email, password_hash FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.map(|r| (user_of_row(&r), r.get(3))))
    }

    async fn create_session(
        &self,
        token_hash: &[u8],
        id: &str,
        user_id: UserId,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, public_id, user_id, created_at, last_used_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(id)
        .bind(user_id)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<StoredSession>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.email, s.public_id, s.created_at, s.last_used_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(|r| StoredSession {
            user: user_of_row(&r),
            id: r.get(3),
            created_at: r.get(4),
            last_used_at: r.get(5),
        }))
    }

    async fn touch_session(&self, token_hash: &[u8], now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE sessions SET last_used_at = ? WHERE token_hash = ? AND last_used_at < ?",
        )
        .bind(now_ms)
        .bind(token_hash)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn sessions(&self, user_id: UserId) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT public_id, created_at, last_used_at FROM sessions WHERE user_id = ?
             ORDER BY last_used_at DESC, created_at DESC, public_id",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, created_at, last_used_at)| SessionRecord {
                id,
                created_at,
                last_used_at,
            })
            .collect())
    }

    async fn end_session(&self, user_id: UserId, id: &str) -> StoreResult<Option<Vec<u8>>> {
        // The trigger of migration 0005 logs the revocation.
        let ended = sqlx::query_scalar(
            "DELETE FROM sessions WHERE public_id = ? AND user_id = ? RETURNING token_hash",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.writer)
        .await?;
        Ok(ended)
    }

    async fn end_expired_sessions(
        &self,
        used_before: i64,
        created_before: i64,
    ) -> StoreResult<u64> {
        // Several times a second on every node: the usual answer, none, must
        // not take the one writer.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE last_used_at < ?)
                 OR EXISTS (SELECT 1 FROM sessions WHERE created_at < ?)",
        )
        .bind(used_before)
        .bind(created_before)
        .fetch_one(&self.reader)
        .await?;
        if !any {
            return Ok(0);
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE last_used_at < ? OR created_at < ?")
            .bind(used_before)
            .bind(created_before)
            .execute(&self.writer)
            .await?;
        Ok(ended.rows_affected())
    }

    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Revocation>> {
        // Ids are in commit order: there is one writer.
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, token_hash, user_id FROM session_revocations WHERE id > ?
             ORDER BY id LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, token_hash, user_id)| Revocation {
                id,
                token_hash,
                user_id,
            })
            .collect())
    }

    async fn last_revocation_id(&self) -> StoreResult<i64> {
        let last = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM session_revocations")
            .fetch_one(&self.reader)
            .await?;
        Ok(last)
    }

    async fn prune_revocations(&self, before_ms: i64) -> StoreResult<u64> {
        let pruned = sqlx::query("DELETE FROM session_revocations WHERE at < ?")
            .bind(before_ms)
            .execute(&self.writer)
            .await?;
        Ok(pruned.rows_affected())
    }

    async fn open_direct_room(
        &self,
        new_rid: &str,
        a: UserId,
        b: UserId,
        now_ms: i64,
    ) -> StoreResult<(String, Outcome)> {
        let key = format!("{}:{}", a.min(b), a.max(b));
        let mut tx = self.write_tx().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = ?")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(rid) = existing {
            return Ok((rid, Outcome::Existing));
        }
        sqlx::query(
            "INSERT INTO rooms (id, kind, direct_key, last_activity, created_at)
             VALUES (?, 'direct', ?, ?, ?)",
        )
        .bind(new_rid)
        .bind(&key)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        for member in [a, b] {
            sqlx::query("INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, ?)")
                .bind(new_rid)
                .bind(member)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((new_rid.to_owned(), Outcome::Created))
    }

    async fn room_access(&self, rid: &str, user_id: UserId) -> StoreResult<RoomAccess> {
        let row: Option<(String, Option<i64>, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.kind, r.owner_id, r.last_seq, r.last_rev, m.user_id FROM rooms r
             LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = ?
             WHERE r.id = ?",
        )
        .bind(user_id)
        .bind(rid)
        .fetch_optional(&self.reader)
        .await?;
        Ok(match row {
            None => RoomAccess::NoSuchRoom,
            Some((.., None)) => RoomAccess::NotMember,
            Some((kind, owner_id, last_seq, last_rev, Some(_))) => RoomAccess::Member(RoomState {
                kind: RoomKind::parse(&kind),
                owner_id,
                last_seq,
                last_rev,
            }),
        })
    }

    async fn room_ids(&self, user_id: UserId) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = ?")
                .bind(user_id)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn chats(&self, user_id: UserId) -> StoreResult<Vec<Chat>> {
        self.chats_of(user_id, None).await
    }

    async fn chat(&self, rid: &str, user_id: UserId) -> StoreResult<Option<Chat>> {
        Ok(self.chats_of(user_id, Some(rid)).await?.pop())
    }

    async fn members(&self, rid: &str) -> StoreResult<Vec<Member>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM room_members rm JOIN users u ON u.id = rm.user_id
             WHERE rm.room_id = ? ORDER BY rm.joined_at, u.id"
        )))
        .bind(rid)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(member_of_row).collect())
    }

    async fn store_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>> {
        // Each statement is a round trip to sqlx's SQLite worker thread, so the
        // batch goes in as JSON arrays: five statements for 1 or 256 messages.
        let mut tx = self.write_tx().await?;
        let keys = batch::resend_keys(batch);
        let stored = if keys.is_empty() {
            Vec::new()
        } else {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {MESSAGE_COLUMNS} FROM json_each(?) k
                 JOIN messages m ON m.room_id = k.value ->> 0 AND m.sender_id = k.value ->> 1
                                AND m.client_id = k.value ->> 2
                 JOIN users u ON u.id = m.sender_id"
            )))
            .bind(json(&keys))
            .fetch_all(&mut *tx)
            .await?;
            rows.iter().map(message_of_row).collect()
        };
        let plan = Plan::new(batch, &stored);
        let (mut ids, mut seqs) = (Vec::new(), Vec::new());
        if !plan.fresh.is_empty() {
            // Bump every room's counter once, by its number of new messages.
            let bumps: Vec<(&str, i64, i64)> = plan
                .rooms
                .iter()
                .map(|r| (r.rid, r.count, r.latest_ms))
                .collect();
            let bumped: HashMap<String, i64> = sqlx::query_as(
                "UPDATE rooms SET last_seq = last_seq + (b.value ->> 1),
                                  last_activity = MAX(last_activity, b.value ->> 2)
                 FROM json_each(?) b WHERE rooms.id = b.value ->> 0
                 RETURNING rooms.id, rooms.last_seq",
            )
            .bind(json(&bumps))
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            seqs = plan.seqs(&bumped)?;
            let rows: Vec<(&str, i64, i64, &str, Option<&str>, i64, Option<i64>)> = plan
                .fresh
                .iter()
                .zip(&seqs)
                .map(|(m, &seq)| {
                    let client_id = m.client_id.as_deref();
                    let reply_to = m.reply_to.as_ref().map(|q| q.seq);
                    let rid = m.rid.as_str();
                    (
                        rid,
                        seq,
                        m.sender.id,
                        m.body.as_str(),
                        client_id,
                        m.now_ms,
                        reply_to,
                    )
                })
                .collect();
            let inserted: Vec<(String, i64, i64)> = sqlx::query_as(
                "INSERT INTO messages (room_id, seq, sender_id, body, client_id, created_at,
                                       reply_to_seq)
                 SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3,
                        r.value ->> 4, r.value ->> 5, r.value ->> 6
                 FROM json_each(?) r
                 RETURNING room_id, seq, id",
            )
            .bind(json(&rows))
            .fetch_all(&mut *tx)
            .await?;
            ids = batch::ids_in_order(&plan, &seqs, inserted)?;
        }
        tx.commit().await?;
        Ok(plan.finish(&ids, &seqs))
    }

    async fn messages(&self, rid: &str, page: Page) -> StoreResult<Vec<Message>> {
        let before = page.before.unwrap_or(i64::MAX);
        let rows = match page.after {
            Some(after) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
                     WHERE m.room_id = ? AND m.seq > ? AND m.seq < ? ORDER BY m.seq ASC LIMIT ?"
                )))
                .bind(rid)
                .bind(after)
                .bind(before)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?
            }
            None => {
                let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
                     WHERE m.room_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
                )))
                .bind(rid)
                .bind(before)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?;
                rows.reverse();
                rows
            }
        };
        Ok(rows.iter().map(message_of_row).collect())
    }

    async fn mark_read(&self, rid: &str, user_id: UserId, seq: i64) -> StoreResult<ReadMarker> {
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query(
            "UPDATE room_members SET last_read_seq = ?
             WHERE room_id = ? AND user_id = ? AND last_read_seq < ?",
        )
        .bind(seq)
        .bind(rid)
        .bind(user_id)
        .bind(seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (read_seq, unread): (i64, i64) = sqlx::query_as(
            "SELECT mine.last_read_seq,
                    (SELECT COUNT(*) FROM messages m WHERE m.room_id = mine.room_id
                       AND m.seq > mine.last_read_seq AND m.sender_id != mine.user_id)
             FROM room_members mine WHERE mine.room_id = ? AND mine.user_id = ?",
        )
        .bind(rid)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?
        .unwrap_or_default();
        tx.commit().await?;
        Ok(ReadMarker {
            read_seq,
            unread,
            moved: moved > 0,
        })
    }

    async fn change_group(
        &self,
        rid: &str,
        actor: &User,
        change: GroupChange<'_>,
        note: &str,
        now_ms: i64,
    ) -> StoreResult<Message> {
        let mut tx = self.write_tx().await?;
        match change {
            GroupChange::Create { title, members } => {
                sqlx::query(
                    "INSERT INTO rooms (id, kind, title, owner_id, last_activity, created_at)
                     VALUES (?, 'group', ?, ?, ?, ?)",
                )
                .bind(rid)
                .bind(title)
                .bind(actor.id)
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO room_members (room_id, user_id, joined_at)
                     SELECT ?, value, ? FROM json_each(?)",
                )
                .bind(rid)
                .bind(now_ms)
                .bind(json(&[&[actor.id], members].concat()))
                .execute(&mut *tx)
                .await
                .map_err(conflict_or_db)?;
            }
            GroupChange::Rename { title } => {
                sqlx::query("UPDATE rooms SET title = ? WHERE id = ?")
                    .bind(title)
                    .bind(rid)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Add { user } => {
                sqlx::query(
                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES (?, ?, ?)",
                )
                .bind(rid)
                .bind(user)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(conflict_or_db)?;
            }
            GroupChange::Remove { user } => {
                let gone =
                    sqlx::query("DELETE FROM room_members WHERE room_id = ? AND user_id = ?")
                        .bind(rid)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if gone == 0 {
                    return Err(StoreError::Conflict);
                }
                sqlx::query(
                    "UPDATE rooms SET owner_id = (SELECT user_id FROM room_members
                                                  WHERE room_id = rooms.id
                                                  ORDER BY joined_at, user_id LIMIT 1)
                     WHERE id = ? AND owner_id = ?",
                )
                .bind(rid)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
        }
        let seq: i64 = sqlx::query_scalar(
            "UPDATE rooms SET last_seq = last_seq + 1, last_activity = MAX(last_activity, ?)
             WHERE id = ? RETURNING last_seq",
        )
        .bind(now_ms)
        .bind(rid)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (room_id, seq, sender_id, body, created_at, kind)
             VALUES (?, ?, ?, ?, ?, 'system') RETURNING id",
        )
        .bind(rid)
        .bind(seq)
        .bind(actor.id)
        .bind(note)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Message {
            kind: MessageKind::System,
            ..NewMessage {
                rid: rid.to_owned(),
                sender: actor.clone(),
                body: note.to_owned(),
                client_id: None,
                reply_to: None,
                now_ms,
            }
            .stored(id, seq)
        })
    }

    async fn message(&self, rid: &str, seq: i64) -> StoreResult<Option<Message>> {
        Ok(message_in(&self.reader, rid, seq).await?)
    }

    async fn change_message(
        &self,
        rid: &str,
        seq: i64,
        sender: UserId,
        change: MessageChange<'_>,
        now_ms: i64,
    ) -> StoreResult<Option<Message>> {
        let mut tx = self.write_tx().await?;
        let rev = next_rev(&mut tx, rid).await?;
        let update = match change {
            MessageChange::Edit(body) => sqlx::query(
                "UPDATE messages SET body = ?, edited_at = ?, rev = ?
                 WHERE room_id = ? AND seq = ? AND sender_id = ? AND kind = 'text'
                   AND deleted_at IS NULL",
            )
            .bind(body),
            MessageChange::Delete => sqlx::query(
                "UPDATE messages SET body = '', deleted_at = ?, rev = ?
                 WHERE room_id = ? AND seq = ? AND sender_id = ? AND kind = 'text'
                   AND deleted_at IS NULL",
            ),
        };
        let changed = update
            .bind(now_ms)
            .bind(rev)
            .bind(rid)
            .bind(seq)
            .bind(sender)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(None);
        }
        if let MessageChange::Delete = change {
            sqlx::query(
                "DELETE FROM reactions WHERE message_id =
                   (SELECT id FROM messages WHERE room_id = ? AND seq = ?)",
            )
            .bind(rid)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        let message = message_in(&mut *tx, rid, seq).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn toggle_reaction(
        &self,
        rid: &str,
        seq: i64,
        user_id: UserId,
        emoji: &str,
        now_ms: i64,
    ) -> StoreResult<Option<Message>> {
        let mut tx = self.write_tx().await?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM messages
             WHERE room_id = ? AND seq = ? AND kind = 'text' AND deleted_at IS NULL",
        )
        .bind(rid)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let removed =
            sqlx::query("DELETE FROM reactions WHERE message_id = ? AND user_id = ? AND emoji = ?")
                .bind(id)
                .bind(user_id)
                .bind(emoji)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if removed == 0 {
            sqlx::query(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(id)
            .bind(user_id)
            .bind(emoji)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        let rev = next_rev(&mut tx, rid).await?;
        sqlx::query("UPDATE messages SET rev = ? WHERE id = ?")
            .bind(rev)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let message = message_in(&mut *tx, rid, seq).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn changes(&self, rid: &str, after_rev: i64, limit: i64) -> StoreResult<Vec<Message>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m JOIN users u ON u.id = m.sender_id
             WHERE m.room_id = ? AND m.rev > ? ORDER BY m.rev LIMIT ?"
        )))
        .bind(rid)
        .bind(after_rev)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(message_of_row).collect())
    }

    async fn search(
        &self,
        user_id: UserId,
        words: &[String],
        limit: i64,
        deadline: Instant,
    ) -> StoreResult<Vec<Message>> {
        // FTS5 syntax: each word quoted (so nothing in it is an operator) and
        // marked as a prefix; words side by side must all match.
        let query = words
            .iter()
            .map(|w| format!("\"{}\"*", w.replace('"', "")))
            .collect::<Vec<_>>()
            .join(" ");
        let wait = deadline.saturating_duration_since(Instant::now());
        let conn = match tokio::time::timeout(wait, self.reader.acquire()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(StoreError::TimedOut),
        };
        let mut search = Interruptible::new(conn, deadline).await?;
        // The index drives: its hits newest first (`ORDER BY f.rowid DESC` is
        // served by FTS5 itself), each looked up by primary key and kept if it
        // is in one of the caller's rooms, until `limit` are found. CROSS JOIN
        // keeps SQLite from turning the loops around (the caller's messages
        // outside, one MATCH per message: seconds in a large room).
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages_fts f
             CROSS JOIN messages m ON m.id = f.rowid
             CROSS JOIN users u ON u.id = m.sender_id
             WHERE messages_fts MATCH ?
               AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = ?)
               AND m.deleted_at IS NULL AND m.kind = 'text'
             ORDER BY f.rowid DESC LIMIT ?"
        )))
        .bind(query)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&mut *search.conn)
        .await;
        let rows = search.finish(found).await?;
        Ok(rows.iter().map(message_of_row).collect())
    }

    async fn set_last_seen(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = ? WHERE id = ?")
            .bind(now_ms)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.checkpoints.abort();
        self.checkpointer.close().await;
        self.reader.close().await;
        // The last connection to close checkpoints the WAL into the database.
        self.writer.close().await;
    }

    async fn set_password(&self, user_id: UserId, password_hash: &str) -> StoreResult<()> {
        let update = sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(password_hash)
            .bind(user_id);
        self.update_user_ending_sessions(update, user_id).await
    }

    async fn disable_user(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        let update =
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?")
                .bind(now_ms)
                .bind(user_id);
        self.update_user_ending_sessions(update, user_id).await
    }

    async fn is_disabled(&self, user_id: UserId) -> StoreResult<bool> {
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(disabled.unwrap_or(false))
    }
}
