//! PostgreSQL: the store for several server processes sharing one database.
//!
//! Every guarantee of the [`Store`] contract holds across processes, because it
//! is enforced by the database, never by a lock in this process:
//! - `seq`: the room's row is bumped with `UPDATE .. RETURNING` in the
//!   transaction that inserts the message. The row lock serialises senders per
//!   room (and only per room), and the bump commits or rolls back together with
//!   the message, so `seq` is unique and gap-free.
//! - idempotent resends: the insert is `ON CONFLICT DO NOTHING` on the
//!   `(room, sender, client_id)` index. When a concurrent resend got there
//!   first, the transaction is rolled back (taking its `seq` bump with it) and
//!   the stored message is returned.
//! - one direct room per pair: `ON CONFLICT (direct_key) DO NOTHING`, then read
//!   whichever room won.
//!
//! Write transactions run at READ COMMITTED, whatever the server's default:
//! each statement sees what was committed before it started (the re-reads above
//! rely on it), and an UPDATE that waited for a row lock proceeds on the newest
//! row version instead of failing with a serialization error.
//!
//! PostgreSQL text cannot hold NUL characters. Lookups by a key containing one
//! answer "not found" (no such row can exist) rather than a database error.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};

use super::batch::{self, Plan};
use super::{quote_of_json, reactions_of_json};
use crate::domain::model::{
    Chat, Member, Message, MessageKind, Page, RoomAccess, RoomKind, RoomState, User, UserId,
    direct_title, timestamp_of_millis,
};
use crate::domain::store::{
    GroupChange, MessageChange, NewMessage, Outcome, ReadMarker, Revocation, SessionRecord, Store,
    StoreError, StoreResult, StoredSession,
};

pub struct PostgresStore {
    pool: PgPool,
}

/// Columns of a message row `m` joined with its sender (`u`), in the order
/// `message_at` reads them. The quoted message (cut by `quote_of_json`) and
/// the reactions come as JSON from subqueries, so that every read of
/// messages is one statement. A macro so queries stay `&'static str`.
macro_rules! message_columns {
    () => {
        "m.id, m.room_id, m.seq, m.sender_id, u.username, m.body, m.created_at, m.client_id,
         m.kind, m.edited_at, m.deleted_at IS NOT NULL, m.rev,
         (SELECT json_build_array(q.seq, qu.username, q.body,
                                  q.deleted_at IS NOT NULL)::text
            FROM messages q JOIN users qu ON qu.id = q.sender_id
           WHERE q.room_id = m.room_id AND q.seq = m.reply_to_seq),
         (SELECT COALESCE(json_agg(json_build_array(x.emoji, x.user_id::text)
                                   ORDER BY x.created_at, x.user_id), '[]')::text
            FROM reactions x WHERE x.message_id = m.id)"
    };
}

/// One message of a room by its `seq` (inside a write transaction: to answer
/// with what it wrote).
async fn message_in(
    db: impl sqlx::Executor<'_, Database = Postgres>,
    rid: &str,
    seq: i64,
) -> sqlx::Result<Option<Message>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m JOIN users u ON u.id = m.sender_id WHERE m.room_id = $1 AND m.seq = $2"
    ))
    .bind(rid)
    .bind(seq)
    .fetch_optional(db)
    .await?;
    Ok(row.as_ref().map(message_of_row))
}

/// Reads `message_columns!()` starting at column `first`.
fn message_at(row: &PgRow, first: usize) -> Message {
    Message {
        id: row.get(first),
        rid: row.get(first + 1),
        seq: row.get(first + 2),
        sender_id: row.get(first + 3),
        sender_username: row.get(first + 4),
        message: row.get(first + 5),
        timestamp: timestamp_of_millis(row.get(first + 6)),
        client_id: row.get(first + 7),
        kind: MessageKind::parse(row.get(first + 8)),
        edited_at: row
            .get::<Option<i64>, _>(first + 9)
            .map(timestamp_of_millis),
        deleted: row.get(first + 10),
        rev: row.get(first + 11),
        reply_to: quote_of_json(row.get(first + 12)),
        reactions: reactions_of_json(row.get(first + 13)),
    }
}

