//! The two SQL stores. Both run the same SQL text — sqlx binds `$1`-style parameters in
//! SQLite too, and [`crate::Timestamp`] encodes for each — so each aggregate's queries are
//! written once, in a macro that implements its trait for [`PgStore`] and [`SqliteStore`].

mod account_tokens;
mod bots;
mod executions;
mod held;
mod logs;
mod oauth;
mod ops;
mod schedule;
mod secrets;
mod services;
mod sessions;
mod users;
mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, Postgres, Sqlite, SqlitePool};

use held::Held;

use super::StoreError;

/// How long a PostgreSQL connection may sit idle before it is pinged before its next use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// SQLite connections for reads (besides the one that writes).
const READ_CONNECTIONS: u32 = 4;

/// Connections of PostgreSQL's pool kept between the most frequent statements ([`held`]).
const PG_KEPT_CONNECTIONS: usize = 4;

/// The distributed store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Connections for the most frequent statements: `held.lend()`, then `done()` after it.
    held: Arc<Held<Postgres>>,
}

/// The embedded store: one SQLite file in WAL mode.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Connections of their own for listings and reports (see [`SqliteStore::reads`]).
    readers: SqlitePool,
    /// Keeps none: the pool's one connection must go back to it after every use.
    held: Arc<Held<Sqlite>>,
}

impl PgStore {
    /// Connects (lazily retrying inside the pool); does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every use is a round trip on every statement's path (a third of
            // an idle dispatch). A connection that was busy recently is alive; one idle for
            // long may have been cut (a restart, a proxy's timeout) and is checked first.
            // One that fails anyway fails its statement (whose caller answers an error or
            // tries again later, as for any database error) and is closed by the pool, which
            // pings every connection it takes back.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        let held = Held::new(pool.clone(), PG_KEPT_CONNECTIONS);
        Ok(Self { pool, held })
    }

    /// Where listings and reports read: the one pool (PostgreSQL serves reads beside writes).
    fn reads(&self) -> &PgPool {
        &self.pool
    }

    pub async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Config(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            // One connection. SQLite takes one writer at a time, and a writer that finds the
            // file locked sleeps in the busy handler (1, 2, 5, 10 … 100 ms) instead of being
            // woken when the lock is free: with eight connections, those sleeps were the tails
            // of `codex32 dev` (a burst's dispatch p99 500 ms; 9 ms with one connection, and
            // ×1.18 batched throughput). The pool's queue for its one connection is fair and
            // wakes at once. Listings and reports read on connections of their own (`reads`);
            // other reads wait their turn here. No method may use the pool while it holds a
            // transaction of it: that would wait for itself.
            .max_connections(1)
            // A file does not drop connections; a ping before each use would add one more
            // wake-up of the connection's thread per statement (sqlx already pings each
            // connection it takes back).
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        // A database in memory exists once per connection: it reads where it writes.
        let readers = if path == ":memory:" || path.is_empty() {
            pool.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .test_before_acquire(false)
                .connect_lazy_with(options.pragma("query_only", "ON"))
        };
        let held = Held::new(pool.clone(), 0);
        let store = Self {
            pool,
            readers,
            held,
        };
        store.run_migrations().await?;
        Ok(store)
    }

    /// Where listings and reports read: connections of their own, so a long read (a
    /// `/metrics` scrape counting every queued execution, a dashboard's page) neither waits
    /// for the one writing connection nor holds it up — in WAL mode readers and the writer
    /// do not block each other, and each read sees what was committed before it began.
    fn reads(&self) -> &SqlitePool {
        &self.readers
    }

    pub async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("src/store/sql/sqlite_migrations")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ExecutionFilter, ExecutionStore, OpsStore};

    #[tokio::test]
    async fn sqlite_listings_read_while_the_writing_connection_is_held_and_cannot_write() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("codex32.db");
        let store = SqliteStore::open(path.to_str().expect("a UTF-8 path"))
            .await
            .expect("the store opens");
        // The one writing connection, held in a transaction that has written.
        let mut writing = store.pool.begin().await.expect("a transaction");
        sqlx::query("DELETE FROM workers")
            .execute(&mut *writing)
            .await
            .expect("a write");
        let filter = ExecutionFilter {
            limit: 10,
            ..Default::default()
        };
        let listed = tokio::time::timeout(Duration::from_secs(5), async {
            (
                store.list_executions(&filter).await,
                store.list_workers().await,
            )
        })
        .await
        .expect("reads do not wait for the writing connection");
        assert!(listed.0.expect("executions listed").is_empty());
        assert!(listed.1.expect("workers listed").is_empty());
        writing.rollback().await.expect("rolled back");
        let refused = sqlx::query("DELETE FROM workers")
            .execute(store.reads())
            .await
            .expect_err("a reading connection refuses writes");
        assert!(refused.to_string().contains("readonly"), "{refused}");
    }
}
