//! Cron: M bots whose schedules fire every second for T seconds, then paused. Each fire's
//! lateness comes from the execution's own timestamps: `queued_at − scheduled_for` (the
//! scheduler's), `started_at − scheduled_for` (until a worker had it). Fires that never
//! happened are counted from gaps in each bot's `scheduled_for` sequence.
//!
//! It waits for the end of the run's executions by asking whether anything the key can see is
//! still queued or running: give it a deployment (or a key) of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{Common, Outcome, bot_spec, read_back, settle};
use crate::client::{Api, ExecRow};
use crate::error::Error;
use crate::measure::Recorder;
use crate::progress::Progress;

/// Bots created or deleted at once.
const SETUP_CONCURRENCY: usize = 16;
/// How long the executions must stay unchanged after the pause to count as settled.
const QUIET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Args, Serialize)]
pub struct CronArgs {
    #[command(flatten)]
    pub common: Common,
    /// Scheduled bots.
    #[arg(short = 'm', long, default_value_t = 100, value_parser = super::at_least_one::<usize>(), allow_negative_numbers = true)]
    pub schedules: usize,
    /// Seconds to let them fire (whole seconds).
    #[arg(long, default_value_t = 30, value_parser = super::at_least_one::<u64>(), allow_negative_numbers = true)]
    pub duration_s: u64,
    /// Their cron expression (6 fields: seconds first).
    #[arg(long, default_value = "* * * * * *")]
    pub cron: String,
}

pub async fn run(args: &CronArgs, progress: Progress) -> Result<Outcome, Error> {
    if args.common.bot.is_some() {
        return Err(Error::Usage(
            "cron makes its own scheduled bots: --bot does not apply".into(),
        ));
    }
    let api = Api::new(&args.common.url, &args.common.api_key, SETUP_CONCURRENCY)?;
    api.check_key().await?;
    let bots = create_bots(&api, args, progress).await?;
    let recorder = Arc::new(Recorder::new());
    let bar = progress.bar("fire (s)", args.duration_s);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for second in 0..=args.duration_s {
        if crate::interrupt::requested() {
            break;
        }
        tick.tick().await;
        bar.set_position(second);
    }
    bar.finish_and_clear();
    let load_wall = recorder.start.elapsed();
    for_each_bot(&api, &bots, |api, id| async move {
        api.pause_bot(id).await.map_err(|e| e.kind)
    })
    .await
    .into_iter()
    .for_each(|kind| recorder.error(format!("pause: {kind}")));
    let expected = (bots.len() as u64) * args.duration_s;
    let (first, settled) = settle(&api, &args.common, &bots, &recorder, expected, progress).await;
    let executions = quiesce(&api, &args.common, &bots, &recorder, first).await;
    let all_final = executions.iter().all(ExecRow::is_final);
    if !args.common.keep_bots {
        for_each_bot(&api, &bots, |api, id| async move {
            api.delete_bot(id).await.map_err(|e| e.kind)
        })
        .await;
    } else {
        eprintln!(
            "kept the run's {} bots (--keep-bots), paused; their names start with loadtest-cron-",
            bots.len()
        );
    }
    Ok(Outcome {
        started_at: recorder.started_at,
        observed: recorder.take(),
        executions,
        load_wall,
        all_final,
        cron: Some(args.cron.clone()),
        notes: notes(args, settled),
        ..Outcome::default()
    })
}

/// What a cron run's figures need beside them.
fn notes(args: &CronArgs, settled: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if !settled {
        notes.push(format!(
            "gave up after the drain timeout ({} s) waiting for executions the key sees to end: \
             a cron run waits for all of them, also those of other bots",
            args.common.drain_timeout_s
        ));
    }
    if args.cron.split_whitespace().count() == 5 && args.duration_s < 60 {
        notes.push(format!(
            "{:?} has 5 fields and fires once a minute at most: a {} s run may see no fire; \
             6 fields put seconds first (\"* * * * * *\" fires every second)",
            args.cron, args.duration_s
        ));
    }
    notes
}

/// Reads the executions back until two reads a few seconds apart agree and all are final
/// (or the drain timeout passes): a scheduler that is behind still fires times that were
/// due before the pause, for a while after it.
async fn quiesce(
    api: &Api,
    common: &Common,
    bots: &[Uuid],
    recorder: &Recorder,
    mut rows: Vec<ExecRow>,
) -> Vec<ExecRow> {
    let deadline = Instant::now() + Duration::from_secs(common.drain_timeout_s);
    while Instant::now() < deadline {
        tokio::time::sleep(QUIET).await;
        let again = read_back(api, bots, recorder).await;
        let stable = again.len() == rows.len() && again.iter().all(ExecRow::is_final);
        rows = again;
        if stable {
            break;
        }
    }
    rows
}

/// Creates the scheduled bots, a few at a time.
async fn create_bots(api: &Api, args: &CronArgs, progress: Progress) -> Result<Vec<Uuid>, Error> {
    let schedule =
        json!({"cron": args.cron, "timezone": "UTC", "overlap": "allow", "missed": "skip"});
    let bar = progress.bar("bots", args.schedules as u64);
    let created: Vec<Result<Uuid, Error>> = futures::stream::iter(0..args.schedules)
        .map(|_| {
            let spec = bot_spec(&args.common, "cron", Some(schedule.clone()));
            let bar = bar.clone();
            async move {
                let id = api.create_bot(&spec).await;
                bar.inc(1);
                id
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    bar.finish_and_clear();
    let (made, failed): (Vec<_>, Vec<_>) = created.into_iter().partition(Result::is_ok);
    let made: Vec<Uuid> = made.into_iter().flatten().collect();
    if let Some(Err(e)) = failed.into_iter().next() {
        for_each_bot(api, &made, |api, id| async move {
            api.delete_bot(id).await.map_err(|e| e.kind)
        })
        .await;
        return Err(e);
    }
    Ok(made)
}

/// Calls `action` for every bot, a few at a time; the failures' kinds.
async fn for_each_bot<F, Fut>(api: &Api, bots: &[Uuid], action: F) -> Vec<String>
where
    F: Fn(Api, Uuid) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    futures::stream::iter(bots.iter().copied())
        .map(|id| action(api.clone(), id))
        .buffer_unordered(SETUP_CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}
