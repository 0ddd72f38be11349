//! The worker's self-healing supervisor: a slot whose task panics is freed, its execution
//! released (failed and retried by the bot's policy), and the worker keeps running the rest.
//! Runs the real worker loop on the embedded backends (SQLite, in-process queue and bus)
//! with an executor that panics once for each execution asking for it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use clap::Parser;
use codex32_shared::bus::Hearing;
use codex32_shared::config::{Config, WorkerConfig};
use codex32_shared::domain::{ExecStatus, NewExecution, Role, User};
use codex32_shared::submit::submit;
use codex32_shared::{Backends, Timestamp};
use codex32_worker::LogSink;
use codex32_worker::executor::{Ending, ExecError, Executor, Finished, Job};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    worker: WorkerConfig,
}

/// Panics the first time it runs an execution whose input asks for it.
#[derive(Default)]
struct PanicsOnce {
    panicked: Mutex<HashSet<Uuid>>,
}

#[async_trait]
impl Executor for PanicsOnce {
    async fn run(
        &self,
        job: &Job,
        _logs: &LogSink,
        _stop: &CancellationToken,
    ) -> Result<Finished, ExecError> {
        let asks = job.input.windows(5).any(|w| w == b"panic");
        if asks && self.panicked.lock().unwrap().insert(job.execution_id) {
            panic!("injected fault for {}", job.execution_id);
        }
        Ok(Finished {
            ending: Ending::Exited(0),
            usage: None,
            output: None,
        })
    }

    fn sandboxed(&self) -> bool {
        false
    }

    fn isolation(&self) -> String {
        "none (test executor)".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicked_slot_is_freed_and_its_execution_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let args = Args::parse_from([
        "worker",
        "--data-dir",
        &data_dir,
        "--retry-base-ms",
        "50",
        "--retry-max-ms",
        "100",
        "--concurrency",
        "2",
        "--sandbox",
        "none",
    ]);
    let backends = Backends::connect(&args.config, Hearing::Everything)
        .await
        .unwrap();
    let owner = User {
        id: Uuid::now_v7(),
        email: "owner@example.com".into(),
        password_hash: "not-a-hash".into(),
        role: Role::User,
        created_at: Timestamp::now(),
        email_verified: true,
    };
    backends.store.create_user(&owner).await.unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "name": "flaky", "runtime": "bash", "script": "true", "max_attempts": 3
    }))
    .unwrap();
    let bot = backends
        .store
        .create_bot(Uuid::now_v7(), owner.id, &spec, Timestamp::now())
        .await
        .unwrap();
    let mut ids = vec![];
    for n in 0..20 {
        let input = if n % 5 == 0 {
            serde_json::json!("panic")
        } else {
            serde_json::json!(n)
        };
        let (exec, _) = submit(&backends, &NewExecution::of(&bot, input, "test"), owner.id)
            .await
            .unwrap();
        ids.push(exec.id);
    }

    let shutdown = CancellationToken::new();
    let worker = tokio::spawn({
        let (backends, shutdown) = (backends.clone(), shutdown.clone());
        async move {
            let executor: Arc<dyn Executor> = Arc::new(PanicsOnce::default());
            codex32_worker::run(backends, &args.config, &args.worker, executor, shutdown).await
        }
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut done = 0;
        for id in &ids {
            let e = backends.store.get_execution(*id).await.unwrap().unwrap();
            done += usize::from(e.status == ExecStatus::Succeeded);
        }
        if done == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} succeeded",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (n, id) in ids.iter().enumerate() {
        let e = backends.store.get_execution(*id).await.unwrap().unwrap();
        let expected = if n % 5 == 0 { 2 } else { 1 };
        assert_eq!(e.attempt, expected, "execution {n}");
        if n % 5 == 0 {
            let timeline = backends.store.timeline(*id).await.unwrap();
            assert!(
                timeline.iter().any(|t| t
                    .message
                    .contains("crashed while running it (injected fault")),
                "{timeline:?}"
            );
        }
    }
    shutdown.cancel();
    worker.await.unwrap().unwrap();
}
