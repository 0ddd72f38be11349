//! Executions for both SQL stores: creation with idempotency, the lease lifecycle, and fenced
//! results. Every state change is one conditional UPDATE, so concurrent claimers, late workers
//! and the lease reaper can never both win.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use uuid::Uuid;

use super::schedule::insert_events;
use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::{ExecStatus, Execution, NewExecution};
use crate::store::{ExecutionFilter, ExecutionStore, Finish, NewEvent, StoreError};

macro_rules! columns {
    () => {
        "id, bot_id, bot_version, owner_id, pool, status, attempt, max_attempts, priority, input, output, \
    error, exit_code, worker_id, idempotency_key, cancel_requested, run_at, lease_expires_at, queued_at, \
    started_at, finished_at, duration_ms, created_by, usage, sandboxed, scheduled_for, replay_of, max_concurrency"
    };
}

/// The lease is fenced by attempt and status; the holder by worker id, or — for the reaper,
/// which names no worker — by the lease having expired.
macro_rules! fence {
    () => {
        "id = $1 AND attempt = $2 AND status || '' = 'running'
    AND (($3 IS NOT NULL AND worker_id = $3) OR ($3 IS NULL AND lease_expires_at < $4))"
    };
}

const FINISH_FINAL: &str = concat!(
    "UPDATE executions SET status = $5, output = $6, error = $7, exit_code = $8, finished_at = $4,
         duration_ms = $9, lease_expires_at = NULL, usage = $11, sandboxed = $12 WHERE ",
    fence!()
);

/// A retry goes back to `queued` with the next attempt number — unless a cancel arrived
/// meanwhile, which ends it instead of leaving an unclaimable queued row.
const FINISH_RETRY: &str = concat!(
    "UPDATE executions SET
         status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END,
         attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt + 1 END,
         finished_at = CASE WHEN cancel_requested THEN $4 ELSE NULL END,
         output = NULL, error = $7, exit_code = $8, duration_ms = $9, run_at = $10, usage = $11, sandboxed = $12,
         worker_id = NULL, lease_expires_at = NULL, started_at = NULL
         WHERE ",
    fence!()
);

// Statements that find executions by id test their status as `status || ''`: the planner then
// cannot use an index on the status for them, and looks them up by id. Statistics taken while
// few executions were queued make it believe `status = 'queued'` matches a handful of rows, so
// it would scan every queued execution instead — with a backlog of 40,000, 400 ms per claim.
// A result or lease renewal of one execution likewise: through `executions_live` it reads
// every entry under 'running', dead ones too (one per execution that ran since the last
// vacuum); by id, one. A batch of results keeps `status = 'running'`: planned on a small table
// (a new deployment, before its first ANALYZE; a plan is kept by its connection), a join of
// many ids would scan the whole table instead — a cost that grows with the table, where the
// status index's grows only with what a vacuum has not yet cleared (loadtest/README.md,
// session 13).

/// A heartbeat: the lease of the attempt this worker holds runs on to `$4`.
const RENEW_LEASE: &str = "UPDATE executions SET lease_expires_at = $4
     WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND status || '' = 'running'
     RETURNING cancel_requested";

/// A cancel in one statement, whichever live state it finds: a queued execution ends, a running
/// one is flagged for its worker. Two statements (one per state) would lose the cancel of an
/// execution that a retry moved from running to queued between them.
const CANCEL: &str = concat!(
    "UPDATE executions SET
         status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
         finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END,
         error = CASE WHEN status = 'queued' THEN 'cancelled before it started' ELSE error END,
         cancel_requested = CASE WHEN status = 'running' THEN TRUE ELSE cancel_requested END
         WHERE id = $1 AND status || '' IN ('queued', 'running') RETURNING ",
    columns!()
);

