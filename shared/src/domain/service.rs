//! Service bots (`kind: service`): long-running programs kept running on one worker of their
//! pool. A service runs as one execution that stays `running` while its worker restarts the
//! program by the restart policy; when the worker is lost or drained, the execution goes back
//! to the queue and another worker of the pool takes it over (design §3.2 does the moving).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::Invalid;
use crate::Timestamp;

/// Lines of output kept with a service's state (the tail shown on a crash loop).
pub const LOG_TAIL_LINES: usize = 20;

/// When a service's program is started again after it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Whatever the exit code.
    #[default]
    Always,
    /// Only after a non-zero exit, a signal or a failed health probe; exit 0 ends the service.
    OnFailure,
    /// Never: the first ending ends the service.
    Never,
}

/// How a service is kept running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Restarts within `window_s` beyond which the service is in `crash_loop`.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    #[serde(default = "default_window")]
    pub window_s: u32,
    /// First restart delay, doubling with each consecutive quick failure.
    #[serde(default = "default_backoff_base")]
    pub backoff_base_s: f64,
    /// Longest restart delay.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_s: f64,
    /// Checked while the program runs; failing it `failures` times in a row restarts it.
    #[serde(default)]
    pub health: Option<HealthProbe>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            restart: RestartPolicy::default(),
            max_restarts: default_max_restarts(),
            window_s: default_window(),
            backoff_base_s: default_backoff_base(),
            backoff_max_s: default_backoff_max(),
            health: None,
        }
    }
}

fn default_max_restarts() -> u32 {
    5
}
fn default_window() -> u32 {
    60
}
fn default_backoff_base() -> f64 {
    1.0
}
fn default_backoff_max() -> f64 {
    60.0
}

/// A health check of a running service: a command run beside it (in the same kind of
/// sandbox, with the service's working directory), or a TCP or HTTP port on the worker's host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthProbe {
    /// A bash command; exit 0 is healthy.
    #[serde(default)]
    pub command: Option<String>,
    /// A TCP port on 127.0.0.1 that must accept connections (needs `resources.network`).
    #[serde(default)]
    pub tcp_port: Option<u16>,
    /// An HTTP GET on 127.0.0.1 that must answer 2xx or 3xx (needs `resources.network`).
    #[serde(default)]
    pub http: Option<HttpProbe>,
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    #[serde(default = "default_probe_timeout")]
    pub timeout_s: u32,
    /// Consecutive failed checks that restart the service.
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// Seconds after a start before the first check.
    #[serde(default = "default_initial_delay")]
    pub initial_delay_s: u32,
}

fn default_interval() -> u32 {
    10
}
fn default_probe_timeout() -> u32 {
    5
}
fn default_failures() -> u32 {
    3
}
fn default_initial_delay() -> u32 {
    5
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    pub port: u16,
    #[serde(default = "default_path")]
    pub path: String,
}

fn default_path() -> String {
    "/".to_owned()
}

impl ServiceSpec {
    /// Checks the settings; `network` is the bot's `resources.network`.
    pub fn validate(&self, network: bool) -> Result<(), Invalid> {
        if !(1..=1000).contains(&self.max_restarts) {
            return Err(Invalid::new(
                "service.max_restarts",
                "must be between 1 and 1000",
            ));
        }
        if !(1..=86_400).contains(&self.window_s) {
            return Err(Invalid::new(
                "service.window_s",
                "must be between 1 and 86400 seconds",
            ));
        }
        for (field, v) in [
            ("service.backoff_base_s", self.backoff_base_s),
            ("service.backoff_max_s", self.backoff_max_s),
        ] {
            if !(0.0..=3600.0).contains(&v) {
                return Err(Invalid::new(field, "must be between 0 and 3600 seconds"));
            }
        }
        if self.backoff_max_s < self.backoff_base_s {
            return Err(Invalid::new(
                "service.backoff_max_s",
                "must not be below service.backoff_base_s",
            ));
        }
        self.health.as_ref().map_or(Ok(()), |h| h.validate(network))
    }

    /// The delay before restart number `consecutive` (1-based) of quick failures in a row.
    pub fn backoff(&self, consecutive: u32) -> std::time::Duration {
        let exp = consecutive.saturating_sub(1).min(30);
        let secs = (self.backoff_base_s * f64::from(1u32 << exp)).min(self.backoff_max_s);
        std::time::Duration::from_secs_f64(secs)
    }
}

