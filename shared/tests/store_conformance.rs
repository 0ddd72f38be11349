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
    ApiKey, Bot, BotSpec, ExecStatus, Execution, LogStream, NewExecution, Role, User, WorkerInfo,
};
use codex32_shared::store::sql::{PgStore, SqliteStore};
use codex32_shared::store::{AuditEntry, ExecutionFilter, Finish, NewLogLine, Store, StoreError};
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

/// Instantiates every case once per backend: `pg::<case>` and `sqlite::<case>`.
macro_rules! store_cases {
    ($($case:ident),+ $(,)?) => {
        mod pg {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = super::Backend::pg().await;
                    super::$case(&*backend.store).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> anyhow::Result<()> {
                    let backend = super::Backend::sqlite().await;
                    super::$case(&*backend.store).await
                }
            )+
        }
    };
}

store_cases!(
    a_user_is_found_by_email_and_by_id,
    a_second_user_with_the_same_email_is_a_conflict,
    an_api_key_is_found_by_its_hash_and_listed_for_its_owner,
    revoking_an_api_key_is_limited_to_its_owner_and_happens_once,
    touching_an_api_key_records_its_last_use,
    a_new_bot_starts_at_version_one_and_reads_back,
    a_second_live_bot_with_the_same_name_is_a_conflict,
    a_deleted_bot_is_hidden_and_its_name_can_be_used_again,
    updating_a_bot_makes_version_two_and_keeps_both_versions,
    bots_are_listed_newest_first_and_by_owner,
    a_new_execution_is_queued_at_attempt_one,
    an_idempotency_key_returns_the_first_execution_and_creates_nothing,
    executions_are_listed_newest_first_by_bot_status_owner_and_cursor,
    only_one_of_eight_racing_claimers_takes_each_execution,
    a_claim_before_run_at_is_refused_and_succeeds_once_due,
    only_the_lease_holder_at_its_attempt_renews_the_lease,
    a_finish_from_the_wrong_worker_or_attempt_writes_nothing,
    a_retry_requeues_at_the_next_attempt_without_a_worker,
    cancelling_a_queued_execution_ends_it_at_once,
    cancelling_a_running_execution_flags_it_and_its_retry_ends_it,
    the_reaper_finishes_only_executions_whose_lease_expired,
    queued_executions_are_paged_in_id_order,
    a_large_batch_of_log_lines_reads_back_in_order_from_any_offset,
    audit_entries_are_recorded_with_and_without_an_actor,
    a_worker_upserted_twice_is_listed_once_with_its_latest_state,
    the_store_answers_a_ping_and_migrating_again_changes_nothing,
);

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
    }
}

fn ids(executions: &[Execution]) -> Vec<Uuid> {
    executions.iter().map(|e| e.id).collect()
}

fn is_conflict<T>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict { .. }))
}

// ---- users and API keys ---------------------------------------------------------------------

async fn a_user_is_found_by_email_and_by_id(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let found = s
        .user_by_email("ada@example.com")
        .await?
        .context("by email")?;
    assert_eq!(
        (found.id, found.role, found.created_at),
        (ada.id, Role::User, ada.created_at)
    );
    assert_eq!(found.password_hash, ada.password_hash);
    assert_eq!(
        s.user_by_id(bob.id).await?.context("by id")?.email,
        "bob@example.com"
    );
    assert!(s.user_by_email("nobody@example.com").await?.is_none());
    assert!(s.user_by_id(Uuid::now_v7()).await?.is_none());
    let listed: HashSet<Uuid> = s.list_users().await?.iter().map(|u| u.id).collect();
    assert_eq!(listed, HashSet::from([ada.id, bob.id]));
    Ok(())
}

async fn a_second_user_with_the_same_email_is_a_conflict(s: &dyn Store) -> TestResult {
    let first = user(s, "ada@example.com").await?;
    let mut second = first.clone();
    second.id = Uuid::now_v7();
    assert!(
        is_conflict(s.create_user(&second).await),
        "a duplicate email must conflict"
    );
    assert_eq!(ids_of_users(s).await?, vec![first.id]);
    Ok(())
}

