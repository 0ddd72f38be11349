//! The store: the source of truth (design §3.1). One set of traits, two implementations
//! (PostgreSQL and SQLite) that run the same SQL text, and one conformance suite for both
//! (`shared/tests/store_conformance.rs`).
//!
//! Every write of a result is fenced: it names the attempt (and worker) it belongs to and
//! changes nothing if the execution has moved on, so a late worker cannot overwrite a newer one.

mod error;
pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

pub use error::StoreError;

use crate::Timestamp;
use crate::domain::{
    ApiKey, Bot, BotSpec, BotVersion, Desired, ExecStatus, Execution, LogLine, LogStream,
    NewExecution, ResourceUsage, Role, ServiceReport, ServiceStatus, TimelineEvent, User, Webhook,
    WorkerInfo,
};

/// Users and their API keys.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with [`StoreError::Conflict`] if the email is taken.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError>;
    async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Records that the account's address reaches its owner (a completed password reset).
    async fn verify_email(&self, id: Uuid) -> Result<(), StoreError>;
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError>;
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    async fn list_api_keys(&self, user_id: Option<Uuid>) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a live key; `owner` restricts it to that user's keys. False if none matched.
    async fn revoke_api_key(
        &self,
        id: Uuid,
        owner: Option<Uuid>,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn touch_api_key(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError>;
}

/// Bots and their immutable versions.
#[async_trait]
pub trait BotStore: Send + Sync {
    /// Creates the bot and its version 1; [`StoreError::Conflict`] if a live bot has the name.
    async fn create_bot(
        &self,
        id: Uuid,
        owner_id: Uuid,
        spec: &BotSpec,
        at: Timestamp,
    ) -> Result<Bot, StoreError>;
    async fn get_bot(&self, id: Uuid) -> Result<Option<Bot>, StoreError>;
    /// Live bots, newest first; `owner` restricts to one user's.
    async fn list_bots(&self, owner: Option<Uuid>) -> Result<Vec<Bot>, StoreError>;
    /// Stores `spec` as the next version; None if the bot does not exist.
    async fn update_bot(
        &self,
        id: Uuid,
        spec: &BotSpec,
        at: Timestamp,
    ) -> Result<Option<Bot>, StoreError>;
    /// Soft-deletes: executions keep pointing at it. False if it was not live.
    async fn delete_bot(&self, id: Uuid, at: Timestamp) -> Result<bool, StoreError>;
    async fn bot_versions(&self, id: Uuid) -> Result<Vec<BotVersion>, StoreError>;
    async fn bot_version(&self, id: Uuid, version: i32) -> Result<Option<BotVersion>, StoreError>;
}

/// Which executions to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub bot_id: Option<Uuid>,
    pub status: Option<ExecStatus>,
    /// Any of these statuses (empty: no restriction), e.g. the dead letters.
    pub any_status: Vec<ExecStatus>,
    pub owner_id: Option<Uuid>,
    /// Only executions older than this one (a page cursor).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// A fenced write of an attempt's end: a final state, or `Queued` for a retry at `run_at`.
#[derive(Debug, Clone)]
pub struct Finish {
    pub id: Uuid,
    pub attempt: i32,
    /// The lease holder; `None` (the lease reaper) matches any holder whose lease has expired.
    pub worker_id: Option<String>,
    pub status: ExecStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub exit_code: Option<i32>,
    pub at: Timestamp,
    pub duration_ms: Option<i64>,
    /// For a retry: when the next attempt may start.
    pub run_at: Option<Timestamp>,
    /// What the attempt used, when the executor measured it.
    pub usage: Option<ResourceUsage>,
    /// Whether the attempt ran isolated (None when no attempt ran: the reaper).
    pub sandboxed: Option<bool>,
}

/// Executions: creation, the lease lifecycle and fenced results.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// How many [`ExecutionStore::create_executions`] calls are worth having in flight at
    /// once. A database server writes them side by side; the SQLite store has one connection
    /// (one writer at a time), so a second call would only wait for the first.
    fn concurrent_creates(&self) -> usize;

    /// Creates a queued execution with its first timeline entry ([`NewEvent::created`]). With
    /// an idempotency key already used for this bot, returns the first execution and `false`
    /// instead.
    async fn create_execution(
        &self,
        new: &NewExecution,
        owner_id: Uuid,
        at: Timestamp,
    ) -> Result<(Execution, bool), StoreError> {
        let mut made = self
            .create_executions(std::slice::from_ref(new), owner_id, at)
            .await?;
        made.pop().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "execution {} was neither created nor found",
                new.id
            ))
        })
    }
    /// Creates several queued executions and their first timeline entries all or nothing
    /// (PostgreSQL: one statement for up to 500; else one transaction of a few multi-row
    /// statements), for batch submission. The answer follows the order of `news`. An
    /// idempotency key already used for the bot — before, or by an earlier item of the same
    /// call — yields that execution and `false`, as [`Self::create_execution`] does.
    async fn create_executions(
        &self,
        news: &[NewExecution],
        owner_id: Uuid,
        at: Timestamp,
    ) -> Result<Vec<(Execution, bool)>, StoreError>;
    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError>;
    async fn list_executions(&self, filter: &ExecutionFilter)
    -> Result<Vec<Execution>, StoreError>;
    /// A queued execution becomes `cancelled`; a running one gets `cancel_requested` for its
    /// worker to act on. Returns the execution as it now is (None if unknown).
    async fn request_cancel(
        &self,
        id: Uuid,
        at: Timestamp,
    ) -> Result<Option<Execution>, StoreError>;
    /// Takes the lease of a queued, due execution for `worker_id` until `lease_until`.
    /// None if it is not queued (already taken, cancelled, finished), not yet due, or its bot
    /// already runs `max_concurrency` executions.
    async fn claim_execution(
        &self,
        id: Uuid,
        worker_id: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<Execution>, StoreError> {
        let mut claimed = self
            .claim_executions(&[id], worker_id, now, lease_until)
            .await?;
        Ok(claimed.pop().flatten())
    }
    /// [`claim_execution`](Self::claim_execution) of many, those under no concurrency limit
    /// in one statement: one answer per id, in order. Each claim is written with its
    /// `leased` timeline entry ([`NewEvent::leased`]).
    async fn claim_executions(
        &self,
        ids: &[Uuid],
        worker_id: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<Option<Execution>>, StoreError>;
    /// Extends a lease still held by `worker_id` at `attempt`. None if the lease is lost;
    /// otherwise whether a cancel was requested.
    async fn renew_lease(
        &self,
        id: Uuid,
        attempt: i32,
        worker_id: &str,
        until: Timestamp,
    ) -> Result<Option<bool>, StoreError>;
    /// Writes an attempt's end, with its timeline entry, if the lease still matches; false
    /// means it did not (stale) and nothing was written.
    async fn finish_execution(&self, finish: &Finish) -> Result<bool, StoreError> {
        let mut done = self.finish_executions(std::slice::from_ref(finish)).await?;
        Ok(done.pop().unwrap_or(false))
    }
    /// [`finish_execution`](Self::finish_execution) of many in one transaction (group
    /// commit): one answer per finish, in order.
    async fn finish_executions(&self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError>;
    /// Running executions whose lease ended before `now`, oldest first.
    async fn expired_leases(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Execution>, StoreError>;
    /// Queued executions in id order after `after`: the reconciler walks them in pages.
    async fn queued_page(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Execution>, StoreError>;
}

/// Timelines, cron bookkeeping and the scheduler's leader lease.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Appends events to executions' timelines. Callers name executions they have read or
    /// written: PostgreSQL does not check that each exists (SQLite does).
    async fn record_events(&self, events: &[NewEvent]) -> Result<(), StoreError>;
    /// An execution's timeline, oldest first.
    async fn timeline(&self, execution_id: Uuid) -> Result<Vec<TimelineEvent>, StoreError>;
    /// Running executions of a bot.
    async fn running_count(&self, bot_id: Uuid) -> Result<i64, StoreError>;
    /// Takes or keeps the lease `name` for `holder` until `until` if it is free, expired
    /// (before `now`) or already held by `holder`. Returns the fencing token — it grows each
    /// time the lease changes hands — or None while someone else holds it.
    async fn try_lead(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<i64>, StoreError>;
    /// Live bots that have a schedule.
    async fn scheduled_bots(&self) -> Result<Vec<Bot>, StoreError>;
    /// The latest fire time each bot's schedule created an execution for, in one query (a
    /// leader's first tick over a thousand schedules must not read them one by one); bots
    /// never fired are left out.
    async fn last_fires(&self, bot_ids: &[Uuid]) -> Result<Vec<(Uuid, Timestamp)>, StoreError>;
    /// A bot's scheduled executions that are queued or running.
    async fn live_scheduled(&self, bot_id: Uuid) -> Result<Vec<Execution>, StoreError>;
    /// The statuses of the queued and running scheduled executions of these bots, in one
    /// query (a cron tick checks every due bot's overlap at once).
    async fn live_scheduled_bots(
        &self,
        bot_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, ExecStatus)>, StoreError>;
    /// Sets a live bot's status (`active`, `paused`); false if no such bot.
    async fn set_bot_status(
        &self,
        bot_id: Uuid,
        status: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Sets (or, with None, removes) a pool's concurrency limit.
    async fn set_pool_limit(
        &self,
        pool: &str,
        max_concurrency: Option<i32>,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Pools with settings.
    async fn pools(&self) -> Result<Vec<PoolSettings>, StoreError>;
    /// Per pool: executions waiting (queued and due), since when the oldest waits, and running.
    async fn pool_stats(&self, now: Timestamp) -> Result<Vec<PoolStats>, StoreError>;
    /// Running executions of a pool.
    async fn pool_running_count(&self, pool: &str) -> Result<i64, StoreError>;
}

/// A pool's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct PoolSettings {
    pub name: String,
    /// Most executions of the pool running at once, across all its workers (null: no limit).
    pub max_concurrency: Option<i32>,
    pub updated_at: Timestamp,
}

/// The autoscaling signal of one pool.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolStats {
    pub pool: String,
    /// Queued and due: waiting for a worker slot.
    pub waiting: i64,
    /// Since when the longest-waiting one waits (its `run_at`, or when it was queued).
    pub oldest_waiting_since: Option<Timestamp>,
    /// Running now: the pool's busy slots.
    pub running: i64,
}

/// One timeline event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub execution_id: Uuid,
    pub at: Timestamp,
    pub kind: &'static str,
    pub message: String,
}

impl NewEvent {
    /// The first timeline entry of a new execution, written with it: queued, or delayed until
    /// its `run_at`.
    pub fn created(new: &NewExecution, at: Timestamp) -> Self {
        let (kind, message) = match new.run_at.filter(|run_at| *run_at > at) {
            Some(run_at) => (
                "delayed",
                format!("{}; delayed until {}", new.why, run_at.0.to_rfc3339()),
            ),
            None => (
                "queued",
                format!("{}; queued in pool {}", new.why, new.pool),
            ),
        };
        Self {
            execution_id: new.id,
            at,
            kind,
            message,
        }
    }

    /// The timeline entry of a claim. (PostgreSQL builds the same text in SQL:
    /// `PG_LEASED_ENTRIES` in the SQL store.)
    pub fn leased(e: &Execution) -> Self {
        Self {
            execution_id: e.id,
            at: e.started_at.unwrap_or_else(Timestamp::now),
            kind: "leased",
            message: format!(
                "leased by worker {} (attempt {} of {})",
                e.worker_id.as_deref().unwrap_or(""),
                e.attempt,
                e.max_attempts
            ),
        }
    }

    /// The timeline entry of a written finish: a retry, or the final state and why; the
    /// lease reaper's (no worker) is a `lease_expired`.
    pub fn finished(finish: &Finish) -> Self {
        let (kind, message) = match finish.status {
            _ if finish.worker_id.is_none() => {
                ("lease_expired", finish.error.clone().unwrap_or_default())
            }
            ExecStatus::Queued => ("retry", finish.error.clone().unwrap_or_default()),
            ExecStatus::Succeeded => ("finished", "succeeded".to_owned()),
            status => (
                "finished",
                format!("{status}: {}", finish.error.as_deref().unwrap_or("")),
            ),
        };
        Self {
            execution_id: finish.id,
            at: finish.at,
            kind,
            message,
        }
    }

    pub fn now(execution_id: Uuid, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            execution_id,
            at: Timestamp::now(),
            kind,
            message: message.into(),
        }
    }
}

/// One line to append to an execution's log.
#[derive(Debug, Clone)]
pub struct NewLogLine {
    pub execution_id: Uuid,
    pub attempt: i32,
    pub stream: LogStream,
    pub line: String,
    pub at: Timestamp,
}

/// Execution logs.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Appends lines all or nothing (in one transaction, however many statements it takes)
    /// and returns their ids, increasing, in the order of `lines`.
    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<Vec<i64>, StoreError>;
    /// Lines with an id above `after`, in order.
    async fn read_logs(
        &self,
        execution_id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, StoreError>;
}

/// One audited action.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    pub details: Value,
    pub at: Timestamp,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor_id: Option<Uuid>,
    /// Entries whose action starts with this (`bot.` or `auth.login`).
    pub action_prefix: Option<String>,
    pub target: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Timestamp>,
    pub limit: i64,
}

/// One audit entry as stored.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: Timestamp,
    /// Who did it (null for the system or a failed login of an unknown email).
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target: String,
    #[sqlx(json)]
    pub details: Value,
}