impl HealthProbe {
    fn validate(&self, network: bool) -> Result<(), Invalid> {
        let kinds = [
            self.command.is_some(),
            self.tcp_port.is_some(),
            self.http.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(Invalid::new(
                "service.health",
                "set exactly one of command, tcp_port and http",
            ));
        }
        if self.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(Invalid::new("service.health.command", "must not be empty"));
        }
        if (self.tcp_port.is_some() || self.http.is_some()) && !network {
            return Err(Invalid::new(
                "service.health",
                "a port probe needs resources.network: true (an isolated service has its own \
                 network namespace, which the worker cannot reach); use a command probe instead",
            ));
        }
        if self.http.as_ref().is_some_and(|h| !h.path.starts_with('/')) {
            return Err(Invalid::new(
                "service.health.http.path",
                "must start with /",
            ));
        }
        for (field, v, max) in [
            ("service.health.interval_s", self.interval_s, 3600),
            ("service.health.timeout_s", self.timeout_s, 600),
            ("service.health.failures", self.failures, 100),
        ] {
            if !(1..=max).contains(&v) {
                return Err(Invalid::new(field, format!("must be between 1 and {max}")));
            }
        }
        if self.initial_delay_s > 3600 {
            return Err(Invalid::new(
                "service.health.initial_delay_s",
                "must be at most 3600 seconds",
            ));
        }
        Ok(())
    }
}

/// What the user wants of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Running,
    Stopped,
}

crate::text_enum!(Desired { Running => "running", Stopped => "stopped" });

/// Where a service is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for a worker of its pool.
    Pending,
    Running,
    /// Ended; starts again after its restart delay.
    Backoff,
    /// Restarted more than `max_restarts` times within `window_s`; still restarted, with
    /// growing delays, until it stays up.
    CrashLoop,
    /// Stopped through the API (or its bot was deleted).
    Stopped,
    /// Ended for good by its restart policy (`on_failure` after exit 0, or `never`).
    Exited,
    /// Could not be run at all (its version is missing, the sandbox refused it).
    Failed,
}

crate::text_enum!(ServiceState {
    Pending => "pending",
    Running => "running",
    Backoff => "backoff",
    CrashLoop => "crash_loop",
    Stopped => "stopped",
    Exited => "exited",
    Failed => "failed",
});

/// A service as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServiceStatus {
    pub bot_id: Uuid,
    pub desired: Desired,
    pub state: ServiceState,
    /// The execution that carries the service (it stays `running` across restarts).
    pub execution_id: Option<Uuid>,
    pub worker_id: Option<String>,
    /// Restarts since the service was last started through the API.
    pub restarts: i32,
    pub last_exit_code: Option<i32>,
    /// Why it last ended or was restarted.
    pub last_reason: Option<String>,
    /// The last lines of output before the last ending.
    pub log_tail: Vec<String>,
    /// When the program was last started.
    pub started_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A worker's report on the service it runs, fenced by the execution's attempt.
#[derive(Debug, Clone)]
pub struct ServiceReport {
    pub bot_id: Uuid,
    pub execution_id: Uuid,
    pub attempt: i32,
    pub worker_id: String,
    pub state: ServiceState,
    /// Counts one more restart.
    pub restarted: bool,
    pub last_exit_code: Option<i32>,
    pub last_reason: Option<String>,
    pub log_tail: Option<Vec<String>>,
    pub started_at: Option<Timestamp>,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = ServiceSpec {
            backoff_base_s: 1.0,
            backoff_max_s: 8.0,
            ..ServiceSpec::default()
        };
        let secs: Vec<u64> = (1..=6).map(|n| s.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn a_probe_names_exactly_one_check_and_ports_need_the_network() {
        let probe = |v: serde_json::Value| serde_json::from_value::<HealthProbe>(v).unwrap();
        let none = probe(serde_json::json!({}));
        assert_eq!(none.validate(true).unwrap_err().field, "service.health");
        let two = probe(serde_json::json!({"command": "true", "tcp_port": 80}));
        assert_eq!(two.validate(true).unwrap_err().field, "service.health");
        let port = probe(serde_json::json!({"tcp_port": 8080}));
        assert!(
            port.validate(false)
                .unwrap_err()
                .message
                .contains("network")
        );
        port.validate(true).unwrap();
        probe(serde_json::json!({"command": "test -f ready"}))
            .validate(false)
            .unwrap();
    }
}
