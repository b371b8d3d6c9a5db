//! The embedded default: SQLite in WAL mode.
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly
//! one connection and each write transaction starts with `BEGIN IMMEDIATE`:
//! writers queue in our pool instead of failing with SQLITE_BUSY, and `seq`
//! allocation is serialised per database. Reads use their own pool and, thanks
//! to WAL, never wait for the writer. Batches of messages, the hot write,
//! go through a thread of their own (`sqlite_writer.rs`) while the store
//! holds that one connection.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{FromRow, Pool, Sqlite, Transaction};

use super::batch::json;
use super::shared::{
    Dialect, MEMBER_COLUMNS, MemberRow, MessageRow, SqlStore, acquire_before, all,
};
use super::sqlite_search::{LogCut, Mark, SearchIndex};
use super::sqlite_writer::{BatchWriter, Written};
use crate::domain::model::{Chat, Member, Message, NotifyLevel, RoomKind, UserId, direct_title};
use crate::domain::store::{Fault, NewMessage, Outcome, StoreError, StoreResult};

pub struct SqliteStore {
    reader: SqlitePool,
    writer: SqlitePool,
    /// One connection that copies the WAL into the database file (see `open`).
    checkpointer: SqlitePool,
    checkpoints: tokio::task::JoinHandle<()>,
    /// Stores the batches of messages; dropped with the store, it stops.
    batches: BatchWriter,
    /// The full-text index, in its own file, filled behind the commits.
    search: SearchIndex,
}

/// How often the write-ahead log is copied back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// A member of one of a user's rooms (see `chats_of`).
#[derive(FromRow)]
struct RoomMemberRow {
    room_id: String,
    #[sqlx(flatten)]
    member: MemberRow,
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
        // writer (a PASSIVE checkpoint never blocks it); the message writer
        // checkpoints what little is left when the WAL is long, so that it can
        // start the WAL again (`sqlite_writer::open`).
        //
        // No ping before each use of the writer: it is a round trip to the
        // connection's worker thread on every write, and a local file does
        // not hang up (a dead worker fails the statement instead).
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let batches = BatchWriter::start(options.get_filename(), synchronous)?;
        let search = SearchIndex::start(options.get_filename())?;
        // Every reader sees the index as `search` (read-only, as the reader).
        let index_name: Arc<str> = search.attach_name().into();
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                let index_name = index_name.clone();
                Box::pin(async move {
                    sqlx::query("ATTACH DATABASE ? AS search")
                        .bind(&*index_name)
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(options.clone().read_only(true))
            .await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let checkpoints = tokio::spawn(checkpoint_loop(checkpointer.clone(), search.log_cut()));
        Ok(SqliteStore {
            reader,
            writer,
            checkpointer,
            checkpoints,
            batches,
            search,
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
}

/// A store dropped without [`Store::close`] (a test's, a fuzz target's) must
/// not leave its checkpointer running: the task holds a pool, and with it
/// the database (all of it, for an in-memory one). The batch writer's
/// thread ends when its field is dropped.
impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpoints.abort();
    }
}

/// Every [`CHECKPOINT_EVERY`]: copies the WAL into the database, and cuts
/// the search index's log of changes behind what the index holds on disk
/// (`sqlite_search.rs`). The cut is here, not on the index's thread: that
/// thread yields the CPU to the traffic, and must not do so while it holds
/// the database's write lock.
async fn checkpoint_loop(pool: SqlitePool, log_cut: LogCut) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cut = 0;
    loop {
        every.tick().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
        let before = log_cut.before();
        if before > cut {
            match sqlx::query("DELETE FROM search_changes WHERE id < ?")
                .bind(before)
                .execute(&pool)
                .await
            {
                Ok(_) => cut = before,
                Err(e) => tracing::warn!(error = %e, "cutting the search change log failed"),
            }
        }
    }
}

/// SQLite's own SQL, for the statements written once in `shared.rs`.
impl Dialect for Sqlite {
    const MESSAGE_COLUMNS: &'static str =
        "m.id, m.room_id, m.seq, m.sender_id, u.username AS sender_username, m.body,
         m.created_at, m.client_id, m.kind, m.edited_at, m.deleted_at IS NOT NULL AS deleted,
         m.rev,
         (SELECT json_array(q.seq, qu.username, q.body, q.deleted_at IS NOT NULL)
            FROM messages q JOIN users qu ON qu.id = q.sender_id
           WHERE q.room_id = m.room_id AND q.seq = m.reply_to_seq) AS reply_to,
         (SELECT json_group_array(json_array(x.emoji, x.user_id)) FROM
            (SELECT emoji, user_id FROM reactions WHERE message_id = m.id
              ORDER BY created_at, user_id) x) AS reactions,
         m.attachments";
    // BINARY, SQLite's default collation, compares bytes.
    const SESSION_ID_ORDER: &'static str = "public_id";
    // Write transactions begin IMMEDIATE: they hold the one write lock already.
    const FOR_UPDATE: &'static str = "";
    const JSON_TEXTS: &'static str = "SELECT value FROM json_each($1)";

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

#[async_trait]
impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn reader(&self) -> &Pool<Self::Db> {
        &self.reader
    }

    fn writer(&self) -> &Pool<Self::Db> {
        &self.writer
    }

