//! codex32-loadtest: drives a running codex32 through its public HTTP API and WebSocket only,
//! with an API key, and reports what it saw — throughput, enqueue / dispatch / end-to-end
//! latency, errors by kind, lost and duplicated executions, and the CPU and memory of the
//! codex32, PostgreSQL and Redis processes — as a terminal table, `report.json` and SVG plots.
//!
//! Scenarios: `burst`, `steady`, `mixed`, `cron` ([`Scenario`]); `--compare a.json b.json`
//! prints the ratios of two reports. Also reachable as `codex32 loadtest …`.
//! See `loadtest/README.md` for the standard set and how to read the figures.

mod analysis;
mod client;
mod compare;
mod error;
mod finals;
mod measure;
mod plot;
mod procfs;
mod progress;
mod report;
mod scenario;
mod stats;
mod summary;
mod ws;

use std::path::PathBuf;

pub use error::Error;
pub use report::{Counts, ProcessCost, Report, Second, Throughput};
pub use scenario::{BurstArgs, Common, CronArgs, MixedArgs, Scenario, SteadyArgs};
pub use stats::Summary;
pub use ws::WsStats;

/// The command line of `codex32-loadtest` (and of `codex32 loadtest`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "codex32-loadtest",
    version,
    about = "Load-test a running codex32 through its public API: burst, steady, mixed and cron scenarios.",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub scenario: Option<Scenario>,
    /// Compare two reports (report.json of two runs): prints B/A for every shared figure.
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "summarize")]
    pub compare: Option<Vec<PathBuf>>,
    /// Print a Markdown table with one row per report (report.json files).
    #[arg(long, num_args = 1.., value_name = "REPORT")]
    pub summarize: Option<Vec<PathBuf>>,
}

/// Runs what the command line asks: a scenario (table on stdout, report and plots written),
/// or a comparison.
pub async fn run(args: Args) -> Result<(), Error> {
    if let Some(files) = &args.compare {
        let [a, b] = files.as_slice() else {
            return Err(Error::Usage("--compare takes two report files".into()));
        };
        print!("{}", compare::compare(a, b)?);
        return Ok(());
    }
    if let Some(files) = &args.summarize {
        print!("{}", summary::summarize(files)?);
        return Ok(());
    }
    let Some(scenario) = args.scenario else {
        return Err(Error::Usage(
            "name a scenario (burst, steady, mixed, cron), or give --compare A B or --summarize; see --help"
                .into(),
        ));
    };
    let report = execute(&scenario).await?;
    print!("{}", report.table());
    let dir = scenario.common().out.clone().unwrap_or_else(|| {
        let stamp = report.started_at.format("%Y%m%d-%H%M%S");
        PathBuf::from("loadtest-results").join(format!("{}-{stamp}", report.scenario))
    });
    for path in report.write(&dir)? {
        println!("wrote       {}", path.display());
    }
    Ok(())
}

/// Runs one scenario and returns its report, sampling the target's processes meanwhile.
pub async fn execute(scenario: &Scenario) -> Result<Report, Error> {
    let sampler = procfs::Sampler::start(scenario.common().processes.clone());
    let outcome = scenario.run().await;
    let usage = sampler.stop();
    Ok(analysis::build(scenario, outcome?, usage))
}
