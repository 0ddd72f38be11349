//! The embedded queue: the same semantics as the Redis queue, held in this process. It is
//! empty at start; the scheduler's reconciler fills it from the store (design §2).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Lease, PoolDepth, Queue, QueueError, QueueItem};
use crate::Timestamp;

#[derive(Default)]
struct Pool {
    /// Ready ids: highest priority first, then oldest id (ids are time-ordered UUIDv7).
    ready: BTreeSet<(Reverse<i32>, Uuid)>,
    /// Delayed ids by due time.
    delayed: BTreeSet<(i64, Uuid)>,
    /// Lease deadlines.
    leases: BTreeSet<(i64, Uuid)>,
    /// Every id the pool holds, with its priority and, when leased, its token and deadline.
    jobs: HashMap<Uuid, Job>,
    seq: u64,
}

struct Job {
    priority: i32,
    run_at: i64,
    lease: Option<(u64, i64)>,
}

impl Pool {
    fn promote(&mut self, now: i64) -> usize {
        let due: Vec<(i64, Uuid)> = self.delayed.range(..=(now, Uuid::max())).copied().collect();
        for entry in &due {
            self.delayed.remove(entry);
            if let Some(job) = self.jobs.get(&entry.1) {
                self.ready.insert((Reverse(job.priority), entry.1));
            }
        }
        due.len()
    }

    fn claim(&mut self, now: i64, ttl_ms: i64) -> Option<(Uuid, u64)> {
        self.promote(now);
        let (prio, id) = self.ready.pop_first()?;
        self.seq += 1;
        let deadline = now + ttl_ms;
        self.leases.insert((deadline, id));
        if let Some(job) = self.jobs.get_mut(&id) {
            job.lease = Some((self.seq, deadline));
        } else {
            self.jobs.insert(
                id,
                Job {
                    priority: prio.0,
                    run_at: 0,
                    lease: Some((self.seq, deadline)),
                },
            );
        }
        Some((id, self.seq))
    }

    /// The job, if it is leased with this token.
    fn leased(&mut self, id: Uuid, token: u64) -> Option<&mut Job> {
        self.jobs
            .get_mut(&id)
            .filter(|j| j.lease.is_some_and(|(t, _)| t == token))
    }

    fn drop_job(&mut self, id: Uuid) -> bool {
        let Some(job) = self.jobs.remove(&id) else {
            return false;
        };
        self.ready.remove(&(Reverse(job.priority), id));
        self.delayed.remove(&(job.run_at, id));
        if let Some((_, deadline)) = job.lease {
            self.leases.remove(&(deadline, id));
        }
        true
    }
}

/// In-process [`Queue`].
#[derive(Default)]
pub struct MemoryQueue {
    pools: Mutex<BTreeMap<String, Pool>>,
    wake: Notify,
}

fn now_ms() -> i64 {
    Timestamp::now().millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_pools<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Pool>) -> T) -> T {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut pools)
    }

    /// Up to `max` leases from the first of `names` that has a due id.
    fn try_claim(&self, names: &[String], ttl: Duration, max: usize) -> Vec<Lease> {
        let now = now_ms();
        self.with_pools(|pools| {
            for name in names {
                let Some(pool) = pools.get_mut(name) else {
                    continue;
                };
                let leases: Vec<Lease> = std::iter::from_fn(|| pool.claim(now, ms(ttl)))
                    .take(max)
                    .map(|(id, token)| Lease {
                        id,
                        pool: name.clone(),
                        token,
                    })
                    .collect();
                if !leases.is_empty() {
                    return leases;
                }
            }
            Vec::new()
        })
    }

    /// How long until the earliest delayed id of these pools is due.
    fn next_due_in(&self, names: &[String]) -> Option<Duration> {
        let now = now_ms();
        self.with_pools(|pools| {
            names
                .iter()
                .filter_map(|n| pools.get(n)?.delayed.first().map(|(at, _)| *at))
                .min()
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
        })
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, items: &[QueueItem]) -> Result<usize, QueueError> {
        let now = now_ms();
        let added = self.with_pools(|pools| {
            let mut added = 0;
            for item in items {
                let pool = pools.entry(item.pool.clone()).or_default();
                if pool.jobs.contains_key(&item.id) {
                    continue;
                }
                let run_at = item.run_at.map_or(0, |t| t.millis());
                pool.jobs.insert(
                    item.id,
                    Job {
                        priority: item.priority,
                        run_at,
                        lease: None,
                    },
                );
                if run_at > now {
                    pool.delayed.insert((run_at, item.id));
                } else {
                    pool.ready.insert((Reverse(item.priority), item.id));
                }
                added += 1;
            }
            added
        });
        if added > 0 {
            self.wake.notify_waiters();
        }
        Ok(added)
    }

    async fn claim_many(
        &self,
        pools: &[String],
        ttl: Duration,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leases = self.try_claim(pools, ttl, max.max(1));
            if !leases.is_empty() {
                return Ok(leases);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let nap = self.next_due_in(pools).map_or(left, |due| due.min(left));
            let _ = tokio::time::timeout(nap, notified).await;
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        let deadline = now_ms() + ms(ttl);
        Ok(self.with_pools(|pools| {
            let Some(pool) = pools.get_mut(&lease.pool) else {
                return false;
            };
            let Some(job) = pool.leased(lease.id, lease.token) else {
                return false;
            };
            let old = job.lease.map(|(_, d)| d).unwrap_or_default();
            job.lease = Some((lease.token, deadline));
            pool.leases.remove(&(old, lease.id));
            pool.leases.insert((deadline, lease.id));
            true
        }))
    }

    async fn ack_many(&self, leases: &[Lease]) -> Result<Vec<bool>, QueueError> {
        Ok(self.with_pools(|pools| {
            let mut ack = |lease: &Lease| {
                let Some(pool) = pools.get_mut(&lease.pool) else {
                    return false;
                };
                pool.leased(lease.id, lease.token).is_some() && pool.drop_job(lease.id)
            };
            leases.iter().map(&mut ack).collect()
        }))
    }

    async fn remove(&self, pool: &str, id: Uuid) -> Result<bool, QueueError> {
        Ok(self.with_pools(|pools| pools.get_mut(pool).is_some_and(|p| p.drop_job(id))))
    }

    async fn promote_due(&self) -> Result<usize, QueueError> {
        let now = now_ms();
        let moved = self.with_pools(|pools| pools.values_mut().map(|p| p.promote(now)).sum());
        if moved > 0 {
            self.wake.notify_waiters();
        }
        Ok(moved)
    }

    async fn reap_expired(&self) -> Result<Vec<(String, Uuid)>, QueueError> {
        let now = now_ms();
        Ok(self.with_pools(|pools| {
            let mut reaped = Vec::new();
            for (name, pool) in pools.iter_mut() {
                let expired: Vec<Uuid> = pool
                    .leases
                    .range(..(now, Uuid::nil()))
                    .map(|(_, id)| *id)
                    .collect();
                for id in expired {
                    pool.drop_job(id);
                    reaped.push((name.clone(), id));
                }
            }
            reaped
        }))
    }

    async fn depths(&self) -> Result<Vec<PoolDepth>, QueueError> {
        Ok(self.with_pools(|pools| {
            pools
                .iter()
                .map(|(name, p)| PoolDepth {
                    pool: name.clone(),
                    ready: p.ready.len() as u64,
                    delayed: p.delayed.len() as u64,
                    leased: p.leases.len() as u64,
                })
                .collect()
        }))
    }

    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
}
