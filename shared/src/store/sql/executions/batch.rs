//! The batch statements of executions — many new executions, claims or final results in one
//! statement — for each database. Both modules answer the same calls on a connection (a
//! transaction's, or one taken from the pool), so the store's logic is written once; only
//! PostgreSQL's statements also write the timeline entries of the rows they change.

/// The update of a batch of final results from the rows of `v`, each fenced like
/// `FINISH_FINAL`; returns the ids written.
macro_rules! finish_many_update {
    () => {
        "UPDATE executions SET status = v.status, output = v.output, error = v.error, exit_code = v.exit_code,
         finished_at = v.at, duration_ms = v.duration_ms, lease_expires_at = NULL, usage = v.usage,
         sandboxed = v.sandboxed
    FROM v
    WHERE executions.id = v.id AND executions.attempt = v.attempt AND executions.status = 'running'
      AND ((v.worker_id IS NOT NULL AND executions.worker_id = v.worker_id)
           OR (v.worker_id IS NULL AND executions.lease_expires_at < v.at))
    RETURNING executions.id"
    };
}

/// The columns a new execution's row is written with.
macro_rules! insert_columns {
    () => {
        "id, bot_id, bot_version, owner_id, pool, status, attempt, max_attempts, priority, input,
    idempotency_key, cancel_requested, run_at, queued_at, created_by, scheduled_for, replay_of,
    max_concurrency"
    };
}

/// The claim of executions under no concurrency limit (neither their bot's nor their pool's):
/// nothing to count and nothing to lock. Binds the worker, the time and the lease's end as
/// `$1`..`$3`; `$ids` is the test that picks the executions by id.
macro_rules! claim_unlimited {
    ($ids:literal) => {
        concat!(
            "UPDATE executions SET status = 'running', worker_id = $1, started_at = $2, lease_expires_at = $3
             WHERE ",
            $ids,
            " AND status || '' = 'queued' AND max_concurrency IS NULL
               AND NOT EXISTS (SELECT 1 FROM pools p WHERE p.name = executions.pool AND p.max_concurrency IS NOT NULL)
               AND (run_at IS NULL OR run_at <= $2)
             RETURNING ",
            columns!()
        )
    };
}

/// PostgreSQL: each column of a batch is one array parameter, unnested into rows. A kind of
/// batch then has one statement text whatever its size, so each connection prepares it once
/// and the server can keep one plan for it (a text per batch size meant a parse and a plan
/// per statement: ~15 % of the server's time in a burst); and no batch is split to stay under
/// a limit on parameters.
pub(in crate::store::sql) mod pg {
    use sqlx::PgConnection;
    use sqlx::types::Json;
    use uuid::Uuid;

    use crate::Timestamp;
    use crate::domain::{Execution, NewExecution};
    use crate::store::{Finish, NewEvent, StoreError};