/// A claim: a queued, due execution becomes running — unless its bot's `max_concurrency`, or
/// its pool's, executions are running already. (The counts are only taken under a limit.)
const CLAIM: &str = concat!(
    "UPDATE executions SET status = 'running', worker_id = $2, started_at = $3, lease_expires_at = $4
     WHERE id = $1 AND status || '' = 'queued' AND (run_at IS NULL OR run_at <= $3)
       AND (max_concurrency IS NULL OR max_concurrency >
            (SELECT count(*) FROM executions r WHERE r.bot_id = executions.bot_id AND r.status = 'running'))
       AND (CASE WHEN (SELECT p.max_concurrency FROM pools p WHERE p.name = executions.pool) IS NULL THEN TRUE
            ELSE (SELECT p.max_concurrency FROM pools p WHERE p.name = executions.pool) >
                 (SELECT count(*) FROM executions r WHERE r.pool = executions.pool AND r.status = 'running') END)
     RETURNING ",
    columns!()
);

/// The claim of executions under no concurrency limit (neither their bot's nor their pool's),
/// in the order its pieces and binds are pushed (worker, now, lease end, now, ids): one
/// statement for a whole batch of ids, nothing to count and nothing to lock — the common case
/// takes one round trip for many executions.
const CLAIM_UNLIMITED: [&str; 5] = [
    "UPDATE executions SET status = 'running', worker_id = ",
    ", started_at = ",
    ", lease_expires_at = ",
    " WHERE status || '' = 'queued' AND max_concurrency IS NULL
       AND NOT EXISTS (SELECT 1 FROM pools p WHERE p.name = executions.pool AND p.max_concurrency IS NOT NULL)
       AND (run_at IS NULL OR run_at <= ",
    ") AND id IN (",
];

/// Final results of many executions in one statement: `VALUES` rows follow, in the order of
/// the columns of `v` (the last two: the timeline entry's kind and message), then the
/// database's tail; each row is fenced like [`FINISH_FINAL`].
const FINISH_MANY: &str = "WITH v (id, attempt, worker_id, at, status, output, error, exit_code, duration_ms, usage, sandboxed, kind, message) AS (";

/// The update of [`FINISH_MANY`] (written as a CTE on PostgreSQL, the statement on SQLite).
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

/// PostgreSQL: the results and the timeline entries of those written, in one statement — no
/// transaction, one round trip and one commit for the whole batch. Returns the ids written.
const PG_FINISH_MANY_TAIL: &str = concat!(
    "), u AS (",
    finish_many_update!(),
    ") INSERT INTO execution_events (execution_id, at, kind, message)
     SELECT v.id, v.at, v.kind, v.message FROM v JOIN u ON u.id = v.id
     RETURNING execution_id"
);

/// SQLite (no data-modifying CTEs): the results only; their entries follow in the same
/// transaction.
const SQLITE_FINISH_MANY_TAIL: &str = concat!(") ", finish_many_update!());

/// PostgreSQL: the `leased` timeline entries of the claims in CTE `c`, written by the claim's
/// own statement (the text of [`NewEvent::leased`]).
const PG_LEASED_ENTRIES: &str = "INSERT INTO execution_events (execution_id, at, kind, message)
     SELECT id, started_at, 'leased',
            'leased by worker ' || worker_id || ' (attempt ' || attempt || ' of ' || max_attempts || ')'
     FROM c";

/// PostgreSQL counts running executions per statement snapshot: claims under a concurrency
/// limit first lock the limit's row (the bot's, the pool's), so they count one after another.
/// (SQLite runs one writer at a time: no lock needed.)
const PG_LIMIT_LOCKS: &[&str] = &[
    "SELECT 1 FROM bots WHERE id = (SELECT bot_id FROM executions WHERE id = $1 AND max_concurrency IS NOT NULL) FOR UPDATE",
    "SELECT 1 FROM pools WHERE name = (SELECT pool FROM executions WHERE id = $1) AND max_concurrency IS NOT NULL FOR UPDATE",
];

/// Rows per multi-row statement of a batch: at most 20 parameters each, well under either
/// database's limit on parameters per statement.
const BATCH_ROWS: usize = 500;

/// Whether every finish names a different execution: a batch statement can only write each
/// row once, so a batch naming one twice is written one by one instead.
fn distinct_ids(finishes: &[&Finish]) -> bool {
    let ids: HashSet<Uuid> = finishes.iter().map(|f| f.id).collect();
    ids.len() == finishes.len()
}

/// The columns a new execution's row is written with, in the order [`insert_rows!`] binds them.
macro_rules! insert_columns {
    () => {
        "id, bot_id, bot_version, owner_id, pool, status, attempt, max_attempts, priority, input,
    idempotency_key, cancel_requested, run_at, queued_at, created_by, scheduled_for, replay_of,
    max_concurrency"
    };
}

/// SQLite: the rows only; their first timeline entries follow in the same transaction.
const SQLITE_INSERT_MANY: [&str; 2] = [
    concat!("INSERT INTO executions (", insert_columns!(), ") "),
    concat!(
        " ON CONFLICT (bot_id, idempotency_key) DO NOTHING RETURNING ",
        columns!()
    ),
];

/// PostgreSQL: `VALUES` rows of the new executions with their first timeline entry's kind and
/// message, then the rows created and the entries of those (an idempotency key already taken
/// creates neither), in one statement.
const PG_INSERT_MANY: [&str; 2] = [
    concat!("WITH v (", insert_columns!(), ", kind, message) AS ("),
    concat!(
        "), c AS (INSERT INTO executions (",
        insert_columns!(),
        ") SELECT ",
        insert_columns!(),
        " FROM v ON CONFLICT (bot_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING ",
        columns!(),
        "), e AS (INSERT INTO execution_events (execution_id, at, kind, message)
         SELECT v.id, v.queued_at, v.kind, v.message FROM v JOIN c ON c.id = v.id)
     SELECT ",
        columns!(),
        " FROM c"
    ),
];