async fn ids_of_users(s: &dyn Store) -> anyhow::Result<Vec<Uuid>> {
    Ok(s.list_users().await?.iter().map(|u| u.id).collect())
}

async fn an_api_key_is_found_by_its_hash_and_listed_for_its_owner(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (k1, k2, k3) = (
        api_key(&ada, "ci"),
        api_key(&ada, "cron"),
        api_key(&bob, "laptop"),
    );
    for k in [&k1, &k2, &k3] {
        s.create_api_key(k).await?;
    }
    let found = s.api_key_by_hash(&k2.key_hash).await?.context("by hash")?;
    assert_eq!(
        (found.id, found.user_id, found.name.as_str()),
        (k2.id, ada.id, "cron")
    );
    assert_eq!(
        (found.role, found.revoked_at, found.last_used_at),
        (Role::ApiUser, None, None)
    );
    assert!(s.api_key_by_hash("no-such-hash").await?.is_none());
    let ada_keys: HashSet<Uuid> = s
        .list_api_keys(Some(ada.id))
        .await?
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ada_keys, HashSet::from([k1.id, k2.id]));
    assert_eq!(s.list_api_keys(None).await?.len(), 3);
    let mut same_hash = api_key(&bob, "copy");
    same_hash.key_hash = k1.key_hash.clone();
    assert!(is_conflict(s.create_api_key(&same_hash).await));
    Ok(())
}

async fn revoking_an_api_key_is_limited_to_its_owner_and_happens_once(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (mine, other) = (api_key(&ada, "ci"), api_key(&ada, "cron"));
    s.create_api_key(&mine).await?;
    s.create_api_key(&other).await?;
    assert!(
        !s.revoke_api_key(mine.id, Some(bob.id), at(1)).await?,
        "not bob's key"
    );
    assert!(
        s.api_key_by_hash(&mine.key_hash)
            .await?
            .context("key")?
            .revoked_at
            .is_none()
    );
    assert!(s.revoke_api_key(mine.id, Some(ada.id), at(1)).await?);
    assert!(
        !s.revoke_api_key(mine.id, Some(ada.id), at(2)).await?,
        "already revoked"
    );
    let revoked = s.api_key_by_hash(&mine.key_hash).await?.context("key")?;
    assert_eq!(revoked.revoked_at, Some(at(1)));
    assert!(
        s.revoke_api_key(other.id, None, at(3)).await?,
        "any owner's key"
    );
    assert!(
        !s.revoke_api_key(Uuid::now_v7(), None, at(3)).await?,
        "no such key"
    );
    Ok(())
}

async fn touching_an_api_key_records_its_last_use(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let key = api_key(&ada, "ci");
    s.create_api_key(&key).await?;
    s.touch_api_key(key.id, at(10)).await?;
    s.touch_api_key(key.id, at(20)).await?;
    let touched = s.api_key_by_hash(&key.key_hash).await?.context("key")?;
    assert_eq!(touched.last_used_at, Some(at(20)));
    s.touch_api_key(Uuid::now_v7(), at(30)).await?;
    Ok(())
}

// ---- bots -----------------------------------------------------------------------------------

async fn a_new_bot_starts_at_version_one_and_reads_back(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let created = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("daily", "echo 1"), at(0))
        .await?;
    assert_eq!((created.version, created.status.as_str()), (1, "active"));
    let read = s.get_bot(created.id).await?.context("the bot")?;
    assert_eq!(
        (read.id, read.owner_id, read.version),
        (created.id, ada.id, 1)
    );
    assert_eq!((read.created_at, read.updated_at), (at(0), at(0)));
    assert_eq!(read.spec, spec("daily", "echo 1"));
    let versions = s.bot_versions(created.id).await?;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1]
    );
    let v1 = s.bot_version(created.id, 1).await?.context("version 1")?;
    assert_eq!((v1.spec, v1.created_at), (spec("daily", "echo 1"), at(0)));
    assert!(s.bot_version(created.id, 2).await?.is_none());
    assert!(s.get_bot(Uuid::now_v7()).await?.is_none());
    Ok(())
}