    /// New executions and their first timeline entries (an idempotency key already taken
    /// creates neither); answers the rows created.
    const INSERT: &str = concat!(
        "WITH v AS (SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::int4[], $4::text[], $5::int4[],
            $6::int4[], $7::jsonb[], $8::text[], $9::timestamptz[], $10::uuid[], $11::timestamptz[],
            $12::uuid[], $13::int4[], $14::text[], $15::text[])
         AS v (id, bot_id, bot_version, pool, max_attempts, priority, input, idempotency_key, run_at,
               created_by, scheduled_for, replay_of, max_concurrency, kind, message)),
     c AS (INSERT INTO executions (",
        insert_columns!(),
        ")
         SELECT id, bot_id, bot_version, $16::uuid, pool, 'queued', 1, max_attempts, priority, input,
                idempotency_key, FALSE, run_at, $17::timestamptz, created_by, scheduled_for, replay_of,
                max_concurrency
         FROM v ON CONFLICT (bot_id, idempotency_key) DO NOTHING RETURNING ",
        columns!(),
        "),
     e AS (INSERT INTO execution_events (execution_id, at, kind, message)
         SELECT v.id, $17::timestamptz, v.kind, v.message FROM v JOIN c ON c.id = v.id)
     SELECT ",
        columns!(),
        " FROM c"
    );

    /// Claims and their `leased` timeline entries (the text of [`NewEvent::leased`]).
    const CLAIM: &str = concat!(
        "WITH c AS (",
        claim_unlimited!("id = ANY($4)"),
        "), e AS (INSERT INTO execution_events (execution_id, at, kind, message)
         SELECT id, started_at, 'leased',
                'leased by worker ' || worker_id || ' (attempt ' || attempt || ' of ' || max_attempts || ')'
         FROM c)
     SELECT ",
        columns!(),
        " FROM c"
    );

    /// Final results and the timeline entries of those written; answers the ids written.
    const FINISH: &str = concat!(
        "WITH v AS (SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::timestamptz[], $5::text[],
            $6::jsonb[], $7::text[], $8::int4[], $9::int8[], $10::jsonb[], $11::bool[], $12::text[],
            $13::text[])
         AS v (id, attempt, worker_id, at, status, output, error, exit_code, duration_ms, usage,
               sandboxed, kind, message)),
     u AS (",
        finish_many_update!(),
        ")
     INSERT INTO execution_events (execution_id, at, kind, message)
     SELECT v.id, v.at, v.kind, v.message FROM v JOIN u ON u.id = v.id
     RETURNING execution_id"
    );

    /// One array of `f` of each item.
    fn column<'a, T, U>(items: &'a [T], f: impl Fn(&'a T) -> U) -> Vec<U> {
        items.iter().map(f).collect()
    }

    pub async fn insert(
        conn: &mut PgConnection,
        news: &[NewExecution],
        owner_id: Uuid,
        at: Timestamp,
    ) -> Result<Vec<Execution>, StoreError> {
        let entries = column(news, |n| NewEvent::created(n, at));
        Ok(sqlx::query_as(INSERT)
            .bind(column(news, |n| n.id))
            .bind(column(news, |n| n.bot_id))
            .bind(column(news, |n| n.bot_version))
            .bind(column(news, |n| n.pool.as_str()))
            .bind(column(news, |n| n.max_attempts))
            .bind(column(news, |n| n.priority))
            .bind(column(news, |n| Json(&n.input)))
            .bind(column(news, |n| n.idempotency_key.as_deref()))
            .bind(column(news, |n| n.run_at))
            .bind(column(news, |n| n.created_by))
            .bind(column(news, |n| n.scheduled_for))
            .bind(column(news, |n| n.replay_of))
            .bind(column(news, |n| n.max_concurrency))
            .bind(column(&entries, |e| e.kind))
            .bind(column(&entries, |e| e.message.as_str()))
            .bind(owner_id)
            .bind(at)
            .fetch_all(conn)
            .await?)
    }

    pub async fn claim(
        conn: &mut PgConnection,
        ids: &[Uuid],
        worker_id: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<Execution>, StoreError> {
        Ok(sqlx::query_as(CLAIM)
            .bind(worker_id)
            .bind(now)
            .bind(lease_until)
            .bind(ids)
            .fetch_all(conn)
            .await?)
    }

    pub async fn finish(
        conn: &mut PgConnection,
        finals: &[&Finish],
    ) -> Result<Vec<Uuid>, StoreError> {
        let entries = column(finals, |f| NewEvent::finished(f));
        let ids: Vec<(Uuid,)> = sqlx::query_as(FINISH)
            .bind(column(finals, |f| f.id))
            .bind(column(finals, |f| f.attempt))
            .bind(column(finals, |f| f.worker_id.as_deref()))
            .bind(column(finals, |f| f.at))
            .bind(column(finals, |f| f.status.as_str()))
            .bind(column(finals, |f| f.output.as_ref().map(Json)))
            .bind(column(finals, |f| f.error.as_deref()))
            .bind(column(finals, |f| f.exit_code))
            .bind(column(finals, |f| f.duration_ms))
            .bind(column(finals, |f| f.usage.as_ref().map(Json)))
            .bind(column(finals, |f| f.sandboxed))
            .bind(column(&entries, |e| e.kind))
            .bind(column(&entries, |e| e.message.as_str()))
            .fetch_all(conn)
            .await?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }
}

