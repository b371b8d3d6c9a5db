//! SQLite's full-text index of messages, kept beside the database by a thread
//! of its own, behind the message commits.
//!
//! Inside the commit, the index cost the batch writer a third of its CPU (the
//! FTS5 segment written and merged at every commit) and several pages per
//! commit to sync: with the triggers dropped, the closed loop delivered
//! 1.3–2.1× the messages per second at half the CPU per message
//! (docs/benchmarks.md, "Speed II, fourth round"). So the index lives in a file
//! of its own (`natter.db` → `natter.db-search`), with its own lock and its
//! own write-ahead log, and this thread fills it:
//!
//! - **New messages** by id: SQLite assigns ids inside its one write
//!   transaction, so they appear in commit order, and everything up to the
//!   indexed mark is in the index.
//! - **Edits, deletions, removals** as a log: triggers on `messages` append
//!   the message's id to `search_changes` (migration 0012); the thread
//!   re-reads such a message as it is now and replaces or drops its entry.
//!   The log is cut back behind the thread (all but its last row, which the
//!   mark names) by the store's checkpointer, and only as far as a step
//!   that is on disk: a step that takes in changes commits with a sync.
//!
//! The marks are stored in the index's file, in the same transaction as the
//! entries, so after a crash the thread goes on from where its last commit
//! left off. They also name the row they stopped at (its `created_at`, the
//! change's message): a file that does not match the database (a backup
//! restored, the database replaced, the index lost) is rebuilt from the
//! start instead of going on from marks that mean other rows.
//!
//! A search first reads the database's last message and change, then waits
//! for the marks to reach them ([`SearchIndex::caught_up`]): a message is
//! found as soon as its sender holds the ack, as when the index was in the
//! commit.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use crate::domain::store::{StoreError, StoreResult};

/// How far the index has come: every message up to `message_id`, every
/// change up to `change_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub message_id: i64,
    pub change_id: i64,
}

impl Mark {
    fn reached(&self, wanted: Mark) -> bool {
        self.message_id >= wanted.message_id && self.change_id >= wanted.change_id
    }
}

/// Rows (messages, and changes) one index transaction reads at most: a
/// rebuild of millions of messages goes in steps that each commit and move
/// the mark, and a search waits for one step at a time.
const STEP_ROWS: i64 = 4096;

/// How often the thread looks for work nobody told it of (edits and
/// deletions go through other connections, which do not nudge it), and how
/// long it waits before trying again after a failure.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// The index file's layout; a file of another version is built anew.
const LAYOUT: i64 = 1;

/// How long the thread lets commits gather after the first nudge before it
/// indexes them, unless a search waits: at 500 msgs/s, one index commit per
/// message cost a wake-up and a commit each (90 µs of server CPU per
/// message); with the wait, one per a dozen messages.
const GATHER: Duration = Duration::from_millis(20);

/// The thread and the ways to it. Raising `stop` (and waking it), or
/// dropping the nudges, ends the thread.
pub struct SearchIndex {
    nudges: SyncSender<()>,
    flags: Arc<Flags>,
    marks: watch::Receiver<Mark>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// What a reader connection attaches as `search`.
    attach_name: String,
}