async fn a_second_live_bot_with_the_same_name_is_a_conflict(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let first = bot(s, &ada, "daily").await?;
    let again = s
        .create_bot(Uuid::now_v7(), bob.id, &spec("daily", "echo 2"), at(1))
        .await;
    assert!(is_conflict(again), "names are unique among live bots");
    assert_eq!(
        s.list_bots(None)
            .await?
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        vec![first.id]
    );
    Ok(())
}

async fn a_deleted_bot_is_hidden_and_its_name_can_be_used_again(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let old = bot(s, &ada, "daily").await?;
    let e = execution(s, &old).await?;
    assert!(s.delete_bot(old.id, at(1)).await?);
    assert!(!s.delete_bot(old.id, at(2)).await?, "already deleted");
    assert!(s.get_bot(old.id).await?.is_none());
    assert!(s.list_bots(None).await?.is_empty());
    assert!(
        s.update_bot(old.id, &spec("daily", "echo 2"), at(3))
            .await?
            .is_none()
    );
    assert_eq!(
        get(s, e.id).await?.bot_id,
        old.id,
        "executions keep their bot"
    );
    let new = bot(s, &ada, "daily").await?;
    assert_ne!(new.id, old.id);
    assert_eq!(
        s.list_bots(None)
            .await?
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        vec![new.id]
    );
    Ok(())
}

async fn updating_a_bot_makes_version_two_and_keeps_both_versions(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("daily", "echo 1"), at(0))
        .await?;
    let updated = s
        .update_bot(b.id, &spec("nightly", "echo 2"), at(5))
        .await?
        .context("update")?;
    assert_eq!(
        (updated.version, updated.spec.name.as_str()),
        (2, "nightly")
    );
    assert_eq!((updated.created_at, updated.updated_at), (at(0), at(5)));
    let read = s.get_bot(b.id).await?.context("the bot")?;
    assert_eq!((read.version, read.spec.script.as_str()), (2, "echo 2"));
    let versions = s.bot_versions(b.id).await?;
    let listed: Vec<(i32, &str)> = versions
        .iter()
        .map(|v| (v.version, v.spec.script.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![(2, "echo 2"), (1, "echo 1")],
        "newest version first"
    );
    assert_eq!(
        s.bot_version(b.id, 1).await?.context("v1")?.spec.name,
        "daily"
    );
    // Renaming onto a taken name conflicts and leaves the bot as it was.
    bot(s, &ada, "taken").await?;
    assert!(is_conflict(
        s.update_bot(b.id, &spec("taken", "echo 3"), at(6)).await
    ));
    assert_eq!(s.get_bot(b.id).await?.context("the bot")?.version, 2);
    assert_eq!(s.bot_versions(b.id).await?.len(), 2);
    assert!(
        s.update_bot(Uuid::now_v7(), &spec("ghost", "x"), at(7))
            .await?
            .is_none()
    );
    Ok(())
}

async fn bots_are_listed_newest_first_and_by_owner(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let a1 = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("a1", "x"), at(1))
        .await?;
    let b1 = s
        .create_bot(Uuid::now_v7(), bob.id, &spec("b1", "x"), at(2))
        .await?;
    let a2 = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("a2", "x"), at(3))
        .await?;
    let all: Vec<Uuid> = s.list_bots(None).await?.iter().map(|b| b.id).collect();
    assert_eq!(all, vec![a2.id, b1.id, a1.id]);
    let adas: Vec<Uuid> = s
        .list_bots(Some(ada.id))
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(adas, vec![a2.id, a1.id]);
    assert!(s.list_bots(Some(Uuid::now_v7())).await?.is_empty());
    Ok(())
}

// ---- executions: creation and listing -------------------------------------------------------