/// Columns of a member row `rm` joined with its user `u`, for `member_of_row`.
const MEMBER_COLUMNS: &str = "u.id, u.username, rm.last_read_seq, u.last_seen_at";

fn member_of_row(row: &PgRow) -> Member {
    Member {
        id: row.get(0),
        username: row.get(1),
        read_seq: row.get(2),
        online: false,
        last_seen: row.get::<Option<i64>, _>(3).map(timestamp_of_millis),
    }
}

fn message_of_row(row: &PgRow) -> Message {
    message_at(row, 0)
}

fn user_of_row(row: &PgRow) -> User {
    User {
        id: row.get(0),
        username: row.get(1),
        email: row.get(2),
    }
}

/// Whether PostgreSQL text can hold `s` (it cannot hold NUL).
fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// SQLSTATE of a statement stopped by `statement_timeout` or a cancel request.
const QUERY_CANCELED: &str = "57014";

/// A connection running one search, stopped by the server at the deadline
/// (`statement_timeout`, local to the search's transaction) or, when its
/// future is dropped first (the client went away), by a cancel request.
struct Cancellable {
    conn: PoolConnection<Postgres>,
    pool: PgPool,
    /// The server process running the search, once known.
    backend: Option<i32>,
    finished: bool,
}

impl Drop for Cancellable {
    /// Dropped mid-search: the query would go on in the server until its
    /// timeout. Cancel it from another connection, and close this one rather
    /// than return it (with a query in flight) to the pool: no later
    /// statement can run on the backend the cancel request names.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.conn.close_on_drop();
        let (Some(backend), Ok(runtime)) = (self.backend, tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let pool = self.pool.clone();
        runtime.spawn(async move {
            // Only while it is there: it may have ended (and its connection
            // closed) first, and a cancel of no backend is logged as a notice.
            let cancelled =
                sqlx::query("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid = $1")
                    .bind(backend)
                    .execute(&pool)
                    .await;
            if let Err(e) = cancelled {
                tracing::debug!(error = %e, backend, "could not cancel an abandoned search");
            }
        });
    }
}

/// The search query, in a read-only transaction whose `statement_timeout` is
/// what is left until `deadline`.
async fn search_within(
    search: &mut Cancellable,
    user_id: UserId,
    query: &str,
    limit: i64,
    deadline: Instant,
) -> sqlx::Result<Vec<Message>> {
    let mut tx = search.conn.begin_with("BEGIN READ ONLY").await?;
    // At least 1 ms: 0 would mean "no timeout".
    let budget_ms = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .max(1);
    let backend: i32 = sqlx::query_scalar(
        "SELECT pg_backend_pid() FROM (SELECT set_config('statement_timeout', $1, true)) _",
    )
    .bind(format!("{budget_ms}ms"))
    .fetch_one(&mut *tx)
    .await?;
    search.backend = Some(backend);
    // The GIN index finds the hits, the caller's memberships filter them;
    // newest first, `limit` of them.
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages m
          JOIN users u ON u.id = m.sender_id
         WHERE m.search @@ to_tsquery('simple', $2)
           AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = $1)
         ORDER BY m.id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(query)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows.iter().map(message_of_row).collect())
}

fn conflict_or_db(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => e.into(),
    }
}

