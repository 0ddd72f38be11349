//! The two SQL stores. Both run the same SQL text — sqlx binds `$1`-style parameters in
//! SQLite too, and [`crate::Timestamp`] encodes for each — so each aggregate's queries are
//! written once, in a macro that implements its trait for [`PgStore`] and [`SqliteStore`].

mod account_tokens;
mod bots;
mod executions;
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
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgPool, SqlitePool};

use super::StoreError;

/// How long a PostgreSQL connection may sit idle before it is pinged before its next use.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// The distributed store.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// The embedded store: one SQLite file in WAL mode.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        Ok(Self { pool })
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
            // wakes at once. Reads wait their turn too, so a long one (a `/metrics` scrape
            // counts every queued execution) holds writes up for its length. No method may use
            // the pool while it holds a transaction of it: that would wait for itself.
            .max_connections(1)
            // A file does not drop connections; a ping before each use would add one more
            // wake-up of the connection's thread per statement (sqlx already pings each
            // connection it takes back).
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.run_migrations().await?;
        Ok(store)
    }

    pub async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("src/store/sql/sqlite_migrations")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}
