//! The two implementations of the domain's [`Store`](crate::domain::store::Store)
//! contract — SQLite (embedded, the default) and PostgreSQL (a cluster's
//! shared database) — and what they share: the statements and rows written
//! once (`shared.rs`), the plan of a batch of sends, the sorting of sqlx's
//! errors, and [`open`].

mod batch;
pub mod postgres;
mod shared;
pub mod sqlite;
mod sqlite_search;
mod sqlite_writer;

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use sqlx::sqlite::SqliteSynchronous;

use crate::config::StoreArgs;
use crate::domain::store::{Fault, Store, StoreError};
use postgres::{PoolSettings, PostgresStore};
use sqlite::SqliteStore;

impl From<sqlx::Error> for StoreError {
    /// Sorts out the failures of the connection itself, whose remedy is to
    /// try again later, from those of the statement.
    fn from(e: sqlx::Error) -> Self {
        if unreachable(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Database(Fault::Driver(Box::new(e)))
        }
    }
}

/// Whether `e` says the database could not be reached, rather than that it
/// refused the statement: no connection in time, a broken connection, or a
/// server that is shutting down or starting (SQLSTATE class 08, 57P01–57P03,
/// 53300 too many connections).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// An open, migrated database, by kind (some operations exist for one kind only).
pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Database {
    /// The database behind the [`Store`] trait, whichever kind it is.
    pub fn into_store(self) -> Arc<dyn Store> {
        match self {
            Database::Sqlite(store) => Arc::new(store),
            Database::Postgres(store) => Arc::new(store),
        }
    }
}

/// Opens the database that `args` name (the server's and the operations
/// commands' alike) and applies pending migrations. The default SQLite file is
/// created (mode 0600) in the data directory, which is created too.
pub async fn open(args: &StoreArgs, synchronous: SqliteSynchronous) -> anyhow::Result<Database> {
    match &args.database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let pool = PoolSettings {
                size: args.database_pool_size,
                acquire_timeout: Duration::from_millis(args.database_acquire_timeout_ms),
            };
            let store = PostgresStore::open(url, pool)
                .await
                .context("cannot open the database")?;
            Ok(Database::Postgres(store))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let store = SqliteStore::open(url, synchronous)
                .await
                .context("cannot open the database")?;
            Ok(Database::Sqlite(store))
        }
        Some(url) => bail!(
            "unsupported database URL {url:?}: expected sqlite://PATH or postgres://USER@HOST/DB"
        ),
        None => {
            prepare_data_dir(&args.data_dir)?;
            let path = args.data_dir.join("natter.db");
            create_private_file(&path)?;
            let store = SqliteStore::open_file(&path, synchronous)
                .await
                .context("cannot open the database")?;
            Ok(Database::Sqlite(store))
        }
    }
}

/// Creates the data directory (mode 0700) if needed, and checks that it is writable.
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let probe = dir.join(".natter-write-test");
    fs::write(&probe, b"")
        .and_then(|()| fs::remove_file(&probe))
        .with_context(|| format!("data directory {} is not writable", dir.display()))
}

/// Creates the file readable by its owner only, if it does not exist yet.
pub fn create_private_file(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}