/// The audit log and the worker registry.
#[async_trait]
pub trait OpsStore: Send + Sync {
    /// Audit entries, newest first, filtered.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    async fn upsert_worker(&self, worker: &WorkerInfo) -> Result<(), StoreError>;
    async fn list_workers(&self) -> Result<Vec<WorkerInfo>, StoreError>;
    /// Cheapest round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Applies pending schema migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// The size of each table that grows with every execution, now and as its planner
    /// statistics last saw it (see [`TableSize`]); empty for a database whose plans never
    /// outlive the statistics they were made with.
    async fn table_sizes(&self) -> Result<Vec<TableSize>, StoreError>;
    /// Takes new planner statistics of a table [`OpsStore::table_sizes`] named; every
    /// connection then plans its statements on that table again.
    async fn analyze(&self, table: &str) -> Result<(), StoreError>;
}

/// A table's size in pages, now and when its planner statistics were last taken.
///
/// PostgreSQL plans a statement that a connection runs again and again once, generically,
/// and keeps that plan until the statistics of its tables change. A plan made while
/// `executions` was small (a new deployment) can scan the whole table, cheap then and ever
/// dearer as it grows. `ANALYZE` (autovacuum's, or the scheduler's while the table is young)
/// makes every connection plan again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    /// As the database's search path resolves it.
    pub table: String,
    /// Its size now, in pages of the database's block size (8 KiB by default).
    pub pages: i64,
    /// Its size when its statistics were taken (by `ANALYZE` or `VACUUM`), in pages; 0 while
    /// it has never been analyzed or vacuumed.
    pub pages_in_statistics: i64,
}

