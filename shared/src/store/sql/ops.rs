//! The audit log, the worker registry, health and migrations, for both SQL stores.

use async_trait::async_trait;

use super::{PgStore, SqliteStore};
use crate::domain::WorkerInfo;
use crate::store::{AuditEntry, AuditFilter, AuditRecord, OpsStore, StoreError, TableSize};

macro_rules! ops_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl OpsStore for $store {
            async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id, at, actor_id, action, target, details FROM audit_log WHERE TRUE");
                if let Some(actor) = f.actor_id {
                    q.push(" AND actor_id = ").push_bind(actor);
                }
                if let Some(prefix) = &f.action_prefix {
                    // Prefix match without LIKE, so `_` and `%` in it mean themselves.
                    q.push(" AND substr(action, 1, ").push_bind(prefix.chars().count() as i32).push(") = ").push_bind(prefix.clone());
                }
                if let Some(target) = &f.target {
                    q.push(" AND target = ").push_bind(target.clone());
                }
                if let Some(since) = f.since {
                    q.push(" AND at >= ").push_bind(since);
                }
                q.push(" ORDER BY at DESC, id DESC LIMIT ").push_bind(f.limit);
                Ok(q.build_query_as().fetch_all(self.reads()).await?)
            }

            async fn record_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_log (id, at, actor_id, action, target, details) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::now_v7())
                .bind(e.at)
                .bind(e.actor_id)
                .bind(&e.action)
                .bind(&e.target)
                .bind(sqlx::types::Json(&e.details))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            /// Every column follows the latest report: a worker id may be configured, so the
            /// same id can come back as a restarted, upgraded process on another host.
            async fn upsert_worker(&self, w: &WorkerInfo) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO workers (id, hostname, version, pools, slots, running, state, started_at, last_seen_at, sandbox)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, version = excluded.version,
                       pools = excluded.pools, slots = excluded.slots, running = excluded.running,
                       state = excluded.state, started_at = excluded.started_at,
                       last_seen_at = excluded.last_seen_at, sandbox = excluded.sandbox",
                )
                .bind(&w.id)
                .bind(&w.hostname)
                .bind(&w.version)
                .bind(sqlx::types::Json(&w.pools))
                .bind(w.slots)
                .bind(w.running)
                .bind(&w.state)
                .bind(w.started_at)
                .bind(w.last_seen_at)
                .bind(&w.sandbox)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, hostname, version, pools, slots, running, state, sandbox, started_at, last_seen_at
                     FROM workers ORDER BY last_seen_at DESC LIMIT 1000",
                )
                .fetch_all(self.reads())
                .await?)
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                self.run_migrations().await
            }

            async fn table_sizes(&self) -> Result<Vec<TableSize>, StoreError> {
                self.growing_table_sizes().await
            }

            async fn analyze(&self, table: &str) -> Result<(), StoreError> {
                self.analyze_growing(table).await
            }
        }
    };
}

/// The tables that grow with every execution, and the statement that analyzes each: the
/// columns their statements filter and join on. The others (inputs, outputs, errors) steer no
/// plan and cost most to sample: three times the time of these, measured at 60,000 rows.
const GROWING: &[(&str, &str)] = &[(
    "executions",
    "ANALYZE executions (id, bot_id, owner_id, pool, status, attempt, worker_id, run_at,
     lease_expires_at, max_concurrency, scheduled_for, idempotency_key)",
)];

impl PgStore {
    async fn growing_table_sizes(&self) -> Result<Vec<TableSize>, StoreError> {
        let names: Vec<&str> = GROWING.iter().map(|(name, _)| *name).collect();
        // `to_regclass` follows the search path, as the statements that use the tables do.
        let rows: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT t, c.relpages::bigint, pg_relation_size(c.oid) / current_setting('block_size')::bigint
             FROM unnest($1::text[]) AS t LEFT JOIN pg_class c ON c.oid = to_regclass(t)",
        )
        .bind(&names)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(
                |(table, pages_in_statistics, pages)| match (pages_in_statistics, pages) {
                    (Some(pages_in_statistics), Some(pages)) => Ok(TableSize {
                        table,
                        pages,
                        pages_in_statistics,
                    }),
                    // Not an empty list: that would tell the scheduler there is nothing to watch.
                    _ => Err(StoreError::Config(format!(
                        "table {table} does not exist: run `codex32 migrate`"
                    ))),
                },
            )
            .collect()
    }

    async fn analyze_growing(&self, table: &str) -> Result<(), StoreError> {
        let Some((_, statement)) = GROWING.iter().find(|(name, _)| *name == table) else {
            return Err(StoreError::Config(format!(
                "{table:?} is not a table whose statistics codex32 takes"
            )));
        };
        sqlx::raw_sql(*statement).execute(&self.pool).await?;
        Ok(())
    }
}

/// SQLite plans each statement when it prepares it, from what `ANALYZE` last stored (nothing,
/// unless someone ran it): there is no plan to renew.
impl SqliteStore {
    async fn growing_table_sizes(&self) -> Result<Vec<TableSize>, StoreError> {
        Ok(Vec::new())
    }

    async fn analyze_growing(&self, table: &str) -> Result<(), StoreError> {
        Err(StoreError::Config(format!(
            "{table:?}: the embedded store takes no planner statistics"
        )))
    }
}

ops_store!(PgStore, sqlx::Postgres);
ops_store!(SqliteStore, sqlx::Sqlite);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestSchema;

    /// A scheduler started before `codex32 migrate` must hear that the table is missing, not
    /// that there is nothing to watch (it would stop watching for good).
    #[tokio::test]
    async fn sizes_of_tables_not_yet_migrated_are_an_error() {
        let schema = TestSchema::create().await;
        let store = PgStore::connect(&schema.url).await.expect("connect");
        let missing = store.table_sizes().await;
        assert!(
            matches!(&missing, Err(StoreError::Config(m)) if m.contains("codex32 migrate")),
            "{missing:?}"
        );
        store.run_migrations().await.expect("migrate");
        let sizes = store.table_sizes().await.expect("sizes once migrated");
        assert_eq!(sizes.len(), 1);
        assert_eq!(sizes[0].table, "executions");
    }
}
