//! Submitting an execution, the same way for every trigger (API, replay, run-now, cron):
//! durable in the store first with its first timeline entry (design §3.1), then offered to
//! the queue and announced on the bus. A queue that is down only delays it: the scheduler's
//! reconciler enqueues every queued execution the queue is missing.

use serde_json::Value;
use uuid::Uuid;

use crate::Backends;
use crate::Timestamp;
use crate::batch::Batcher;
use crate::bus::Event;
use crate::domain::{Bot, ExecStatus, Execution, NewExecution};
use crate::queue::QueueItem;
use crate::store::{NewEvent, StoreError};

impl NewExecution {
    /// An execution of the bot's current version with the bot's settings, made for `why`;
    /// callers set the rest (priority, delay, idempotency key, provenance).
    pub fn of(bot: &Bot, input: Value, why: impl Into<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            bot_id: bot.id,
            bot_version: bot.version,
            pool: bot.spec.pool.clone(),
            max_attempts: bot.spec.max_attempts as i32,
            priority: 0,
            input,
            idempotency_key: None,
            run_at: None,
            created_by: None,
            scheduled_for: None,
            replay_of: None,
            max_concurrency: bot
                .spec
                .max_concurrency
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            why: why.into(),
        }
    }
}

/// Creates the execution (with its first timeline entry) and puts it on its way. Returns it
/// and whether it is new (false: an idempotency key matched an earlier one, which is returned
/// and left alone).
pub async fn submit(
    backends: &Backends,
    new: &NewExecution,
    owner_id: Uuid,
) -> Result<(Execution, bool), StoreError> {
    let mut made = submit_many(backends, std::slice::from_ref(new), owner_id).await?;
    made.pop()
        .ok_or_else(|| StoreError::Corrupt(format!("execution {} was not written", new.id)))
}

/// Creates several executions at once — all durable with their first timeline entries before
/// anything is queued — and puts the new ones on their way with one queue call and pipelined
/// announcements. Returns each with whether it is new, in the order of `news`.
pub async fn submit_many(
    backends: &Backends,
    news: &[NewExecution],
    owner_id: Uuid,
) -> Result<Vec<(Execution, bool)>, StoreError> {
    let results = backends
        .store
        .create_executions(news, owner_id, Timestamp::now())
        .await?;
    let created: Vec<&Execution> = results
        .iter()
        .filter(|(_, new)| *new)
        .map(|(e, _)| e)
        .collect();
    if created.is_empty() {
        return Ok(results);
    }
    let items: Vec<QueueItem> = created.iter().map(|e| QueueItem::from(*e)).collect();
    let updates: Vec<Event> = created.iter().map(|e| Event::updated(e)).collect();
    // The queue call and the announcements at once: the caller waits for one round trip, not
    // two, and subscribers hear of the execution no later than a worker can take it.
    let (queued, published) = tokio::join!(
        backends.queue.enqueue(&items),
        backends.bus.publish_many(&updates)
    );
    if let Err(e) = queued {
        tracing::warn!(executions = created.len(), error = %e, "Queue unavailable; the reconciler will enqueue this batch.");
    }
    if let Err(e) = published {
        tracing::debug!(error = %e, "Events not published.");
    }
    Ok(results)
}

/// Cancels an execution for whatever reason (a user, a schedule's `cancel_previous`): a queued
/// one ends at once and leaves the queue; a running one is flagged and its worker told to stop
/// it. Returns the execution as it now is (None if unknown).
pub async fn cancel(
    backends: &Backends,
    id: Uuid,
    why: &str,
) -> Result<Option<Execution>, StoreError> {
    let Some(exec) = backends.store.request_cancel(id, Timestamp::now()).await? else {
        return Ok(None);
    };
    match exec.status {
        ExecStatus::Cancelled => {
            let _ = backends.queue.remove(&exec.pool, exec.id).await;
            let _ = backends.bus.publish(&Event::updated(&exec)).await;
        }
        ExecStatus::Running => {
            let _ = backends
                .bus
                .publish(&Event::CancelRequested {
                    execution_id: exec.id,
                })
                .await;
        }
        ExecStatus::Queued | ExecStatus::Succeeded | ExecStatus::Failed | ExecStatus::TimedOut => {
            return Ok(Some(exec));
        }
    }
    backends
        .store
        .record_events(&[NewEvent::now(exec.id, "cancel_requested", why)])
        .await?;
    Ok(Some(exec))
}

/// Single submissions from many concurrent callers, written together: the executions that
/// arrive while a batch is being written make the next, which costs one statement and one
/// queue call — instead of one each. An idle submitter writes at once, and so does a busy one
/// with fewer batches in flight than the store takes at once
/// ([`crate::store::ExecutionStore::concurrent_creates`]): a caller waits for its own batch,
/// not for the one before it.
#[derive(Clone)]
pub struct Submitter {
    batcher: Batcher<Submission, Result<(Execution, bool), StoreError>>,
}

struct Submission {
    new: NewExecution,
    owner_id: Uuid,
}

/// Most submissions one batch takes.
const SUBMIT_BATCH: usize = 256;

impl Submitter {
    pub fn start(backends: Backends) -> Self {
        let writes = backends.store.concurrent_creates();
        let batcher =
            Batcher::start_overlapping(SUBMIT_BATCH, writes, move |items: Vec<Submission>| {
                let backends = backends.clone();
                async move { Ok(write_submissions(&backends, items).await) }
            });
        Self { batcher }
    }

    /// [`submit`], group-committed with concurrent ones.
    pub async fn submit(
        &self,
        new: NewExecution,
        owner_id: Uuid,
    ) -> Result<(Execution, bool), StoreError> {
        match self.batcher.submit(Submission { new, owner_id }).await {
            Ok(result) => result,
            Err(e) => Err(StoreError::Corrupt(e)),
        }
    }
}

/// Writes a batch: one [`submit_many`] per owner; if that fails, each of its submissions
/// alone, so one bad submission does not fail the others.
async fn write_submissions(
    backends: &Backends,
    items: Vec<Submission>,
) -> Vec<Result<(Execution, bool), StoreError>> {
    let mut results: Vec<Option<Result<(Execution, bool), StoreError>>> =
        items.iter().map(|_| None).collect();
    let mut groups: Vec<(Uuid, Vec<usize>)> = Vec::new();
    for (i, s) in items.iter().enumerate() {
        match groups.iter_mut().find(|(owner, _)| *owner == s.owner_id) {
            Some((_, members)) => members.push(i),
            None => groups.push((s.owner_id, vec![i])),
        }
    }
    for (owner_id, members) in groups {
        let news: Vec<NewExecution> = members.iter().map(|&i| items[i].new.clone()).collect();
        match submit_many(backends, &news, owner_id).await {
            Ok(done) => {
                for (&i, result) in members.iter().zip(done) {
                    results[i] = Some(Ok(result));
                }
            }
            Err(_) => {
                for &i in &members {
                    results[i] = Some(submit(backends, &items[i].new, owner_id).await);
                }
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| Err(StoreError::Corrupt("a submission was not written".into())))
        })
        .collect()
}