impl SearchIndex {
    /// Opens (creating if missing, or rebuilding if it does not match the
    /// database at `filename`) the index file beside the database, and
    /// starts the thread. The store's migrations have run.
    pub fn start(filename: &Path) -> anyhow::Result<Self> {
        let names = Names::of(filename)?;
        let (conn, mark) = match open_checked(&names) {
            Err(e) if damaged(&e) && !names.in_memory => {
                // Nothing in it that the database does not hold.
                tracing::warn!(error = %e, file = %names.index, "the search index is damaged: rebuilding it");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", names.index));
                }
                super::create_private_file(Path::new(&names.index))?;
                open_checked(&names)?
            }
            opened => opened?,
        };
        let (nudges, pending) = mpsc::sync_channel(1);
        let (marks_tx, marks) = watch::channel(mark);
        let flags = Arc::new(Flags::default());
        let thread = {
            let flags = flags.clone();
            thread::Builder::new()
                .name("natter-search-index".into())
                .spawn(move || {
                    yield_to_the_traffic();
                    run(conn, pending, &flags, marks_tx)
                })?
        };
        Ok(SearchIndex {
            flags,
            nudges,
            marks,
            thread: Mutex::new(Some(thread)),
            attach_name: names.attach,
        })
    }

    /// Where the log of changes may be cut (the store's checkpointer does it).
    pub fn log_cut(&self) -> LogCut {
        LogCut(self.flags.clone())
    }

    /// The name a reader connection gives `ATTACH … AS search`.
    pub fn attach_name(&self) -> &str {
        &self.attach_name
    }

    /// Tells the thread that messages were committed: it indexes them
    /// within [`GATHER`]. Cheap and never blocks: a nudge already pending is
    /// enough.
    pub fn nudge(&self) {
        // Full: a nudge is pending already, which is enough.
        let _ = self.nudges.try_send(());
    }

    /// Waits until the index holds everything up to `wanted` (read from the
    /// database just before), nudging the thread; `TimedOut` at `deadline`.
    pub async fn caught_up(&self, wanted: Mark, deadline: Instant) -> StoreResult<()> {
        let mut marks = self.marks.clone();
        if marks.borrow_and_update().reached(wanted) {
            return Ok(());
        }
        self.flags.urgent.store(true, Ordering::Relaxed);
        self.nudge();
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            match tokio::time::timeout_at(deadline, marks.changed()).await {
                Err(_) => return Err(StoreError::TimedOut),
                Ok(Err(_)) => {
                    return Err(StoreError::Unavailable(
                        "the search index has stopped".into(),
                    ));
                }
                Ok(Ok(())) => {
                    if marks.borrow_and_update().reached(wanted) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Stops the thread and waits for it (at most the step at hand, even
    /// in the middle of a rebuild: the next start goes on from its mark).
    pub async fn close(&self) {
        self.flags.stop.store(true, Ordering::Relaxed);
        self.nudge();
        let thread = self.thread.lock().expect("the thread").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// A store dropped without [`SearchIndex::close`] must not leave its thread
/// indexing (a rebuild, say) for nobody.
impl Drop for SearchIndex {
    fn drop(&mut self) {
        self.flags.stop.store(true, Ordering::Relaxed);
    }
}

/// How far the log of changes is done with.
pub struct LogCut(Arc<Flags>);

impl LogCut {
    /// The last change that an index step on disk took in: the rows before
    /// it may go (it stays: the mark names it).
    pub fn before(&self) -> i64 {
        self.0.durable_change.load(Ordering::Relaxed)
    }
}

/// What the store and the thread tell each other besides nudges and marks.
#[derive(Default)]
struct Flags {
    /// Up when a search waits for the index: the thread stops gathering.
    urgent: AtomicBool,
    /// Up when the store closes: the thread ends after the step at hand.
    stop: AtomicBool,
    /// See [`LogCut::before`].
    durable_change: AtomicI64,
}

/// Whether opening the index failed on its file's content, which a rebuild
/// replaces (not on the disk, the permissions or the database).
fn damaged(e: &anyhow::Error) -> bool {
    e.downcast_ref::<rusqlite::Error>()
        .and_then(rusqlite::Error::sqlite_error_code)
        .is_some_and(|code| {
            matches!(
                code,
                rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
            )
        })
}

/// The index file's names: how this thread opens it, how it attaches the
/// database, and how the store's readers attach the index.
struct Names {
    index: String,
    database: String,
    attach: String,
    in_memory: bool,
}

impl Names {
    fn of(filename: &Path) -> anyhow::Result<Names> {
        let name = filename
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", filename.display()))?;
        let index = format!("{name}-search");
        let in_memory = super::sqlite_writer::in_memory(filename);
        if in_memory {
            // Another in-memory database, alive while a connection to it is
            // open (this thread's); URIs make ATTACH join the shared caches.
            return Ok(Names {
                attach: format!("{index}?mode=memory&cache=shared"),
                database: format!("{name}?mode=memory&cache=shared"),
                index,
                in_memory,
            });
        }
        // Words of everyone's messages: as private as the database.
        super::create_private_file(Path::new(&index))?;
        Ok(Names {
            attach: index.clone(),
            database: name.to_owned(),
            index,
            in_memory,
        })
    }
}

/// The index file as this thread's main database, the store's database
/// attached as `store`.
///
/// `synchronous = NORMAL`: a commit here is not synced (only checkpoints
/// are). A power cut may take the last steps back, with their marks, and they
/// are done again from the messages and the log; the messages themselves were
/// synced by their own commit. (A step that takes in changes syncs, so that
/// the log is never cut past what the index holds on disk.) Only reads go to
/// the database.
fn open_checked(names: &Names) -> anyhow::Result<(Connection, Mark)> {
    let conn = open(names)?;
    let mark = check_or_reset(&conn)?;
    Ok((conn, mark))
}

fn open(names: &Names) -> anyhow::Result<Connection> {
    let index = Path::new(&names.index);
    let conn = Connection::open_with_flags(index, super::sqlite_writer::open_flags(index, true))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.execute("ATTACH DATABASE ?1 AS store", [&names.database])?;
    Ok(conn)
}

/// Creates the index's tables if missing; empties the index when its file
/// has another layout or its marks do not name the database's rows. The
/// mark to go on from.
fn check_or_reset(conn: &Connection) -> anyhow::Result<Mark> {
    let layout: i64 = conn.query_row("PRAGMA main.user_version", [], |row| row.get(0))?;
    if layout != LAYOUT {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS main.messages_fts; DROP TABLE IF EXISTS main.indexed;
             PRAGMA main.user_version = {LAYOUT};"
        ))?;
    }
    // The words only (`content=''`), not the text: a search reads the text
    // from the database. `contentless_delete` lets an entry be dropped or
    // replaced by id alone. Tokens and prefixes as before (migration 0004).
    conn.execute_batch(
        "CREATE VIRTUAL TABLE IF NOT EXISTS main.messages_fts USING fts5(
             body, content = '', contentless_delete = 1,
             tokenize = 'unicode61 remove_diacritics 2', prefix = '1 2 3'
         );
         CREATE TABLE IF NOT EXISTS main.indexed (
             one INTEGER PRIMARY KEY CHECK (one = 1),
             message_id INTEGER NOT NULL,
             message_created_at INTEGER NOT NULL,
             change_id INTEGER NOT NULL,
             change_message_id INTEGER NOT NULL
         );",
    )?;
    let stored: Option<(i64, i64, i64, i64)> = conn
        .query_row(
            "SELECT message_id, message_created_at, change_id, change_message_id
             FROM main.indexed",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((message_id, created_at, change_id, change_message_id)) = stored else {
        return Ok(Mark::default());
    };
    let message_matches = message_id == 0
        || conn
            .query_row(
                "SELECT created_at FROM store.messages WHERE id = ?1",
                [message_id],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            == Some(created_at);
    // The log is cut only behind a mark: an index that took in no change
    // yet must find it whole.
    let change_matches = if change_id == 0 {
        conn.query_row("SELECT MIN(id) FROM store.search_changes", [], |row| {
            row.get::<_, Option<i64>>(0)
        })?
        .is_none_or(|first| first == 1)
    } else {
        conn.query_row(
            "SELECT message_id FROM store.search_changes WHERE id = ?1",
            [change_id],
            |row| row.get::<_, i64>(0),
        )
        .optional()?
            == Some(change_message_id)
    };
    if message_matches && change_matches {
        return Ok(Mark {
            message_id,
            change_id,
        });
    }
    tracing::info!(
        message_id,
        change_id,
        "the search index does not match the database (restored, or replaced): rebuilding it"
    );
    conn.execute_batch(
        "BEGIN;
         INSERT INTO main.messages_fts (messages_fts) VALUES ('delete-all');
         DELETE FROM main.indexed;
         COMMIT;",
    )?;
    Ok(Mark::default())
}

/// Looks at once when it starts (what was committed since the last run),
/// then after each nudge, [`GATHER`] later unless a search waits, and every
/// [`IDLE_LOOK`] anyway.
fn run(conn: Connection, nudges: Receiver<()>, flags: &Flags, marks: watch::Sender<Mark>) {
    let mut mark = *marks.borrow();
    flags
        .durable_change
        .store(mark.change_id, Ordering::Relaxed);
    loop {
        flags.urgent.store(false, Ordering::Relaxed);
        // Steps until nothing is left, each its own commit.
        while !flags.stop.load(Ordering::Relaxed) {
            match step(&conn, mark) {
                Ok(Step {
                    mark: next,
                    synced,
                    more,
                }) => {
                    if next != mark {
                        mark = next;
                        marks.send_replace(mark);
                    }
                    if synced {
                        flags
                            .durable_change
                            .store(mark.change_id, Ordering::Relaxed);
                    }
                    if !more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "indexing messages for search failed; trying again");
                    break;
                }
            }
        }
        if flags.stop.load(Ordering::Relaxed) {
            return;
        }
        match nudges.recv_timeout(IDLE_LOOK) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let gathered = Instant::now() + GATHER;
        // Gathers unless a search waits or the store closes (both nudge).
        while !flags.urgent.load(Ordering::Relaxed) && !flags.stop.load(Ordering::Relaxed) {
            let left = gathered.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // A nudge meanwhile is either more commits (gather on) or a
            // search (the flag is up: go).
            if let Err(RecvTimeoutError::Disconnected) = nudges.recv_timeout(left) {
                return;
            }
        }
    }
}

/// What a step came to.
struct Step {
    mark: Mark,
    /// Its commit was synced (it took in changes): on disk, whatever happens.
    synced: bool,
    /// Rows are left for another step.
    more: bool,
}

/// One transaction: the changes after `mark`, then the new messages, at most
/// [`STEP_ROWS`] of each, and the new mark. Whether rows are left.
///
/// It reads the database in one snapshot (the transaction's), so a change is
/// applied to a message indexed in an earlier step as the message is in that
/// snapshot, and a message indexed in this step is indexed as it is in it:
/// its earlier changes are in it already, its later ones come in the log.
///
/// A step that finds changes commits with a sync: once the log is cut behind
/// its mark, a power cut must not take the index back before that mark.
/// Edits are rare; new messages alone need no sync (they are read again by
/// id).
fn step(conn: &Connection, mark: Mark) -> rusqlite::Result<Step> {
    let sync: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM store.search_changes WHERE id > ?1)")?
        .query_row([mark.change_id], |row| row.get(0))?;
    execute(
        conn,
        if sync {
            "PRAGMA main.synchronous = FULL"
        } else {
            "PRAGMA main.synchronous = NORMAL"
        },
    )?;
    let tx = conn.unchecked_transaction()?;
    let mut next = mark;
    let mut more = false;
    let mut current = conn.prepare_cached(
        "SELECT body FROM store.messages
         WHERE id = ?1 AND kind = 'text' AND deleted_at IS NULL",
    )?;
    let mut replace = conn
        .prepare_cached("INSERT OR REPLACE INTO main.messages_fts (rowid, body) VALUES (?1, ?2)")?;
    let mut forget = conn.prepare_cached("DELETE FROM main.messages_fts WHERE rowid = ?1")?;

    let mut change_message_id = None;
    {
        let mut changes = conn.prepare_cached(
            "SELECT id, message_id FROM store.search_changes WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut rows = changes.query(params![mark.change_id, STEP_ROWS])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let (id, message_id): (i64, i64) = (row.get(0)?, row.get(1)?);
            count += 1;
            next.change_id = id;
            change_message_id = Some(message_id);
            // Not indexed yet: indexed below or in a later step, as it is then.
            if message_id > mark.message_id {
                continue;
            }
            match current
                .query_row([message_id], |row| row.get::<_, String>(0))
                .optional()?
            {
                Some(body) => replace.execute(params![message_id, body])?,
                None => forget.execute([message_id])?,
            };
        }
        more |= count == STEP_ROWS;
    }

    let mut message_created_at = None;
    {
        let mut fresh = conn.prepare_cached(
            "SELECT id, created_at, body, kind = 'text' AND deleted_at IS NULL
             FROM store.messages WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut rows = fresh.query(params![mark.message_id, STEP_ROWS])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let (id, created_at, searchable): (i64, i64, bool) =
                (row.get(0)?, row.get(1)?, row.get(3)?);
            count += 1;
            next.message_id = id;
            message_created_at = Some(created_at);
            if searchable {
                let body: String = row.get(2)?;
                replace.execute(params![id, body])?;
            }
        }
        more |= count == STEP_ROWS;
    }

    if next == mark {
        return Ok(Step {
            mark,
            synced: false,
            more: false,
        });
    }
    // The marks' rows, to recognise the database by when the file is opened
    // again. A mark that did not move keeps the row it names.
    conn.prepare_cached(
        "INSERT INTO main.indexed
             (one, message_id, message_created_at, change_id, change_message_id)
         VALUES (1, ?1, COALESCE(?2, 0), ?3, COALESCE(?4, 0))
         ON CONFLICT (one) DO UPDATE SET
             message_id = excluded.message_id,
             message_created_at = COALESCE(?2, message_created_at),
             change_id = excluded.change_id,
             change_message_id = COALESCE(?4, change_message_id)",
    )?
    .execute(params![
        next.message_id,
        message_created_at,
        next.change_id,
        change_message_id
    ])?;
    tx.commit()?;
    Ok(Step {
        mark: next,
        // Changes that arrived after the look above went in unsynced.
        synced: sync,
        more,
    })
}

/// A statement without parameters or rows, prepared once.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The index is work that may wait; the sends and their fan-out may not. On
/// two cores its steps (a millisecond or two of CPU every [`GATHER`]) took
/// the place of the tokio workers often enough to raise the p99 of delivery
/// at 500 msgs/s. At a nice value of 10 the scheduler gives it about a tenth
/// of a core that the traffic wants, and all of an idle one.
/// (Linux gives each thread its own nice value; elsewhere this does nothing.)
fn yield_to_the_traffic() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's own id.
        let done =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICE) };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the search index's priority");
        }
    }
}

/// The index thread's nice value (see [`yield_to_the_traffic`]).
#[cfg(target_os = "linux")]
const NICE: libc::c_int = 10;
