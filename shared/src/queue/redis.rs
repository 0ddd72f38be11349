//! The distributed queue on Redis. Each atomic step is a Lua script (`lua/*.lua`) touching
//! only keys of one pool, which share the hash tag `{q:<pool>}` so a Redis Cluster keeps them
//! in one slot. Idle claimers block on the pool's wake list, with a timeout that doubles as a
//! poll for delayed ids coming due.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Script};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Lease, PoolDepth, Queue, QueueError, QueueItem};

/// Delayed ids a claim promotes on its way (the scheduler promotes the rest).
const PROMOTE_ON_CLAIM: u32 = 16;
/// Ids moved or reaped per script call, so no call blocks Redis for long.
const BATCH: u32 = 500;

struct Scripts {
    enqueue: Script,
    claim: Script,
    renew: Script,
    ack_many: Script,
    remove: Script,
    promote: Script,
    reap: Script,
}

impl Scripts {
    fn load() -> Self {
        Self {
            enqueue: Script::new(include_str!("lua/enqueue.lua")),
            claim: Script::new(include_str!("lua/claim.lua")),
            renew: Script::new(include_str!("lua/renew.lua")),
            ack_many: Script::new(include_str!("lua/ack_many.lua")),
            remove: Script::new(include_str!("lua/remove.lua")),
            promote: Script::new(include_str!("lua/promote.lua")),
            reap: Script::new(include_str!("lua/reap.lua")),
        }
    }
}

/// The keys of one pool.
struct PoolKeys {
    ready: String,
    delayed: String,
    leases: String,
    jobs: String,
    owners: String,
    seq: String,
    wake: String,
}

/// Redis-backed [`Queue`].
#[derive(Clone)]
pub struct RedisQueue {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    scripts: Arc<Scripts>,
    /// Connections for blocking waits: a BLPOP holds its connection, so each waiter takes one.
    blocking: Arc<Mutex<Vec<MultiplexedConnection>>>,
    rotation: Arc<AtomicUsize>,
}

pub(crate) fn unavailable(err: redis::RedisError) -> QueueError {
    QueueError::Unavailable(err.to_string())
}

impl RedisQueue {
    /// Connects to `url`; every key starts with `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, QueueError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            scripts: Arc::new(Scripts::load()),
            blocking: Arc::new(Mutex::new(Vec::new())),
            rotation: Arc::new(AtomicUsize::new(0)),
        })
    }

    fn keys(&self, pool: &str) -> PoolKeys {
        let base = format!("{}:{{q:{pool}}}", self.prefix);
        PoolKeys {
            ready: format!("{base}:ready"),
            delayed: format!("{base}:delayed"),
            leases: format!("{base}:leases"),
            jobs: format!("{base}:jobs"),
            owners: format!("{base}:owners"),
            seq: format!("{base}:seq"),
            wake: format!("{base}:wake"),
        }
    }

    fn pools_key(&self) -> String {
        format!("{}:pools", self.prefix)
    }

    async fn known_pools(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        let mut pools: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.pools_key())
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        pools.sort();
        Ok(pools)
    }

    async fn enqueue_pool(&self, pool: &str, items: &[&QueueItem]) -> Result<usize, QueueError> {
        let k = self.keys(pool);
        let mut inv = self.scripts.enqueue.prepare_invoke();
        inv.key(&k.ready).key(&k.delayed).key(&k.jobs).key(&k.wake);
        for item in items {
            let run_at = item.run_at.map_or(0, |t| t.millis());
            inv.arg(item.id.to_string()).arg(item.priority).arg(run_at);
        }
        let mut conn = self.conn.clone();
        let added: usize = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(added)
    }

    async fn try_claim(
        &self,
        pool: &str,
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let k = self.keys(pool);
        let mut conn = self.conn.clone();
        let got: Vec<(String, u64)> = self
            .scripts
            .claim
            .key(&k.ready)
            .key(&k.delayed)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.owners)
            .key(&k.seq)
            .arg(ttl_ms(ttl))
            .arg(PROMOTE_ON_CLAIM)
            .arg(max.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        got.into_iter()
            .map(|(id, token)| {
                Ok(Lease {
                    id: parse_id(&id)?,
                    pool: pool.to_owned(),
                    token,
                })
            })
            .collect()
    }

    /// Tries each pool once, starting from a rotating offset so no pool starves.
    async fn claim_round(
        &self,
        pools: &[String],
        ttl: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        for i in 0..pools.len() {
            let pool = &pools[(start + i) % pools.len()];
            let leases = self.try_claim(pool, ttl, max).await?;
            if !leases.is_empty() {
                return Ok(leases);
            }
        }
        Ok(Vec::new())
    }

    /// Acks leases of one pool with one script call.
    async fn ack_pool(&self, pool: &str, leases: &[&Lease]) -> Result<Vec<bool>, QueueError> {
        let k = self.keys(pool);
        let mut inv = self.scripts.ack_many.prepare_invoke();
        inv.key(&k.leases).key(&k.owners).key(&k.jobs);
        for lease in leases {
            inv.arg(lease.id.to_string()).arg(lease.token);
        }
        let mut conn = self.conn.clone();
        let done: Vec<i64> = inv.invoke_async(&mut conn).await.map_err(unavailable)?;
        if done.len() != leases.len() {
            return Err(QueueError::Protocol(format!(
                "{} answers to {} acks",
                done.len(),
                leases.len()
            )));
        }
        Ok(done.into_iter().map(|d| d == 1).collect())
    }

    /// Blocks on the pools' wake lists for at most `wait`.
    async fn wait_for_wake(&self, pools: &[String], wait: Duration) -> Result<(), QueueError> {
        let mut conn = match self.blocking.lock().await.pop() {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(unavailable)?
            }
        };
        let wake_keys: Vec<String> = pools.iter().map(|p| self.keys(p).wake).collect();
        let timeout = wait.as_secs_f64().max(0.01);
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(&wake_keys).arg(timeout);
        let fut = blpop.query_async::<Option<(String, String)>>(&mut conn);
        // Belt and braces: if Redis hangs, the client gives up a little after the server should have.
        match tokio::time::timeout(wait + Duration::from_secs(2), fut).await {
            Ok(Ok(_)) => {
                self.blocking.lock().await.push(conn);
                Ok(())
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Ok(()),
        }
    }
}

