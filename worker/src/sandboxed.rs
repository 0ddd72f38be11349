//! Bots in the container engine (`codex32-sandbox`): each execution in fresh namespaces with
//! a read-only root, no capabilities, a seccomp filter and its bot's memory, CPU and pids
//! limits. The engine forks its launchers when created, so [`prepare`] runs before the async
//! runtime starts its threads.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use async_trait::async_trait;
use codex32_sandbox::{Engine, EngineConfig, Limits, SandboxSpec};
use codex32_shared::config::SandboxMode;
use codex32_shared::domain::{ResourceUsage, Runtime};
use nix::fcntl::OFlag;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use crate::executor::{
    Ending, ExecError, Executor, Finished, INPUT_FILE, Job, OUTPUT_FILE, drain_readers, feed_stdin,
    prepare, spawn_readers,
};
use crate::logs::LogSink;

/// Sandboxes beyond the worker's slots, for services' health-probe commands.
const PROBE_SLOTS: usize = 2;

/// The uid and gid bots run as inside the sandbox.
const BOT_ID: u32 = 65534;
const WORKDIR: &str = SandboxSpec::WORKDIR;

/// Where the interpreters live, found once at start.
#[derive(Debug, Clone)]
struct Interpreters {
    bash: Option<String>,
    python: Option<String>,
    /// The python installation, bound read-only into sandboxes when it is outside `/usr`.
    python_prefix: Option<PathBuf>,
}

/// Creates the engine for `mode`, or None when bots are to run as plain processes.
pub fn prepare_engine(mode: SandboxMode, slots: usize) -> anyhow::Result<Option<SandboxExecutor>> {
    if mode == SandboxMode::None {
        tracing::warn!(
            "Sandbox disabled (--sandbox=none): bots run as plain processes and are marked unsandboxed."
        );
        return Ok(None);
    }
    let probe = Engine::probe();
    if !probe.usable() {
        let why = [probe.namespaces.err(), probe.cgroups.err()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        if mode == SandboxMode::Isolated {
            bail!(
                "the container engine is unavailable here ({why}); run as root on Linux with namespaces and cgroups, or pass --sandbox=none to run bots as plain, unisolated processes"
            );
        }
        tracing::warn!(reason = %why, "Container engine unavailable: bots run as plain processes (--sandbox=auto).");
        return Ok(None);
    }
    let interpreters = find_interpreters();
    let ro_binds = interpreters
        .python_prefix
        .iter()
        .filter(|p| !p.starts_with("/usr"))
        .cloned()
        .collect();
    let engine = Engine::new(EngineConfig {
        slots: slots + PROBE_SLOTS,
        ro_binds,
        ..EngineConfig::default()
    })
    .map_err(|e| anyhow::anyhow!("cannot start the container engine: {e}"))?;
    match engine.sweep() {
        Ok(swept) => tracing::info!(?swept, "Swept what earlier workers left behind."),
        Err(e) => tracing::warn!(error = %e, "Could not sweep leftovers of earlier workers."),
    }
    tracing::info!(enforced = ?engine.enforced(), slots, "Container engine ready.");
    Ok(Some(SandboxExecutor {
        engine,
        interpreters,
    }))
}

fn find_interpreters() -> Interpreters {
    let bash = which("bash");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable); print(sys.prefix)"])
        .output();
    let (python, python_prefix) = match probe {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = text.lines();
            let exe = lines.next().map(|e| {
                std::fs::canonicalize(e).map_or_else(|_| e.to_owned(), |p| p.display().to_string())
            });
            (exe, lines.next().map(PathBuf::from))
        }
        _ => (None, None),
    };
    Interpreters {
        bash,
        python,
        python_prefix,
    }
}

fn which(program: &str) -> Option<String> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
}

/// Runs each bot in a sandbox of the engine.
pub struct SandboxExecutor {
    engine: Engine,
    interpreters: Interpreters,
}

impl SandboxExecutor {
    /// The interpreter of a runtime, as found at start.
    fn interpreter(&self, runtime: Runtime) -> Result<String, ExecError> {
        let (path, name) = match runtime {
            Runtime::Bash => (&self.interpreters.bash, "bash"),
            Runtime::Python => (&self.interpreters.python, "python3"),
        };
        path.clone()
            .ok_or_else(|| ExecError::Sandbox(format!("{name} is not installed on this worker")))
    }

    fn env(&self, job: &Job) -> Vec<(String, String)> {
        let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
        if let Some(dir) = self
            .interpreters
            .python
            .as_deref()
            .and_then(|p| Path::new(p).parent())
        {
            path = format!("{}:{path}", dir.display());
        }
        [
            ("PATH", path),
            ("HOME", WORKDIR.to_owned()),
            ("LANG", "C.UTF-8".to_owned()),
            ("PYTHONUNBUFFERED", "1".to_owned()),
            ("CODEX32_INPUT", format!("{WORKDIR}/{INPUT_FILE}")),
            ("CODEX32_OUTPUT", format!("{WORKDIR}/{OUTPUT_FILE}")),
            ("CODEX32_EXECUTION_ID", job.execution_id.to_string()),
            ("CODEX32_ATTEMPT", job.attempt.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(job.env.iter().cloned())
        .collect()
    }
}

fn pipe_pair() -> Result<(OwnedFd, OwnedFd), ExecError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| ExecError::Sandbox(format!("pipe: {e}")))
}