/// Inserts the new executions of `$chunk` with one statement (PostgreSQL, `$ctes`: with their
/// first timeline entries); evaluates to the executions created.
macro_rules! insert_rows {
    ($db:ty, $conn:expr, $chunk:expr, $owner_id:expr, $at:expr, $ctes:expr) => {{
        let [head, tail] = if $ctes {
            PG_INSERT_MANY
        } else {
            SQLITE_INSERT_MANY
        };
        let mut q = sqlx::QueryBuilder::<$db>::new(head);
        q.push_values($chunk, |mut row, new| {
            row.push_bind(new.id)
                .push_bind(new.bot_id)
                .push_bind(new.bot_version)
                .push_bind($owner_id)
                .push_bind(&new.pool)
                .push_bind(ExecStatus::Queued)
                .push_bind(1_i32)
                .push_bind(new.max_attempts)
                .push_bind(new.priority)
                .push_bind(sqlx::types::Json(&new.input))
                .push_bind(&new.idempotency_key)
                .push_bind(false)
                .push_bind(new.run_at)
                .push_bind($at)
                .push_bind(new.created_by)
                .push_bind(new.scheduled_for)
                .push_bind(new.replay_of)
                .push_bind(new.max_concurrency);
            if $ctes {
                let entry = NewEvent::created(new, $at);
                row.push_bind(entry.kind).push_bind(entry.message);
            }
        });
        q.push(tail);
        q.build_query_as::<Execution>().fetch_all($conn).await?
    }};
}

/// The executions holding the idempotency keys that `news` asked for and `created` does not
/// hold (taken before this call), by bot and key: one statement per [`BATCH_ROWS`] keys, so
/// a batch of retries replaying many keys costs one round trip, not one each.
macro_rules! key_holders {
    ($db:ty, $conn:expr, $news:expr, $created:expr) => {{
        let taken: Vec<(Uuid, String)> = keys_taken_before($news, $created).into_iter().collect();
        let mut holders = KeyedExecutions::with_capacity(taken.len());
        for chunk in taken.chunks(BATCH_ROWS) {
            let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                "SELECT ",
                columns!(),
                " FROM executions WHERE idempotency_key IS NOT NULL AND (bot_id, idempotency_key) IN ("
            ));
            q.push_values(chunk, |mut row, (bot_id, key)| {
                row.push_bind(*bot_id).push_bind(key);
            });
            q.push(")");
            let found: Vec<Execution> = q.build_query_as().fetch_all($conn).await?;
            for first in found {
                if let Some(key) = first.idempotency_key.clone() {
                    holders.insert((first.bot_id, key), first);
                }
            }
        }
        holders
    }};
}

