//! Executions that wait in a pool no live worker serves. Nothing is wrong with them — a worker
//! of that pool will run them when it comes — but their timeline says why they are waiting,
//! once, so "why is this not running?" always has an answer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::domain::Execution;
use codex32_shared::store::NewEvent;
use uuid::Uuid;

/// How long after its start a scheduler waits before judging pools unserved: workers starting
/// beside it (`codex32 dev`, a fresh deployment) may not have registered yet.
const SETTLE: Duration = Duration::from_secs(8);

/// Which waiting executions were already told why.
pub struct Stranded {
    reported: HashSet<Uuid>,
    started: Instant,
}

impl Default for Stranded {
    fn default() -> Self {
        Self {
            reported: HashSet::new(),
            started: Instant::now(),
        }
    }
}

impl Stranded {
    /// The pools live workers serve now.
    pub async fn served_pools(backends: &Backends) -> anyhow::Result<HashSet<String>> {
        let now = Timestamp::now();
        let workers = backends.store.list_workers().await?;
        Ok(workers
            .into_iter()
            .filter(|w| w.is_live(now))
            .flat_map(|w| w.pools)
            .collect())
    }

    /// Records `waiting: no worker in pool P` for due queued executions of unserved pools.
    /// `seen` collects every queued id of this walk, to forget the ones no longer queued.
    pub async fn note(
        &mut self,
        backends: &Backends,
        page: &[Execution],
        served: &HashSet<String>,
        seen: &mut HashSet<Uuid>,
    ) -> anyhow::Result<usize> {
        let now = Timestamp::now();
        let settled = self.started.elapsed() >= SETTLE;
        let events: Vec<NewEvent> = page
            .iter()
            .inspect(|e| {
                seen.insert(e.id);
            })
            .filter(|e| {
                settled
                    && !served.contains(&e.pool)
                    && e.run_at.is_none_or(|at| at <= now)
                    && !self.reported.contains(&e.id)
            })
            .map(|e| {
                NewEvent::now(
                    e.id,
                    "waiting",
                    format!("waiting: no worker in pool {}", e.pool),
                )
            })
            .collect();
        if !events.is_empty() {
            backends.store.record_events(&events).await?;
            self.reported.extend(events.iter().map(|e| e.execution_id));
        }
        Ok(events.len())
    }

    /// Forgets executions that are no longer queued.
    pub fn retain(&mut self, seen: &HashSet<Uuid>) {
        self.reported.retain(|id| seen.contains(id));
    }
}