    async fn write_tx(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Four set-based queries, whatever the number of rooms.
    async fn chats_of(&self, user_id: UserId, only: Option<&str>) -> StoreResult<Vec<Chat>> {
        // id, kind, title, owner, the user's read marker and notification
        // level, the room's last activity
        type RoomRow = (
            String,
            String,
            Option<String>,
            Option<i64>,
            i64,
            Option<String>,
            i64,
        );
        let rooms: Vec<RoomRow> = sqlx::query_as(
            "SELECT r.id, r.kind, r.title, r.owner_id, mine.last_read_seq, mine.notify,
                    r.last_activity
             FROM room_members mine
             JOIN rooms r ON r.id = mine.room_id
             WHERE mine.user_id = ? AND (? IS NULL OR r.id = ?)
             ORDER BY r.last_activity DESC, r.id",
        )
        .bind(user_id)
        .bind(only)
        .bind(only)
        .fetch_all(&self.reader)
        .await?;
        let members: Vec<RoomMemberRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
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
        let last_messages: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM room_members mine
             JOIN rooms r ON r.id = mine.room_id
             JOIN messages m ON m.room_id = r.id AND m.seq = r.last_seq
             JOIN users u ON u.id = m.sender_id
             WHERE mine.user_id = ? AND (? IS NULL OR r.id = ?)",
            Sqlite::MESSAGE_COLUMNS
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
            .into_iter()
            .map(|row| (row.room_id, row.member.into()))
            .collect();
        let last_messages: Vec<Message> = all(last_messages);
        Ok(rooms
            .into_iter()
            .map(
                |(rid, kind, title, owner_id, last_read_seq, notify, last_activity)| {
                    let room_members: Vec<Member> = members
                        .iter()
                        .filter(|(r, _)| *r == rid)
                        .map(|(_, m)| m.clone())
                        .collect();
                    let kind = RoomKind::parse(&kind);
                    Chat {
                        title: title.unwrap_or_else(|| direct_title(&room_members, user_id)),
                        last_message: last_messages.iter().find(|m| m.rid == rid).cloned(),
                        unread: unread
                            .iter()
                            .find(|(r, _)| *r == rid)
                            .map_or(0, |(_, n)| *n),
                        notify: NotifyLevel::effective(notify.as_deref(), kind),
                        kind,
                        owner_id,
                        members: room_members,
                        last_read_seq,
                        mentions: 0,
                        last_activity,
                        room_id: rid,
                    }
                },
            )
            .collect())
    }

    /// Holds the one writer connection, so that no other write runs, while
    /// the batch writer's thread stores the batch in one job. A batch that
    /// resends stored messages takes two: the thread names them, they are
    /// loaded here in full (what `Plan` needs) and the job goes again — with
    /// the connection held, nothing can have changed them meanwhile.
    async fn store_batch(&self, batch: &[NewMessage]) -> StoreResult<Vec<(Message, Outcome)>> {
        let mut conn = self.writer.acquire().await?;
        let batch: Arc<[NewMessage]> = batch.into();
        let mut stored = Vec::new();
        // Twice at most while the connection is held; the third is a margin.
        for _ in 0..3 {
            match self.batches.write(batch.clone(), stored).await? {
                Written::Stored(answer) => {
                    self.search.nudge();
                    return Ok(answer);
                }
                Written::Resends(ids) => {
                    static BY_IDS: LazyLock<String> = LazyLock::new(|| {
                        format!(
                            "SELECT {} FROM messages m JOIN users u ON u.id = m.sender_id
                             WHERE m.id IN (SELECT value FROM json_each(?))",
                            Sqlite::MESSAGE_COLUMNS
                        )
                    });
                    let rows: Vec<MessageRow> = sqlx::query_as(BY_IDS.as_str())
                        .bind(json(&ids))
                        .fetch_all(&mut *conn)
                        .await?;
                    stored = all(rows);
                }
            }
        }
        Err(StoreError::Database(Fault::Inconsistent(
            "the stored copies of a batch's resends kept changing",
        )))
    }

    async fn search_messages(
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
        // What the index must hold first: every message and change
        // committed before the search began (their senders may hold the ack).
        let (message_id, change_id): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM messages),
                    (SELECT COALESCE(MAX(id), 0) FROM search_changes)",
        )
        .fetch_one(&mut *acquire_before(&self.reader, deadline).await?)
        .await?;
        let wanted = Mark {
            message_id,
            change_id,
        };
        self.search.caught_up(wanted, deadline).await?;
        let conn = acquire_before(&self.reader, deadline).await?;
        let mut search = Interruptible::new(conn, deadline).await?;
        // The index drives: its hits newest first (`ORDER BY f.rowid DESC` is
        // served by FTS5 itself), each looked up by primary key and kept if it
        // is in one of the caller's rooms, until `limit` are found. CROSS JOIN
        // keeps SQLite from turning the loops around (the caller's messages
        // outside, one MATCH per message: seconds in a large room).
        let found = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM search.messages_fts f
             CROSS JOIN messages m ON m.id = f.rowid
             CROSS JOIN users u ON u.id = m.sender_id
             WHERE f.messages_fts MATCH ?
               AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = ?)
               AND m.deleted_at IS NULL AND m.kind = 'text'
             ORDER BY f.rowid DESC LIMIT ?",
            Sqlite::MESSAGE_COLUMNS
        )))
        .bind(query)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&mut *search.conn)
        .await;
        let rows: Vec<MessageRow> = search.finish(found).await?;
        Ok(all(rows))
    }

    async fn close_pools(&self) {
        self.checkpoints.abort();
        self.batches.close().await;
        self.search.close().await;
        self.checkpointer.close().await;
        self.reader.close().await;
        // The last connection to close checkpoints the WAL into the database.
        self.writer.close().await;
    }
}