type KeyedExecutions = HashMap<(Uuid, String), Execution>;

/// The idempotency keys of requested executions that were not created and whose key no
/// created row of the same call holds: they belong to executions made before.
fn keys_taken_before(news: &[NewExecution], created: &[Execution]) -> HashSet<(Uuid, String)> {
    let made: HashSet<(Uuid, &str)> = created
        .iter()
        .filter_map(|e| Some((e.bot_id, e.idempotency_key.as_deref()?)))
        .collect();
    news.iter()
        .filter_map(|n| Some((n.bot_id, n.idempotency_key.as_deref()?)))
        .filter(|k| !made.contains(k))
        .map(|(bot, key)| (bot, key.to_owned()))
        .collect()
}

/// `news` in the order of their bots and idempotency keys, when more than one claims a key.
/// Inserting a key waits for an uncommitted insert of the same key, so two writes taking the
/// same keys in opposite orders would each wait for the other (PostgreSQL breaks that deadlock
/// after a second by failing one). In one order, the second waits for the first and returns
/// its executions. The sort is stable: of repeated keys in one call, the first still wins.
fn in_key_order(news: &[NewExecution]) -> Option<Vec<NewExecution>> {
    if news.iter().filter(|n| n.idempotency_key.is_some()).count() < 2 {
        return None;
    }
    let mut sorted = news.to_vec();
    sorted.sort_by(|a, b| (a.bot_id, &a.idempotency_key).cmp(&(b.bot_id, &b.idempotency_key)));
    Some(sorted)
}

/// Pairs each requested execution with the row made for it, or — when its idempotency key was
/// taken, before or earlier in the call — with the execution holding the key.
fn in_request_order(
    news: &[NewExecution],
    created: Vec<Execution>,
    mut holders: KeyedExecutions,
) -> Result<Vec<(Execution, bool)>, StoreError> {
    let mut created: HashMap<Uuid, Execution> = created.into_iter().map(|e| (e.id, e)).collect();
    let mut out = Vec::with_capacity(news.len());
    for new in news {
        let key = new.idempotency_key.clone().map(|k| (new.bot_id, k));
        if let Some(e) = created.remove(&new.id) {
            if let Some(key) = key {
                holders.insert(key, e.clone());
            }
            out.push((e, true));
            continue;
        }
        let first = key.and_then(|k| holders.get(&k).cloned()).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "execution {} was neither created nor found",
                new.id
            ))
        })?;
        out.push((first, false));
    }
    Ok(out)
}

/// Writes final results of `$chunk` with one [`FINISH_MANY`] statement ending in `$tail`;
/// evaluates to the ids written.
macro_rules! finish_rows {
    ($db:ty, $conn:expr, $chunk:expr, $tail:expr) => {{
        let mut q = sqlx::QueryBuilder::<$db>::new(FINISH_MANY);
        q.push_values($chunk, |mut row, f| {
            let entry = NewEvent::finished(f);
            row.push_bind(f.id)
                .push_bind(f.attempt)
                .push_bind(&f.worker_id)
                .push_bind(f.at)
                .push_bind(f.status)
                .push_bind(f.output.as_ref().map(sqlx::types::Json))
                .push_bind(&f.error)
                .push_bind(f.exit_code)
                .push_bind(f.duration_ms)
                .push_bind(f.usage.as_ref().map(sqlx::types::Json))
                .push_bind(f.sandboxed)
                .push_bind(entry.kind)
                .push_bind(entry.message);
        });
        q.push($tail);
        let ids: Vec<(Uuid,)> = q.build_query_as().fetch_all($conn).await?;
        ids.into_iter().map(|(id,)| id)
    }};
}

