//! Executions: one run of one bot version, its lifecycle (design §4), and its logs.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Timestamp;

/// Where an execution is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

crate::text_enum!(ExecStatus {
    Queued => "queued",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    TimedOut => "timed_out",
    Cancelled => "cancelled",
});

impl ExecStatus {
    /// Whether nothing more will happen to an execution in this state.
    pub fn is_final(self) -> bool {
        match self {
            ExecStatus::Queued | ExecStatus::Running => false,
            ExecStatus::Succeeded
            | ExecStatus::Failed
            | ExecStatus::TimedOut
            | ExecStatus::Cancelled => true,
        }
    }

    /// The lifecycle of design §4: queued → running → a final state, running → queued again
    /// for a retry or an expired lease, and cancel from either live state.
    pub fn can_transition_to(self, next: ExecStatus) -> bool {
        use ExecStatus::*;
        match self {
            Queued => matches!(next, Running | Cancelled | Failed),
            Running => matches!(next, Queued | Succeeded | Failed | TimedOut | Cancelled),
            Succeeded | Failed | TimedOut | Cancelled => false,
        }
    }
}

/// One execution as stored and served (design §5 "Executions", plus scheduling fields).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Execution {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub bot_version: i32,
    /// The owner of the bot it runs: who may see it.
    pub owner_id: Uuid,
    pub pool: String,
    pub status: ExecStatus,
    /// The attempt number, starting at 1; also the fencing token of the current lease.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Higher runs first within a pool.
    pub priority: i32,
    #[sqlx(json)]
    pub input: Value,
    #[sqlx(json(nullable))]
    pub output: Option<Value>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub worker_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Set when a cancel was asked for while it ran; the worker stops it.
    pub cancel_requested: bool,
    /// Not to start before this time (a delay, or a retry's backoff).
    pub run_at: Option<Timestamp>,
    pub lease_expires_at: Option<Timestamp>,
    pub queued_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub created_by: Option<Uuid>,
    /// What the last attempt used (memory peak, CPU time, OOM kill), when it ran sandboxed.
    #[sqlx(json(nullable))]
    pub usage: Option<ResourceUsage>,
    /// Whether the last attempt ran in the container engine; null until an attempt ends.
    pub sandboxed: Option<bool>,
    /// The cron fire time it was created for, if a schedule created it.
    pub scheduled_for: Option<Timestamp>,
    /// The execution this one replays, if it is a replay.
    pub replay_of: Option<Uuid>,
    /// Most executions of its bot running at once (copied from the bot when created).
    pub max_concurrency: Option<i32>,
}

impl Execution {
    /// Dead letters: executions that failed for good (their attempts are spent, or the
    /// failure was not worth retrying).
    pub const DEAD: [ExecStatus; 2] = [ExecStatus::Failed, ExecStatus::TimedOut];
}

/// One entry of an execution's timeline: what happened, when, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct TimelineEvent {
    pub id: i64,
    pub execution_id: Uuid,
    pub at: Timestamp,
    /// `queued`, `delayed`, `leased`, `waiting`, `lease_expired`, `retry`, `cancel_requested`, `finished`.
    pub kind: String,
    pub message: String,
}

/// What an attempt used, measured by the container engine (absent without a sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceUsage {
    /// The kernel killed it for exceeding `resources.memory_mb`.
    pub oom_killed: bool,
    pub peak_memory_bytes: Option<u64>,
    /// User plus system CPU time.
    pub cpu_time_ms: u64,
    pub wall_ms: u64,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
}

/// What a new execution is made of; the store fills in status, attempt and times.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub bot_version: i32,
    pub pool: String,
    pub max_attempts: i32,
    pub priority: i32,
    pub input: Value,
    pub idempotency_key: Option<String>,
    pub run_at: Option<Timestamp>,
    pub created_by: Option<Uuid>,
    pub scheduled_for: Option<Timestamp>,
    pub replay_of: Option<Uuid>,
    pub max_concurrency: Option<i32>,
    /// Why it is made (`created through the API`, `fired by schedule …`): its first timeline
    /// entry says so.
    pub why: String,
}

/// Which output stream a log line came from (`system` for codex32's own notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
    System,
}

crate::text_enum!(LogStream { Stdout => "stdout", Stderr => "stderr", System => "system" });

/// One line of an execution's output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct LogLine {
    /// Increasing within an execution; pass it as `after` to read on from here.
    pub id: i64,
    pub execution_id: Uuid,
    pub attempt: i32,
    pub stream: LogStream,
    pub line: String,
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::ExecStatus::*;

    #[test]
    fn final_states_go_nowhere_and_live_ones_follow_the_lifecycle() {
        for s in super::ExecStatus::ALL {
            for n in super::ExecStatus::ALL {
                if s.is_final() {
                    assert!(!s.can_transition_to(*n), "{s} -> {n}");
                }
            }
        }
        assert!(Queued.can_transition_to(Running));
        assert!(Running.can_transition_to(Queued));
        assert!(!Queued.can_transition_to(Succeeded));
    }

    #[test]
    fn status_text_round_trips() {
        for s in super::ExecStatus::ALL {
            assert_eq!(s.as_str().parse::<super::ExecStatus>().unwrap(), *s);
        }
        assert!("done".parse::<super::ExecStatus>().is_err());
    }
}