/// How many connections a process keeps, and how long a request waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub size: u32,
    /// Past it a request fails `Unavailable`; meanwhile the pool keeps trying
    /// to connect, so a database that restarts is found again by itself.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            size: 10,
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) and runs pending
    /// migrations. Several processes may do this at once: sqlx serialises
    /// migrations with an advisory lock.
    pub async fn open(url: &str, settings: PoolSettings) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(settings.size)
            .acquire_timeout(settings.acquire_timeout)
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStore { pool })
    }

    /// The cookie secret shared by every node on this database: `candidate` is
    /// stored if no node stored one before, and the stored secret is returned.
    pub async fn shared_secret(&self, candidate: &[u8]) -> anyhow::Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ('cookie_secret', $1)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(candidate)
        .execute(&self.pool)
        .await?;
        let secret = sqlx::query_scalar("SELECT value FROM settings WHERE key = 'cookie_secret'")
            .fetch_one(&self.pool)
            .await?;
        Ok(secret)
    }

    /// One message in its own transaction, resolving a race with a concurrent
    /// resend of the same `client_id` (possibly on another node).
    async fn store_alone(&self, new: &NewMessage) -> StoreResult<(Message, Outcome)> {
        if !storable(&new.rid) {
            // No such room: the same error as for any missing room.
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }
        // A resend of something already stored: answer without locking the room.
        if let Some(client_id) = &new.client_id
            && let Some(message) = self
                .message_by_client_id(&new.rid, new.sender.id, client_id)
                .await?
        {
            return Ok((message, Outcome::Existing));
        }

        let mut tx = self.write_tx().await?;
        let Some(message) = insert_new(&mut tx, new, MessageKind::Text).await? else {
            // A concurrent resend of the same client_id committed between our
            // check and our insert. Roll back so our `seq` bump never
            // happened (no gap), then return the message that won.
            tx.rollback().await?;
            let existing = match &new.client_id {
                Some(client_id) => {
                    self.message_by_client_id(&new.rid, new.sender.id, client_id)
                        .await?
                }
                None => None,
            };
            // Stored messages are never deleted but with their room: if the
            // winner is gone, so is the room, and a missing room is RowNotFound.
            return existing
                .map(|message| (message, Outcome::Existing))
                .ok_or(StoreError::Database(sqlx::Error::RowNotFound));
        };
        tx.commit().await?;
        Ok((message, Outcome::Created))
    }

    /// The user's chats (only `only`, if given), most recently active first.
    /// One set-based statement, hence one consistent snapshot: the rooms,
    /// their members, last messages and unread counts all agree.
    async fn chats_of(&self, user_id: UserId, only: Option<&str>) -> StoreResult<Vec<Chat>> {
        let rows = sqlx::query(concat!(
            "SELECT r.id, r.kind, r.title, r.owner_id, mine.last_read_seq,
                    mem.ids, mem.names, mem.reads, mem.seen, COALESCE(unread.n, 0), ",
            message_columns!(),
            " FROM room_members mine
              JOIN rooms r ON r.id = mine.room_id
              JOIN (SELECT rm.room_id,
                           array_agg(mu.id ORDER BY rm.joined_at, mu.id) AS ids,
                           array_agg(mu.username ORDER BY rm.joined_at, mu.id) AS names,
                           array_agg(rm.last_read_seq ORDER BY rm.joined_at, mu.id) AS reads,
                           array_agg(mu.last_seen_at ORDER BY rm.joined_at, mu.id) AS seen
                      FROM room_members me
                      JOIN room_members rm ON rm.room_id = me.room_id
                      JOIN users mu ON mu.id = rm.user_id
                     WHERE me.user_id = $1
                     GROUP BY rm.room_id) mem ON mem.room_id = r.id
              LEFT JOIN (SELECT me.room_id, COUNT(*) AS n
                           FROM room_members me
                           JOIN messages um ON um.room_id = me.room_id
                            AND um.seq > me.last_read_seq AND um.sender_id <> me.user_id
                          WHERE me.user_id = $1
                          GROUP BY me.room_id) unread ON unread.room_id = r.id
              LEFT JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
              LEFT JOIN users u ON u.id = m.sender_id
             WHERE mine.user_id = $1 AND ($2::text IS NULL OR r.id = $2)
             ORDER BY r.last_activity DESC, r.id"
        ))
        .bind(user_id)
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let ids: Vec<i64> = row.get(5);
                let names: Vec<String> = row.get(6);
                let reads: Vec<i64> = row.get(7);
                let seen: Vec<Option<i64>> = row.get(8);
                let members: Vec<Member> = ids
                    .into_iter()
                    .zip(names)
                    .zip(reads.into_iter().zip(seen))
                    .map(|((id, username), (read_seq, seen))| Member {
                        id,
                        username,
                        read_seq,
                        online: false,
                        last_seen: seen.map(timestamp_of_millis),
                    })
                    .collect();
                // The message columns start at 10; all NULL for an empty room.
                let last_message_id: Option<i64> = row.get(10);
                let last_message = last_message_id.map(|_| message_at(row, 10));
                let title: Option<String> = row.get(2);
                Chat {
                    room_id: row.get(0),
                    kind: RoomKind::parse(row.get(1)),
                    title: title.unwrap_or_else(|| direct_title(&members, user_id)),
                    owner_id: row.get(3),
                    members,
                    last_message,
                    unread: row.get(9),
                    last_read_seq: row.get(4),
                }
            })
            .collect())
    }

    async fn write_tx(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
    }

    /// Runs `update` on the user and deletes all their sessions, in one transaction.
    async fn update_user_ending_sessions(
        &self,
        update: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
        user_id: UserId,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        update.execute(&mut *tx).await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The message `sender` stored in `rid` under `client_id`, if any.
    async fn message_by_client_id(
        &self,
        rid: &str,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN users u ON u.id = m.sender_id
              WHERE m.room_id = $1 AND m.sender_id = $2 AND m.client_id = $3"
        ))
        .bind(rid)
        .bind(sender)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(message_of_row))
    }
}