/// A refresh token as issued (its JWT carries `id` and `family_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub id: Uuid,
    /// Every token rotated from the same login.
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: it is spent now; issue its successor in the same family.
    Spent { family_id: Uuid, user_id: Uuid },
    /// Presented again after it was spent: stolen or replayed. Its family is revoked.
    Reused { family_id: Uuid, user_id: Uuid },
    /// Unknown, revoked or expired.
    Invalid,
}

/// A single-use, expiring account token (an invite or a password reset); the token itself is
/// shown once, only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountToken {
    pub id: Uuid,
    /// `invite` or `reset`.
    pub kind: String,
    pub token_hash: String,
    /// An invite's address (None: any), or the address a reset was sent to.
    pub email: Option<String>,
    /// The role an invite grants.
    pub role: Option<Role>,
    /// The account a reset is for.
    pub user_id: Option<Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// Invites and password resets.
#[async_trait]
pub trait AccountTokenStore: Send + Sync {
    async fn create_account_token(&self, token: &AccountToken) -> Result<(), StoreError>;
    /// Spends a live token of `kind`, once; None if unknown, spent, expired, or (with
    /// `email`) made for another address — which leaves it unspent.
    async fn use_account_token(
        &self,
        kind: &str,
        token_hash: &str,
        email: Option<&str>,
        at: Timestamp,
    ) -> Result<Option<AccountToken>, StoreError>;
}