async fn a_new_execution_is_queued_at_attempt_one(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut new = new_execution(&b);
    new.priority = 7;
    new.run_at = Some(at(60_000));
    let (e, created) = s.create_execution(&new, ada.id, at(0)).await?;
    assert!(created);
    let read = get(s, e.id).await?;
    for x in [&e, &read] {
        assert_eq!(
            (x.id, x.bot_id, x.bot_version, x.owner_id),
            (new.id, b.id, 1, ada.id)
        );
        assert_eq!(
            (x.status, x.attempt, x.max_attempts, x.priority),
            (ExecStatus::Queued, 1, 3, 7)
        );
        assert_eq!(
            (&x.pool, &x.input, x.run_at, x.queued_at),
            (&new.pool, &new.input, new.run_at, at(0))
        );
        assert_eq!(
            (
                x.worker_id.as_deref(),
                x.output.as_ref(),
                x.cancel_requested
            ),
            (None, None, false)
        );
        assert_eq!(
            (x.started_at, x.finished_at, x.lease_expires_at),
            (None, None, None)
        );
        assert_eq!(x.created_by, Some(ada.id));
    }
    assert!(s.get_execution(Uuid::now_v7()).await?.is_none());
    Ok(())
}

async fn an_idempotency_key_returns_the_first_execution_and_creates_nothing(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let (b1, b2) = (bot(s, &ada, "one").await?, bot(s, &ada, "two").await?);
    let mut first = new_execution(&b1);
    first.idempotency_key = Some("order-42".into());
    let (e1, created) = s.create_execution(&first, ada.id, at(0)).await?;
    assert!(created);
    let mut retry = new_execution(&b1);
    retry.idempotency_key = Some("order-42".into());
    retry.input = json!({"different": true});
    let (again, created) = s.create_execution(&retry, ada.id, at(1)).await?;
    assert!(!created, "the same key on the same bot creates nothing");
    assert_eq!(
        (again.id, &again.input, again.queued_at),
        (e1.id, &first.input, at(0))
    );
    assert!(s.get_execution(retry.id).await?.is_none());
    // The key is scoped to the bot, and executions without a key never collide.
    let mut other_bot = new_execution(&b2);
    other_bot.idempotency_key = Some("order-42".into());
    assert!(s.create_execution(&other_bot, ada.id, at(2)).await?.1);
    assert!(
        s.create_execution(&new_execution(&b1), ada.id, at(3))
            .await?
            .1
    );
    assert!(
        s.create_execution(&new_execution(&b1), ada.id, at(4))
            .await?
            .1
    );
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    assert_eq!(all.len(), 4);
    Ok(())
}

async fn executions_are_listed_newest_first_by_bot_status_owner_and_cursor(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (a1, a2, b1) = (
        bot(s, &ada, "a1").await?,
        bot(s, &ada, "a2").await?,
        bot(s, &bob, "b1").await?,
    );
    let e1 = execution(s, &a1).await?;
    let e2 = execution(s, &a1).await?;
    let e3 = execution(s, &a2).await?;
    let e4 = execution(s, &b1).await?;
    let e5 = execution(s, &a1).await?;
    s.claim_execution(e2.id, "w", at(0), at(1000))
        .await?
        .context("claim e2")?;
    let list = |f: ExecutionFilter| async move {
        anyhow::Ok(ids(&s
            .list_executions(&ExecutionFilter {
                limit: f.limit.max(1),
                ..f
            })
            .await?))
    };
    let all = ExecutionFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        list(all.clone()).await?,
        vec![e5.id, e4.id, e3.id, e2.id, e1.id]
    );
    let by_bot = ExecutionFilter {
        bot_id: Some(a1.id),
        ..all.clone()
    };
    assert_eq!(list(by_bot.clone()).await?, vec![e5.id, e2.id, e1.id]);
    let running = ExecutionFilter {
        status: Some(ExecStatus::Running),
        ..all.clone()
    };
    assert_eq!(list(running).await?, vec![e2.id]);
    let queued = ExecutionFilter {
        status: Some(ExecStatus::Queued),
        ..all.clone()
    };
    assert_eq!(list(queued).await?, vec![e5.id, e4.id, e3.id, e1.id]);
    let adas = ExecutionFilter {
        owner_id: Some(ada.id),
        ..all.clone()
    };
    assert_eq!(list(adas).await?, vec![e5.id, e3.id, e2.id, e1.id]);
    let bobs = ExecutionFilter {
        owner_id: Some(bob.id),
        ..all.clone()
    };
    assert_eq!(list(bobs).await?, vec![e4.id]);
    let older = ExecutionFilter {
        before: Some(e4.id),
        ..all.clone()
    };
    assert_eq!(list(older).await?, vec![e3.id, e2.id, e1.id]);
    let page = ExecutionFilter {
        limit: 2,
        ..all.clone()
    };
    assert_eq!(list(page).await?, vec![e5.id, e4.id]);
    let combined = ExecutionFilter {
        status: Some(ExecStatus::Queued),
        before: Some(e5.id),
        ..by_bot
    };
    assert_eq!(list(combined).await?, vec![e1.id]);
    Ok(())
}

