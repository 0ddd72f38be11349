//! Connections the store keeps between its most frequent statements (a submission's insert, a
//! worker's claims, results and lease renewals). A sqlx pool pings every connection it takes
//! back — for PostgreSQL one more round trip and one more wake-up of its backend per
//! statement, ~12 % of PostgreSQL's CPU per execution under single requests (loadtest/README.md,
//! session 14). A statement that ran to its end leaves its connection ready for the next one,
//! so such connections wait here and are lent again without that ping. A statement that
//! failed, or whose caller gave up on it, drops its connection instead: the pool takes it
//! back, pings it and closes it if it is broken, as for any other statement.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use crate::store::StoreError;

/// A connection kept longer than this without use goes back to the pool instead of being
/// lent (which pings it first): it may have been cut meanwhile (a restart, a proxy's timeout).
const KEEP_IDLE: Duration = super::PING_IF_IDLE_FOR;

/// A connection out of the pool for longer than this goes back at its next release, so that
/// the pool's own upkeep (its connections' maximum lifetime) still reaches it.
const KEEP_OUT: Duration = Duration::from_secs(300);

/// The connections kept, and how many at most.
pub(super) struct Held<DB: Database> {
    pool: Pool<DB>,
    idle: Mutex<Vec<Kept<DB>>>,
    keep: usize,
}

struct Kept<DB: Database> {
    conn: PoolConnection<DB>,
    out_since: Instant,
    idle_since: Instant,
}

/// A connection lent by [`Held::lend`]: [`Lent::done`] after its statements succeeded keeps
/// it for the next; dropped otherwise, it goes back to the pool.
pub(super) struct Lent<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    out_since: Instant,
    home: Arc<Held<DB>>,
}

impl<DB: Database> Held<DB> {
    /// Keeps up to `keep` connections of `pool` (0: none, every connection goes back). They
    /// count against the pool's size while kept: keep well under it.
    pub(super) fn new(pool: Pool<DB>, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            pool,
            idle: Mutex::new(Vec::with_capacity(keep)),
            keep,
        })
    }

    /// A kept connection if one is fresh, else one from the pool.
    pub(super) async fn lend(self: &Arc<Self>) -> Result<Lent<DB>, StoreError> {
        if let Some(kept) = self.fresh() {
            return Ok(Lent {
                conn: Some(kept.conn),
                out_since: kept.out_since,
                home: self.clone(),
            });
        }
        let conn = self.pool.acquire().await?;
        Ok(Lent {
            conn: Some(conn),
            out_since: Instant::now(),
            home: self.clone(),
        })
    }

    /// The most recently kept connection; those kept too long go back to the pool.
    fn fresh(&self) -> Option<Kept<DB>> {
        let mut stale = Vec::new();
        let found = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                match idle.pop() {
                    Some(kept) if kept.idle_since.elapsed() > KEEP_IDLE => stale.push(kept),
                    other => break other,
                }
            }
        };
        drop(stale);
        found
    }

    /// How many connections are kept now.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<DB: Database> Lent<DB> {
    /// Its statements ran to their end: keep the connection for the next, if there is room.
    pub(super) fn done(mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.out_since.elapsed() > KEEP_OUT {
            return;
        }
        let home = &self.home;
        let mut idle = home.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < home.keep {
            idle.push(Kept {
                conn,
                out_since: self.out_since,
                idle_since: Instant::now(),
            });
        }
    }
}

impl<DB: Database> Deref for Lent<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        self.conn.as_ref().expect("a lent connection until done")
    }
}

impl<DB: Database> DerefMut for Lent<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_mut().expect("a lent connection until done")
    }
}

#[cfg(test)]
mod tests {
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{PgPool, Postgres};

    use super::*;
    use crate::testing::TestSchema;

    async fn pool(size: u32) -> (TestSchema, PgPool) {
        let schema = TestSchema::create().await;
        let pool = PgPoolOptions::new()
            .max_connections(size)
            .connect(&schema.url)
            .await
            .expect("the test database");
        (schema, pool)
    }

    async fn backend(conn: &mut Lent<Postgres>) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut **conn)
            .await
            .expect("a backend pid")
    }

    /// A connection lent now answers a statement.
    async fn lends_a_working_connection(held: &Arc<Held<Postgres>>) {
        let mut conn = held.lend().await.expect("a connection");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *conn)
            .await
            .expect("a working connection");
        assert_eq!(one, 1);
    }

    #[tokio::test]
    async fn a_connection_whose_statements_ended_is_lent_again() {
        let (_schema, pool) = pool(4).await;
        let held = Held::new(pool, 2);
        let mut first = held.lend().await.expect("a connection");
        let pid = backend(&mut first).await;
        first.done();
        assert_eq!(held.kept(), 1);
        let mut again = held.lend().await.expect("a connection");
        assert_eq!(held.kept(), 0, "lent out again");
        assert_eq!(backend(&mut again).await, pid, "the same backend");
    }

    #[tokio::test]
    async fn a_connection_whose_statement_failed_goes_back_to_the_pool() {
        let (_schema, pool) = pool(4).await;
        let held = Held::new(pool.clone(), 2);
        let mut conn = held.lend().await.expect("a connection");
        sqlx::query("SELECT 1 / 0")
            .execute(&mut *conn)
            .await
            .expect_err("division by zero");
        drop(conn);
        assert_eq!(held.kept(), 0);
        // The pool takes it back (after its ping) and lends it as any other.
        lends_a_working_connection(&held).await;
    }

    #[tokio::test]
    async fn a_connection_left_mid_statement_is_not_kept_and_the_next_statement_works() {
        let (_schema, pool) = pool(1).await;
        let held = Held::new(pool, 1);
        let mut conn = held.lend().await.expect("a connection");
        let slow = sqlx::query("SELECT pg_sleep(1)").execute(&mut *conn);
        let gave_up = tokio::time::timeout(Duration::from_millis(100), slow).await;
        assert!(gave_up.is_err(), "the caller gave up on the statement");
        drop(conn);
        assert_eq!(held.kept(), 0);
        // The pool's only connection comes back usable once the statement has ended.
        lends_a_working_connection(&held).await;
    }

    #[tokio::test]
    async fn at_most_keep_connections_are_kept_and_the_rest_go_back_to_the_pool() {
        let (_schema, pool) = pool(6).await;
        let held = Held::new(pool.clone(), 2);
        let mut lent = Vec::new();
        for _ in 0..5 {
            lent.push(held.lend().await.expect("a connection"));
        }
        for conn in lent {
            conn.done();
        }
        assert_eq!(held.kept(), 2);
        // The other three are the pool's again: four more can be taken from it at once.
        let mut taken = Vec::new();
        for _ in 0..4 {
            let conn = tokio::time::timeout(Duration::from_secs(5), pool.acquire()).await;
            taken.push(
                conn.expect("the pool lends the connections given back")
                    .expect("a connection"),
            );
        }
    }

    #[tokio::test]
    async fn keeping_none_gives_every_connection_back() {
        let (_schema, pool) = pool(1).await;
        let held = Held::new(pool.clone(), 0);
        held.lend().await.expect("a connection").done();
        assert_eq!(held.kept(), 0);
        let back = tokio::time::timeout(Duration::from_secs(5), pool.acquire()).await;
        back.expect("the only connection is the pool's again")
            .expect("a connection");
    }
}
