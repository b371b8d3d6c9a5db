//! SQLite's writer of message batches: one thread that owns a connection of
//! its own and its prepared statements.
//!
//! Through sqlx, every statement is a round trip to the connection's worker
//! thread: a message cost ten of them (begin, lookup, bump, insert, claim,
//! commit), two thread wake-ups each, and at 500 msgs/s, one message per
//! batch, the scheduler took a third of the server's CPU. Here a batch is one
//! job: one wake-up into the thread, one back, and the statements run one
//! after the other on the thread, each prepared once (`prepare_cached`), with
//! one row per statement instead of sqlx's JSON arrays unpacked in SQL.
//!
//! The caller ([`SqliteStore`](super::sqlite::SqliteStore)) holds the sqlx
//! writer pool's only connection while a job runs: every other write of the
//! store goes through that pool, so none runs meanwhile and none waits on
//! SQLite's lock (which it would do correctly, on the busy timeout, if a
//! cancelled caller let go of the connection early).
//!
//! Measured (docs/benchmarks.md, "Speed II, second round"): during 8 s at
//! 500 msgs/s the tokio workers switched 65,600 → 29,200 times and sqlx's
//! writer thread 37,100 → 4,100 times; server CPU per message 788 → 596 µs.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use sqlx::sqlite::SqliteSynchronous;
use tokio::sync::oneshot;

use super::batch::{self, Plan};
use crate::domain::model::{Message, stored_attachments};
use crate::domain::store::{Fault, NewMessage, Outcome, StoreError, StoreResult};

/// What a job came to.
pub enum Written {
    /// Committed: each message of the batch and what became of it, in order.
    Stored(Vec<(Message, Outcome)>),
    /// Nothing written: the batch resends these stored messages (ids) and the
    /// job did not carry them. [`Plan`] needs them in full; the caller loads
    /// them and sends the job again with them.
    Resends(Vec<i64>),
}

struct Job {
    batch: Arc<[NewMessage]>,
    /// The stored copies of the batch's resends, as the caller loaded them.
    stored: Vec<Message>,
    reply: oneshot::Sender<StoreResult<Written>>,
}

/// The thread and the way to it. Dropping the job sender ends the thread
/// once it finished the job at hand, and with it its connection.
pub struct BatchWriter {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl BatchWriter {
    /// Opens a connection to the database at `filename` (as sqlx's options
    /// name it; the store's migrations have run) with the settings of the
    /// store's sqlx connections, and starts the thread.
    pub fn start(filename: &Path, synchronous: SqliteSynchronous) -> anyhow::Result<Self> {
        let conn = open(filename, synchronous)?;
        let (jobs, queue) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("natter-sqlite-writer".into())
            .spawn(move || run(conn, queue))?;
        Ok(BatchWriter {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes `batch`, given the stored copies of its resends (none at first).
    pub async fn write(
        &self,
        batch: Arc<[NewMessage]>,
        stored: Vec<Message>,
    ) -> StoreResult<Written> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            batch,
            stored,
            reply,
        };
        let sent = match &*self.jobs.lock().expect("the job sender") {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(stopped());
        }
        // No answer: the thread died (a panic) with the job. Whether that
        // was before or after the commit, nobody can tell.
        answer.await.map_err(|_| stopped())?
    }

    /// Stops the thread and waits for it: its connection is closed when this
    /// returns (so the store's last connection to close is the sqlx writer).
    pub async fn close(&self) {
        self.jobs.lock().expect("the job sender").take();
        let thread = self.thread.lock().expect("the thread").take();
        if let Some(thread) = thread {
            // Joining waits at most for the job at hand.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the SQLite batch writer has stopped".into())
}

/// The same split as for sqlx's errors (`store/mod.rs`): failures to reach or
/// commit to the database — I/O, a lock not obtained within the busy
/// timeout, a full disk — are `Unavailable` (try again later; a failed
/// commit may have reached the disk), any other is the statement's fault.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::DiskFull
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Database(Fault::Driver(Box::new(e))),
        }
    }
}

/// Whether `filename` is how sqlx names `sqlite::memory:`: a database in
/// memory whose cache its connections share (and a connection of ours joins).
pub(super) fn in_memory(filename: &Path) -> bool {
    filename
        .to_str()
        .is_some_and(|name| name.starts_with("file:sqlx-in-memory-"))
}

/// How a connection of our own (not sqlx's) opens `filename`: read-write,
/// URIs understood, serialised by its one thread; joining sqlx's shared
/// in-memory cache where the name is one of those.
pub(super) fn open_flags(filename: &Path, create: bool) -> OpenFlags {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    if in_memory(filename) {
        flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    flags
}

/// The sqlx pools' settings: WAL, `synchronous`, foreign keys, a 10 s busy
/// timeout, and no automatic checkpoint (the store's checkpointer does it).
fn open(filename: &Path, synchronous: SqliteSynchronous) -> anyhow::Result<Connection> {
    // No CREATE: the file exists (the migrations ran), and a name this does
    // not understand as sqlx does must fail here, not become an empty file.
    let conn = Connection::open_with_flags(filename, open_flags(filename, false))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let synchronous = match synchronous {
        SqliteSynchronous::Off => "OFF",
        SqliteSynchronous::Normal => "NORMAL",
        SqliteSynchronous::Full => "FULL",
        SqliteSynchronous::Extra => "EXTRA",
    };
    // The store's background connection copies the WAL into the database
    // every second, off this thread. But only a writer can rewind the WAL to
    // its start, and only when everything in it was copied: under steady
    // traffic new frames always arrive before that, so the WAL grew without
    // end (22 MB/s at 500 msgs/s, and every commit's fdatasync then also
    // wrote the file's new size: stalls of hundreds of milliseconds). So this
    // connection checkpoints too, after a commit that leaves the WAL over
    // WAL_FRAMES frames: little is left to copy by then, and the next batch
    // starts the WAL again from the top: measured at 500 msgs/s, the file
    // stays at 19 MB, rewritten in place (no new blocks for each fdatasync to
    // record). After a burst that took it past WAL_BYTES, it is cut back to
    // that when it is rewound.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = {WAL_FRAMES};
         PRAGMA journal_size_limit = {WAL_BYTES};"
    ))?;
    let migrated: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'messages')",
        [],
        |row| row.get(0),
    )?;
    anyhow::ensure!(
        migrated,
        "the batch writer's connection to {} does not see the store's tables",
        filename.display()
    );
    Ok(conn)
}

