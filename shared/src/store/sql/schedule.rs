//! Timelines, cron bookkeeping and the leader lease, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::{Bot, Execution, TimelineEvent};
use crate::store::{
    BotStore, ExecutionStore, NewEvent, PoolSettings, PoolStats, ScheduleStore, StoreError,
};

/// Rows per INSERT statement (4 parameters each).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// Inserts timeline events, many rows a statement, on `$conn` (a pool or a transaction).
macro_rules! insert_events {
    ($db:ty, $conn:expr, $events:expr) => {
        for chunk in $events.chunks($crate::store::sql::schedule::ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<$db>::new(
                "INSERT INTO execution_events (execution_id, at, kind, message) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.push_bind(e.execution_id)
                    .push_bind(e.at)
                    .push_bind(e.kind)
                    .push_bind(&e.message);
            });
            q.build().execute($conn).await?;
        }
    };
}
pub(super) use insert_events;

/// Rows of type `$row` from `$head <ids…> $tail`, for any number of bot ids (a statement per
/// [`ROWS_PER_STATEMENT`] of them).
macro_rules! by_bot_ids {
    ($db:ty, $pool:expr, $row:ty, $ids:expr, $head:expr, $tail:expr) => {{
        let mut rows: Vec<$row> = Vec::new();
        for chunk in $ids.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<$db>::new($head);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            q.push($tail);
            rows.extend(q.build_query_as::<$row>().fetch_all($pool).await?);
        }
        rows
    }};
}

macro_rules! schedule_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl ScheduleStore for $store {
            async fn record_events(&self, events: &[NewEvent]) -> Result<(), StoreError> {
                insert_events!($db, &self.pool, events);
                Ok(())
            }

            async fn timeline(&self, execution_id: Uuid) -> Result<Vec<TimelineEvent>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, execution_id, at, kind, message FROM execution_events WHERE execution_id = $1 ORDER BY id LIMIT 10000",
                )
                .bind(execution_id)
                .fetch_all(self.reads())
                .await?)
            }

            async fn running_count(&self, bot_id: Uuid) -> Result<i64, StoreError> {
                let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE bot_id = $1 AND status = 'running'")
                    .bind(bot_id)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn try_lead(&self, name: &str, holder: &str, now: Timestamp, until: Timestamp) -> Result<Option<i64>, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO leader_leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $4)
                     ON CONFLICT (name) DO UPDATE SET
                       token = leader_leases.token + CASE WHEN leader_leases.holder = excluded.holder THEN 0 ELSE 1 END,
                       holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE leader_leases.holder = excluded.holder OR leader_leases.expires_at < $3
                     RETURNING token",
                )
                .bind(name)
                .bind(holder)
                .bind(now)
                .bind(until)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(token,)| token))
            }

            async fn scheduled_bots(&self) -> Result<Vec<Bot>, StoreError> {
                let bots = self.list_bots(None).await?;
                Ok(bots.into_iter().filter(|b| b.spec.schedule.is_some()).collect())
            }

            async fn last_fires(&self, bot_ids: &[Uuid]) -> Result<Vec<(Uuid, Timestamp)>, StoreError> {
                Ok(by_bot_ids!($db, &self.pool, (Uuid, Timestamp), bot_ids,
                    "SELECT bot_id, max(scheduled_for) FROM executions WHERE scheduled_for IS NOT NULL AND bot_id IN (",
                    ") GROUP BY bot_id"))
            }

            async fn live_scheduled(&self, bot_id: Uuid) -> Result<Vec<Execution>, StoreError> {
                self.list_executions(&crate::store::ExecutionFilter {
                    bot_id: Some(bot_id),
                    any_status: vec![crate::domain::ExecStatus::Queued, crate::domain::ExecStatus::Running],
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .map(|all| all.into_iter().filter(|e| e.scheduled_for.is_some()).collect())
            }

            async fn live_scheduled_bots(&self, bot_ids: &[Uuid]) -> Result<Vec<(Uuid, crate::domain::ExecStatus)>, StoreError> {
                Ok(by_bot_ids!($db, &self.pool, (Uuid, crate::domain::ExecStatus), bot_ids,
                    "SELECT bot_id, status FROM executions WHERE status IN ('queued', 'running') AND scheduled_for IS NOT NULL AND bot_id IN (",
                    ")"))
            }

            async fn set_pool_limit(&self, pool: &str, max_concurrency: Option<i32>, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO pools (name, max_concurrency, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET max_concurrency = excluded.max_concurrency, updated_at = excluded.updated_at",
                )
                .bind(pool)
                .bind(max_concurrency)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn pools(&self) -> Result<Vec<PoolSettings>, StoreError> {
                Ok(sqlx::query_as("SELECT name, max_concurrency, updated_at FROM pools ORDER BY name").fetch_all(&self.pool).await?)
            }

            async fn pool_running_count(&self, pool: &str) -> Result<i64, StoreError> {
                let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM executions WHERE pool = $1 AND status = 'running'")
                    .bind(pool)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }

            async fn pool_stats(&self, now: Timestamp) -> Result<Vec<PoolStats>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT pool,
                       SUM(CASE WHEN status = 'queued' AND (run_at IS NULL OR run_at <= $1) THEN 1 ELSE 0 END) AS waiting,
                       MIN(CASE WHEN status = 'queued' AND (run_at IS NULL OR run_at <= $1) THEN COALESCE(run_at, queued_at) END) AS oldest_waiting_since,
                       SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running
                     FROM executions WHERE status IN ('queued', 'running') GROUP BY pool ORDER BY pool",
                )
                .bind(now)
                .fetch_all(self.reads())
                .await?)
            }

            async fn set_bot_status(&self, bot_id: Uuid, status: &str, at: Timestamp) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE bots SET status = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(bot_id)
                    .bind(status)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

schedule_store!(PgStore, sqlx::Postgres);
schedule_store!(SqliteStore, sqlx::Sqlite);
