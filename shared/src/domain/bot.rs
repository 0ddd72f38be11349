//! Bots: a named script with its runtime and execution settings, versioned on every change.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::service::ServiceSpec;
use super::{Invalid, check_name};
use crate::Timestamp;

/// Largest script accepted, in bytes.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
const MAX_DESCRIPTION_BYTES: usize = 4096;
const MAX_TAGS: usize = 32;
const MAX_TIMEOUT_S: u32 = 7 * 24 * 3600;
const MAX_ATTEMPTS: u32 = 100;

/// The interpreter a bot's script runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Bash,
    Python,
}

crate::text_enum!(Runtime { Bash => "bash", Python => "python" });

/// Whether a bot runs to completion per execution (`job`) or is kept running (`service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BotKind {
    #[default]
    Job,
    Service,
}

crate::text_enum!(BotKind { Job => "job", Service => "service" });

/// Limits applied to each execution of a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// Memory limit in MiB (16–65536).
    pub memory_mb: u32,
    /// CPU quota in thousandths of a core (10–64000).
    pub cpu_millis: u32,
    /// Most processes and threads at once (1–32768).
    pub pids: u32,
    /// Whether the bot may reach the network.
    pub network: bool,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            cpu_millis: 1000,
            pids: 64,
            network: false,
        }
    }
}

/// A cron schedule in a time zone, and what to do when runs overlap or were missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// 5 fields (minutes), 6 fields (leading seconds) or an alias such as `@hourly`.
    pub cron: String,
    /// An IANA time zone; fire times follow its daylight-saving changes.
    #[serde(default = "utc")]
    pub timezone: String,
    /// When the previous scheduled execution has not finished at the next fire time.
    #[serde(default)]
    pub overlap: OverlapPolicy,
    /// Fire times missed while no scheduler ran (downtime).
    #[serde(default)]
    pub missed: MissedPolicy,
    /// With `missed: run_all`, the most missed runs made up at once (1–1000).
    #[serde(default = "default_missed_cap")]
    pub missed_cap: u32,
}

fn default_missed_cap() -> u32 {
    10
}

/// What a fire time does while an earlier scheduled execution of the bot is still live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverlapPolicy {
    /// Do not start another.
    #[default]
    Skip,
    /// Start another only if none is waiting yet (at most one queued behind the running one).
    QueueOne,
    /// Always start another.
    Allow,
    /// Cancel the live ones, then start.
    CancelPrevious,
}

/// What happens to fire times missed during downtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Forget them.
    Skip,
    /// Make up for them with one execution.
    #[default]
    RunOnce,
    /// Make up every one, up to `missed_cap`.
    RunAll,
}

/// How a bot's failures are retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySpec {
    /// Overrides the bot's `max_attempts` when given.
    pub max_attempts: Option<u32>,
    /// First retry delay in seconds, doubling each attempt (default: the deployment's).
    pub backoff_base_s: Option<f64>,
    /// Longest retry delay in seconds (default: the deployment's).
    pub backoff_max_s: Option<f64>,
    /// Exit codes that end an execution at once: failures that a retry cannot fix.
    pub no_retry_exit_codes: Vec<i32>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// Everything that defines a bot; each change of it is a new version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotSpec {
    /// Unique among bots: 1–64 letters, digits, `_`, `.`, `-`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub runtime: Runtime,
    /// The program text, at most 256 KiB.
    pub script: String,
    #[serde(default)]
    pub kind: BotKind,
    /// Which workers run it.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Wall-clock limit of one attempt, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u32,
    /// Attempts before a failing execution fails for good.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// How failures are retried.
    #[serde(default)]
    pub retry: RetrySpec,
    /// Most executions of this bot running at once (unset: no limit).
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// How a `service` bot is kept running (restart policy, backoff, health probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
}

fn default_pool() -> String {
    "default".to_owned()
}
fn default_timeout() -> u32 {
    60
}
fn default_attempts() -> u32 {
    3
}

/// A partial change to a bot (`PATCH`): absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub runtime: Option<Runtime>,
    pub script: Option<String>,
    pub kind: Option<BotKind>,
    pub pool: Option<String>,
    pub timeout_s: Option<u32>,
    pub max_attempts: Option<u32>,
    pub resources: Option<Resources>,
    /// `null` removes the schedule.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Schedule>)]
    pub schedule: Option<Option<Schedule>>,
    pub retry: Option<RetrySpec>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_concurrency: Option<Option<u32>>,
    /// `null` returns to the default service settings.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<ServiceSpec>)]
    pub service: Option<Option<ServiceSpec>>,
}

