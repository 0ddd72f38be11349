//! The `codex32` binary: one subcommand per role (design §1). It parses flags and
//! environment into the typed configuration, starts logging, connects the backends and hands
//! over to the role's crate with one shutdown token, cancelled by SIGTERM or Ctrl-C.

mod dev;

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use codex32_shared::bus::Hearing;
use codex32_shared::config::{
    ApiConfig, Config, ExecutorKind, SandboxMode, SchedulerConfig, WorkerConfig,
};
use codex32_shared::{Backends, telemetry};
use codex32_worker::executor::{Executor, ProcessExecutor};
use codex32_worker::noop::NoopExecutor;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "codex32",
    version,
    about = "Run bash and python bots on demand or on cron schedules, isolated, on a fleet of workers."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on embedded backends (SQLite, in-process queue): the quickest
    /// way to try codex32, and enough for small installs. Prints the URL and admin login.
    Dev {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        api: ApiConfig,
        #[command(flatten)]
        worker: WorkerConfig,
        #[command(flatten)]
        scheduler: SchedulerConfig,
    },
    /// The stateless HTTP API (REST, OpenAPI, health, metrics). Run any number behind a load
    /// balancer; needs PostgreSQL (CODEX32_DATABASE_URL) and Redis (CODEX32_REDIS_URL).
    Api {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        api: ApiConfig,
    },
    /// Promotes delayed and retrying executions, reaps expired leases and re-enqueues queued
    /// executions missing from Redis. Safe to run several for availability.
    Scheduler {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        scheduler: SchedulerConfig,
    },
    /// Runs executions of its pools, --concurrency at a time. SIGTERM stops pulling, lets
    /// running executions finish within --drain-timeout-s, and hands the rest back.
    Worker {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        worker: WorkerConfig,
        /// Threads of the worker's async runtime. Bots run in processes of their own, so the
        /// worker only moves executions, results and output; one thread does that with fewer
        /// cross-thread wake-ups than several (×1.29 executions/s in loadtest/README.md). Scale
        /// with more workers or slots; raise this only if one worker's CPU stays at 100 %.
        #[arg(long, env = "CODEX32_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
    },
    /// Applies the PostgreSQL schema migrations (SQLite migrates itself at start).
    Migrate {
        #[command(flatten)]
        config: Config,
    },
    /// Re-seals every stored secret with CODEX32_SECRETS_KEY (the new key), opening those sealed
    /// with CODEX32_SECRETS_OLD_KEY. Give the API and workers both keys first, run this, then
    /// drop the old key from their configuration.
    RotateSecretsKey {
        #[command(flatten)]
        config: Config,
    },
    /// Load-tests a running codex32 through its public API (burst, steady, mixed, cron);
    /// the same as the `codex32-loadtest` binary. See loadtest/README.md.
    Loadtest(codex32_loadtest::Args),
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    if let Command::Loadtest(args) = command {
        return loadtest(args);
    }
    let Some(config) = command.config() else {
        unreachable!("every role but loadtest has a configuration");
    };
    telemetry::init(&config.log, config.log_format);
    // The container engine forks its launchers: before the runtime starts any thread.
    let executor = match &command {
        Command::Dev { worker, .. } => Some(executor_for(worker, SandboxMode::Auto)?),
        Command::Worker { worker, .. } => Some(executor_for(worker, SandboxMode::Isolated)?),
        Command::Api { .. }
        | Command::Scheduler { .. }
        | Command::Migrate { .. }
        | Command::RotateSecretsKey { .. }
        | Command::Loadtest(_) => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Worker { threads, .. } = &command {
        runtime.worker_threads(usize::from(*threads));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(command, executor))
}

impl Command {
    /// The configuration of a codex32 role; None for the load tester, a client.
    fn config(&self) -> Option<&Config> {
        match self {
            Command::Dev { config, .. }
            | Command::Api { config, .. }
            | Command::Scheduler { config, .. }
            | Command::Worker { config, .. }
            | Command::Migrate { config }
            | Command::RotateSecretsKey { config } => Some(config),
            Command::Loadtest(_) => None,
        }
    }
}

/// `codex32 loadtest`: a client of a running codex32, on a runtime of its own.
fn loadtest(args: codex32_loadtest::Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(codex32_loadtest::run(args))?;
    Ok(())
}

