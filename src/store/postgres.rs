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
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgQueryResult};
use sqlx::{Connection, FromRow, Pool, Postgres, Row, Transaction};

use super::batch::{self, Plan};
use super::shared::{Dialect, MessageRow, SqlStore, acquire_before, all, claim_attachments};
use crate::domain::model::{
    Chat, Member, Message, NotifyLevel, RoomKind, UserId, avatar_url, direct_title,
    stored_attachments, timestamp_of_millis,
};
use crate::domain::store::{Fault, NewMessage, Outcome, StoreError, StoreResult};

pub struct PostgresStore {
    pool: PgPool,
}

/// A room of a user's chat list, with its members as parallel arrays (see `chats_of`).
#[derive(FromRow)]
struct ChatRow {
    chat_id: String,
    chat_kind: String,
    title: Option<String>,
    owner_id: Option<i64>,
    my_read_seq: i64,
    my_notify: Option<String>,
    ids: Vec<i64>,
    names: Vec<String>,
    shown: Vec<Option<String>>,
    avatars: Vec<Option<String>>,
    reads: Vec<i64>,
    seen: Vec<Option<i64>>,
    bots: Vec<bool>,
    unread: i64,
    last_activity: i64,
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
    let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM messages m
          JOIN users u ON u.id = m.sender_id
         WHERE m.search @@ to_tsquery('simple', $2)
           AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = $1)
         ORDER BY m.id DESC LIMIT $3",
        Postgres::MESSAGE_COLUMNS
    )))
    .bind(user_id)
    .bind(query)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(all(rows))
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
        if !Postgres::storable(&new.rid) {
            // No such room: the same error as for any missing room.
            return Err(StoreError::Database(Fault::NoSuchRoom));
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
        let Some(message) = insert_new(&mut tx, new).await? else {
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
            // winner is gone, so is the room.
            return existing
                .map(|message| (message, Outcome::Existing))
                .ok_or(StoreError::Database(Fault::NoSuchRoom));
        };
        claim_attachments(&mut tx, &[new], &[message.id]).await?;
        tx.commit().await?;
        Ok((message, Outcome::Created))
    }

    /// The message `sender` stored in `rid` under `client_id`, if any.
    async fn message_by_client_id(
        &self,
        rid: &str,
        sender: UserId,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        // Built once: every send with a client_id looks here first.
        static BY_CLIENT_ID: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
                  WHERE m.room_id = $1 AND m.sender_id = $2 AND m.client_id = $3",
                Postgres::MESSAGE_COLUMNS
            )
        });
        let row: Option<MessageRow> = sqlx::query_as(BY_CLIENT_ID.as_str())
            .bind(rid)
            .bind(sender)
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Message::from))
    }
}

/// Bumps the room's counter and inserts the message, inside the caller's
/// transaction. `None`: a message with the same `client_id` already exists
/// (stored concurrently, maybe by another node); the caller must roll back,
/// or the bumped `seq` would leave a gap.
async fn insert_new(conn: &mut PgConnection, new: &NewMessage) -> StoreResult<Option<Message>> {
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
                               attachments)
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
    .bind(stored_attachments(&new.attachments))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id.map(|id| new.stored(id, seq)))
}

/// PostgreSQL's own SQL, for the statements written once in `shared.rs`.
impl Dialect for Postgres {
    const MESSAGE_COLUMNS: &'static str =
        "m.id, m.room_id, m.seq, m.sender_id, u.username AS sender_username, m.body,
         m.created_at, m.client_id, m.kind, m.edited_at, m.deleted_at IS NOT NULL AS deleted,
         m.rev,
         (SELECT json_build_array(q.seq, qu.username, q.body, q.deleted_at IS NOT NULL)::text
            FROM messages q JOIN users qu ON qu.id = q.sender_id
           WHERE q.room_id = m.room_id AND q.seq = m.reply_to_seq) AS reply_to,
         (SELECT COALESCE(json_agg(json_build_array(x.emoji, x.user_id::text)
                                   ORDER BY x.created_at, x.user_id), '[]')::text
            FROM reactions x WHERE x.message_id = m.id) AS reactions,
         m.attachments";
    // The database's default collation may not compare bytes.
    const SESSION_ID_ORDER: &'static str = "public_id COLLATE \"C\"";
    const FOR_UPDATE: &'static str = "FOR UPDATE";
    const JSON_TEXTS: &'static str = "SELECT jsonb_array_elements_text($1::jsonb)";

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// PostgreSQL text cannot hold NUL.
    fn storable(key: &str) -> bool {
        !key.contains('\0')
    }
}

#[async_trait]
impl SqlStore for PostgresStore {
    type Db = Postgres;

    fn reader(&self) -> &Pool<Self::Db> {
        &self.pool
    }

    fn writer(&self) -> &Pool<Self::Db> {
        &self.pool
    }

    async fn write_tx(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
    }

