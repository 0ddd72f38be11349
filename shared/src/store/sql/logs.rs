//! Execution logs for both SQL stores: batched, all-or-nothing appends, ordered reads from an
//! offset.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::domain::LogLine;
use crate::store::{LogStore, NewLogLine, StoreError};

/// Rows per INSERT statement: well under both databases' bind-parameter limits (5 each).
const ROWS_PER_STATEMENT: usize = 500;

macro_rules! log_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl LogStore for $store {
            /// One transaction around the statements: a batch is all or nothing, so a writer
            /// that retries a failed batch does not duplicate the lines that got in. Both
            /// databases assign ids in VALUES order; sorting what RETURNING gives back (in
            /// no promised order) pairs each id with its line.
            async fn append_logs(&self, lines: &[NewLogLine]) -> Result<Vec<i64>, StoreError> {
                if lines.is_empty() {
                    return Ok(Vec::new());
                }
                let mut ids = Vec::with_capacity(lines.len());
                let mut tx = self.pool.begin().await?;
                for chunk in lines.chunks(ROWS_PER_STATEMENT) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO execution_logs (execution_id, attempt, stream, line, at) ",
                    );
                    q.push_values(chunk, |mut row, l| {
                        row.push_bind(l.execution_id)
                            .push_bind(l.attempt)
                            .push_bind(l.stream)
                            .push_bind(&l.line)
                            .push_bind(l.at);
                    });
                    q.push(" RETURNING id");
                    let mut chunk_ids: Vec<i64> =
                        q.build_query_scalar().fetch_all(&mut *tx).await?;
                    chunk_ids.sort_unstable();
                    ids.extend(chunk_ids);
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn read_logs(
                &self,
                execution_id: Uuid,
                after: i64,
                limit: i64,
            ) -> Result<Vec<LogLine>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, execution_id, attempt, stream, line, at FROM execution_logs
                     WHERE execution_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                )
                .bind(execution_id)
                .bind(after)
                .bind(limit)
                .fetch_all(self.reads())
                .await?)
            }
        }
    };
}

log_store!(PgStore, sqlx::Postgres);
log_store!(SqliteStore, sqlx::Sqlite);