// ---- executions: the lease lifecycle --------------------------------------------------------

async fn only_one_of_eight_racing_claimers_takes_each_execution(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut executions = Vec::new();
    for _ in 0..4 {
        executions.push(execution(s, &b).await?);
    }
    let workers: Vec<String> = (0..8).map(|i| format!("worker-{i}")).collect();
    let claims = executions.iter().flat_map(|e| {
        workers.iter().map(move |w| async move {
            (
                e.id,
                w.as_str(),
                s.claim_execution(e.id, w, at(0), at(30_000)).await,
            )
        })
    });
    let mut winners = std::collections::HashMap::new();
    for (id, worker, claim) in join_all(claims).await {
        if let Some(won) = claim? {
            assert_eq!(
                (won.status, won.worker_id.as_deref()),
                (ExecStatus::Running, Some(worker))
            );
            assert!(
                winners.insert(id, worker).is_none(),
                "{id} went to two workers"
            );
        }
    }
    assert_eq!(
        winners.len(),
        executions.len(),
        "every execution was taken once"
    );
    for e in &executions {
        let read = get(s, e.id).await?;
        assert_eq!((read.status, read.attempt), (ExecStatus::Running, 1));
        assert_eq!(read.worker_id.as_deref(), Some(winners[&e.id]));
        assert_eq!(
            (read.started_at, read.lease_expires_at),
            (Some(at(0)), Some(at(30_000)))
        );
        assert!(
            s.claim_execution(e.id, "late", at(1), at(2))
                .await?
                .is_none()
        );
    }
    Ok(())
}

async fn a_claim_before_run_at_is_refused_and_succeeds_once_due(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut new = new_execution(&b);
    new.run_at = Some(at(60_000));
    let (e, _) = s.create_execution(&new, ada.id, at(0)).await?;
    assert!(
        s.claim_execution(e.id, "w", at(59_999), at(90_000))
            .await?
            .is_none()
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Queued);
    let claimed = s.claim_execution(e.id, "w", at(60_000), at(90_000)).await?;
    assert_eq!(
        claimed.context("due at run_at")?.status,
        ExecStatus::Running
    );
    assert!(
        s.claim_execution(Uuid::now_v7(), "w", at(0), at(1))
            .await?
            .is_none()
    );
    Ok(())
}