    /// One set-based statement, hence one consistent snapshot: the rooms,
    /// their members, last messages and unread counts all agree.
    async fn chats_of(&self, user_id: UserId, only: Option<&str>) -> StoreResult<Vec<Chat>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT r.id AS chat_id, r.kind AS chat_kind, r.title, r.owner_id,
                    mine.last_read_seq AS my_read_seq, mine.notify AS my_notify,
                    mem.ids, mem.names, mem.shown, mem.avatars, mem.reads, mem.seen, mem.bots,
                    COALESCE(unread.n, 0) AS unread, r.last_activity, {}
               FROM room_members mine
              JOIN rooms r ON r.id = mine.room_id
              JOIN (SELECT rm.room_id,
                           array_agg(mu.id ORDER BY rm.joined_at, mu.id) AS ids,
                           array_agg(mu.username ORDER BY rm.joined_at, mu.id) AS names,
                           array_agg(mu.display_name ORDER BY rm.joined_at, mu.id) AS shown,
                           array_agg(mu.avatar_key ORDER BY rm.joined_at, mu.id) AS avatars,
                           array_agg(rm.last_read_seq ORDER BY rm.joined_at, mu.id) AS reads,
                           array_agg(mu.last_seen_at ORDER BY rm.joined_at, mu.id) AS seen,
                           array_agg(mu.bot_owner IS NOT NULL ORDER BY rm.joined_at, mu.id) AS bots
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
             ORDER BY r.last_activity DESC, r.id",
            Postgres::MESSAGE_COLUMNS
        )))
        .bind(user_id)
        .bind(only)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|columns| {
                let row = ChatRow::from_row(columns)?;
                // The last message's columns: all NULL for a room without messages.
                let last_message = match columns.try_get::<Option<i64>, _>("id")? {
                    Some(_) => Some(MessageRow::from_row(columns)?.into()),
                    None => None,
                };
                let members: Vec<Member> = row
                    .ids
                    .into_iter()
                    .zip(row.names)
                    .zip(row.shown.into_iter().zip(row.avatars))
                    .zip(row.reads.into_iter().zip(row.seen))
                    .zip(row.bots)
                    .map(
                        |((((id, username), (display_name, avatar)), (read_seq, seen)), bot)| {
                            Member {
                                avatar: avatar_url(id, avatar.as_deref()),
                                id,
                                username,
                                display_name,
                                read_seq,
                                online: false,
                                last_seen: seen.map(timestamp_of_millis),
                                bot,
                            }
                        },
                    )
                    .collect();
                let kind = RoomKind::parse(&row.chat_kind);
                Ok(Chat {
                    title: row.title.unwrap_or_else(|| direct_title(&members, user_id)),
                    room_id: row.chat_id,
                    notify: NotifyLevel::effective(row.my_notify.as_deref(), kind),
                    kind,
                    owner_id: row.owner_id,
                    members,
                    last_message,
                    unread: row.unread,
                    last_read_seq: row.my_read_seq,
                    mentions: 0,
                    last_activity: row.last_activity,
                })
            })
            .collect()
    }

    async fn store_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>> {
        if let [one] = batch {
            return Ok(vec![self.store_alone(one).await?]);
        }
        if batch.iter().any(|m| !Postgres::storable(&m.rid)) {
            return Err(StoreError::Database(Fault::NoSuchRoom));
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
            // Built once: every batch with a client_id runs it.
            static RESENDS: LazyLock<String> = LazyLock::new(|| {
                format!(
                    "SELECT {} FROM unnest($1::text[], $2::bigint[], $3::text[])
                                    AS k(rid, sender, cid)
                      JOIN messages m ON m.room_id = k.rid AND m.sender_id = k.sender
                                     AND m.client_id = k.cid
                      JOIN users u ON u.id = m.sender_id",
                    Postgres::MESSAGE_COLUMNS
                )
            });
            let rows: Vec<MessageRow> = sqlx::query_as(RESENDS.as_str())
                .bind(&key_rids)
                .bind(&senders)
                .bind(&client_ids)
                .fetch_all(&mut *tx)
                .await?;
            all(rows)
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
                                       reply_to_seq, attachments)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[],
                                      $5::text[], $6::bigint[], $7::bigint[], $8::text[])
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
            .bind(
                fresh
                    .iter()
                    .map(|m| stored_attachments(&m.attachments))
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
            claim_attachments(&mut tx, &plan.fresh, &ids).await?;
        }
        tx.commit().await?;
        Ok(plan.finish(&ids, &seqs))
    }

    async fn search_messages(
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
            .filter(|w| Postgres::storable(w))
            .map(|w| format!("{w}:*"))
            .collect::<Vec<_>>()
            .join(" & ");
        let conn = acquire_before(&self.pool, deadline).await?;
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

    async fn close_pools(&self) {
        self.pool.close().await;
    }
}