/// `$ctes` says whether the database has data-modifying CTEs (PostgreSQL), so that a claim or
/// finish statement writes its own timeline entries; without them (SQLite) the entries follow
/// in the same transaction.
macro_rules! execution_store {
    ($store:ty, $db:ty, $limit_locks:expr, $ctes:expr, $concurrent_creates:expr) => {
        impl $store {
            /// A claim under concurrency limits: the limits' locks, then the claim, in one
            /// transaction, so two workers cannot both take the last slot.
            async fn claim_limited(
                &self,
                id: Uuid,
                worker_id: &str,
                now: Timestamp,
                lease_until: Timestamp,
            ) -> Result<Option<Execution>, StoreError> {
                let mut tx = self.pool.begin().await?;
                for lock in $limit_locks {
                    sqlx::query(*lock).bind(id).execute(&mut *tx).await?;
                }
                let claimed = sqlx::query_as(CLAIM)
                    .bind(id)
                    .bind(worker_id)
                    .bind(now)
                    .bind(lease_until)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(e) = &claimed {
                    insert_events!($db, &mut *tx, &[NewEvent::leased(e)]);
                }
                tx.commit().await?;
                Ok(claimed)
            }
        }

        #[async_trait]
        impl ExecutionStore for $store {
            fn concurrent_creates(&self) -> usize {
                $concurrent_creates
            }

            async fn create_executions(
                &self,
                news: &[NewExecution],
                owner_id: Uuid,
                at: Timestamp,
            ) -> Result<Vec<(Execution, bool)>, StoreError> {
                if news.is_empty() {
                    return Ok(Vec::new());
                }
                let sorted = in_key_order(news);
                let rows = sorted.as_deref().unwrap_or(news);
                if $ctes && news.len() <= BATCH_ROWS {
                    // One statement writes the rows and their entries: no transaction needed.
                    let mut conn = self.held.lend().await?;
                    let created = insert_rows!($db, &mut *conn, rows, owner_id, at, $ctes);
                    let holders = key_holders!($db, &mut *conn, news, &created);
                    conn.done();
                    return in_request_order(news, created, holders);
                }
                let mut tx = self.pool.begin().await?;
                let mut created: Vec<Execution> = Vec::with_capacity(news.len());
                for chunk in rows.chunks(BATCH_ROWS) {
                    created.extend(insert_rows!($db, &mut *tx, chunk, owner_id, at, $ctes));
                }
                if !$ctes {
                    let made: HashSet<Uuid> = created.iter().map(|e| e.id).collect();
                    let entries: Vec<NewEvent> = news
                        .iter()
                        .filter(|n| made.contains(&n.id))
                        .map(|n| NewEvent::created(n, at))
                        .collect();
                    insert_events!($db, &mut *tx, &entries);
                }
                let holders = key_holders!($db, &mut *tx, news, &created);
                let out = in_request_order(news, created, holders)?;
                tx.commit().await?;
                Ok(out)
            }

            async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
                let sql = concat!("SELECT ", columns!(), " FROM executions WHERE id = $1");
                Ok(sqlx::query_as(sql)
                    .bind(id)
                    .fetch_optional(self.reads())
                    .await?)
            }

            async fn list_executions(
                &self,
                filter: &ExecutionFilter,
            ) -> Result<Vec<Execution>, StoreError> {
                let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM executions WHERE TRUE"
                ));
                if let Some(bot_id) = filter.bot_id {
                    q.push(" AND bot_id = ").push_bind(bot_id);
                }
                // Statuses as literals (of a closed set, nothing a user typed): PostgreSQL's
                // status indexes are partial (migration 0014), and a plan made for any value
                // of a parameter — as prepared statements get after a few runs — cannot use
                // them.
                if let Some(status) = filter.status {
                    q.push(format!(" AND status = '{status}'"));
                }
                if !filter.any_status.is_empty() {
                    let any: Vec<String> =
                        filter.any_status.iter().map(|s| format!("'{s}'")).collect();
                    q.push(format!(" AND status IN ({})", any.join(", ")));
                }
                if let Some(owner) = filter.owner_id {
                    q.push(" AND owner_id = ").push_bind(owner);
                }
                if let Some(before) = filter.before {
                    q.push(" AND id < ").push_bind(before);
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(filter.limit);
                Ok(q.build_query_as().fetch_all(self.reads()).await?)
            }

            async fn request_cancel(
                &self,
                id: Uuid,
                at: Timestamp,
            ) -> Result<Option<Execution>, StoreError> {
                if let Some(changed) = sqlx::query_as(CANCEL)
                    .bind(id)
                    .bind(at)
                    .fetch_optional(&self.pool)
                    .await?
                {
                    return Ok(Some(changed));
                }
                self.get_execution(id).await
            }

            async fn claim_executions(
                &self,
                ids: &[Uuid],
                worker_id: &str,
                now: Timestamp,
                lease_until: Timestamp,
            ) -> Result<Vec<Option<Execution>>, StoreError> {
                let mut unlimited: HashMap<Uuid, Execution> = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(BATCH_ROWS) {
                    let [update, started, lease, due, ids_in] = CLAIM_UNLIMITED;
                    let mut q =
                        sqlx::QueryBuilder::<$db>::new(if $ctes { "WITH c AS (" } else { "" });
                    q.push(update)
                        .push_bind(worker_id)
                        .push(started)
                        .push_bind(now)
                        .push(lease)
                        .push_bind(lease_until);
                    q.push(due).push_bind(now).push(ids_in);
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(concat!(") RETURNING ", columns!()));
                    let rows: Vec<Execution> = if $ctes {
                        // The claims and their timeline entries in one statement.
                        q.push("), e AS (").push(PG_LEASED_ENTRIES).push(concat!(
                            ") SELECT ",
                            columns!(),
                            " FROM c"
                        ));
                        let mut conn = self.held.lend().await?;
                        let rows = q.build_query_as().fetch_all(&mut *conn).await?;
                        conn.done();
                        rows
                    } else {
                        let mut tx = self.pool.begin().await?;
                        let rows: Vec<Execution> = q.build_query_as().fetch_all(&mut *tx).await?;
                        let entries: Vec<NewEvent> = rows.iter().map(NewEvent::leased).collect();
                        insert_events!($db, &mut *tx, &entries);
                        tx.commit().await?;
                        rows
                    };
                    unlimited.extend(rows.into_iter().map(|e| (e.id, e)));
                }
                // An id named twice is claimed once: the first asking gets it.
                let mut claimed: Vec<Option<Execution>> =
                    ids.iter().map(|id| unlimited.remove(id)).collect();
                // Those under a limit (or not claimable at all) take the locked path, one by one.
                for (id, slot) in ids.iter().zip(claimed.iter_mut()) {
                    if slot.is_none() {
                        *slot = self.claim_limited(*id, worker_id, now, lease_until).await?;
                    }
                }
                Ok(claimed)
            }

            async fn renew_lease(
                &self,
                id: Uuid,
                attempt: i32,
                worker_id: &str,
                until: Timestamp,
            ) -> Result<Option<bool>, StoreError> {
                let mut conn = self.held.lend().await?;
                let row: Option<(bool,)> = sqlx::query_as(RENEW_LEASE)
                    .bind(id)
                    .bind(attempt)
                    .bind(worker_id)
                    .bind(until)
                    .fetch_optional(&mut *conn)
                    .await?;
                conn.done();
                Ok(row.map(|(cancel,)| cancel))
            }

            async fn finish_executions(
                &self,
                finishes: &[Finish],
            ) -> Result<Vec<bool>, StoreError> {
                let finals: Vec<&Finish> = finishes
                    .iter()
                    .filter(|f| f.status != ExecStatus::Queued)
                    .collect();
                let batched = !finals.is_empty() && distinct_ids(&finals);
                let retries = finals.len() < finishes.len();
                let tail = if $ctes {
                    PG_FINISH_MANY_TAIL
                } else {
                    SQLITE_FINISH_MANY_TAIL
                };
                let mut written_together = HashSet::new();
                if batched && $ctes && !retries {
                    // Final results only: one statement writes them and their entries.
                    let mut conn = self.held.lend().await?;
                    for chunk in finals.chunks(BATCH_ROWS) {
                        written_together.extend(finish_rows!($db, &mut *conn, chunk, tail));
                    }
                    conn.done();
                    return Ok(finishes
                        .iter()
                        .map(|f| written_together.contains(&f.id))
                        .collect());
                }
                let mut tx = self.pool.begin().await?;
                if batched {
                    for chunk in finals.chunks(BATCH_ROWS) {
                        written_together.extend(finish_rows!($db, &mut *tx, chunk, tail));
                    }
                }
                let mut done = Vec::with_capacity(finishes.len());
                // Entries of results written above by a statement that did not record them.
                let mut events: Vec<NewEvent> = Vec::new();
                for f in finishes {
                    if batched && f.status != ExecStatus::Queued {
                        let written = written_together.contains(&f.id);
                        if written && !$ctes {
                            events.push(NewEvent::finished(f));
                        }
                        done.push(written);
                        continue;
                    }
                    let sql = if f.status == ExecStatus::Queued {
                        FINISH_RETRY
                    } else {
                        FINISH_FINAL
                    };
                    let written = sqlx::query(sql)
                        .bind(f.id)
                        .bind(f.attempt)
                        .bind(&f.worker_id)
                        .bind(f.at)
                        .bind(f.status)
                        .bind(f.output.as_ref().map(sqlx::types::Json))
                        .bind(&f.error)
                        .bind(f.exit_code)
                        .bind(f.duration_ms)
                        .bind(f.run_at)
                        .bind(f.usage.as_ref().map(sqlx::types::Json))
                        .bind(f.sandboxed)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                    if written {
                        events.push(NewEvent::finished(f));
                    }
                    done.push(written);
                }
                // Each result and its timeline entry are written together or not at all.
                insert_events!($db, &mut *tx, &events);
                tx.commit().await?;
                Ok(done)
            }

            async fn expired_leases(
                &self,
                now: Timestamp,
                limit: i64,
            ) -> Result<Vec<Execution>, StoreError> {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM executions WHERE status = 'running' AND lease_expires_at < $1
                     ORDER BY lease_expires_at LIMIT $2"
                );
                Ok(sqlx::query_as(sql)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn queued_page(
                &self,
                after: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<Execution>, StoreError> {
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM executions WHERE status = 'queued' AND id > $1 ORDER BY id LIMIT $2"
                );
                Ok(sqlx::query_as(sql)
                    .bind(after.unwrap_or(Uuid::nil()))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}

// Two creates in flight on PostgreSQL: single requests over 8 connections ran ×1.16 faster
// than with one; four gave no more (loadtest/README.md). SQLite: one connection.
execution_store!(PgStore, sqlx::Postgres, PG_LIMIT_LOCKS, true, 2);
execution_store!(SqliteStore, sqlx::Sqlite, &[] as &[&str], false, 1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestSchema;

    /// Parameter types of one [`FINISH_MANY`] row, in the order of its columns.
    const FINISH_ROW: [&str; 13] = [
        "uuid",
        "int4",
        "text",
        "timestamptz",
        "text",
        "jsonb",
        "text",
        "int4",
        "int8",
        "jsonb",
        "bool",
        "text",
        "text",
    ];

    /// The plan PostgreSQL keeps for `sql` once it settles on a generic one (as it does after
    /// five runs of a prepared statement), made while `executions` is empty — as it is on a
    /// new deployment, where the plans of a worker's long-lived connections are made.
    async fn generic_plan(
        conn: &mut sqlx::PgConnection,
        name: &str,
        sql: &str,
        types: &[&str],
    ) -> String {
        let nulls = vec!["NULL"; types.len()].join(", ");
        let script = format!("PREPARE {name} ({}) AS {sql}", types.join(", "));
        sqlx::raw_sql(sqlx::AssertSqlSafe(script))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
        let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN EXECUTE {name} ({nulls})"
        )))
        .fetch_all(&mut *conn)
        .await
        .expect("explain the prepared statement");
        rows.into_iter()
            .map(|(line,)| line)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A fresh, migrated schema (empty tables, never analyzed — a new deployment's) and a
    /// connection to it of the test's own, whose prepared statements get generic plans at once.
    async fn migrated() -> (TestSchema, sqlx::PgConnection) {
        let schema = TestSchema::create().await;
        let store = PgStore::connect(&schema.url).await.expect("connect");
        store.run_migrations().await.expect("migrate");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url)
            .await
            .expect("a connection of the test's own");
        sqlx::raw_sql("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await
            .expect("plans of this connection are generic at once");
        (schema, conn)
    }

    /// The scans of `executions` itself in `plan` (counts of running executions under a limit
    /// scan `executions r`, by status on purpose).
    fn scans_of_executions(plan: &str) -> Vec<&str> {
        (plan.lines())
            .filter(|l| l.contains("Scan") && l.contains(" on executions  ("))
            .collect()
    }

    /// Statements that change one execution must find it by id, whatever the table's size
    /// when they were planned: through the status index they read an entry for every
    /// execution that ran since the last vacuum.
    #[tokio::test]
    async fn statements_on_one_execution_find_it_by_id() {
        let (_schema, mut conn) = migrated().await;
        // A result's columns as [`FINISH_FINAL`] and [`FINISH_RETRY`] bind them: those of a
        // batch row up to the duration, then `run_at` ($10), usage and sandboxed.
        let fenced = [&FINISH_ROW[..9], &["timestamptz"], &FINISH_ROW[9..11]].concat();
        let cases: [(&str, &str, Vec<&str>); 5] = [
            ("a final result", FINISH_FINAL, fenced.clone()),
            ("a retry", FINISH_RETRY, fenced),
            (
                "a lease renewal",
                RENEW_LEASE,
                vec!["uuid", "int4", "text", "timestamptz"],
            ),
            ("a cancel", CANCEL, vec!["uuid", "timestamptz"]),
            (
                "a claim",
                CLAIM,
                vec!["uuid", "text", "timestamptz", "timestamptz"],
            ),
        ];
        for (n, (what, sql, types)) in cases.into_iter().enumerate() {
            let plan = generic_plan(&mut conn, &format!("one{n}"), sql, &types).await;
            let scans = scans_of_executions(&plan);
            assert!(
                !scans.is_empty() && scans.iter().all(|l| l.contains("using executions_pkey")),
                "{what} should find its execution by id, not by status:\n{plan}"
            );
        }
    }

    /// A batch of results planned on an empty table (a new deployment's) must not scan the
    /// whole table, whose cost would grow with every execution ever run: by id or through the
    /// live executions' index, at any batch size.
    #[tokio::test]
    async fn batches_of_results_never_scan_every_execution() {
        let (_schema, mut conn) = migrated().await;
        for rows in [2, 8, 256] {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let params: Vec<String> =
                        (1..=13).map(|c| format!("${}", r * 13 + c)).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "{FINISH_MANY}VALUES {}{PG_FINISH_MANY_TAIL}",
                values.join(", ")
            );
            let types = FINISH_ROW.repeat(rows);
            let plan = generic_plan(&mut conn, &format!("many{rows}"), &sql, &types).await;
            let scans = scans_of_executions(&plan);
            assert!(
                !scans.is_empty() && scans.iter().all(|l| l.contains("Index Scan using")),
                "results of {rows} executions should be found through an index:\n{plan}"
            );
        }
    }
}
