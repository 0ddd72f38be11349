//! Steady: an open-loop arrival rate R/s for T seconds. Arrival k is due at `k / R` seconds
//! and is started then whatever happened to the earlier ones; at most `--max-in-flight`
//! requests are on the wire at once, and an arrival waiting for a free slot has that wait
//! counted in its latency. So overload shows as latency and errors, never as a generator
//! that quietly slows down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::burst::one_body;
use super::{Common, Outcome, RunBot, at_least_one, finish_run, positive_rate, with_progress};
use crate::client::Api;
use crate::error::Error;
use crate::measure::Recorder;
use crate::progress::Progress;

#[derive(Debug, Clone, Args, Serialize)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub common: Common,
    /// Executions per second offered.
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate, allow_negative_numbers = true)]
    pub rate: f64,
    /// Seconds of load (whole seconds).
    #[arg(long, default_value_t = 30, value_parser = at_least_one::<u64>(), allow_negative_numbers = true)]
    pub duration_s: u64,
    /// Most submissions on the wire at once (connections); later arrivals wait, and their
    /// wait counts as latency.
    #[arg(long, default_value_t = 256, value_parser = at_least_one::<usize>(), allow_negative_numbers = true)]
    pub max_in_flight: usize,
}

impl SteadyArgs {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let rate = positive_rate(&self.rate.to_string());
        rate.map_err(|why| Error::Usage(format!("--rate {why}")))?;
        if self.max_in_flight == 0 || self.duration_s == 0 {
            return Err(Error::Usage(
                "--max-in-flight and --duration-s must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_s)
    }
}

pub async fn run(args: &SteadyArgs, progress: Progress) -> Result<Outcome, Error> {
    args.check()?;
    let api = Api::new(&args.common.url, &args.common.api_key, args.max_in_flight)?;
    let bot = RunBot::setup(&api, &args.common, "steady").await?;
    let recorder = Arc::new(Recorder::new());
    let load = submissions(&api, bot.id, args, &recorder);
    let bar = progress.bar("load (s)", args.duration_s);
    let started = recorder.start;
    with_progress(load, &bar, &recorder, move |_| started.elapsed().as_secs()).await;
    bar.finish_and_clear();
    finish(api, bot, args, recorder, progress).await
}

/// Waits for the run's executions to end and reads them back.
pub(crate) async fn finish(
    api: Api,
    bot: RunBot,
    args: &SteadyArgs,
    recorder: Arc<Recorder>,
    progress: Progress,
) -> Result<Outcome, Error> {
    let outcome = finish_run(&api, &args.common, bot, recorder, progress).await;
    Ok(Outcome {
        offered_per_s: Some(args.rate),
        ..outcome
    })
}

/// The submissions of a steady run, each started when due; resolves once all are answered.
pub(crate) async fn submissions(api: &Api, bot: Uuid, args: &SteadyArgs, recorder: &Arc<Recorder>) {
    let slots = Arc::new(Semaphore::new(args.max_in_flight));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    arrivals(args.rate, args.duration(), recorder.start, |k, due| {
        let (api, recorder, slots) = (api.clone(), recorder.clone(), slots.clone());
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            let result = api.submit(bot, one_body(k)).await.map(|id| vec![id]);
            recorder.submitted(due, 1, result);
        }));
    })
    .await;
    futures::future::join_all(tasks).await;
}

/// Calls `arrive(k, due)` for every arrival k of a `rate`/s stream over `length` from
/// `start`, at its due time (late ones at once, in order: the timer's granularity is 1 ms).
pub(crate) async fn arrivals(
    rate: f64,
    length: Duration,
    start: Instant,
    mut arrive: impl FnMut(u64, Instant),
) {
    let total = (rate * length.as_secs_f64()).round() as u64;
    let due = |k: u64| start + Duration::from_secs_f64(k as f64 / rate);
    let mut k = 0;
    while k < total && !crate::interrupt::requested() {
        let next = due(k);
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let now = Instant::now();
        while k < total && due(k) <= now {
            arrive(k, due(k));
            k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn arrivals_come_at_the_rate_in_order_and_on_time() {
        let start = Instant::now();
        let mut seen = Vec::new();
        arrivals(200.0, Duration::from_millis(250), start, |k, due| {
            seen.push((k, due, Instant::now()));
        })
        .await;
        assert_eq!(seen.len(), 50);
        for (i, (k, due, at)) in seen.iter().enumerate() {
            assert_eq!(*k, i as u64);
            assert!(*at >= *due, "arrival {k} before it was due");
        }
        let last_due = seen[49].1.duration_since(start);
        assert!(last_due >= Duration::from_millis(245) && last_due < Duration::from_millis(250));
    }
}
