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
mod interrupt;
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
        out(&compare::compare(a, b)?);
        return Ok(());
    }
    if let Some(files) = &args.summarize {
        out(&summary::summarize(files)?);
        return Ok(());
    }
    let Some(scenario) = args.scenario else {
        return Err(Error::Usage(
            "name a scenario (burst, steady, mixed, cron), or give --compare A B or --summarize; see --help"
                .into(),
        ));
    };
    interrupt::listen();
    let report = execute(&scenario).await?;
    out(&report.table());
    let dir = match scenario.common().out.clone() {
        Some(dir) => dir,
        None => default_dir(&report)?,
    };
    for path in report.write(&dir)? {
        out(&format!("wrote       {}\n", path.display()));
    }
    Ok(())
}

/// `loadtest-results/<scenario>-<time>`, with a suffix when a run of the same second has it.
fn default_dir(report: &Report) -> Result<PathBuf, Error> {
    let stamp = report.started_at.format("%Y%m%d-%H%M%S");
    unique_dir(&PathBuf::from("loadtest-results").join(format!("{}-{stamp}", report.scenario)))
}

/// Creates `base`, or `base-2`, `base-3`, … when it exists; the one it created.
fn unique_dir(base: &std::path::Path) -> Result<PathBuf, Error> {
    let parent = base.parent().unwrap_or(base).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|source| Error::Write {
        path: parent,
        source,
    })?;
    for n in 1.. {
        let dir = match n {
            1 => base.to_path_buf(),
            n => PathBuf::from(format!("{}-{n}", base.display())),
        };
        // Creating it claims the name, also against a run writing at the same moment.
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::Write { path: dir, source }),
        }
    }
    unreachable!("some suffix is free")
}

/// Prints to stdout; a reader that went away (`| head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// Runs one scenario and returns its report, sampling the target's processes meanwhile.
pub async fn execute(scenario: &Scenario) -> Result<Report, Error> {
    let sampler = procfs::Sampler::start(scenario.common().processes.clone());
    let outcome = scenario.run().await;
    let usage = sampler.stop();
    Ok(analysis::build(scenario, outcome?, usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_the_same_second_get_directories_of_their_own() {
        let root = std::env::temp_dir().join(format!("codex32-loadtest-{}", uuid::Uuid::new_v4()));
        let base = root.join("burst-20261207-135334");
        let made: Vec<PathBuf> = (0..3).map(|_| unique_dir(&base).unwrap()).collect();
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(
            made,
            [
                base.clone(),
                root.join("burst-20261207-135334-2"),
                root.join("burst-20261207-135334-3")
            ]
        );
    }

    #[test]
    fn counts_and_rates_are_checked_on_the_command_line_one_option_at_a_time() {
        let parse = |line: &str| {
            let words = ["codex32-loadtest"].into_iter().chain(line.split(' '));
            <Args as clap::Parser>::try_parse_from(words)
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let key = "--api-key c32_x";
        for (line, option) in [
            ("burst -n 0", "--executions"),
            ("burst -c -1", "--connections"),
            ("burst --batch 1001", "--batch"),
            ("steady --rate -5", "--rate"),
            ("steady --rate 0", "--rate"),
            ("steady --duration-s 0", "--duration-s"),
            ("mixed --read-rate -1", "--read-rate"),
            ("cron -m 0", "--schedules"),
        ] {
            let error = parse(&format!("{line} {key}")).unwrap_err();
            assert!(error.contains(option), "{line}: {error}");
        }
        assert!(parse(&format!("steady --rate 0.5 --duration-s 2 {key}")).is_ok());
        assert!(parse(&format!("mixed --read-rate 0 {key}")).is_ok());
        assert!(parse(&format!("burst -n 1 --batch 1000 {key}")).is_ok());
    }
}