/// SQLite: multi-row statements of at most [`ROWS`] rows (at most 18 parameters each, well
/// under SQLite's limit); the caller writes the timeline entries in the same transaction.
pub(in crate::store::sql) mod sqlite {
    use sqlx::types::Json;
    use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
    use uuid::Uuid;

    use crate::Timestamp;
    use crate::domain::{ExecStatus, Execution, NewExecution};
    use crate::store::{Finish, StoreError};

    const ROWS: usize = 500;

    const INSERT: [&str; 2] = [
        concat!("INSERT INTO executions (", insert_columns!(), ") "),
        concat!(
            " ON CONFLICT (bot_id, idempotency_key) DO NOTHING RETURNING ",
            columns!()
        ),
    ];

    /// The claim, its ids (`$4`…) in place of `{ids}`.
    const CLAIM: &str = claim_unlimited!("id IN ({ids})");

    const FINISH: [&str; 2] = [
        "WITH v (id, attempt, worker_id, at, status, output, error, exit_code, duration_ms, usage, sandboxed) AS (",
        concat!(") ", finish_many_update!()),
    ];

    pub async fn insert(
        conn: &mut SqliteConnection,
        news: &[NewExecution],
        owner_id: Uuid,
        at: Timestamp,
    ) -> Result<Vec<Execution>, StoreError> {
        let mut created = Vec::with_capacity(news.len());
        for chunk in news.chunks(ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(INSERT[0]);
            q.push_values(chunk, |mut row, new| {
                row.push_bind(new.id)
                    .push_bind(new.bot_id)
                    .push_bind(new.bot_version)
                    .push_bind(owner_id)
                    .push_bind(&new.pool)
                    .push_bind(ExecStatus::Queued)
                    .push_bind(1_i32)
                    .push_bind(new.max_attempts)
                    .push_bind(new.priority)
                    .push_bind(Json(&new.input))
                    .push_bind(&new.idempotency_key)
                    .push_bind(false)
                    .push_bind(new.run_at)
                    .push_bind(at)
                    .push_bind(new.created_by)
                    .push_bind(new.scheduled_for)
                    .push_bind(new.replay_of)
                    .push_bind(new.max_concurrency);
            });
            q.push(INSERT[1]);
            created.extend(
                q.build_query_as::<Execution>()
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        Ok(created)
    }

    pub async fn claim(
        conn: &mut SqliteConnection,
        ids: &[Uuid],
        worker_id: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<Execution>, StoreError> {
        let mut claimed = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS) {
            let ids_text: Vec<String> = (4..4 + chunk.len()).map(|n| format!("${n}")).collect();
            let sql = CLAIM.replace("{ids}", &ids_text.join(", "));
            // Only `$n` placeholders were put into the text.
            let mut q = sqlx::query_as::<_, Execution>(sqlx::AssertSqlSafe(sql))
                .bind(worker_id)
                .bind(now)
                .bind(lease_until);
            for id in chunk {
                q = q.bind(*id);
            }
            claimed.extend(q.fetch_all(&mut *conn).await?);
        }
        Ok(claimed)
    }

    pub async fn finish(
        conn: &mut SqliteConnection,
        finals: &[&Finish],
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut written = Vec::with_capacity(finals.len());
        for chunk in finals.chunks(ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(FINISH[0]);
            q.push_values(chunk, |mut row, f| {
                row.push_bind(f.id)
                    .push_bind(f.attempt)
                    .push_bind(&f.worker_id)
                    .push_bind(f.at)
                    .push_bind(f.status)
                    .push_bind(f.output.as_ref().map(Json))
                    .push_bind(&f.error)
                    .push_bind(f.exit_code)
                    .push_bind(f.duration_ms)
                    .push_bind(f.usage.as_ref().map(Json))
                    .push_bind(f.sandboxed);
            });
            q.push(FINISH[1]);
            let ids: Vec<(Uuid,)> = q.build_query_as().fetch_all(&mut *conn).await?;
            written.extend(ids.into_iter().map(|(id,)| id));
        }
        Ok(written)
    }
}