async fn only_the_lease_holder_at_its_attempt_renews_the_lease(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    assert_eq!(s.renew_lease(e.id, 1, "intruder", at(9_000)).await?, None);
    assert_eq!(s.renew_lease(e.id, 2, "holder", at(9_000)).await?, None);
    assert_eq!(get(s, e.id).await?.lease_expires_at, Some(at(1_000)));
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(5_000)).await?,
        Some(false)
    );
    assert_eq!(get(s, e.id).await?.lease_expires_at, Some(at(5_000)));
    s.request_cancel(e.id, at(100)).await?;
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(6_000)).await?,
        Some(true),
        "told to stop"
    );
    assert!(
        s.finish_execution(&finish(&e, 1, Some("holder"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(7_000)).await?,
        None,
        "finished"
    );
    Ok(())
}

async fn a_finish_from_the_wrong_worker_or_attempt_writes_nothing(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    for stale in [
        finish(&e, 1, Some("intruder"), ExecStatus::Failed),
        finish(&e, 2, Some("holder"), ExecStatus::Failed),
    ] {
        assert!(
            !s.finish_execution(&stale).await?,
            "a stale finish must not match"
        );
        let read = get(s, e.id).await?;
        assert_eq!(
            (read.status, read.output, read.exit_code),
            (ExecStatus::Running, None, None)
        );
        assert_eq!(
            (read.finished_at, read.worker_id.as_deref()),
            (None, Some("holder"))
        );
    }
    let mut done = finish(&e, 1, Some("holder"), ExecStatus::Succeeded);
    done.output = Some(json!({"answer": 42}));
    assert!(s.finish_execution(&done).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.output, read.exit_code),
        (ExecStatus::Succeeded, Some(json!({"answer": 42})), Some(0))
    );
    assert_eq!(
        (read.finished_at, read.duration_ms, read.lease_expires_at),
        (Some(at(500)), Some(500), None)
    );
    let mut late = finish(&e, 1, Some("holder"), ExecStatus::Failed);
    late.exit_code = Some(1);
    assert!(
        !s.finish_execution(&late).await?,
        "a finished execution stays finished"
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Succeeded);
    Ok(())
}

