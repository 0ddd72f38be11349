//! Burst: N executions as fast as C connections allow — each connection sends its next
//! request as soon as the previous one is answered (closed loop) — one per request, or in
//! batches through the batch endpoint; then waits until every one has ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use uuid::Uuid;

use super::{Common, Outcome, RunBot, at_least_one, finish_run, with_progress};
use crate::client::Api;
use crate::error::Error;
use crate::measure::Recorder;
use crate::progress::Progress;

/// Most executions per batch request (the API's cap).
const MAX_BATCH: u64 = 1000;

#[derive(Debug, Clone, Args, Serialize)]
pub struct BurstArgs {
    #[command(flatten)]
    pub common: Common,
    /// Executions to create.
    #[arg(short = 'n', long, default_value_t = 10_000, value_parser = at_least_one::<u64>(), allow_negative_numbers = true)]
    pub executions: u64,
    /// Concurrent connections, each sending its next request when the last is answered.
    #[arg(short = 'c', long, default_value_t = 8, value_parser = at_least_one::<usize>(), allow_negative_numbers = true)]
    pub connections: usize,
    /// Executions per request: 1 uses `POST …/executions`, more the batch endpoint (≤ 1000).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH))]
    pub batch: u64,
}

pub async fn run(args: &BurstArgs, progress: Progress) -> Result<Outcome, Error> {
    if !(1..=MAX_BATCH).contains(&args.batch) {
        return Err(Error::Usage(format!("--batch must be 1 to {MAX_BATCH}")));
    }
    if args.connections == 0 || args.executions == 0 {
        return Err(Error::Usage(
            "--connections and --executions must be at least 1".into(),
        ));
    }
    let api = Api::new(&args.common.url, &args.common.api_key, args.connections)?;
    let bot = RunBot::setup(&api, &args.common, "burst").await?;
    let recorder = Arc::new(Recorder::new());
    let next = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..args.connections)
        .map(|_| {
            let sender = Sender {
                api: api.clone(),
                bot: bot.id,
                recorder: recorder.clone(),
                next: next.clone(),
                total: args.executions,
                batch: args.batch,
            };
            tokio::spawn(sender.run())
        })
        .collect();
    let bar = progress.bar("enqueue", args.executions);
    with_progress(
        futures::future::join_all(senders),
        &bar,
        &recorder,
        Recorder::accepted,
    )
    .await;
    bar.finish_and_clear();
    Ok(finish_run(&api, &args.common, bot, recorder, progress).await)
}

/// One connection's closed loop: take the next slice of the N, submit it, repeat.
struct Sender {
    api: Api,
    bot: Uuid,
    recorder: Arc<Recorder>,
    next: Arc<AtomicU64>,
    total: u64,
    batch: u64,
}

impl Sender {
    async fn run(self) {
        loop {
            let first = self.next.fetch_add(self.batch, Ordering::Relaxed);
            if first >= self.total || crate::interrupt::requested() {
                return;
            }
            let count = self.batch.min(self.total - first);
            let due = Instant::now();
            let result = if self.batch == 1 {
                self.api
                    .submit(self.bot, one_body(first))
                    .await
                    .map(|id| vec![id])
            } else {
                self.api
                    .submit_batch(self.bot, batch_body(first, count))
                    .await
            };
            self.recorder.submitted(due, count as usize, result);
        }
    }
}

/// The body of one submission: a small input naming its sequence number.
pub(crate) fn one_body(n: u64) -> Vec<u8> {
    format!(r#"{{"input":{{"n":{n}}}}}"#).into_bytes()
}

/// The body of a batch of `count` submissions starting at `first`.
fn batch_body(first: u64, count: u64) -> Vec<u8> {
    let items: Vec<String> = (first..first + count)
        .map(|n| format!(r#"{{"input":{{"n":{n}}}}}"#))
        .collect();
    format!(r#"{{"executions":[{}]}}"#, items.join(",")).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_the_json_the_api_takes() {
        let one: serde_json::Value = serde_json::from_slice(&one_body(7)).unwrap();
        assert_eq!(one, serde_json::json!({"input": {"n": 7}}));
        let many: serde_json::Value = serde_json::from_slice(&batch_body(3, 2)).unwrap();
        assert_eq!(
            many,
            serde_json::json!({"executions": [{"input": {"n": 3}}, {"input": {"n": 4}}]})
        );
    }
}
