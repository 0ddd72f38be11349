//! The scenarios, their command-line options, and what they share: making the run's bot,
//! waiting for the load to settle and reading the executions back.

mod burst;
mod cron;
mod mixed;
mod steady;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::{Api, ExecRow};
use crate::error::Error;
use crate::finals;
use crate::measure::{Observed, Recorder};
use crate::progress::Progress;
use crate::ws::WsStats;

/// `--rate` and the like: a positive, finite number (clap would take `-5` for an option).
pub(crate) fn positive_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        Ok(_) => Err("must be more than 0 (executions per second)".into()),
        Err(_) => Err("must be a number, such as 500 or 0.5".into()),
    }
}

/// `--read-rate`: 0 (no reads) or more.
pub(crate) fn non_negative_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate >= 0.0 && rate.is_finite() => Ok(rate),
        _ => Err("must be 0 or a positive number (reads per second)".into()),
    }
}

/// A count or a number of seconds of at least 1: a run of none measures nothing.
pub(crate) fn at_least_one<T>() -> clap::builder::RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::error::Error + Send + Sync + 'static,
{
    clap::builder::RangedU64ValueParser::<T>::new().range(1..)
}

/// Options every scenario takes: where codex32 is, which bot to run, where results go.
#[derive(Debug, Clone, Args, Serialize)]
pub struct Common {
    /// Base URL of the codex32 API.
    #[arg(
        long,
        env = "CODEX32_LOADTEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// API key (`c32_…`) of a user who may create bots and executions.
    #[arg(long, env = "CODEX32_API_KEY", hide_env_values = true)]
    #[serde(skip)]
    pub api_key: String,
    /// Run executions of this bot instead of one made for the run (and deleted after it).
    #[arg(long)]
    pub bot: Option<Uuid>,
    /// The bash script of the bots made for the run (irrelevant with `--executor noop`).
    #[arg(long, default_value = "true")]
    pub script: String,
    /// The pool of the bots made for the run; its queue depth drives the progress bar.
    #[arg(long, default_value = "default")]
    pub pool: String,
    /// A name for what is measured (e.g. `dev-sqlite-noop`), kept in the report.
    #[arg(long)]
    pub label: Option<String>,
    /// Directory for report.json and the plots (default: loadtest-results/<scenario>-<time>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seconds to wait after the load for every execution to end; later ones count as lost.
    #[arg(long, default_value_t = 120)]
    pub drain_timeout_s: u64,
    /// Names of the processes whose CPU and memory are sampled (as in /proc/<pid>/comm).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "codex32,postgres,redis-server"
    )]
    pub processes: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Keep the bots made for the run instead of deleting them at its end.
    #[arg(long)]
    pub keep_bots: bool,
}

/// A load pattern.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// N executions as fast as C connections allow (or in batches), then wait until all end.
    Burst(burst::BurstArgs),
    /// An open-loop arrival rate for a while: arrivals never wait for answers, so overload
    /// shows as latency, not as a slower generator.
    Steady(steady::SteadyArgs),
    /// The steady load plus dashboard-like reads (list, get, logs) and WebSocket subscribers.
    Mixed(mixed::MixedArgs),
    /// M schedules firing every second: how late each fire is.
    Cron(cron::CronArgs),
}

pub use burst::BurstArgs;
pub use cron::CronArgs;
pub use mixed::MixedArgs;
pub use steady::SteadyArgs;

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Burst(_) => "burst",
            Scenario::Steady(_) => "steady",
            Scenario::Mixed(_) => "mixed",
            Scenario::Cron(_) => "cron",
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Scenario::Burst(a) => &a.common,
            Scenario::Steady(a) => &a.common,
            Scenario::Mixed(a) => &a.steady.common,
            Scenario::Cron(a) => &a.common,
        }
    }

    /// The options as recorded in the report (never the API key).
    pub fn params(&self) -> Value {
        let value = match self {
            Scenario::Burst(a) => serde_json::to_value(a),
            Scenario::Steady(a) => serde_json::to_value(a),
            Scenario::Mixed(a) => serde_json::to_value(a),
            Scenario::Cron(a) => serde_json::to_value(a),
        };
        value.unwrap_or(Value::Null)
    }

    /// Runs the scenario against its target.
    pub async fn run(&self) -> Result<Outcome, Error> {
        let progress = Progress::new(!self.common().no_progress);
        match self {
            Scenario::Burst(a) => burst::run(a, progress).await,
            Scenario::Steady(a) => steady::run(a, progress).await,
            Scenario::Mixed(a) => mixed::run(a, progress).await,
            Scenario::Cron(a) => cron::run(a, progress).await,
        }
    }
}

