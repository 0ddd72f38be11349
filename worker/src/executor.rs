//! The one boundary through which a bot's program is started: everything else in the worker
//! is the same whether the program runs as a plain child process (here) or in the container
//! engine. An executor starts the program, feeds it its input, streams its output lines to a
//! [`LogSink`], enforces the wall-clock limit, and stops it when asked.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use codex32_shared::domain::{LogStream, ResourceUsage, Resources, Runtime};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::logs::LogSink;

/// Longest log line kept whole; longer lines are split.
const MAX_LINE: usize = 16 * 1024;
/// How long output readers may linger after the program ended (a leaked pipe holder).
const READER_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub execution_id: uuid::Uuid,
    pub attempt: i32,
    pub runtime: Runtime,
    pub script: String,
    /// The input, already encoded as JSON.
    pub input: Vec<u8>,
    pub timeout: Duration,
    pub resources: Resources,
    /// A fresh directory of this attempt; removed by the caller afterwards.
    pub workdir: PathBuf,
    /// A service's health probe runs in its service's working directory under its own
    /// script name, leaving the service's script and input untouched.
    pub probe: bool,
    /// The bot's secrets, as environment variables (names checked when they were stored).
    pub env: Vec<(String, String)>,
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// Killed by a signal it did not ask for (not our timeout or stop).
    Signaled(i32),
    TimedOut,
    /// Stopped because `stop` was cancelled.
    Stopped,
}

/// An ending and, where the executor measures it, what the attempt used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub ending: Ending,
    pub usage: Option<ResourceUsage>,
    /// An output the executor holds itself (the no-op executor's echo), taken instead of the
    /// output file; `None` for a bot, whose output is read from its working directory.
    pub output: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot prepare the working directory {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("waiting for the program failed: {0}")]
    Wait(std::io::Error),
    #[error("the sandbox failed: {0}")]
    Sandbox(String),
}

/// Starts bots' programs.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Runs `job` to its end; `stop` asks for an early end.
    async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        stop: &CancellationToken,
    ) -> Result<Finished, ExecError>;
    /// Whether executions run isolated (recorded on each execution).
    fn sandboxed(&self) -> bool;
    /// What isolation is in force, for the worker's registration.
    fn isolation(&self) -> String;
    /// Whether bots' logs say they ran without a sandbox (false where nothing runs at all).
    fn warns_unsandboxed(&self) -> bool {
        !self.sandboxed()
    }
}

/// Names of the files a bot reads and writes in its working directory.
pub const INPUT_FILE: &str = "input.json";
pub const OUTPUT_FILE: &str = "output.json";

/// Runs each bot as a child process in its own process group, without isolation. The
/// environment is cleared: a bot sees `PATH`, `HOME`, `LANG` and the `CODEX32_*` variables
/// of its execution, never the worker's own (database URLs, secrets).
pub struct ProcessExecutor;

impl ProcessExecutor {
    fn command(job: &Job, script_path: &Path) -> Command {
        let program = match job.runtime {
            Runtime::Bash => "bash",
            Runtime::Python => "python3",
        };
        let mut cmd = Command::new(program);
        cmd.arg(script_path)
            .current_dir(&job.workdir)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", &job.workdir)
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("CODEX32_INPUT", job.workdir.join(INPUT_FILE))
            .env("CODEX32_OUTPUT", job.workdir.join(OUTPUT_FILE))
            .env("CODEX32_EXECUTION_ID", job.execution_id.to_string())
            .env("CODEX32_ATTEMPT", job.attempt.to_string())
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent. The signal
        // ends the bot if the worker dies without cleaning up (kill -9, OOM).
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)
            });
        }
        cmd
    }
}

/// Writes the script and the input file into the working directory; returns the script's name.
pub(crate) fn prepare(job: &Job) -> Result<&'static str, ExecError> {
    let err = |source| ExecError::Prepare {
        path: job.workdir.clone(),
        source,
    };
    std::fs::create_dir_all(&job.workdir).map_err(err)?;
    let script = match (job.probe, job.runtime) {
        (true, Runtime::Bash) => "probe.sh",
        (true, Runtime::Python) => "probe.py",
        (false, Runtime::Bash) => "bot.sh",
        (false, Runtime::Python) => "bot.py",
    };
    std::fs::write(job.workdir.join(script), &job.script).map_err(err)?;
    if !job.probe {
        std::fs::write(job.workdir.join(INPUT_FILE), &job.input).map_err(err)?;
    }
    Ok(script)
}

#[async_trait]
impl Executor for ProcessExecutor {
    async fn run(
        &self,
        job: &Job,
        logs: &LogSink,
        stop: &CancellationToken,
    ) -> Result<Finished, ExecError> {
        let script = job.workdir.join(prepare(job)?);
        let mut cmd = Self::command(job, &script);
        let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
            program: format!("{:?}", cmd.as_std().get_program()),
            source,
        })?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        if let Some(stdin) = child.stdin.take() {
            feed_stdin(stdin, job.input.clone());
        }
        let readers = spawn_readers(child.stdout.take(), child.stderr.take(), logs);
        let ending = tokio::select! {
            status = child.wait() => {
                let status = status.map_err(ExecError::Wait)?;
                match (status.code(), status.signal()) {
                    (Some(code), _) => Ending::Exited(code),
                    (None, Some(sig)) => Ending::Signaled(sig),
                    (None, None) => Ending::Signaled(0),
                }
            }
            _ = tokio::time::sleep(job.timeout) => Ending::TimedOut,
            _ = stop.cancelled() => Ending::Stopped,
        };
        // Whatever the ending, nothing of the bot's process group outlives it.
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.wait().await;
        drain_readers(readers).await;
        Ok(Finished {
            ending,
            usage: None,
            output: None,
        })
    }

    fn sandboxed(&self) -> bool {
        false
    }

    fn isolation(&self) -> String {
        "none".to_owned()
    }
}

/// Writes the input on stdin and closes it; a bot that never reads stdin is not blocked.
pub(crate) fn feed_stdin<W: AsyncWrite + Unpin + Send + 'static>(mut stdin: W, input: Vec<u8>) {
    tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
        let _ = stdin.shutdown().await;
    });
}

/// Starts one reader per output stream, feeding the sink.
pub(crate) fn spawn_readers<O, E>(
    stdout: Option<O>,
    stderr: Option<E>,
    logs: &LogSink,
) -> [tokio::task::JoinHandle<()>; 2]
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    [
        tokio::spawn(read_lines(stdout, LogStream::Stdout, logs.clone())),
        tokio::spawn(read_lines(stderr, LogStream::Stderr, logs.clone())),
    ]
}

/// Lets the output readers finish what the program wrote, within a grace period (a pipe
/// inherited by a process that escaped would otherwise hold them open).
pub(crate) async fn drain_readers(readers: [tokio::task::JoinHandle<()>; 2]) {
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(READER_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
}

/// Splits a stream into lines of at most [`MAX_LINE`] bytes and hands them to the sink.
async fn read_lines<R: AsyncRead + Unpin>(reader: Option<R>, stream: LogStream, logs: LogSink) {
    let Some(mut reader) = reader else { return };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            logs.line(stream, &line[..line.len() - 1]).await;
        }
        while pending.len() > MAX_LINE {
            let line: Vec<u8> = pending.drain(..MAX_LINE).collect();
            logs.line(stream, &line).await;
        }
    }
    if !pending.is_empty() {
        logs.line(stream, &pending).await;
    }
}