fn parse_id(id: &str) -> Result<Uuid, QueueError> {
    Uuid::parse_str(id).map_err(|e| QueueError::Protocol(format!("id {id:?}: {e}")))
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, items: &[QueueItem]) -> Result<usize, QueueError> {
        let mut by_pool: std::collections::BTreeMap<&str, Vec<&QueueItem>> = Default::default();
        for item in items {
            by_pool.entry(item.pool.as_str()).or_default().push(item);
        }
        if by_pool.is_empty() {
            return Ok(0);
        }
        // The set of pools (for the reaper and the promoter) lives outside the pools' hash
        // slots, so it is written by a command of its own — sent together with the scripts on
        // the one multiplexed connection: one round trip, not two.
        let pools: Vec<&str> = by_pool.keys().copied().collect();
        let mut conn = self.conn.clone();
        let named = async {
            redis::cmd("SADD")
                .arg(self.pools_key())
                .arg(&pools)
                .query_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        };
        let added = async {
            let mut added = 0;
            for (pool, items) in &by_pool {
                for chunk in items.chunks(BATCH as usize) {
                    added += self.enqueue_pool(pool, chunk).await?;
                }
            }
            Ok(added)
        };
        let ((), added) = tokio::try_join!(named, added)?;
        Ok(added)
    }

    async fn claim_many(
        &self,
        pools: &[String],
        ttl: Duration,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Lease>, QueueError> {
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let leases = self.claim_round(pools, ttl, max).await?;
            if !leases.is_empty() {
                return Ok(leases);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            // Wake at least once a second to promote delayed ids that came due.
            self.wait_for_wake(pools, left.min(Duration::from_secs(1)))
                .await?;
        }
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, QueueError> {
        let k = self.keys(&lease.pool);
        let mut conn = self.conn.clone();
        let done: i64 = self
            .scripts
            .renew
            .key(&k.leases)
            .key(&k.owners)
            .arg(lease.id.to_string())
            .arg(lease.token)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn ack_many(&self, leases: &[Lease]) -> Result<Vec<bool>, QueueError> {
        let mut by_pool: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, lease) in leases.iter().enumerate() {
            by_pool.entry(lease.pool.as_str()).or_default().push(i);
        }
        let mut done = vec![false; leases.len()];
        for (pool, positions) in by_pool {
            for chunk in positions.chunks(BATCH as usize) {
                let of_pool: Vec<&Lease> = chunk.iter().map(|&i| &leases[i]).collect();
                let answers = self.ack_pool(pool, &of_pool).await?;
                for (&i, answer) in chunk.iter().zip(answers) {
                    done[i] = answer;
                }
            }
        }
        Ok(done)
    }

    async fn remove(&self, pool: &str, id: Uuid) -> Result<bool, QueueError> {
        let k = self.keys(pool);
        let mut conn = self.conn.clone();
        let done: i64 = self
            .scripts
            .remove
            .key(&k.ready)
            .key(&k.delayed)
            .key(&k.leases)
            .key(&k.jobs)
            .key(&k.owners)
            .arg(id.to_string())
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn promote_due(&self) -> Result<usize, QueueError> {
        let mut moved = 0;
        for pool in self.known_pools().await? {
            let k = self.keys(&pool);
            let mut conn = self.conn.clone();
            let n: usize = self
                .scripts
                .promote
                .key(&k.ready)
                .key(&k.delayed)
                .key(&k.jobs)
                .key(&k.wake)
                .arg(BATCH)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            moved += n;
        }
        Ok(moved)
    }

    async fn reap_expired(&self) -> Result<Vec<(String, Uuid)>, QueueError> {
        let mut reaped = Vec::new();
        for pool in self.known_pools().await? {
            let k = self.keys(&pool);
            let mut conn = self.conn.clone();
            let ids: Vec<String> = self
                .scripts
                .reap
                .key(&k.leases)
                .key(&k.owners)
                .key(&k.jobs)
                .arg(BATCH)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for id in ids {
                reaped.push((pool.clone(), parse_id(&id)?));
            }
        }
        Ok(reaped)
    }

    async fn depths(&self) -> Result<Vec<PoolDepth>, QueueError> {
        let pools = self.known_pools().await?;
        // The client refuses an empty pipeline, and a new (or flushed) Redis has no pools.
        if pools.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for pool in &pools {
            let k = self.keys(pool);
            pipe.zcard(&k.ready).zcard(&k.delayed).zcard(&k.leases);
        }
        let mut conn = self.conn.clone();
        let counts: Vec<u64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(pools
            .into_iter()
            .zip(counts.chunks(3))
            .map(|(pool, c)| PoolDepth {
                pool,
                ready: c[0],
                delayed: c[1],
                leased: c[2],
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
