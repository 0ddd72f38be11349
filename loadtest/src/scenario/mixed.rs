//! Mixed: the steady load plus what dashboards do meanwhile — open-loop reads (the list of
//! the bot's executions, one execution, its logs, in turn) and WebSocket subscribers on the
//! `executions` topic — so read latency and fanout are measured under write load.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use super::steady::{SteadyArgs, arrivals, finish, submissions};
use super::{RunBot, with_progress};
use crate::client::Api;
use crate::error::Error;
use crate::measure::Recorder;
use crate::progress::Progress;
use crate::ws;

/// Most reads on the wire at once.
const READ_SLOTS: usize = 64;

#[derive(Debug, Clone, Args, Serialize)]
pub struct MixedArgs {
    #[command(flatten)]
    pub steady: SteadyArgs,
    /// Dashboard reads per second (list, get and logs in turn).
    #[arg(long, default_value_t = 50.0, value_parser = super::non_negative_rate, allow_negative_numbers = true)]
    pub read_rate: f64,
    /// WebSocket subscribers to the `executions` topic.
    #[arg(long, default_value_t = 4)]
    pub subscribers: usize,
}

pub async fn run(args: &MixedArgs, progress: Progress) -> Result<super::Outcome, Error> {
    args.steady.check()?;
    let common = &args.steady.common;
    let api = Api::new(&common.url, &common.api_key, args.steady.max_in_flight)?;
    let bot = RunBot::setup(&api, common, "mixed").await?;
    let recorder = Arc::new(Recorder::new());
    let (stop, stopped) = watch::channel(false);
    let subscribers = ws::subscribers(&api, args.subscribers, stopped, &recorder);
    let load = async {
        tokio::join!(
            submissions(&api, bot.id, &args.steady, &recorder),
            reads(&api, bot.id, args, &recorder),
        );
        let _ = stop.send(true);
    };
    let bar = progress.bar("load (s)", args.steady.duration_s);
    let started = recorder.start;
    let ((), websocket) = with_progress(
        async { tokio::join!(load, subscribers) },
        &bar,
        &recorder,
        move |_| started.elapsed().as_secs(),
    )
    .await;
    bar.finish_and_clear();
    let mut outcome = finish(api, bot, &args.steady, recorder, progress).await?;
    outcome.websocket = Some(websocket);
    Ok(outcome)
}

/// Open-loop reads at `--read-rate`: list, get and logs in turn, of executions made so far.
async fn reads(api: &Api, bot: Uuid, args: &MixedArgs, recorder: &Arc<Recorder>) {
    if args.read_rate <= 0.0 {
        return;
    }
    let slots = Arc::new(Semaphore::new(READ_SLOTS));
    let mut tasks = Vec::new();
    arrivals(
        args.read_rate,
        args.steady.duration(),
        recorder.start,
        |k, due| {
            let (api, recorder, slots) = (api.clone(), recorder.clone(), slots.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire_owned().await;
                read(&api, bot, k, due, &recorder).await;
            }));
        },
    )
    .await;
    futures::future::join_all(tasks).await;
}

async fn read(api: &Api, bot: Uuid, k: u64, due: Instant, recorder: &Recorder) {
    let target = recorder.some_accepted(k as usize * 7919);
    match (k % 3, target) {
        (1, Some(id)) => recorder.read("get", due, api.get_execution(id).await),
        (2, Some(id)) => recorder.read("logs", due, api.logs(id).await),
        _ => {
            let page = api.list(Some(bot), None, None, 50).await.map(drop);
            recorder.read("list", due, page);
        }
    }
}