/// Tells "absent" (keep) from `null` (remove) for a patch field.
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

impl BotSpec {
    /// Checks every rule a stored bot must meet.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_name("name", &self.name)?;
        check_name("pool", &self.pool)?;
        if self.script.trim().is_empty() {
            return Err(Invalid::new("script", "must not be empty"));
        }
        if self.script.len() > MAX_SCRIPT_BYTES {
            return Err(Invalid::new(
                "script",
                format!(
                    "is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
                    self.script.len()
                ),
            ));
        }
        if self.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(Invalid::new(
                "description",
                format!("is longer than {MAX_DESCRIPTION_BYTES} bytes"),
            ));
        }
        self.validate_tags()?;
        self.validate_limits()?;
        self.validate_retry()?;
        self.validate_schedule()?;
        self.resources.validate()?;
        self.validate_service()
    }

    fn validate_tags(&self) -> Result<(), Invalid> {
        if self.tags.len() > MAX_TAGS {
            return Err(Invalid::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        self.tags.iter().try_for_each(|t| check_name("tags", t))
    }

    fn validate_limits(&self) -> Result<(), Invalid> {
        if !(1..=MAX_TIMEOUT_S).contains(&self.timeout_s) {
            return Err(Invalid::new(
                "timeout_s",
                format!("must be between 1 and {MAX_TIMEOUT_S} seconds"),
            ));
        }
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Invalid::new(
                "max_attempts",
                format!("must be between 1 and {MAX_ATTEMPTS}"),
            ));
        }
        Ok(())
    }

    fn validate_retry(&self) -> Result<(), Invalid> {
        let r = &self.retry;
        if r.max_attempts.is_some_and(|m| m != self.max_attempts) {
            return Err(Invalid::new(
                "retry.max_attempts",
                "differs from max_attempts: set one of them (or call normalize first)",
            ));
        }
        for (field, value) in [
            ("retry.backoff_base_s", r.backoff_base_s),
            ("retry.backoff_max_s", r.backoff_max_s),
        ] {
            if value.is_some_and(|v| !(0.0..=86_400.0).contains(&v)) {
                return Err(Invalid::new(field, "must be between 0 and 86400 seconds"));
            }
        }
        if r.no_retry_exit_codes.iter().any(|c| !(1..=255).contains(c)) {
            return Err(Invalid::new(
                "retry.no_retry_exit_codes",
                "exit codes are 1 to 255",
            ));
        }
        if self
            .max_concurrency
            .is_some_and(|m| !(1..=100_000).contains(&m))
        {
            return Err(Invalid::new(
                "max_concurrency",
                "must be between 1 and 100000",
            ));
        }
        Ok(())
    }

    fn validate_schedule(&self) -> Result<(), Invalid> {
        let Some(schedule) = &self.schedule else {
            return Ok(());
        };
        if !(1..=1000).contains(&schedule.missed_cap) {
            return Err(Invalid::new(
                "schedule.missed_cap",
                "must be between 1 and 1000",
            ));
        }
        crate::cron::CronSchedule::parse(&schedule.cron, &schedule.timezone).map(|_| ())
    }

    /// `retry.max_attempts`, when given, is the same setting as `max_attempts`.
    pub fn normalize(&mut self) {
        if let Some(m) = self.retry.max_attempts.take() {
            self.max_attempts = m;
        }
    }

    /// Service settings belong to services, and services do not run on a schedule.
    fn validate_service(&self) -> Result<(), Invalid> {
        match (self.kind, &self.service) {
            (BotKind::Job, Some(_)) => Err(Invalid::new(
                "service",
                "only bots of kind \"service\" take service settings",
            )),
            (BotKind::Service, _) if self.schedule.is_some() => Err(Invalid::new(
                "schedule",
                "a service runs continuously and takes no schedule; use kind \"job\" for cron",
            )),
            (BotKind::Service, Some(service)) => service.validate(self.resources.network),
            _ => Ok(()),
        }
    }

    /// The service settings in force (defaults when none were given).
    pub fn service_settings(&self) -> ServiceSpec {
        self.service.clone().unwrap_or_default()
    }

    /// This spec with a patch applied (not yet validated).
    pub fn patched(&self, patch: BotPatch) -> BotSpec {
        let s = self.clone();
        BotSpec {
            name: patch.name.unwrap_or(s.name),
            description: patch.description.unwrap_or(s.description),
            tags: patch.tags.unwrap_or(s.tags),
            runtime: patch.runtime.unwrap_or(s.runtime),
            script: patch.script.unwrap_or(s.script),
            kind: patch.kind.unwrap_or(s.kind),
            pool: patch.pool.unwrap_or(s.pool),
            timeout_s: patch.timeout_s.unwrap_or(s.timeout_s),
            max_attempts: patch.max_attempts.unwrap_or(s.max_attempts),
            resources: patch.resources.unwrap_or(s.resources),
            schedule: patch.schedule.unwrap_or(s.schedule),
            retry: patch.retry.unwrap_or(s.retry),
            max_concurrency: patch.max_concurrency.unwrap_or(s.max_concurrency),
            service: patch.service.unwrap_or(s.service),
        }
    }
}

