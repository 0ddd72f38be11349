//! `--summarize a.json b.json …`: one Markdown table row per report, with the figures the
//! README's tables hold — what `bench.sh` prints at the end of the standard set.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::error::Error;
use crate::report::Report;
use crate::stats::Summary;

/// The Markdown table of these reports.
pub fn summarize(paths: &[PathBuf]) -> Result<String, Error> {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| run | processed/s | from the first start /s | enqueue/s | enqueue p50 / p99 ms | dispatch p50 / p99 ms | end-to-end p50 / p99 ms | cron fire lateness p50 / p99 ms | lost | dup | CPU s / 1000: codex32, postgres, redis |"
    );
    let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for path in paths {
        let r = Report::read(path)?;
        let _ = writeln!(t, "{}", row(&r));
    }
    Ok(t)
}

fn row(r: &Report) -> String {
    let pair = |name: &str| {
        r.latency_ms
            .get(name)
            .filter(|s| s.count > 0)
            .map_or("-".to_owned(), |s: &Summary| {
                format!("{:.1} / {:.1}", s.p50, s.p99)
            })
    };
    let cpu = |prefix: &str| {
        let groups: Vec<f64> = r
            .resources
            .iter()
            .filter(|p| p.name.starts_with(prefix))
            .filter_map(|p| p.cpu_s_per_1000)
            .collect();
        if groups.is_empty() {
            "-".to_owned()
        } else {
            format!("{:.3}", groups.iter().sum::<f64>())
        }
    };
    format!(
        "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {}, {}, {} |",
        r.label.as_deref().unwrap_or(&r.scenario),
        r.throughput.processed_per_s,
        r.throughput.drain_per_s,
        r.throughput.enqueue_per_s,
        pair("enqueue"),
        pair("dispatch"),
        pair("end_to_end"),
        pair("fire_lateness"),
        r.counts.lost,
        r.counts.duplicates,
        cpu("codex32 "),
        cpu("postgres"),
        cpu("redis-server"),
    )
}