/// The executor of a worker: the container engine, or plain processes where the mode allows
/// — or, only when asked for with `--executor noop`, the benchmarking no-op executor.
fn executor_for(worker: &WorkerConfig, default: SandboxMode) -> anyhow::Result<Arc<dyn Executor>> {
    if worker.executor == ExecutorKind::Noop {
        tracing::warn!(
            "Benchmarking mode (--executor noop): no bot runs; each execution succeeds at once with its input as output."
        );
        return Ok(Arc::new(NoopExecutor));
    }
    let mode = worker.sandbox.unwrap_or(default);
    Ok(
        match codex32_worker::sandboxed::prepare_engine(mode, worker.concurrency as usize)? {
            Some(engine) => Arc::new(engine),
            None => Arc::new(ProcessExecutor),
        },
    )
}

async fn run(command: Command, executor: Option<Arc<dyn Executor>>) -> anyhow::Result<()> {
    let executor = executor.unwrap_or_else(|| Arc::new(ProcessExecutor));
    match command {
        Command::Dev {
            config,
            api,
            worker,
            scheduler,
        } => {
            dev::run(
                config,
                api,
                worker,
                scheduler,
                executor,
                shutdown_on_signal(),
            )
            .await
        }
        Command::Api { config, api } => {
            let backends = connect_distributed(&config, "api", Hearing::Everything).await?;
            let state = codex32_api::state(backends, &config, &api)?;
            codex32_api::bootstrap_admin(&state, &api).await?;
            let (listener, addr) = codex32_api::bind(&api).await?;
            announce_api(addr);
            codex32_api::serve(listener, state, shutdown_on_signal()).await
        }
        Command::Scheduler { config, scheduler } => {
            let backends = connect_distributed(&config, "scheduler", Hearing::Control).await?;
            codex32_scheduler::run(backends, &config, &scheduler, shutdown_on_signal()).await
        }
        Command::Worker { config, worker, .. } => {
            let backends = connect_distributed(&config, "worker", Hearing::Control).await?;
            codex32_worker::run(backends, &config, &worker, executor, shutdown_on_signal()).await
        }
        Command::Loadtest(args) => Ok(codex32_loadtest::run(args).await?),
        Command::RotateSecretsKey { config } => rotate_secrets_key(&config).await,
        Command::Migrate { config } => {
            let store = codex32_shared::store::connect(&config.store_url())
                .await
                .context("cannot open the store")?;
            store.migrate().await.context("migration failed")?;
            println!(
                "codex32: the store at {} is up to date",
                redact(&config.store_url())
            );
            Ok(())
        }
    }
}

async fn rotate_secrets_key(config: &Config) -> anyhow::Result<()> {
    let keyring = config
        .keyring()
        .map_err(|e| anyhow::anyhow!("CODEX32_SECRETS_KEY: {e}"))?
        .context(
            "set CODEX32_SECRETS_KEY to the new key and CODEX32_SECRETS_OLD_KEY to the old one",
        )?;
    let store = codex32_shared::store::connect(&config.store_url())
        .await
        .context("cannot open the store")?;
    let resealed = codex32_shared::secrets::rotate(store.as_ref(), &keyring).await?;
    println!(
        "codex32: re-sealed {resealed} secrets with key {}; every secret now uses it",
        keyring.key_id()
    );
    Ok(())
}

/// Prints where the API listens; tests and scripts read this line.
pub(crate) fn announce_api(addr: std::net::SocketAddr) {
    println!("codex32 API listening on http://{addr}");
}

/// The backends of a process of the distributed deployment, which must share Redis. Only the
/// API, which fans events out to WebSocket clients, hears more than control events.
async fn connect_distributed(
    config: &Config,
    role: &str,
    hearing: Hearing,
) -> anyhow::Result<Backends> {
    if config.redis_url.is_none() {
        bail!(
            "`codex32 {role}` runs beside other processes and needs the shared queue: set CODEX32_REDIS_URL \
             (and CODEX32_DATABASE_URL to PostgreSQL), or run everything in one process with `codex32 dev`"
        );
    }
    Backends::connect(config, hearing)
        .await
        .with_context(|| format!("codex32 {role} cannot connect its backends"))
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A token cancelled on the first SIGTERM or Ctrl-C; a second Ctrl-C exits at once.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM.");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("Shutting down: draining work in progress (Ctrl-C again to exit at once).");
        cancel.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    token
}