/// What a scenario leaves for the report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub started_at: DateTime<Utc>,
    pub observed: Observed,
    /// The executions the run made, read back after it.
    pub executions: Vec<ExecRow>,
    /// How long the load was generated.
    pub load_wall: Duration,
    /// Whether every execution ended within the drain timeout.
    pub all_final: bool,
    pub websocket: Option<WsStats>,
    /// Cron runs: the expression, to count missed fires when it fires every second.
    pub cron: Option<String>,
    /// The arrival rate asked for (steady and mixed).
    pub offered_per_s: Option<f64>,
    /// What the scenario found worth saying beside its figures.
    pub notes: Vec<String>,
}

/// The bot a run submits to: given, or made for the run (and deleted after it).
pub(crate) struct RunBot {
    pub id: Uuid,
    made: bool,
}

impl RunBot {
    pub async fn setup(api: &Api, common: &Common, scenario: &str) -> Result<Self, Error> {
        api.check_key().await?;
        if let Some(id) = common.bot {
            api.check_bot(id).await?;
            return Ok(Self { id, made: false });
        }
        let id = api.create_bot(&bot_spec(common, scenario, None)).await?;
        Ok(Self { id, made: true })
    }

    pub async fn cleanup(&self, api: &Api, common: &Common) {
        if self.made && !common.keep_bots {
            let _ = api.delete_bot(self.id).await;
        } else if self.made {
            eprintln!("kept the run's bot {} (--keep-bots)", self.id);
        }
    }
}

/// A bot for the run: a unique name, the run's script and pool, and a schedule if given.
pub(crate) fn bot_spec(common: &Common, scenario: &str, schedule: Option<Value>) -> Value {
    let suffix = &Uuid::new_v4().simple().to_string()[..10];
    let mut spec = json!({
        "name": format!("loadtest-{scenario}-{suffix}"),
        "description": "made by codex32-loadtest",
        "runtime": "bash",
        "script": common.script,
        "pool": common.pool,
    });
    if let Some(schedule) = schedule {
        spec["schedule"] = schedule;
    }
    spec
}

/// After the load: waits until every execution of `bots` has ended (up to the drain
/// timeout), then reads back those the run made (ids from the first accepted one on).
pub(crate) async fn settle(
    api: &Api,
    common: &Common,
    bots: &[Uuid],
    recorder: &Recorder,
    expected: u64,
    progress: Progress,
) -> (Vec<ExecRow>, bool) {
    let bar = progress.bar("finish", expected);
    let timeout = Duration::from_secs(common.drain_timeout_s);
    let scope = (bots.len() == 1).then_some(bots);
    let all_final = finals::await_finals(api, scope, &common.pool, expected, timeout, &bar).await;
    bar.finish_and_clear();
    (read_back(api, bots, recorder).await, all_final)
}

/// The end of a one-bot run: its executions settled and read back, its bot cleaned up.
pub(crate) async fn finish_run(
    api: &Api,
    common: &Common,
    bot: RunBot,
    recorder: Arc<Recorder>,
    progress: Progress,
) -> Outcome {
    let load_wall = recorder.start.elapsed();
    let accepted = recorder.accepted();
    let (executions, all_final) =
        settle(api, common, &[bot.id], &recorder, accepted, progress).await;
    bot.cleanup(api, common).await;
    Outcome {
        started_at: recorder.started_at,
        observed: recorder.take(),
        executions,
        load_wall,
        all_final,
        ..Outcome::default()
    }
}

/// The executions of `bots` the run made (ids from its first accepted one on, if any).
pub(crate) async fn read_back(api: &Api, bots: &[Uuid], recorder: &Recorder) -> Vec<ExecRow> {
    let since = recorder.first_accepted();
    let fetched: Result<Vec<Vec<ExecRow>>, _> = futures::stream::iter(bots.iter().copied())
        .map(|bot| finals::fetch_all(api, bot, since))
        .buffer_unordered(16)
        .try_collect()
        .await;
    match fetched {
        Ok(pages) => pages.into_iter().flatten().collect(),
        Err(e) => {
            recorder.error(format!("read back: {}", e.kind));
            Vec::new()
        }
    }
}

/// Runs `load` while the bar follows the accepted count.
pub(crate) async fn with_progress<F: std::future::Future>(
    load: F,
    bar: &indicatif::ProgressBar,
    recorder: &Arc<Recorder>,
    position: impl Fn(&Recorder) -> u64,
) -> F::Output {
    tokio::pin!(load);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut load => return out,
            _ = tick.tick() => {
                bar.set_position(position(recorder));
                bar.set_message(format!("{} accepted", recorder.accepted()));
            }
        }
    }
}