/// Bumps the room's counter and inserts the message, inside the caller's
/// transaction. `None`: a message with the same `client_id` already exists
/// (stored concurrently, maybe by another node); the caller must roll back,
/// or the bumped `seq` would leave a gap.
async fn insert_new(
    conn: &mut PgConnection,
    new: &NewMessage,
    kind: MessageKind,
) -> StoreResult<Option<Message>> {
    // Bump and read the room's counter in one statement. The row lock it takes
    // is held until commit: senders to this room queue here, and each sees the
    // previous one's committed `last_seq`. Nodes' clocks differ a little, so
    // activity only ever moves forward.
    let seq: i64 = sqlx::query_scalar(
        "UPDATE rooms SET last_seq = last_seq + 1,
                          last_activity = GREATEST(last_activity, $1)
         WHERE id = $2
         RETURNING last_seq",
    )
    .bind(new.now_ms)
    .bind(&new.rid)
    .fetch_one(&mut *conn)
    .await?;
    // Only the client_id index is an arbiter: a clash on (room_id, seq) would
    // be a bug and must fail loudly, not be skipped.
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO messages (room_id, seq, sender_id, body, client_id, created_at, reply_to_seq,
                               kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (room_id, sender_id, client_id) WHERE client_id IS NOT NULL
         DO NOTHING
         RETURNING id",
    )
    .bind(&new.rid)
    .bind(seq)
    .bind(new.sender.id)
    .bind(&new.body)
    .bind(&new.client_id)
    .bind(new.now_ms)
    .bind(new.reply_to.as_ref().map(|q| q.seq))
    .bind(kind.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map(|id| Message {
        kind,
        ..new.stored(id, seq)
    }))
}