async fn a_retry_requeues_at_the_next_attempt_without_a_worker(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    let mut retry = finish(&e, 1, Some("holder"), ExecStatus::Queued);
    (retry.output, retry.error, retry.exit_code) = (None, Some("exit status 1".into()), Some(1));
    retry.run_at = Some(at(10_000));
    assert!(s.finish_execution(&retry).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.worker_id),
        (ExecStatus::Queued, 2, None)
    );
    assert_eq!(
        (read.lease_expires_at, read.started_at, read.finished_at),
        (None, None, None)
    );
    assert_eq!(
        (read.run_at, read.error.as_deref(), read.exit_code),
        (Some(at(10_000)), Some("exit status 1"), Some(1))
    );
    assert!(
        !s.finish_execution(&finish(&e, 1, Some("holder"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(s.renew_lease(e.id, 1, "holder", at(2_000)).await?, None);
    assert!(
        s.claim_execution(e.id, "next", at(9_999), at(20_000))
            .await?
            .is_none(),
        "backing off"
    );
    let again = s
        .claim_execution(e.id, "next", at(10_000), at(20_000))
        .await?
        .context("due")?;
    assert_eq!(
        (again.attempt, again.worker_id.as_deref()),
        (2, Some("next"))
    );
    assert!(
        s.finish_execution(&finish(&e, 2, Some("next"), ExecStatus::Succeeded))
            .await?
    );
    Ok(())
}

async fn cancelling_a_queued_execution_ends_it_at_once(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let e = execution(s, &b).await?;
    let cancelled = s.request_cancel(e.id, at(7)).await?.context("known")?;
    assert_eq!(
        (cancelled.status, cancelled.finished_at),
        (ExecStatus::Cancelled, Some(at(7)))
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Cancelled);
    assert!(s.claim_execution(e.id, "w", at(8), at(9)).await?.is_none());
    let again = s.request_cancel(e.id, at(9)).await?.context("known")?;
    assert_eq!(
        (again.status, again.finished_at),
        (ExecStatus::Cancelled, Some(at(7)))
    );
    assert!(s.request_cancel(Uuid::now_v7(), at(9)).await?.is_none());
    Ok(())
}

async fn cancelling_a_running_execution_flags_it_and_its_retry_ends_it(
    s: &dyn Store,
) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    let flagged = s.request_cancel(e.id, at(100)).await?.context("known")?;
    assert_eq!(
        (flagged.status, flagged.cancel_requested),
        (ExecStatus::Running, true)
    );
    assert_eq!(flagged.worker_id.as_deref(), Some("holder"));
    let mut retry = finish(&e, 1, Some("holder"), ExecStatus::Queued);
    retry.run_at = Some(at(5_000));
    assert!(s.finish_execution(&retry).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.finished_at),
        (ExecStatus::Cancelled, 1, Some(at(500)))
    );
    assert!(
        s.claim_execution(e.id, "next", at(6_000), at(9_000))
            .await?
            .is_none()
    );
    // A final result still wins over a pending cancel: the work did finish.
    let other = running(s, "other", 1_000).await?;
    s.request_cancel(other.id, at(100)).await?;
    assert!(
        s.finish_execution(&finish(&other, 1, Some("other"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(get(s, other.id).await?.status, ExecStatus::Succeeded);
    let unchanged = s
        .request_cancel(other.id, at(900))
        .await?
        .context("known")?;
    assert_eq!(unchanged.status, ExecStatus::Succeeded);
    Ok(())
}

async fn the_reaper_finishes_only_executions_whose_lease_expired(s: &dyn Store) -> TestResult {
    let first = running(s, "one", 1_000).await?;
    let second = running(s, "two", 1_500).await?;
    assert!(s.expired_leases(at(900), 10).await?.is_empty());
    let mut early = finish(&first, 1, None, ExecStatus::Queued);
    early.at = at(900);
    assert!(
        !s.finish_execution(&early).await?,
        "the lease is still live"
    );
    assert_eq!(get(s, first.id).await?.status, ExecStatus::Running);
    assert_eq!(ids(&s.expired_leases(at(1_200), 10).await?), vec![first.id]);
    assert_eq!(
        ids(&s.expired_leases(at(2_000), 10).await?),
        vec![first.id, second.id]
    );
    assert_eq!(
        ids(&s.expired_leases(at(2_000), 1).await?),
        vec![first.id],
        "oldest first"
    );
    let mut requeue = finish(&first, 1, None, ExecStatus::Queued);
    (requeue.at, requeue.run_at, requeue.error) =
        (at(2_000), Some(at(3_000)), Some("lease expired".into()));
    assert!(s.finish_execution(&requeue).await?);
    assert!(!s.finish_execution(&requeue).await?, "reaped once");
    let read = get(s, first.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.worker_id),
        (ExecStatus::Queued, 2, None)
    );
    let mut give_up = finish(&second, 1, None, ExecStatus::Failed);
    (give_up.at, give_up.output, give_up.error) = (at(2_000), None, Some("lease expired".into()));
    assert!(s.finish_execution(&give_up).await?);
    assert_eq!(get(s, second.id).await?.status, ExecStatus::Failed);
    assert!(s.expired_leases(at(10_000), 10).await?.is_empty());
    Ok(())
}

async fn queued_executions_are_paged_in_id_order(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(execution(s, &b).await?.id);
    }
    s.claim_execution(all[2], "w", at(0), at(1_000))
        .await?
        .context("claim")?;
    s.request_cancel(all[4], at(0)).await?;
    let expected: Vec<Uuid> = all
        .iter()
        .copied()
        .filter(|id| *id != all[2] && *id != all[4])
        .collect();
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = s.queued_page(after, 2).await?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(ids(&page));
    }
    assert_eq!(seen, expected);
    Ok(())
}

// ---- logs, audit, workers, health -----------------------------------------------------------

async fn a_large_batch_of_log_lines_reads_back_in_order_from_any_offset(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let (e, other) = (execution(s, &b).await?, execution(s, &b).await?);
    let line = |execution_id, i: usize| NewLogLine {
        execution_id,
        attempt: 1,
        stream: if i % 2 == 0 {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        },
        line: format!("line {i}"),
        at: at(i as i64),
    };
    // More than one INSERT's worth, with another execution's lines interleaved.
    let mut batch: Vec<NewLogLine> = (0..1234).map(|i| line(e.id, i)).collect();
    for i in 0..3 {
        batch.insert(i * 600, line(other.id, i));
    }
    s.append_logs(&batch).await?;
    let read = s.read_logs(e.id, 0, 5_000).await?;
    assert_eq!(read.len(), 1234);
    for (i, l) in read.iter().enumerate() {
        assert_eq!(
            (l.line.as_str(), l.execution_id, l.attempt),
            (format!("line {i}").as_str(), e.id, 1)
        );
        assert_eq!(
            l.stream,
            if i % 2 == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            }
        );
        assert_eq!(l.at, at(i as i64));
    }
    assert!(read.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let rest = s.read_logs(e.id, read[999].id, 5_000).await?;
    assert_eq!((rest.len(), rest[0].line.as_str()), (234, "line 1000"));
    let first = s.read_logs(e.id, 0, 10).await?;
    assert_eq!(
        first.iter().map(|l| l.id).collect::<Vec<_>>(),
        ids_of_logs(&read[..10])
    );
    assert!(s.read_logs(e.id, read[1233].id, 10).await?.is_empty());
    assert_eq!(s.read_logs(other.id, 0, 10).await?.len(), 3);
    s.append_logs(&[]).await?;
    Ok(())
}

fn ids_of_logs(lines: &[codex32_shared::domain::LogLine]) -> Vec<i64> {
    lines.iter().map(|l| l.id).collect()
}

async fn audit_entries_are_recorded_with_and_without_an_actor(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let entry = AuditEntry {
        actor_id: Some(ada.id),
        action: "bot.create".into(),
        target: "bot:daily".into(),
        details: json!({"version": 1}),
        at: at(0),
    };
    s.record_audit(&entry).await?;
    s.record_audit(&entry).await?;
    s.record_audit(&AuditEntry {
        actor_id: None,
        action: "worker.lost".into(),
        ..entry
    })
    .await?;
    Ok(())
}

async fn a_worker_upserted_twice_is_listed_once_with_its_latest_state(s: &dyn Store) -> TestResult {
    let first = WorkerInfo {
        id: "worker-a".into(),
        hostname: "host-1".into(),
        version: "0.1.0".into(),
        pools: vec!["default".into()],
        slots: 4,
        running: 0,
        state: "running".into(),
        started_at: at(0),
        last_seen_at: at(0),
    };
    s.upsert_worker(&first).await?;
    // The same id again: a heartbeat, here from a restarted, upgraded process.
    let latest = WorkerInfo {
        hostname: "host-2".into(),
        version: "0.2.0".into(),
        pools: vec!["default".into(), "gpu".into()],
        slots: 8,
        running: 3,
        state: "draining".into(),
        started_at: at(5_000),
        last_seen_at: at(6_000),
        ..first.clone()
    };
    s.upsert_worker(&latest).await?;
    s.upsert_worker(&WorkerInfo {
        id: "worker-b".into(),
        last_seen_at: at(1_000),
        ..first
    })
    .await?;
    let listed = s.list_workers().await?;
    let order: Vec<&str> = listed.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        order,
        vec!["worker-a", "worker-b"],
        "most recently seen first"
    );
    let a = &listed[0];
    assert_eq!(
        (a.hostname.as_str(), a.version.as_str(), &a.pools),
        ("host-2", "0.2.0", &latest.pools)
    );
    assert_eq!((a.slots, a.running, a.state.as_str()), (8, 3, "draining"));
    assert_eq!((a.started_at, a.last_seen_at), (at(5_000), at(6_000)));
    Ok(())
}

async fn the_store_answers_a_ping_and_migrating_again_changes_nothing(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    s.ping().await?;
    s.migrate().await?;
    assert_eq!(ids_of_users(s).await?, vec![ada.id]);
    Ok(())
}
