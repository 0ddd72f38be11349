//! The shared limiter: one counter per key and window in Redis, counted and aged in one
//! script call.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Decision, LimitError, Limiter};

/// KEYS[1] the counter; ARGV[1] the window in ms. Returns the count and the window's ms left.
const HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
}

impl RedisLimiter {
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, LimitError> {
        let client = redis::Client::open(url).map_err(|e| LimitError(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| LimitError(e.to_string()))?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            script: Script::new(HIT),
        })
    }
}

#[async_trait]
impl Limiter for RedisLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Decision, LimitError> {
        let mut conn = self.conn.clone();
        let (count, ttl_ms): (u64, i64) = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(window.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| LimitError(e.to_string()))?;
        Ok(if count > u64::from(limit) {
            Decision::Limited {
                retry_after: Duration::from_millis(ttl_ms.max(0) as u64),
            }
        } else {
            Decision::Allowed
        })
    }
}
