//! The one typed configuration of every codex32 process, read once at start from flags and
//! `CODEX32_*` environment variables (design §5). Nothing else in codex32 reads the environment.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

use crate::retry::RetryPolicy;

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

/// How a worker isolates bots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxMode {
    /// Every bot in the container engine; refuse to start where it is unavailable.
    Isolated,
    /// The container engine where available, else plain processes (with a warning).
    Auto,
    /// Plain child processes, no isolation; every execution is marked unsandboxed.
    None,
}

/// Settings every role needs: where the store, queue and data live, and lease timing.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL (`postgres://…`) or SQLite (`sqlite://PATH`) store. Default: SQLite in the data dir.
    #[arg(long, env = "CODEX32_DATABASE_URL")]
    pub database_url: Option<Secret>,

    /// Redis for the queue and event bus (`redis://…`, `rediss://…`, `redis+unix://…`). Unset: in-process queue and bus.
    #[arg(long, env = "CODEX32_REDIS_URL")]
    pub redis_url: Option<Secret>,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "CODEX32_REDIS_PREFIX", default_value = "codex32")]
    pub redis_prefix: String,

    /// Embedded database, generated secrets and executions' scratch space.
    #[arg(long, env = "CODEX32_DATA_DIR", default_value = "./codex32-data")]
    pub data_dir: PathBuf,

    /// Log filter, e.g. `info` or `codex32_worker=debug,info`.
    #[arg(long, env = "CODEX32_LOG", default_value = "info")]
    pub log: String,

    /// Log line format.
    #[arg(long, env = "CODEX32_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Seconds a worker's lease on an execution lasts without a heartbeat; a dead worker's
    /// executions are retried this long after it stopped renewing.
    #[arg(long, env = "CODEX32_LEASE_TTL_S", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_ttl_s: u64,

    /// First retry delay in milliseconds; it doubles each attempt.
    #[arg(long, env = "CODEX32_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,

    /// Longest retry delay in milliseconds.
    #[arg(long, env = "CODEX32_RETRY_MAX_MS", default_value_t = 300_000)]
    pub retry_max_ms: u64,
}

impl Config {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_s)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(self.retry_base_ms),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_base_ms)),
        }
    }

    /// The store URL, defaulting to a SQLite file in the data directory.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("codex32.db").display()),
        }
    }
}

/// Settings of the API role.
#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Address the HTTP server listens on.
    #[arg(long, env = "CODEX32_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Create this admin at start if no user has this email.
    #[arg(long, env = "CODEX32_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of the bootstrap admin (at least 8 characters).
    #[arg(long, env = "CODEX32_ADMIN_PASSWORD")]
    pub admin_password: Option<Secret>,

    /// HMAC key for access tokens (at least 32 characters); every API process must share it.
    #[arg(long, env = "CODEX32_JWT_SECRET")]
    pub jwt_secret: Option<Secret>,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "CODEX32_ACCESS_TOKEN_TTL_S", default_value_t = 900)]
    pub access_token_ttl_s: u64,

    /// Lifetime of a refresh token, in seconds.
    #[arg(long, env = "CODEX32_REFRESH_TOKEN_TTL_S", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_s: u64,

    /// Largest execution input accepted, in KiB.
    #[arg(long, env = "CODEX32_MAX_INPUT_KB", default_value_t = 1024)]
    pub max_input_kb: usize,
}

/// Settings of the worker role.
#[derive(Debug, Clone, Args)]
pub struct WorkerConfig {
    /// Executions run at once by this worker.
    #[arg(long, env = "CODEX32_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Pools this worker serves, comma-separated.
    #[arg(
        long,
        env = "CODEX32_POOLS",
        value_delimiter = ',',
        default_value = "default"
    )]
    pub pools: Vec<String>,

    /// Seconds a stopping worker waits for running executions before it stops them and hands them back.
    #[arg(long, env = "CODEX32_DRAIN_TIMEOUT_S", default_value_t = 30)]
    pub drain_timeout_s: u64,

    /// Most log bytes kept per attempt; the rest is cut with a marker.
    #[arg(long, env = "CODEX32_LOG_LIMIT_KB", default_value_t = 1024)]
    pub log_limit_kb: usize,

    /// Bot isolation: `isolated` (default for `worker`), `auto` (default for `dev`) or `none`.
    #[arg(long, env = "CODEX32_SANDBOX", value_enum)]
    pub sandbox: Option<SandboxMode>,

    /// Id of this worker (default: hostname, pid and a random suffix).
    #[arg(long, env = "CODEX32_WORKER_ID")]
    pub worker_id: Option<String>,
}

/// Settings of the scheduler role.
#[derive(Debug, Clone, Args)]
pub struct SchedulerConfig {
    /// Milliseconds between passes that promote due executions and reap expired leases.
    #[arg(long, env = "CODEX32_SCHEDULER_TICK_MS", default_value_t = 500)]
    pub tick_ms: u64,

    /// Seconds between passes that re-enqueue queued executions missing from the queue.
    #[arg(long, env = "CODEX32_RECONCILE_INTERVAL_S", default_value_t = 5)]
    pub reconcile_interval_s: u64,
}
