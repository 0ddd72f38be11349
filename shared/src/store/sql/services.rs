//! Service bots' wanted and reported state, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::{Desired, ServiceReport, ServiceState, ServiceStatus};
use crate::store::{ServiceStore, StoreError};

const SELECT: &str = "SELECT bot_id, desired, state, execution_id, worker_id, restarts, \
     last_exit_code, last_reason, log_tail, started_at, updated_at FROM services WHERE bot_id = $1";

#[derive(sqlx::FromRow)]
struct Row {
    bot_id: Uuid,
    desired: Desired,
    state: ServiceState,
    execution_id: Option<Uuid>,
    worker_id: Option<String>,
    restarts: i32,
    last_exit_code: Option<i32>,
    last_reason: Option<String>,
    log_tail: Option<sqlx::types::Json<Vec<String>>>,
    started_at: Option<Timestamp>,
    updated_at: Timestamp,
}

impl From<Row> for ServiceStatus {
    fn from(r: Row) -> Self {
        Self {
            bot_id: r.bot_id,
            desired: r.desired,
            state: r.state,
            execution_id: r.execution_id,
            worker_id: r.worker_id,
            restarts: r.restarts,
            last_exit_code: r.last_exit_code,
            last_reason: r.last_reason,
            log_tail: r.log_tail.map(|t| t.0).unwrap_or_default(),
            started_at: r.started_at,
            updated_at: r.updated_at,
        }
    }
}

/// Starting resets the counters; stopping keeps them for the post-mortem.
const SET_DESIRED: &str = "INSERT INTO services (bot_id, desired, state, restarts, updated_at)
     VALUES ($1, $2, $3, 0, $4)
     ON CONFLICT (bot_id) DO UPDATE SET desired = excluded.desired, updated_at = excluded.updated_at,
       state = CASE WHEN excluded.desired = 'running' THEN 'pending' ELSE 'stopped' END,
       restarts = CASE WHEN excluded.desired = 'running' THEN 0 ELSE services.restarts END";

/// Fenced by the execution's attempt and worker: a worker presumed lost cannot overwrite the
/// report of the one that took the service over.
const REPORT: &str = "UPDATE services SET state = $2, execution_id = $3, worker_id = $4,
       restarts = restarts + $5, last_exit_code = COALESCE($6, last_exit_code),
       last_reason = COALESCE($7, last_reason), log_tail = COALESCE($8, log_tail),
       started_at = COALESCE($9, started_at), updated_at = $10
     WHERE bot_id = $1 AND desired = 'running'
       AND EXISTS (SELECT 1 FROM executions e WHERE e.id = $3 AND e.attempt = $11 AND e.worker_id = $4)
     RETURNING restarts";

const TO_START: &str = "SELECT s.bot_id FROM services s JOIN bots b ON b.id = s.bot_id
     WHERE s.desired = 'running' AND s.state NOT IN ('exited', 'failed') AND b.deleted_at IS NULL
       AND s.updated_at < $1
       AND NOT EXISTS (SELECT 1 FROM executions e
                       WHERE e.bot_id = s.bot_id AND e.status IN ('queued', 'running'))
     LIMIT 1000";

macro_rules! service_store {
    ($store:ty) => {
        #[async_trait]
        impl ServiceStore for $store {
            async fn service(&self, bot_id: Uuid) -> Result<Option<ServiceStatus>, StoreError> {
                let row: Option<Row> = sqlx::query_as(SELECT)
                    .bind(bot_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(Into::into))
            }

            async fn set_service_desired(
                &self,
                bot_id: Uuid,
                desired: Desired,
                at: Timestamp,
            ) -> Result<ServiceStatus, StoreError> {
                let state = match desired {
                    Desired::Running => ServiceState::Pending,
                    Desired::Stopped => ServiceState::Stopped,
                };
                sqlx::query(SET_DESIRED)
                    .bind(bot_id)
                    .bind(desired)
                    .bind(state)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                self.service(bot_id)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("service {bot_id} vanished")))
            }

            async fn report_service(&self, r: &ServiceReport) -> Result<Option<i32>, StoreError> {
                let restarts: Option<(i32,)> = sqlx::query_as(REPORT)
                    .bind(r.bot_id)
                    .bind(r.state)
                    .bind(r.execution_id)
                    .bind(&r.worker_id)
                    .bind(i32::from(r.restarted))
                    .bind(r.last_exit_code)
                    .bind(&r.last_reason)
                    .bind(r.log_tail.as_ref().map(sqlx::types::Json))
                    .bind(r.started_at)
                    .bind(r.at)
                    .bind(r.attempt)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(restarts.map(|(n,)| n))
            }

            async fn services_to_start(
                &self,
                quiet_since: Timestamp,
            ) -> Result<Vec<Uuid>, StoreError> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(TO_START)
                    .bind(quiet_since)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }
        }
    };
}

service_store!(PgStore);
service_store!(SqliteStore);
