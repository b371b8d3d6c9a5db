//! Holding, from outside the server's store, what a commit into a room waits
//! for: SQLite's write lock, or the room's row on PostgreSQL. Used by the
//! store contract (a write that waits) and by the group-commit budget test
//! (sends that queue up meanwhile).

use std::path::Path;

use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, Executor, PgConnection};

pub enum RoomLock {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl RoomLock {
    /// SQLite's write lock on the database at `path` (every room's commits wait).
    pub async fn sqlite(path: &Path) -> RoomLock {
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect to SQLite");
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        RoomLock::Sqlite(conn)
    }

    /// Room `rid`'s row lock in the PostgreSQL database at `url`.
    pub async fn postgres(url: &str, rid: &str) -> RoomLock {
        let mut conn = PgConnection::connect(url).await.expect("connect to PG");
        sqlx::raw_sql("BEGIN")
            .execute(&mut conn)
            .await
            .expect("BEGIN");
        sqlx::query("SELECT id FROM rooms WHERE id = $1 FOR UPDATE")
            .bind(rid)
            .fetch_one(&mut conn)
            .await
            .expect("lock the room row");
        RoomLock::Postgres(conn)
    }

    /// Lets go: commits the holding transaction and closes its connection.
    pub async fn release(self) {
        match self {
            RoomLock::Sqlite(conn) => commit_and_close(conn).await,
            RoomLock::Postgres(conn) => commit_and_close(conn).await,
        }
    }
}

async fn commit_and_close<C>(mut conn: C)
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    sqlx::raw_sql("COMMIT")
        .execute(&mut conn)
        .await
        .expect("COMMIT");
    conn.close().await.ok();
}