/// WAL frames (pages, 4 KiB) past which the writer checkpoints after a
/// commit: SQLite's own default, about 4 MiB.
const WAL_FRAMES: u32 = 1000;
/// The size the WAL file is cut back to when it is rewound: above what steady
/// traffic keeps it at, since cutting it at every rewind makes the commits
/// after it grow the file again (p99 at 500 msgs/s: 55 ms with 16 MiB, against
/// 5.6 ms when it is not cut).
const WAL_BYTES: u64 = 64 * 1024 * 1024;

fn run(conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let written = write(&conn, &job.batch, &job.stored);
        // A caller that went away meanwhile leaves the outcome as it is: its
        // messages are stored or not, as after a crash, and a resend finds them.
        let _ = job.reply.send(written);
    }
}

/// One transaction: commits what it wrote, rolls back on anything else.
fn write(conn: &Connection, batch: &[NewMessage], stored: &[Message]) -> StoreResult<Written> {
    execute(conn, "BEGIN IMMEDIATE")?;
    let written = match write_in_transaction(conn, batch, stored) {
        Ok(Written::Stored(answer)) => match execute(conn, "COMMIT") {
            Ok(()) => return Ok(Written::Stored(answer)),
            Err(e) => Err(e.into()),
        },
        other => other,
    };
    // SQLite may have rolled back already (an I/O error, a full disk).
    if !conn.is_autocommit()
        && let Err(e) = execute(conn, "ROLLBACK")
    {
        tracing::warn!(error = %e, "rolling back a batch of messages failed");
    }
    written
}

/// A statement without parameters or rows, prepared once.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn write_in_transaction(
    conn: &Connection,
    batch: &[NewMessage],
    stored: &[Message],
) -> StoreResult<Written> {
    // The columns of the unique index `messages_by_client_id`, whose partial
    // condition (`client_id IS NOT NULL`) `client_id = ?` implies: one index probe.
    let mut found: Vec<i64> = Vec::new();
    let keys = batch::resend_keys(batch);
    if !keys.is_empty() {
        let mut lookup = conn.prepare_cached(
            "SELECT id FROM messages WHERE room_id = ?1 AND sender_id = ?2 AND client_id = ?3",
        )?;
        for (rid, sender, client_id) in keys {
            if let Some(id) = lookup
                .query_row(params![rid, sender, client_id], |row| row.get(0))
                .optional()?
            {
                found.push(id);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    let mut given: Vec<i64> = stored.iter().map(|m| m.id).collect();
    given.sort_unstable();
    given.dedup();
    if found != given {
        return Ok(Written::Resends(found));
    }

    let plan = Plan::new(batch, stored);
    if plan.fresh.is_empty() {
        return Ok(Written::Stored(plan.finish(&[], &[])));
    }
    // Each room's counter moves once, by its number of new messages.
    let mut bump = conn.prepare_cached(
        "UPDATE rooms SET last_seq = last_seq + ?1, last_activity = MAX(last_activity, ?2)
         WHERE id = ?3 RETURNING last_seq",
    )?;
    let mut bumped: HashMap<String, i64> = HashMap::with_capacity(plan.rooms.len());
    for room in &plan.rooms {
        let last = bump
            .query_row(params![room.count, room.latest_ms, room.rid], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(last) = last {
            bumped.insert(room.rid.to_owned(), last);
        }
    }
    // A room that is gone: `Fault::NoSuchRoom`.
    let seqs = plan.seqs(&bumped)?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (room_id, seq, sender_id, body, client_id, created_at,
                               reply_to_seq, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
    )?;
    let mut ids = Vec::with_capacity(plan.fresh.len());
    for (m, &seq) in plan.fresh.iter().zip(&seqs) {
        let id: i64 = insert.query_row(
            params![
                m.rid,
                seq,
                m.sender.id,
                m.body,
                m.client_id,
                m.now_ms,
                m.reply_to.as_ref().map(|q| q.seq),
                stored_attachments(&m.attachments),
            ],
            |row| row.get(0),
        )?;
        ids.push(id);
    }
    // As `shared::claim_attachments`: each file must still be the sender's,
    // in this room, and not sent yet.
    for (m, &id) in plan.fresh.iter().zip(&ids) {
        for attachment in &m.attachments {
            let claimed = conn
                .prepare_cached(
                    "UPDATE attachments SET message_id = ?1
                     WHERE id = ?2 AND room_id = ?3 AND uploader_id = ?4 AND message_id IS NULL",
                )?
                .execute(params![id, attachment.id, m.rid, m.sender.id])?;
            if claimed != 1 {
                return Err(StoreError::Conflict);
            }
        }
    }
    Ok(Written::Stored(plan.finish(&ids, &seqs)))
}