/// Hands the working directory to the bots' uid, so a bot can write its output there.
fn chown_tree(dir: &Path) -> Result<(), ExecError> {
    let err = |source| ExecError::Prepare {
        path: dir.to_owned(),
        source,
    };
    let id = Some(nix::unistd::Uid::from_raw(BOT_ID));
    let gid = Some(nix::unistd::Gid::from_raw(BOT_ID));
    std::os::unix::fs::chown(dir, Some(BOT_ID), Some(BOT_ID)).map_err(err)?;
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        nix::unistd::chown(&path, id, gid).map_err(|e| err(std::io::Error::from(e)))?;
    }
    Ok(())
}

#[async_trait]
impl Executor for SandboxExecutor {
    async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        stop: &CancellationToken,
    ) -> Result<Finished, ExecError> {
        let script = prepare(job)?;
        chown_tree(&job.workdir)?;
        let program = self.interpreter(job.runtime)?;
        let ((in_r, in_w), (out_r, out_w), (err_r, err_w)) =
            (pipe_pair()?, pipe_pair()?, pipe_pair()?);
        let r = &job.resources;
        let spec = SandboxSpec {
            program,
            args: vec![format!("{WORKDIR}/{script}")],
            env: self.env(job),
            workdir_host: job.workdir.clone(),
            hostname: job.execution_id.to_string(),
            limits: Limits {
                memory_mb: Some(r.memory_mb.into()),
                cpu_millis: Some(r.cpu_millis.into()),
                pids: Some(r.pids.into()),
                ..Limits::default()
            },
            network: r.network,
            extra_ro_binds: vec![],
            stdin: in_r,
            stdout: out_w,
            stderr: err_w,
        };
        let engine = self.engine.clone();
        let started = Instant::now();
        let sandbox = tokio::task::spawn_blocking(move || engine.spawn(spec))
            .await
            .map_err(|e| ExecError::Sandbox(e.to_string()))?
            .map_err(|e| ExecError::Sandbox(e.to_string()))?;
        let io = |e: std::io::Error| ExecError::Sandbox(format!("pipe: {e}"));
        feed_stdin(
            pipe::Sender::from_owned_fd(in_w).map_err(io)?,
            job.input.clone(),
        );
        let readers = spawn_readers(
            Some(pipe::Receiver::from_owned_fd(out_r).map_err(io)?),
            Some(pipe::Receiver::from_owned_fd(err_r).map_err(io)?),
            logs,
        );
        let cut_short = {
            // SAFETY: the fd is borrowed from `sandbox`, which outlives this block and so the AsyncFd.
            let exit =
                unsafe { AsyncFd::register_with_interest(sandbox.exit_fd(), Interest::READABLE) }
                    .map_err(|e| ExecError::Wait(e.into()))?;
            tokio::select! {
                _ = exit.readable() => None,
                _ = tokio::time::sleep(job.timeout) => Some(Ending::TimedOut),
                _ = stop.cancelled() => Some(Ending::Stopped),
            }
        };
        if cut_short.is_some() {
            sandbox.kill();
        }
        let outcome = tokio::task::spawn_blocking(move || sandbox.wait())
            .await
            .map_err(|e| ExecError::Sandbox(e.to_string()))?
            .map_err(|e| ExecError::Sandbox(e.to_string()))?;
        drain_readers(readers).await;
        let ending = cut_short.unwrap_or(match (outcome.exit_code, outcome.signal) {
            (Some(code), _) => Ending::Exited(code),
            (None, sig) => Ending::Signaled(sig.unwrap_or(0)),
        });
        let usage = ResourceUsage {
            oom_killed: outcome.oom_killed,
            peak_memory_bytes: outcome.peak_memory_bytes,
            cpu_time_ms: outcome.cpu_time_ms,
            wall_ms: u64::try_from(started.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .max(outcome.wall_ms),
            signal: outcome.signal,
        };
        Ok(Finished {
            ending,
            usage: Some(usage),
            output: None,
        })
    }

    fn sandboxed(&self) -> bool {
        true
    }

    fn isolation(&self) -> String {
        let e = self.engine.enforced();
        let limits: Vec<&str> = [("memory", e.memory), ("cpu", e.cpu), ("pids", e.pids)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        format!(
            "namespaces, seccomp; cgroup {:?}: {}",
            e.cgroup,
            if limits.is_empty() {
                "no limits".to_owned()
            } else {
                limits.join(", ")
            }
        )
    }
}
