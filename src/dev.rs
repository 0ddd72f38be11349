//! `codex32 dev`: API, scheduler and worker in one process, on the embedded backends by
//! default. It keeps what a first run needs in the data directory — the token secret, the
//! secrets' master key and a generated admin password — so a restart keeps working logins
//! and readable secrets.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use codex32_shared::Backends;
use codex32_shared::bus::Hearing;
use codex32_shared::config::{ApiConfig, Config, SchedulerConfig, Secret, WorkerConfig};
use codex32_worker::executor::Executor;
use rand::RngCore;
use tokio_util::sync::CancellationToken;

const DEFAULT_ADMIN_EMAIL: &str = "admin@codex32.local";

pub async fn run(
    mut config: Config,
    mut api: ApiConfig,
    worker: WorkerConfig,
    scheduler: SchedulerConfig,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    if api.jwt_secret.is_none() {
        api.jwt_secret = Some(Secret::new(kept_secret(
            &config.data_dir.join("jwt-secret"),
            32,
        )?));
    }
    if config.secrets_key.is_none() {
        config.secrets_key = Some(Secret::new(kept_secret(
            &config.data_dir.join("secrets-key"),
            32,
        )?));
    }
    let generated_password = api.admin_password.is_none();
    if api.admin_email.is_none() {
        api.admin_email = Some(DEFAULT_ADMIN_EMAIL.to_owned());
    }
    if generated_password {
        api.admin_password = Some(Secret::new(kept_secret(
            &config.data_dir.join("admin-password"),
            12,
        )?));
    }
    let backends = Backends::connect(&config, Hearing::Everything)
        .await
        .context("codex32 dev cannot open its backends")?;
    backends
        .store
        .migrate()
        .await
        .context("cannot migrate the store")?;
    let state = codex32_api::state(backends.clone(), &config, &api)?;
    codex32_api::bootstrap_admin(&state, &api).await?;
    let (listener, addr) = codex32_api::bind(&api).await?;
    crate::announce_api(addr);
    print_welcome(&config, &api, addr, generated_password);

    let worker_task = {
        let (backends, config, shutdown) = (backends.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            codex32_worker::run(backends, &config, &worker, executor, shutdown).await
        })
    };
    // The scheduler stops last: the worker's drain may hand executions back to the queue.
    let scheduler_stop = CancellationToken::new();
    let scheduler_task = {
        let (backends, config, stop) = (backends.clone(), config.clone(), scheduler_stop.clone());
        tokio::spawn(
            async move { codex32_scheduler::run(backends, &config, &scheduler, stop).await },
        )
    };
    let served = codex32_api::serve(listener, state, shutdown.clone()).await;
    let worked = worker_task.await.context("the worker task panicked")?;
    scheduler_stop.cancel();
    let scheduled = scheduler_task
        .await
        .context("the scheduler task panicked")?;
    served.and(worked).and(scheduled)
}

/// Reads a generated secret from `path`, creating it (owner-only) on first use.
fn kept_secret(path: &Path, bytes: usize) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let mut raw = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut raw);
    let secret = hex::encode(raw);
    std::fs::write(path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

fn print_welcome(
    config: &Config,
    api: &ApiConfig,
    addr: std::net::SocketAddr,
    generated_password: bool,
) {
    let email = api.admin_email.as_deref().unwrap_or(DEFAULT_ADMIN_EMAIL);
    let password = match (&api.admin_password, generated_password) {
        (Some(p), true) => format!(
            "{}   (kept in {})",
            p.expose(),
            config.data_dir.join("admin-password").display()
        ),
        _ => "(the one in CODEX32_ADMIN_PASSWORD)".to_owned(),
    };
    println!();
    println!("  codex32 dev is running: API, scheduler and worker in this process.");
    println!("  API        http://{addr}/api/v1");
    println!("  Reference  http://{addr}/api/v1/docs");
    println!("  Admin      {email}");
    println!("  Password   {password}");
    println!("  Data       {}", config.data_dir.display());
    println!("  Stop with Ctrl-C (running executions finish first).");
    println!();
}
