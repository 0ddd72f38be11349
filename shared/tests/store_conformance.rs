//! The store conformance suite (design §2, style 11): every case is a plain async function
//! over `&dyn Store`, and `store_cases!` runs each one against PostgreSQL (a fresh schema) and
//! SQLite (a fresh file), so the two implementations keep exactly the same semantics.
//!
//! Times are passed in explicitly (the store never reads the clock), so lease expiry is tested
//! by naming a later `now`, not by waiting.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context, ensure};
use codex32_shared::Timestamp;
use codex32_shared::domain::{
    ApiKey, Bot, BotSpec, ExecStatus, Execution, LogStream, NewExecution, ResourceUsage, Role,
    User, WorkerInfo,
};
use codex32_shared::store::sql::{PgStore, SqliteStore};
use codex32_shared::store::{
    AuditEntry, AuditFilter, ExecutionFilter, Finish, NewEvent, NewLogLine, Store, StoreError,
};
use codex32_shared::testing::TestSchema;
use futures::future::join_all;
use serde_json::json;
use uuid::Uuid;

type TestResult = anyhow::Result<()>;

/// One backend's store and whatever keeps its database alive; the store is dropped first.
struct Backend {
    store: Arc<dyn Store>,
    _schema: Option<TestSchema>,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn pg() -> Self {
        let schema = TestSchema::create().await;
        let store = PgStore::connect(&schema.url)
            .await
            .expect("connect to the test schema");
        store
            .run_migrations()
            .await
            .expect("migrate the test schema");
        Self {
            store: Arc::new(store),
            _schema: Some(schema),
            _dir: None,
        }
    }

    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("codex32.db");
        let store = SqliteStore::open(path.to_str().expect("a UTF-8 temporary path"))
            .await
            .expect("open the SQLite store");
        Self {
            store: Arc::new(store),
            _schema: None,
            _dir: Some(dir),
        }
    }
}

/// Instantiates every case of a module once per backend: `<module>::pg::<case>` and
/// `<module>::sqlite::<case>`.
macro_rules! store_cases {
    ($($case:ident),+ $(,)?) => {
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = crate::Backend::pg().await;
                    super::$case(&*backend.store).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = crate::Backend::sqlite().await;
                    super::$case(&*backend.store).await
                }
            )+
        }
    };
}

#[path = "store_conformance/bots.rs"]
mod bots;
#[path = "store_conformance/executions.rs"]
mod executions;
#[path = "store_conformance/leases.rs"]
mod leases;
#[path = "store_conformance/ops.rs"]
mod ops;
#[path = "store_conformance/scheduling.rs"]
mod scheduling;
#[path = "store_conformance/services.rs"]
mod services;
#[path = "store_conformance/sessions.rs"]
mod sessions;
#[path = "store_conformance/users.rs"]
mod users;

// ---- fixtures -------------------------------------------------------------------------------

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + ms)
}

async fn user(s: &dyn Store, email: &str) -> anyhow::Result<User> {
    let user = User {
        id: Uuid::now_v7(),
        email: email.to_owned(),
        password_hash: "$argon2id$not-a-real-hash".to_owned(),
        role: Role::User,
        created_at: Timestamp::now(),
        email_verified: true,
    };
    s.create_user(&user).await.context("create user")?;
    Ok(user)
}

fn api_key(owner: &User, name: &str) -> ApiKey {
    ApiKey {
        id: Uuid::now_v7(),
        user_id: owner.id,
        name: name.to_owned(),
        prefix: "c32_abcd".to_owned(),
        key_hash: format!("hash-of-{}", Uuid::new_v4()),
        role: Role::ApiUser,
        created_at: Timestamp::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
    }
}

fn spec(name: &str, script: &str) -> BotSpec {
    serde_json::from_value(json!({"name": name, "runtime": "bash", "script": script}))
        .expect("a valid bot spec")
}

async fn bot(s: &dyn Store, owner: &User, name: &str) -> anyhow::Result<Bot> {
    let bot = s
        .create_bot(
            Uuid::now_v7(),
            owner.id,
            &spec(name, "echo hi"),
            Timestamp::now(),
        )
        .await
        .context("create bot")?;
    Ok(bot)
}

fn new_execution(bot: &Bot) -> NewExecution {
    NewExecution {
        id: Uuid::now_v7(),
        bot_id: bot.id,
        bot_version: bot.version,
        pool: "default".to_owned(),
        max_attempts: 3,
        priority: 0,
        input: json!({"n": 1}),
        idempotency_key: None,
        run_at: None,
        created_by: Some(bot.owner_id),
        scheduled_for: None,
        replay_of: None,
        max_concurrency: None,
        why: "created by a test".into(),
    }
}

async fn execution(s: &dyn Store, bot: &Bot) -> anyhow::Result<Execution> {
    let (e, created) = s
        .create_execution(&new_execution(bot), bot.owner_id, at(0))
        .await
        .context("create execution")?;
    ensure!(created);
    Ok(e)
}

/// A bot with one execution, claimed by `worker` at `at(0)` until `at(lease_ms)`.
async fn running(s: &dyn Store, worker: &str, lease_ms: i64) -> anyhow::Result<Execution> {
    let owner = user(s, &format!("{worker}@example.com")).await?;
    let bot = bot(s, &owner, &format!("bot-{worker}")).await?;
    let e = execution(s, &bot).await?;
    s.claim_execution(e.id, worker, at(0), at(lease_ms))
        .await?
        .context("the claim of a fresh execution")
}

async fn get(s: &dyn Store, id: Uuid) -> anyhow::Result<Execution> {
    s.get_execution(id).await?.context("the execution exists")
}

/// A fenced end of attempt `attempt`: final unless `status` is `Queued` (a retry).
fn finish(e: &Execution, attempt: i32, worker: Option<&str>, status: ExecStatus) -> Finish {
    Finish {
        id: e.id,
        attempt,
        worker_id: worker.map(str::to_owned),
        status,
        output: Some(json!({"ok": true})),
        error: None,
        exit_code: Some(0),
        at: at(500),
        duration_ms: Some(500),
        run_at: None,
        usage: Some(usage()),
        sandboxed: Some(true),
    }
}

/// What a sandboxed attempt reports using.
fn usage() -> ResourceUsage {
    ResourceUsage {
        oom_killed: false,
        peak_memory_bytes: Some(3 << 20),
        cpu_time_ms: 12,
        wall_ms: 40,
        signal: None,
    }
}

fn ids(executions: &[Execution]) -> Vec<Uuid> {
    executions.iter().map(|e| e.id).collect()
}

fn is_conflict<T>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict { .. }))
}

async fn ids_of_users(s: &dyn Store) -> anyhow::Result<Vec<Uuid>> {
    Ok(s.list_users().await?.iter().map(|u| u.id).collect())
}

#[path = "store_conformance/oauth.rs"]
mod oauth;