/// Hands out the room's next revision (inside the write transaction; the row
/// lock it takes orders concurrent changes of the room).
async fn next_rev(conn: &mut PgConnection, rid: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("UPDATE rooms SET last_rev = last_rev + 1 WHERE id = $1 RETURNING last_rev")
        .bind(rid)
        .fetch_one(conn)
        .await
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
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
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(email)
        .bind(password_hash)
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(conflict_or_db)?;
        Ok(User {
            id,
            username: username.to_owned(),
            email: email.to_owned(),
        })
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        if !storable(email) {
            return Ok(None);
        }
        let row = sqlx::query("SELECT id, username, email FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_of_row))
    }

    async fn credentials(&self, email: &str) -> StoreResult<Option<(User, String)>> {
        if !storable(email) {
            return Ok(None);
        }
        let row =
            sqlx::query("SELECT id, username, email, password_hash FROM users WHERE email = $1")
                .bind(email)
                .fetch_optional(&self.pool)
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
             VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(token_hash)
        .bind(id)
        .bind(user_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<StoredSession>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.email, s.public_id, s.created_at, s.last_used_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
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
            "UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2 AND last_used_at < $1",
        )
        .bind(now_ms)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sessions(&self, user_id: UserId) -> StoreResult<Vec<SessionRecord>> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT public_id, created_at, last_used_at FROM sessions WHERE user_id = $1
             ORDER BY last_used_at DESC, created_at DESC, public_id COLLATE \"C\"",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
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
        if !storable(id) {
            return Ok(None);
        }
        // The triggers of migration 0005 log the revocation.
        let ended = sqlx::query_scalar(
            "DELETE FROM sessions WHERE public_id = $1 AND user_id = $2 RETURNING token_hash",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(ended)
    }

    async fn end_expired_sessions(
        &self,
        used_before: i64,
        created_before: i64,
    ) -> StoreResult<u64> {
        // Several times a second on every node: the usual answer, none, must
        // not take the revocation log's lock.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE last_used_at < $1)
                 OR EXISTS (SELECT 1 FROM sessions WHERE created_at < $2)",
        )
        .bind(used_before)
        .bind(created_before)
        .fetch_one(&self.pool)
        .await?;
        if !any {
            return Ok(0);
        }
        let ended = sqlx::query("DELETE FROM sessions WHERE last_used_at < $1 OR created_at < $2")
            .bind(used_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        Ok(ended.rows_affected())
    }

    async fn revocations_after(&self, after: i64, limit: i64) -> StoreResult<Vec<Revocation>> {
        // Deleters of sessions commit in id order (migration 0005), so every id
        // below a visible one is visible too.
        let rows: Vec<(i64, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT id, token_hash, user_id FROM session_revocations WHERE id > $1
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
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
            .fetch_one(&self.pool)
            .await?;
        Ok(last)
    }

    async fn prune_revocations(&self, before_ms: i64) -> StoreResult<u64> {
        let pruned = sqlx::query("DELETE FROM session_revocations WHERE at < $1")
            .bind(before_ms)
            .execute(&self.pool)
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
        // A concurrent creator of the same pair makes this wait for its commit,
        // then do nothing; its room (with both members, committed together) wins.
        let created: Option<String> = sqlx::query_scalar(
            "INSERT INTO rooms (id, kind, direct_key, last_activity, created_at)
             VALUES ($1, 'direct', $2, $3, $3)
             ON CONFLICT (direct_key) DO NOTHING RETURNING id",
        )
        .bind(new_rid)
        .bind(&key)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        if created.is_none() {
            tx.rollback().await?;
            let rid: String = sqlx::query_scalar("SELECT id FROM rooms WHERE direct_key = $1")
                .bind(&key)
                .fetch_one(&self.pool)
                .await?;
            return Ok((rid, Outcome::Existing));
        }
        for member in [a, b] {
            sqlx::query(
                "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)",
            )
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
        if !storable(rid) {
            return Ok(RoomAccess::NoSuchRoom);
        }
        let row: Option<(String, Option<i64>, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT r.kind, r.owner_id, r.last_seq, r.last_rev, m.user_id FROM rooms r
             LEFT JOIN room_members m ON m.room_id = r.id AND m.user_id = $1
             WHERE r.id = $2",
        )
        .bind(user_id)
        .bind(rid)
        .fetch_optional(&self.pool)
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
            sqlx::query_scalar("SELECT room_id FROM room_members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn chats(&self, user_id: UserId) -> StoreResult<Vec<Chat>> {
        self.chats_of(user_id, None).await
    }

    async fn chat(&self, rid: &str, user_id: UserId) -> StoreResult<Option<Chat>> {
        if !storable(rid) {
            return Ok(None);
        }
        Ok(self.chats_of(user_id, Some(rid)).await?.pop())
    }

    async fn members(&self, rid: &str) -> StoreResult<Vec<Member>> {
        if !storable(rid) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {MEMBER_COLUMNS} FROM room_members rm JOIN users u ON u.id = rm.user_id
             WHERE rm.room_id = $1 ORDER BY rm.joined_at, u.id"
        )))
        .bind(rid)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(member_of_row).collect())
    }

    async fn store_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>> {
        if let [one] = batch {
            return Ok(vec![self.store_alone(one).await?]);
        }
        if batch.iter().any(|m| !storable(&m.rid)) {
            return Err(StoreError::Database(sqlx::Error::RowNotFound));
        }
        // A fixed number of statements per batch, its rows passed as arrays.
        let mut tx = self.write_tx().await?;
        // Lock the batch's rooms in id order, so that two nodes' batches cannot
        // deadlock; the locks are held until commit.
        let mut rids: Vec<&str> = batch.iter().map(|m| m.rid.as_str()).collect();
        rids.sort_unstable();
        rids.dedup();
        sqlx::query("SELECT id FROM rooms WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&rids)
            .execute(&mut *tx)
            .await?;
        // Earlier copies, looked up under the locks: a resend another node
        // committed meanwhile is seen here (READ COMMITTED: a fresh snapshot
        // per statement).
        let keys = batch::resend_keys(batch);
        let stored = if keys.is_empty() {
            Vec::new()
        } else {
            let (key_rids, senders, client_ids): (Vec<&str>, Vec<i64>, Vec<&str>) = keys
                .into_iter()
                .fold(Default::default(), |mut cols, (r, s, c)| {
                    cols.0.push(r);
                    cols.1.push(s);
                    cols.2.push(c);
                    cols
                });
            let rows = sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM unnest($1::text[], $2::bigint[], $3::text[]) AS k(rid, sender, cid)
                  JOIN messages m ON m.room_id = k.rid AND m.sender_id = k.sender
                                 AND m.client_id = k.cid
                  JOIN users u ON u.id = m.sender_id"
            ))
            .bind(&key_rids)
            .bind(&senders)
            .bind(&client_ids)
            .fetch_all(&mut *tx)
            .await?;
            rows.iter().map(message_of_row).collect()
        };
        let plan = Plan::new(batch, &stored);
        let (mut ids, mut seqs) = (Vec::new(), Vec::new());
        if !plan.fresh.is_empty() {
            let bump_rids: Vec<&str> = plan.rooms.iter().map(|r| r.rid).collect();
            let counts: Vec<i64> = plan.rooms.iter().map(|r| r.count).collect();
            let latest: Vec<i64> = plan.rooms.iter().map(|r| r.latest_ms).collect();
            let bumped: HashMap<String, i64> = sqlx::query_as(
                "UPDATE rooms SET last_seq = last_seq + b.n,
                                  last_activity = GREATEST(last_activity, b.latest)
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS b(rid, n, latest)
                 WHERE rooms.id = b.rid
                 RETURNING rooms.id, rooms.last_seq",
            )
            .bind(&bump_rids)
            .bind(&counts)
            .bind(&latest)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
            seqs = plan.seqs(&bumped)?;
            let fresh = &plan.fresh;
            let inserted: Vec<(String, i64, i64)> = sqlx::query_as(
                "INSERT INTO messages (room_id, seq, sender_id, body, client_id, created_at,
                                       reply_to_seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                      $5::text[], $6::bigint[], $7::bigint[])
                 ON CONFLICT (room_id, sender_id, client_id) WHERE client_id IS NOT NULL
                 DO NOTHING
                 RETURNING room_id, seq, id",
            )
            .bind(fresh.iter().map(|m| m.rid.as_str()).collect::<Vec<_>>())
            .bind(&seqs)
            .bind(fresh.iter().map(|m| m.sender.id).collect::<Vec<_>>())
            .bind(fresh.iter().map(|m| m.body.as_str()).collect::<Vec<_>>())
            .bind(
                fresh
                    .iter()
                    .map(|m| m.client_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(fresh.iter().map(|m| m.now_ms).collect::<Vec<_>>())
            .bind(
                fresh
                    .iter()
                    .map(|m| m.reply_to.as_ref().map(|q| q.seq))
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&mut *tx)
            .await?;
            // A row missing means a resend slipped in: give the batch up (rolling
            // back its seq bumps); the caller stores each message alone.
            if inserted.len() != fresh.len() {
                return Err(StoreError::Conflict);
            }
            ids = batch::ids_in_order(&plan, &seqs, inserted)?;
        }
        tx.commit().await?;
        Ok(plan.finish(&ids, &seqs))
    }

    async fn messages(&self, rid: &str, page: Page) -> StoreResult<Vec<Message>> {
        if !storable(rid) {
            return Ok(Vec::new());
        }
        let before = page.before.unwrap_or(i64::MAX);
        let rows = match page.after {
            Some(after) => {
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m JOIN users u ON u.id = m.sender_id
                      WHERE m.room_id = $1 AND m.seq > $2 AND m.seq < $3
                      ORDER BY m.seq ASC LIMIT $4"
                ))
                .bind(rid)
                .bind(after)
                .bind(before)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                let mut rows = sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages m JOIN users u ON u.id = m.sender_id
                      WHERE m.room_id = $1 AND m.seq < $2
                      ORDER BY m.seq DESC LIMIT $3"
                ))
                .bind(rid)
                .bind(before)
                .bind(page.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.reverse();
                rows
            }
        };
        Ok(rows.iter().map(message_of_row).collect())
    }

    async fn mark_read(&self, rid: &str, user_id: UserId, seq: i64) -> StoreResult<ReadMarker> {
        if !storable(rid) {
            return Ok(ReadMarker {
                read_seq: 0,
                unread: 0,
                moved: false,
            });
        }
        let mut tx = self.write_tx().await?;
        // The condition is re-checked on the latest row version after a
        // concurrent update, so a lower `seq` never overwrites a higher one.
        let moved = sqlx::query(
            "UPDATE room_members SET last_read_seq = $1
             WHERE room_id = $2 AND user_id = $3 AND last_read_seq < $1",
        )
        .bind(seq)
        .bind(rid)
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let (read_seq, unread): (i64, i64) = sqlx::query_as(
            "SELECT mine.last_read_seq,
                    (SELECT COUNT(*) FROM messages m WHERE m.room_id = mine.room_id
                       AND m.seq > mine.last_read_seq AND m.sender_id <> mine.user_id)
             FROM room_members mine WHERE mine.room_id = $1 AND mine.user_id = $2",
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
                     VALUES ($1, 'group', $2, $3, $4, $4)",
                )
                .bind(rid)
                .bind(title)
                .bind(actor.id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO room_members (room_id, user_id, joined_at)
                     SELECT $1, unnest($2::bigint[]), $3",
                )
                .bind(rid)
                .bind([&[actor.id], members].concat())
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(conflict_or_db)?;
            }
            GroupChange::Rename { title } => {
                sqlx::query("UPDATE rooms SET title = $1 WHERE id = $2")
                    .bind(title)
                    .bind(rid)
                    .execute(&mut *tx)
                    .await?;
            }
            GroupChange::Add { user } => {
                sqlx::query(
                    "INSERT INTO room_members (room_id, user_id, joined_at) VALUES ($1, $2, $3)",
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
                    sqlx::query("DELETE FROM room_members WHERE room_id = $1 AND user_id = $2")
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
                     WHERE id = $1 AND owner_id = $2",
                )
                .bind(rid)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
        }
        let system = NewMessage {
            rid: rid.to_owned(),
            sender: actor.clone(),
            body: note.to_owned(),
            client_id: None,
            reply_to: None,
            now_ms,
        };
        let stored = insert_new(&mut tx, &system, MessageKind::System).await?;
        let message = stored.ok_or(StoreError::Database(sqlx::Error::RowNotFound))?;
        tx.commit().await?;
        Ok(message)
    }

    async fn message(&self, rid: &str, seq: i64) -> StoreResult<Option<Message>> {
        if !storable(rid) {
            return Ok(None);
        }
        Ok(message_in(&self.pool, rid, seq).await?)
    }

    async fn change_message(
        &self,
        rid: &str,
        seq: i64,
        sender: UserId,
        change: MessageChange<'_>,
        now_ms: i64,
    ) -> StoreResult<Option<Message>> {
        if !storable(rid) {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        let rev = next_rev(&mut tx, rid).await?;
        let update = match change {
            MessageChange::Edit(_) => sqlx::query(
                "UPDATE messages SET body = $6, edited_at = $1, rev = $2
                 WHERE room_id = $3 AND seq = $4 AND sender_id = $5 AND kind = 'text'
                   AND deleted_at IS NULL
                 RETURNING id",
            ),
            MessageChange::Delete => sqlx::query(
                "UPDATE messages SET body = '', deleted_at = $1, rev = $2
                 WHERE room_id = $3 AND seq = $4 AND sender_id = $5 AND kind = 'text'
                   AND deleted_at IS NULL
                 RETURNING id",
            ),
        };
        let mut update = update
            .bind(now_ms)
            .bind(rev)
            .bind(rid)
            .bind(seq)
            .bind(sender);
        if let MessageChange::Edit(body) = change {
            update = update.bind(body);
        }
        let Some(row) = update.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        if let MessageChange::Delete = change {
            sqlx::query("DELETE FROM reactions WHERE message_id = $1")
                .bind(row.get::<i64, _>(0))
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
        if !storable(rid) || !storable(emoji) {
            return Ok(None);
        }
        let mut tx = self.write_tx().await?;
        // The row lock orders concurrent toggles of one message.
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM messages
             WHERE room_id = $1 AND seq = $2 AND kind = 'text' AND deleted_at IS NULL
             FOR UPDATE",
        )
        .bind(rid)
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let removed = sqlx::query(
            "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
        )
        .bind(id)
        .bind(user_id)
        .bind(emoji)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if removed == 0 {
            sqlx::query(
                "INSERT INTO reactions (message_id, user_id, emoji, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(user_id)
            .bind(emoji)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        let rev = next_rev(&mut tx, rid).await?;
        sqlx::query("UPDATE messages SET rev = $1 WHERE id = $2")
            .bind(rev)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let message = message_in(&mut *tx, rid, seq).await?;
        tx.commit().await?;
        Ok(message)
    }

    async fn changes(&self, rid: &str, after_rev: i64, limit: i64) -> StoreResult<Vec<Message>> {
        if !storable(rid) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages m JOIN users u ON u.id = m.sender_id
              WHERE m.room_id = $1 AND m.rev > $2 ORDER BY m.rev LIMIT $3"
        ))
        .bind(rid)
        .bind(after_rev)
        .bind(limit)
        .fetch_all(&self.pool)
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
        // tsquery syntax: each word a prefix (`:*`), all of them (`&`). Words
        // are letters and digits only, so none of them is an operator.
        let query = words
            .iter()
            .filter(|w| storable(w))
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & ");
        let wait = deadline.saturating_duration_since(Instant::now());
        let conn = match tokio::time::timeout(wait, self.pool.acquire()).await {
            Ok(conn) => conn?,
            Err(_) => return Err(StoreError::TimedOut),
        };
        let mut search = Cancellable {
            conn,
            pool: self.pool.clone(),
            backend: None,
            finished: false,
        };
        let found = search_within(&mut search, user_id, &query, limit, deadline).await;
        search.finished = true;
        match found {
            Err(e)
                if e.as_database_error().and_then(|d| d.code()).as_deref()
                    == Some(QUERY_CANCELED) =>
            {
                Err(StoreError::TimedOut)
            }
            other => Ok(other?),
        }
    }

    async fn set_last_seen(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn set_password(&self, user_id: UserId, password_hash: &str) -> StoreResult<()> {
        let update = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id);
        self.update_user_ending_sessions(update, user_id).await
    }

    async fn disable_user(&self, user_id: UserId, now_ms: i64) -> StoreResult<()> {
        let update =
            sqlx::query("UPDATE users SET disabled_at = COALESCE(disabled_at, $1) WHERE id = $2")
                .bind(now_ms)
                .bind(user_id);
        self.update_user_ending_sessions(update, user_id).await
    }

    async fn is_disabled(&self, user_id: UserId) -> StoreResult<bool> {
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(disabled.unwrap_or(false))
    }
}