impl Resources {
    fn validate(&self) -> Result<(), Invalid> {
        let checks = [
            ("resources.memory_mb", self.memory_mb, 16, 65_536),
            ("resources.cpu_millis", self.cpu_millis, 10, 64_000),
            ("resources.pids", self.pids, 1, 32_768),
        ];
        for (field, value, min, max) in checks {
            if !(min..=max).contains(&value) {
                return Err(Invalid::new(
                    field,
                    format!("must be between {min} and {max}"),
                ));
            }
        }
        Ok(())
    }
}

/// A bot as stored and served: its current spec plus identity and bookkeeping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Bot {
    pub id: Uuid,
    #[serde(flatten)]
    pub spec: BotSpec,
    pub version: i32,
    /// `active` (bots can be paused once schedules exist).
    pub status: String,
    pub owner_id: Uuid,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One immutable version of a bot's spec; executions run the version they were created with.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BotVersion {
    pub bot_id: Uuid,
    pub version: i32,
    pub spec: BotSpec,
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BotSpec {
        serde_json::from_value(serde_json::json!({
            "name": "hello", "runtime": "bash", "script": "echo hi"
        }))
        .unwrap()
    }

    #[test]
    fn defaults_fill_everything_but_name_runtime_and_script() {
        let s = spec();
        assert_eq!(s.pool, "default");
        assert_eq!(s.timeout_s, 60);
        assert_eq!(s.resources, Resources::default());
        s.validate().unwrap();
    }

    #[test]
    fn bad_names_sizes_and_limits_are_refused_with_the_field() {
        let mut s = spec();
        s.name = "no spaces".into();
        assert_eq!(s.validate().unwrap_err().field, "name");
        let mut s = spec();
        s.script = "x".repeat(MAX_SCRIPT_BYTES + 1);
        assert_eq!(s.validate().unwrap_err().field, "script");
        let mut s = spec();
        s.resources.memory_mb = 1;
        assert_eq!(s.validate().unwrap_err().field, "resources.memory_mb");
    }

    #[test]
    fn unknown_fields_and_runtimes_do_not_parse() {
        let unknown =
            serde_json::json!({"name": "a", "runtime": "bash", "script": "x", "colour": 1});
        assert!(serde_json::from_value::<BotSpec>(unknown).is_err());
        let ruby = serde_json::json!({"name": "a", "runtime": "ruby", "script": "x"});
        assert!(serde_json::from_value::<BotSpec>(ruby).is_err());
    }

    #[test]
    fn a_patch_with_null_schedule_removes_it_and_absent_keeps_it() {
        let p: BotPatch = serde_json::from_value(serde_json::json!({"schedule": null})).unwrap();
        assert_eq!(p.schedule, Some(None));
        let p: BotPatch = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(p.schedule, None);
    }
}

/// A webhook of a bot: `POST /api/v1/hooks/{id}/{token}` starts an execution with the request
/// body as input. The token is stored hashed; the HMAC secret (if any) must be readable to
/// check signatures.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Webhook {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub name: String,
    #[serde(skip)]
    pub token_hash: String,
    #[serde(skip)]
    pub hmac_secret: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}
