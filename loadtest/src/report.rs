//! The report of one run: what `report.json` holds, the table printed on the terminal, and
//! where the files go. Built from the measurements by [`crate::analysis`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::plot;
use crate::stats::Summary;
use crate::ws::WsStats;

/// Everything measured in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub label: Option<String>,
    /// The API's base URL.
    pub target: String,
    pub started_at: DateTime<Utc>,
    /// The scenario's options (without the API key).
    pub params: Value,
    pub counts: Counts,
    pub throughput: Throughput,
    /// Latencies in milliseconds: `enqueue` (HTTP, client side), `dispatch` (queued →
    /// started) and `end_to_end` (queued → finished) from the executions' timestamps, cron
    /// lateness, and `read_*` for the mixed scenario's reads.
    pub latency_ms: BTreeMap<String, Summary>,
    /// Failed calls by kind.
    pub errors: BTreeMap<String, u64>,
    /// CPU and memory per group of processes.
    pub resources: Vec<ProcessCost>,
    pub websocket: Option<WsStats>,
    /// Per second of the run.
    pub timeline: Vec<Second>,
    pub notes: Vec<String>,
}

/// Executions by fate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Executions asked for (cron: none; schedules make them).
    pub submitted: u64,
    /// Distinct executions codex32 answered 2xx for (cron: executions the schedules made).
    pub accepted: u64,
    /// Executions read back, by status.
    pub by_status: BTreeMap<String, u64>,
    /// Accepted but not final when the run gave up waiting (or missing altogether).
    pub lost: u64,
    /// Executions that exist twice for one submission: an id answered twice, an execution of
    /// the run nobody submitted, or (cron) two executions for one bot and fire time.
    pub duplicates: u64,
    /// Executions that ran more than once (attempt > 1): retries or redelivered leases.
    pub reruns: u64,
    /// Cron every second: fire times with no execution, from gaps in each bot's sequence.
    pub missed_fires: Option<u64>,
}

/// Rates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// How long the load was generated, in seconds.
    pub load_s: f64,
    /// Executions accepted per second of load.
    pub enqueue_per_s: f64,
    /// Executions that ended (any final status).
    pub processed: u64,
    /// First `queued_at` to last `finished_at`, in seconds.
    pub processed_span_s: f64,
    pub processed_per_s: f64,
    /// First `started_at` to last `finished_at`, in seconds: the processing alone, without
    /// the enqueue before it when workers start after a backlog was queued.
    #[serde(default)]
    pub drain_span_s: f64,
    /// Executions that ended per second of [`drain_span_s`](Self::drain_span_s): how fast a
    /// backlog drains, measured as the peers of issue #7 were (enqueued, then processed).
    #[serde(default)]
    pub drain_per_s: f64,
    /// The arrival rate asked for (steady and mixed).
    pub offered_per_s: Option<f64>,
}

/// What one group of processes cost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProcessCost {
    pub name: String,
    pub processes: usize,
    pub cpu_s: f64,
    /// CPU seconds per 1,000 executions processed.
    pub cpu_s_per_1000: Option<f64>,
    /// Cores in use on average over the run.
    pub avg_cores: f64,
    pub peak_rss_mb: f64,
    /// (second, cores in use).
    pub cores_over_time: Vec<(f64, f64)>,
}

/// One second of the run: counts and latency percentiles (ms) of what happened in it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Second {
    pub t: u64,
    /// Executions accepted (by when their answer came).
    pub enqueued: u64,
    /// Executions that ended (by `finished_at`).
    pub finished: u64,
    /// Of the calls due in this second.
    pub enqueue_p50: Option<f64>,
    pub enqueue_p99: Option<f64>,
    /// Of the executions started in this second.
    pub dispatch_p50: Option<f64>,
    pub dispatch_p99: Option<f64>,
    /// Of the executions finished in this second.
    pub end_to_end_p50: Option<f64>,
    pub end_to_end_p99: Option<f64>,
}

impl Report {
    /// Writes `report.json` and the plots into `dir`; the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_owned(),
            source,
        })?;
        let json = dir.join("report.json");
        let text = serde_json::to_vec_pretty(self).unwrap_or_default();
        std::fs::write(&json, text).map_err(|source| Error::Write {
            path: json.clone(),
            source,
        })?;
        let mut written = vec![json];
        written.extend(plot::draw_all(self, dir)?);
        Ok(written)
    }

    /// Reads a report written by [`Report::write`].
    pub fn read(path: &Path) -> Result<Self, Error> {
        let err = |reason: String| Error::Read {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
    }

    /// The terminal summary.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let label = self
            .label
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "codex32 loadtest: {}{label} against {}",
            self.scenario, self.target
        );
        let c = &self.counts;
        let statuses: Vec<String> = c
            .by_status
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        let _ = writeln!(
            t,
            "executions  submitted {}  accepted {}  [{}]  lost {}  duplicates {}  reruns {}{}",
            c.submitted,
            c.accepted,
            statuses.join(", "),
            c.lost,
            c.duplicates,
            c.reruns,
            c.missed_fires
                .map(|m| format!("  missed fires {m}"))
                .unwrap_or_default()
        );
        let r = &self.throughput;
        let offered = r
            .offered_per_s
            .map(|o| format!("offered {o:.0}/s  "))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "throughput  {offered}enqueue {:.0}/s over {:.1} s  processed {:.0}/s ({} in {:.1} s)  \
             from the first start {:.0}/s ({:.1} s)",
            r.enqueue_per_s,
            r.load_s,
            r.processed_per_s,
            r.processed,
            r.processed_span_s,
            r.drain_per_s,
            r.drain_span_s
        );
        let _ = writeln!(
            t,
            "latency ms  {:<16}{:>8}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
            "", "count", "mean", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, s) in &self.latency_ms {
            let _ = writeln!(
                t,
                "            {name:<16}{:>8}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}{:>9.2}",
                s.count, s.mean, s.p50, s.p90, s.p99, s.p999, s.max
            );
        }
        self.errors_and_costs(&mut t);
        t
    }

    fn errors_and_costs(&self, t: &mut String) {
        if self.errors.is_empty() {
            let _ = writeln!(t, "errors      none");
        }
        for (kind, n) in &self.errors {
            let _ = writeln!(t, "errors      {n:>8}  {kind}");
        }
        if let Some(ws) = &self.websocket {
            let _ = writeln!(
                t,
                "websocket   {}/{} subscribed, {} events, {} dropped",
                ws.connected, ws.subscribers, ws.events, ws.dropped
            );
        }
        let _ = writeln!(
            t,
            "cost        {:<26}{:>6}{:>10}{:>14}{:>10}{:>10}",
            "", "procs", "CPU s", "CPU s/1000", "cores", "peak MB"
        );
        for p in &self.resources {
            let per = p
                .cpu_s_per_1000
                .map_or("-".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(
                t,
                "            {:<26}{:>6}{:>10.2}{:>14}{:>10.2}{:>10.0}",
                p.name, p.processes, p.cpu_s, per, p.avg_cores, p.peak_rss_mb
            );
        }
        for note in &self.notes {
            let _ = writeln!(t, "note        {note}");
        }
    }
}
