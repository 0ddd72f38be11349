//! The queue conformance suite (design §2, style 11): every case is a plain async function
//! over `Arc<dyn Queue>`, and `queue_cases!` runs each one against the in-process queue and a
//! private `redis-server`, so both implementations keep exactly the same semantics.
//!
//! Nothing sleeps to synchronise: leases that must expire are short and awaited with
//! `eventually`; waits that must end early are bounded by a timeout far above what they need.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use codex32_shared::Timestamp;
use codex32_shared::queue::memory::MemoryQueue;
use codex32_shared::queue::redis::RedisQueue;
use codex32_shared::queue::{Lease, Queue, QueueItem};
use codex32_shared::testing::{TestRedis, eventually};
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

/// A lease long enough never to expire during a test.
const LONG: Duration = Duration::from_secs(60);
/// A lease short enough to expire soon, for the reaper's cases.
const SHORT: Duration = Duration::from_millis(300);
/// How long `eventually` keeps polling before a case fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// One backend's queue and, for Redis, the server it talks to (killed after the queue).
struct Backend {
    queue: Arc<dyn Queue>,
    redis: Option<TestRedis>,
}

impl Backend {
    fn memory() -> Self {
        Self {
            queue: Arc::new(MemoryQueue::new()),
            redis: None,
        }
    }

    async fn redis() -> Self {
        let redis = TestRedis::start();
        let queue = RedisQueue::connect(&redis.url, "codex32-test")
            .await
            .expect("connect to the test redis-server");
        Self {
            queue: Arc::new(queue),
            redis: Some(redis),
        }
    }

    /// Waits until `n` claimers are blocked waiting for work, where the backend can tell
    /// (Redis counts clients blocked in BLPOP); otherwise lets spawned claimers run first.
    async fn until_claimers_block(&self, n: u64) {
        let Some(redis) = &self.redis else {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            return;
        };
        let client = redis::Client::open(redis.url.as_str()).expect("a valid redis URL");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis-server");
        eventually(PATIENCE, "claimers blocked in BLPOP", || {
            let mut conn = conn.clone();
            async move {
                let info: String = redis::cmd("INFO")
                    .arg("clients")
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                let blocked = info
                    .lines()
                    .find_map(|l| l.strip_prefix("blocked_clients:"))?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                (blocked >= n).then_some(())
            }
        })
        .await;
    }
}

/// Instantiates every case of a module once per backend: `<module>::memory::<case>` and
/// `<module>::redis::<case>`. Cases take the queue; those listed after `with_backend:` take the
/// whole [`Backend`], for the few that need to observe it from outside.
macro_rules! queue_cases {
    ($($case:ident),* $(,)? $(; with_backend: $($probed:ident),+ $(,)?)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = crate::Backend::memory();
                    super::$case(backend.queue.clone()).await
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $probed() -> anyhow::Result<()> {
                    super::$probed(&crate::Backend::memory()).await
                }
            )+)?
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = crate::Backend::redis().await;
                    super::$case(backend.queue.clone()).await
                }
            )*
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $probed() -> anyhow::Result<()> {
                    super::$probed(&crate::Backend::redis().await).await
                }
            )+)?
        }
    };
}

#[path = "queue_conformance/basics.rs"]
mod basics;
#[path = "queue_conformance/leases.rs"]
mod leases;
#[path = "queue_conformance/races.rs"]
mod races;
#[path = "queue_conformance/timing.rs"]
mod timing;

// ---- fixtures -------------------------------------------------------------------------------

/// A ready item with a fresh, time-ordered id.
fn item(pool: &str, priority: i32) -> QueueItem {
    QueueItem {
        id: Uuid::now_v7(),
        pool: pool.to_owned(),
        priority,
        run_at: None,
    }
}

/// An item due `ms` milliseconds from now.
fn delayed(pool: &str, ms: i64) -> QueueItem {
    QueueItem {
        run_at: Some(Timestamp::now().plus_millis(ms)),
        ..item(pool, 0)
    }
}

fn pools(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Claims from `names` without waiting, under a long lease.
async fn claim_now(q: &Arc<dyn Queue>, names: &[&str]) -> anyhow::Result<Option<Lease>> {
    Ok(q.claim(&pools(names), LONG, Duration::ZERO).await?)
}

/// (ready, delayed, leased) of every pool the queue lists.
async fn depths(q: &Arc<dyn Queue>) -> anyhow::Result<BTreeMap<String, (u64, u64, u64)>> {
    Ok(q.depths()
        .await?
        .into_iter()
        .map(|d| (d.pool, (d.ready, d.delayed, d.leased)))
        .collect())
}

/// (ready, delayed, leased) of one pool; zeros if the queue does not list it.
async fn depth(q: &Arc<dyn Queue>, pool: &str) -> anyhow::Result<(u64, u64, u64)> {
    Ok(depths(q).await?.get(pool).copied().unwrap_or_default())
}

/// Polls `reap_expired` until it returns something, and returns that.
async fn reaped(q: &Arc<dyn Queue>) -> Vec<(String, Uuid)> {
    eventually(PATIENCE, "an expired lease to be reaped", || async {
        let got = q.reap_expired().await.expect("reap");
        (!got.is_empty()).then_some(got)
    })
    .await
}
