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

/// Who may create an account with `POST /api/v1/auth/register`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistrationMode {
    /// Nobody: admins create users.
    Off,
    /// Holders of an invite an admin made (`POST /api/v1/invites`).
    Invite,
    /// Anyone (as role `user`).
    Open,
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

/// What a worker does with an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Runs the bot's program (isolated as `--sandbox` says). Always the default.
    Real,
    /// Benchmarking only: starts no process and completes each execution at once with its
    /// input as its output, so a load test measures the orchestration path alone.
    Noop,
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

    /// Master key of bots' secrets (at least 32 characters; the API and every worker need the
    /// same). Unset: secrets are off. `dev` generates one in the data dir.
    #[arg(long, env = "CODEX32_SECRETS_KEY")]
    pub secrets_key: Option<Secret>,

    /// The previous master key, during a rotation (`codex32 rotate-secrets-key`).
    #[arg(long, env = "CODEX32_SECRETS_OLD_KEY")]
    pub secrets_old_key: Option<Secret>,
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

    /// The secrets keyring, if a key is configured.
    pub fn keyring(&self) -> Result<Option<crate::secrets::Keyring>, crate::secrets::SecretError> {
        let Some(key) = &self.secrets_key else {
            return Ok(None);
        };
        let old = self.secrets_old_key.as_ref().map(Secret::expose);
        crate::secrets::Keyring::new(key.expose(), old).map(Some)
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

    /// Requests per minute per user or API key (and per IP without credentials); 0: no limit.
    #[arg(long, env = "CODEX32_RATE_LIMIT_PER_MIN", default_value_t = 6000)]
    pub rate_limit_per_min: u32,

    /// Login attempts per minute per account (and 6 times as many per IP); 0: no limit.
    #[arg(long, env = "CODEX32_LOGIN_LIMIT_PER_MIN", default_value_t = 10)]
    pub login_limit_per_min: u32,

    /// Who may register: `off` (admins create users), `invite` or `open`.
    #[arg(long, env = "CODEX32_REGISTRATION", value_enum, default_value = "off")]
    pub registration: RegistrationMode,

    /// The address users reach the API at, for links in emails (default: http://<bind>).
    #[arg(long, env = "CODEX32_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Where emails go: an HTTP endpoint that takes `POST {"to","subject","text"}` (a mail
    /// relay). Unset: they are written to the log (fine for one-person installs).
    #[arg(long, env = "CODEX32_MAILER_URL")]
    pub mailer_url: Option<String>,

    /// A TOML file of identity providers to log in with (GitHub, Google, any OpenID Connect
    /// provider): see docs/oauth.md. Unset: passwords and API keys only.
    #[arg(long, env = "CODEX32_OAUTH_CONFIG")]
    pub oauth_config: Option<std::path::PathBuf>,

    /// Lifetime of a password-reset link, in seconds.
    #[arg(long, env = "CODEX32_RESET_TOKEN_TTL_S", default_value_t = 3600)]
    pub reset_token_ttl_s: u64,
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

    /// `real` runs bots (the default); `noop` is a benchmarking mode that runs nothing and
    /// completes each execution with its input as output (see loadtest/README.md).
    #[arg(long, env = "CODEX32_EXECUTOR", value_enum, default_value = "real")]
    pub executor: ExecutorKind,

    /// Where executions' working directories go (default: `runs` in the data dir). A tmpfs
    /// such as `/dev/shm/codex32-runs` makes each run's setup cheaper (no disk metadata); the
    /// files a bot writes there then count against its memory limit.
    #[arg(long, env = "CODEX32_RUNS_DIR")]
    pub runs_dir: Option<PathBuf>,

    /// Id of this worker (default: hostname, pid and a random suffix).
    #[arg(long, env = "CODEX32_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Address of the worker's own `/healthz` and `/readyz` (for liveness probes); unset: none.
    #[arg(long, env = "CODEX32_WORKER_HEALTH_BIND")]
    pub health_bind: Option<std::net::SocketAddr>,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{ExecutorKind, WorkerConfig};

    #[derive(Parser)]
    struct Worker {
        #[command(flatten)]
        worker: WorkerConfig,
    }

    #[test]
    fn a_worker_runs_the_real_executor_unless_noop_is_asked_for() {
        // The environment would choose instead; this test is about what no choice means.
        if std::env::var_os("CODEX32_EXECUTOR").is_some() {
            return;
        }
        let plain = Worker::try_parse_from(["worker"]).expect("no flags");
        assert_eq!(plain.worker.executor, ExecutorKind::Real);
        let noop = Worker::try_parse_from(["worker", "--executor", "noop"]).expect("noop");
        assert_eq!(noop.worker.executor, ExecutorKind::Noop);
        assert!(Worker::try_parse_from(["worker", "--executor", "fast"]).is_err());
    }
}
