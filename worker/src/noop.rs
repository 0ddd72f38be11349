//! The no-op executor: a benchmarking mode (`codex32 worker --executor noop`), never a
//! default. It starts no process: each execution succeeds at once with its input as its
//! output, so a load test measures the orchestration path alone — API, store, queue, lease,
//! result, events — without the cost of starting bots.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::executor::{ExecError, Executor, Finished, Job, OUTPUT_FILE};
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
        // The output goes where a bot would write it, so the worker reads the result back
        // exactly as for a real run (two small writes; the worker removes the directory).
        let err = |source| ExecError::Prepare {
            path: job.workdir.clone(),
            source,
        };
        std::fs::create_dir_all(&job.workdir).map_err(err)?;
        std::fs::write(job.workdir.join(OUTPUT_FILE), &job.input).map_err(err)?;
        Ok(Finished {
            ending: crate::executor::Ending::Exited(0),
            usage: None,
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