/// A login through an identity provider in progress: what its callback needs to finish it.
/// Only a hash of the state is kept; the row is taken (deleted) by the callback, once.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthLogin {
    pub state_hash: String,
    pub provider: String,
    pub pkce_verifier: String,
    pub nonce: String,
    /// Where the browser goes with its tokens afterwards (None: they are the response).
    pub redirect_to: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A provider's account (`subject`, its stable id there) linked to a codex32 account.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OAuthIdentity {
    pub provider: String,
    pub subject: String,
    pub user_id: Uuid,
    /// The verified address it had when it was linked.
    pub email: String,
    pub created_at: Timestamp,
}

/// Logins through OAuth2 / OpenID Connect providers.
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// Records a login in progress (and forgets the expired ones).
    async fn create_oauth_login(&self, login: &OAuthLogin) -> Result<(), StoreError>;
    /// Takes a live login by its state's hash, once; None if unknown, taken or expired.
    async fn take_oauth_login(
        &self,
        state_hash: &str,
        at: Timestamp,
    ) -> Result<Option<OAuthLogin>, StoreError>;
    /// The account a provider identity is linked to.
    async fn identity_user(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<Uuid>, StoreError>;
    /// Links an identity to an existing account; a conflict if it is linked already.
    async fn link_identity(&self, identity: &OAuthIdentity) -> Result<(), StoreError>;
    /// Creates an account and links the identity to it, in one transaction.
    async fn create_user_with_identity(
        &self,
        user: &User,
        identity: &OAuthIdentity,
    ) -> Result<(), StoreError>;
}

