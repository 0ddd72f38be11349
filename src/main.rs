//! The `codex32` binary: one subcommand per role (design §1). It parses flags and
//! environment into the typed configuration, starts logging, connects the backends and hands
//! over to the role's crate with one shutdown token, cancelled by SIGTERM or Ctrl-C.

mod dev;

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use codex32_shared::config::{ApiConfig, Config, SandboxMode, SchedulerConfig, WorkerConfig};
use codex32_shared::{Backends, telemetry};
use codex32_worker::executor::{Executor, ProcessExecutor};
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
    },
    /// Applies the PostgreSQL schema migrations (SQLite migrates itself at start).
    Migrate {
        #[command(flatten)]
        config: Config,
    },
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    let config = command.config();
    telemetry::init(&config.log, config.log_format);
    // The container engine forks its launchers: before the runtime starts any thread.
    let executor = match &command {
        Command::Dev { worker, .. } => Some(executor_for(worker, SandboxMode::Auto)?),
        Command::Worker { worker, .. } => Some(executor_for(worker, SandboxMode::Isolated)?),
        Command::Api { .. } | Command::Scheduler { .. } | Command::Migrate { .. } => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(command, executor))
}

impl Command {
    fn config(&self) -> &Config {
        match self {
            Command::Dev { config, .. }
            | Command::Api { config, .. }
            | Command::Scheduler { config, .. }
            | Command::Worker { config, .. }
            | Command::Migrate { config } => config,
        }
    }
}

/// The executor of a worker: the container engine, or plain processes where the mode allows.
fn executor_for(worker: &WorkerConfig, default: SandboxMode) -> anyhow::Result<Arc<dyn Executor>> {
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
            let backends = connect_distributed(&config, "api").await?;
            let state = codex32_api::state(backends, &api)?;
            codex32_api::bootstrap_admin(&state, &api).await?;
            let (listener, addr) = codex32_api::bind(&api).await?;
            announce_api(addr);
            codex32_api::serve(listener, state, shutdown_on_signal()).await
        }
        Command::Scheduler { config, scheduler } => {
            let backends = connect_distributed(&config, "scheduler").await?;
            codex32_scheduler::run(backends, &config, &scheduler, shutdown_on_signal()).await
        }
        Command::Worker { config, worker } => {
            let backends = connect_distributed(&config, "worker").await?;
            codex32_worker::run(backends, &config, &worker, executor, shutdown_on_signal()).await
        }
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

/// Prints where the API listens; tests and scripts read this line.
pub(crate) fn announce_api(addr: std::net::SocketAddr) {
    println!("codex32 API listening on http://{addr}");
}

/// The backends of a process of the distributed deployment, which must share Redis.
async fn connect_distributed(config: &Config, role: &str) -> anyhow::Result<Backends> {
    if config.redis_url.is_none() {
        bail!(
            "`codex32 {role}` runs beside other processes and needs the shared queue: set CODEX32_REDIS_URL \
             (and CODEX32_DATABASE_URL to PostgreSQL), or run everything in one process with `codex32 dev`"
        );
    }
    Backends::connect(config)
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
