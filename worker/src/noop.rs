//! The no-op executor: a benchmarking mode (`codex32 worker --executor noop`), never a
//! default. It starts no process: each execution succeeds at once with its input as its
//! output, so a load test measures the orchestration path alone — API, store, queue, lease,
//! result, events — without the cost of starting bots.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecError, Executor, Finished, Job};
use crate::logs::LogSink;

/// Completes every job with exit code 0, echoing its input as the output.
pub struct NoopExecutor;

#[async_trait]
impl Executor for NoopExecutor {
    async fn run(
        &self,
        job: &Job,
        _logs: &LogSink,
        _stop: &CancellationToken,
    ) -> Result<Finished, ExecError> {
        // The output is handed over directly: creating and deleting a working directory per
        // execution would measure the filesystem (ext4's inode allocator showed as ~12 % of
        // the machine's CPU in a burst), not the orchestration path this mode is for.
        let output = serde_json::from_slice(&job.input).map_err(|e| ExecError::Prepare {
            path: job.workdir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Ok(Finished {
            ending: crate::executor::Ending::Exited(0),
            usage: None,
            output: Some(output),
        })
    }

    /// Nothing runs, isolated or not; executions are recorded as not sandboxed.
    fn sandboxed(&self) -> bool {
        false
    }

    fn isolation(&self) -> String {
        "noop (benchmarking: bots are not run)".to_owned()
    }

    /// No bot runs, so there is nothing to warn about (and no log line to write per run).
    fn warns_unsandboxed(&self) -> bool {
        false
    }
}