/// Login sessions: rotating refresh tokens and password changes that end them.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_refresh_token(&self, token: &RefreshToken) -> Result<(), StoreError>;
    /// Spends a token, once; a second use revokes its family (in the same call).
    async fn use_refresh_token(&self, id: Uuid, at: Timestamp) -> Result<RefreshUse, StoreError>;
    /// Revokes a family (logout). Returns how many live tokens it had.
    async fn revoke_refresh_family(
        &self,
        family_id: Uuid,
        at: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Changes a password and revokes every refresh token of the user, in one transaction.
    async fn change_password(
        &self,
        user_id: Uuid,
        hash: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// A stored secret: its name and times; the value only as sealed text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct SecretEntry {
    #[serde(skip)]
    pub id: Uuid,
    /// `bot:<id>` or `user:<id>`.
    #[serde(skip)]
    pub scope: String,
    pub name: String,
    #[serde(skip)]
    pub sealed: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Secrets of bots and users, sealed before they reach the store.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or replaces `scope`'s secret `name`. Returns true if it is new.
    async fn put_secret(
        &self,
        scope: &str,
        name: &str,
        sealed: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The secrets of these scopes, by scope then name.
    async fn secrets(&self, scopes: &[String]) -> Result<Vec<SecretEntry>, StoreError>;
    async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool, StoreError>;
    /// A page of every secret (by id), for key rotation.
    async fn all_secrets(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<SecretEntry>, StoreError>;
    /// Replaces a sealed value if it is still `old` (a rotation racing a change loses).
    async fn reseal_secret(&self, id: Uuid, old: &str, new: &str) -> Result<bool, StoreError>;
}

/// Bots' webhook triggers.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_webhook(&self, hook: &Webhook) -> Result<(), StoreError>;
    async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, StoreError>;
    /// A bot's webhooks, revoked ones included, newest first.
    async fn list_webhooks(&self, bot_id: Uuid) -> Result<Vec<Webhook>, StoreError>;
    /// Revokes a live webhook of the bot. False if none matched.
    async fn revoke_webhook(
        &self,
        bot_id: Uuid,
        id: Uuid,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn touch_webhook(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError>;
}

/// Service bots' wanted and actual state.
#[async_trait]
pub trait ServiceStore: Send + Sync {
    async fn service(&self, bot_id: Uuid) -> Result<Option<ServiceStatus>, StoreError>;
    /// Records what the user wants; starting again (`running`) resets the restart count and
    /// leaves the state `pending` until a worker reports.
    async fn set_service_desired(
        &self,
        bot_id: Uuid,
        desired: Desired,
        at: Timestamp,
    ) -> Result<ServiceStatus, StoreError>;
    /// A worker's report, written only while that worker holds the execution's attempt and
    /// the service is wanted running. Returns the restart count, or None if fenced out.
    async fn report_service(&self, report: &ServiceReport) -> Result<Option<i32>, StoreError>;
    /// Services wanted running, not ended by their policy, whose bot is live, that have no
    /// queued or running execution and whose row has not changed since `quiet_since` (so a
    /// start in progress is not doubled): the ones to start again.
    async fn services_to_start(&self, quiet_since: Timestamp) -> Result<Vec<Uuid>, StoreError>;
}

/// The whole store.
pub trait Store:
    UserStore
    + SessionStore
    + AccountTokenStore
    + OAuthStore
    + BotStore
    + ExecutionStore
    + LogStore
    + OpsStore
    + ScheduleStore
    + ServiceStore
    + WebhookStore
    + SecretStore
{
}
impl<
    T: UserStore
        + SessionStore
        + AccountTokenStore
        + OAuthStore
        + BotStore
        + ExecutionStore
        + LogStore
        + OpsStore
        + ScheduleStore
        + ServiceStore
        + WebhookStore
        + SecretStore,
> Store for T
{
}

/// Opens the store named by `url` (`postgres://…` or `sqlite://…`).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(sql::PgStore::connect(url).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sql::SqliteStore::open(path).await?))
    } else {
        Err(StoreError::Config(
            "the database URL must start with postgres:// or sqlite://".to_owned(),
        ))
    }
}
