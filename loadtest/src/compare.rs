//! `--compare a.json b.json`: the figures two runs share, side by side, with the ratio B/A
//! (above 1: B is higher — better for throughput, worse for latency and cost).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::Error;
use crate::report::Report;

/// The comparison table of two written reports.
pub fn compare(a: &Path, b: &Path) -> Result<String, Error> {
    let (ra, rb) = (Report::read(a)?, Report::read(b)?);
    let mut t = String::new();
    let _ = writeln!(t, "A: {} ({})", a.display(), describe(&ra));
    let _ = writeln!(t, "B: {} ({})", b.display(), describe(&rb));
    if let Some(warning) = mismatch(&ra, &rb) {
        let _ = writeln!(t, "note: {warning}");
    }
    let _ = writeln!(t, "{:<34}{:>14}{:>14}{:>9}", "", "A", "B", "B/A");
    for (name, va, vb) in rows(&ra, &rb) {
        let ratio = if va != 0.0 {
            format!("{:.2}", vb / va)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(t, "{name:<34}{va:>14.3}{vb:>14.3}{ratio:>9}");
    }
    Ok(t)
}

/// Why the ratios of two reports may not compare like with like.
fn mismatch(a: &Report, b: &Report) -> Option<String> {
    if a.scenario != b.scenario {
        return Some(format!(
            "A is a {} run and B a {} run: their figures measure different loads",
            a.scenario, b.scenario
        ));
    }
    let batch = |r: &Report| r.params["batch"].as_u64().unwrap_or(1);
    if batch(a) != batch(b) {
        return Some(format!(
            "A sent {} execution(s) per request and B {}: enqueue latency is per request",
            batch(a),
            batch(b)
        ));
    }
    None
}

fn describe(r: &Report) -> String {
    let label = r.label.as_deref().unwrap_or("no label");
    format!(
        "{} {label}, {}",
        r.scenario,
        r.started_at.format("%Y-%m-%d %H:%M")
    )
}

/// (metric, A, B) for every figure both reports have.
fn rows(a: &Report, b: &Report) -> Vec<(String, f64, f64)> {
    let mut rows = vec![
        (
            "enqueue /s".to_owned(),
            a.throughput.enqueue_per_s,
            b.throughput.enqueue_per_s,
        ),
        (
            "processed /s".to_owned(),
            a.throughput.processed_per_s,
            b.throughput.processed_per_s,
        ),
        (
            "processed /s from the first start".to_owned(),
            a.throughput.drain_per_s,
            b.throughput.drain_per_s,
        ),
        (
            "lost".to_owned(),
            a.counts.lost as f64,
            b.counts.lost as f64,
        ),
        (
            "duplicates".to_owned(),
            a.counts.duplicates as f64,
            b.counts.duplicates as f64,
        ),
        (
            "errors".to_owned(),
            a.errors.values().sum::<u64>() as f64,
            b.errors.values().sum::<u64>() as f64,
        ),
    ];
    for (name, sa) in &a.latency_ms {
        if let Some(sb) = b.latency_ms.get(name) {
            rows.push((format!("{name} p50 ms"), sa.p50, sb.p50));
            rows.push((format!("{name} p99 ms"), sa.p99, sb.p99));
        }
    }
    for pa in &a.resources {
        let pb = b.resources.iter().find(|p| p.name == pa.name);
        if let (Some(va), Some(vb)) = (pa.cpu_s_per_1000, pb.and_then(|p| p.cpu_s_per_1000)) {
            rows.push((format!("{} CPU s/1000", pa.name), va, vb));
        }
    }
    rows
}
