//! From measurements to a [`Report`]: latencies from the client's clock (enqueue, reads) and
//! from codex32's own timestamps (dispatch, end to end, cron lateness — millisecond
//! resolution, as stored), executions by fate, throughput, and the cost of each process group.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::ExecRow;
use crate::procfs::Usage;
use crate::report::{Counts, ProcessCost, Report, Second, Throughput};
use crate::scenario::{Outcome, Scenario};
use crate::stats::{Latency, PerSecond};

/// Every latency of a run, overall and per second.
#[derive(Default)]
struct Latencies {
    overall: BTreeMap<String, Latency>,
    per_second: BTreeMap<&'static str, PerSecond>,
    enqueued: BTreeMap<u64, u64>,
    finished: BTreeMap<u64, u64>,
}

impl Latencies {
    fn add(&mut self, name: &str, ms: i64) {
        self.overall
            .entry(name.to_owned())
            .or_default()
            .record_ms(ms);
    }
}

pub fn build(scenario: &Scenario, outcome: Outcome, usage: Usage) -> Report {
    let mut lat = Latencies::default();
    client_side(&outcome, &mut lat);
    server_side(&outcome.executions, outcome.started_at, &mut lat);
    if outcome.cron.is_some() {
        cron_lateness(&outcome.executions, &mut lat);
    }
    let counts = counts(&outcome);
    let throughput = throughput(&outcome, counts.accepted);
    let resources = costs(&usage, throughput.processed);
    let notes = notes(&outcome, &counts, &scenario.common().pool);
    Report {
        scenario: scenario.name().to_owned(),
        label: scenario.common().label.clone(),
        target: scenario.common().url.clone(),
        started_at: outcome.started_at,
        params: scenario.params(),
        counts,
        throughput,
        latency_ms: lat
            .overall
            .iter()
            .map(|(k, l)| (k.clone(), l.summary()))
            .collect(),
        errors: outcome.observed.errors.clone(),
        resources,
        websocket: outcome.websocket.clone(),
        timeline: timeline(&lat),
        notes,
    }
}

fn client_side(outcome: &Outcome, lat: &mut Latencies) {
    for call in &outcome.observed.enqueues {
        lat.overall
            .entry("enqueue".into())
            .or_default()
            .record(call.latency);
        lat.per_second
            .entry("enqueue")
            .or_default()
            .record(call.due, call.latency);
        *lat.enqueued
            .entry((call.due + call.latency).as_secs())
            .or_default() += u64::from(call.items);
    }
    for (kind, calls) in &outcome.observed.reads {
        let l = lat.overall.entry(format!("read_{kind}")).or_default();
        calls.iter().for_each(|c| l.record(c.latency));
    }
}

/// Milliseconds from `from` to `to`.
fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (to - from).num_milliseconds()
}

/// Whole seconds since the run started (0 for anything before it).
fn second(start: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    u64::try_from(ms(start, at).max(0) / 1000).unwrap_or(0)
}

fn server_side(rows: &[ExecRow], start: DateTime<Utc>, lat: &mut Latencies) {
    // Over time, each latency is placed where it ended (started, finished): a backlog then
    // shows as latency growing while it drains, even when all was queued in the first second.
    for e in rows {
        // A delayed execution is due at its run_at, not when it was queued.
        let due = e.run_at.map_or(e.queued_at, |r| r.max(e.queued_at));
        if let Some(started) = e.started_at {
            lat.add("dispatch", ms(due, started));
            let at = second(start, started);
            lat.per_second
                .entry("dispatch")
                .or_default()
                .record_ms(at, ms(due, started));
        }
        if let (Some(finished), true) = (e.finished_at, e.is_final()) {
            lat.add("end_to_end", ms(e.queued_at, finished));
            let at = second(start, finished);
            lat.per_second
                .entry("end_to_end")
                .or_default()
                .record_ms(at, ms(e.queued_at, finished));
            *lat.finished.entry(at).or_default() += 1;
        }
    }
}

fn cron_lateness(rows: &[ExecRow], lat: &mut Latencies) {
    for e in rows {
        let Some(fire) = e.scheduled_for else {
            continue;
        };
        lat.add("fire_lateness", ms(fire, e.queued_at));
        if let Some(started) = e.started_at {
            lat.add("start_lateness", ms(fire, started));
        }
    }
}

fn counts(outcome: &Outcome) -> Counts {
    let rows = &outcome.executions;
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    rows.iter()
        .for_each(|e| *by_status.entry(e.status.clone()).or_default() += 1);
    let reruns = rows.iter().filter(|e| e.attempt > 1).count() as u64;
    if let Some(cron) = &outcome.cron {
        return Counts {
            accepted: rows.len() as u64,
            by_status,
            lost: rows.iter().filter(|e| !e.is_final()).count() as u64,
            duplicates: cron_duplicates(rows),
            reruns,
            missed_fires: (cron.trim() == "* * * * * *").then(|| missed_fires(rows)),
            ..Counts::default()
        };
    }
    let accepted: HashSet<_> = outcome.observed.accepted.iter().copied().collect();
    let finals: HashSet<_> = rows.iter().filter(|e| e.is_final()).map(|e| e.id).collect();
    let unsubmitted = rows.iter().filter(|e| !accepted.contains(&e.id)).count();
    Counts {
        submitted: outcome.observed.submitted,
        accepted: accepted.len() as u64,
        by_status,
        lost: accepted.difference(&finals).count() as u64,
        duplicates: (outcome.observed.accepted.len() - accepted.len() + unsubmitted) as u64,
        reruns,
        missed_fires: None,
    }
}

/// Executions beyond the first for one bot and fire time.
fn cron_duplicates(rows: &[ExecRow]) -> u64 {
    let mut fires: HashMap<(uuid::Uuid, DateTime<Utc>), u64> = HashMap::new();
    for e in rows {
        if let Some(at) = e.scheduled_for {
            *fires.entry((e.bot_id, at)).or_default() += 1;
        }
    }
    fires.values().map(|n| n - 1).sum()
}

/// Seconds with no fire between each bot's first and last fire.
fn missed_fires(rows: &[ExecRow]) -> u64 {
    let mut by_bot: HashMap<uuid::Uuid, Vec<i64>> = HashMap::new();
    for e in rows {
        if let Some(at) = e.scheduled_for {
            by_bot.entry(e.bot_id).or_default().push(at.timestamp());
        }
    }
    by_bot
        .values_mut()
        .map(|fires| {
            fires.sort_unstable();
            fires.dedup();
            let span = fires.last().unwrap_or(&0) - fires.first().unwrap_or(&0) + 1;
            u64::try_from(span)
                .unwrap_or(0)
                .saturating_sub(fires.len() as u64)
        })
        .sum()
}

fn throughput(outcome: &Outcome, accepted: u64) -> Throughput {
    let finals: Vec<&ExecRow> = outcome.executions.iter().filter(|e| e.is_final()).collect();
    let (span, drain_span) = spans(&finals);
    let load_s = outcome.load_wall.as_secs_f64();
    let per_s = |n: f64, s: f64| {
        if s > 0.0 {
            (n / s * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    Throughput {
        load_s: (load_s * 1000.0).round() / 1000.0,
        enqueue_per_s: per_s(accepted as f64, load_s),
        processed: finals.len() as u64,
        processed_span_s: span,
        processed_per_s: per_s(finals.len() as f64, span),
        drain_span_s: drain_span,
        drain_per_s: per_s(finals.len() as f64, drain_span),
        offered_per_s: outcome.offered_per_s,
    }
}

/// Seconds from the first `queued_at`, and from the first `started_at`, to the last
/// `finished_at` of these final executions (0 when there is none; at least 1 ms otherwise).
fn spans(finals: &[&ExecRow]) -> (f64, f64) {
    let last = finals.iter().filter_map(|e| e.finished_at).max();
    let to_last = |first: Option<DateTime<Utc>>| match (first, last) {
        (Some(a), Some(b)) => (ms(a, b).max(1) as f64) / 1000.0,
        _ => 0.0,
    };
    (
        to_last(finals.iter().map(|e| e.queued_at).min()),
        to_last(finals.iter().filter_map(|e| e.started_at).min()),
    )
}

fn costs(usage: &Usage, processed: u64) -> Vec<ProcessCost> {
    let wall = usage.wall.max(Duration::from_millis(1)).as_secs_f64();
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    usage
        .groups
        .iter()
        .map(|(name, g)| ProcessCost {
            name: name.clone(),
            processes: g.processes,
            cpu_s: round(g.cpu_s),
            cpu_s_per_1000: (processed > 0).then(|| round(g.cpu_s * 1000.0 / processed as f64)),
            avg_cores: round(g.cpu_s / wall),
            peak_rss_mb: round(g.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
            cores_over_time: g
                .cores
                .iter()
                .map(|(t, c)| (round(*t), round(*c)))
                .collect(),
        })
        .collect()
}

fn timeline(lat: &Latencies) -> Vec<Second> {
    let series = |name: &str| {
        lat.per_second
            .get(name)
            .map(|p| p.p50_p99())
            .unwrap_or_default()
    };
    let (enq, dis, e2e) = (series("enqueue"), series("dispatch"), series("end_to_end"));
    let last = [
        lat.enqueued.keys().last(),
        lat.finished.keys().last(),
        enq.keys().last(),
        dis.keys().last(),
    ]
    .into_iter()
    .flatten()
    .max()
    .copied();
    let Some(last) = last else { return vec![] };
    (0..=last)
        .map(|t| Second {
            t,
            enqueued: lat.enqueued.get(&t).copied().unwrap_or(0),
            finished: lat.finished.get(&t).copied().unwrap_or(0),
            enqueue_p50: enq.get(&t).map(|v| v.0),
            enqueue_p99: enq.get(&t).map(|v| v.1),
            dispatch_p50: dis.get(&t).map(|v| v.0),
            dispatch_p99: dis.get(&t).map(|v| v.1),
            end_to_end_p50: e2e.get(&t).map(|v| v.0),
            end_to_end_p99: e2e.get(&t).map(|v| v.1),
        })
        .collect()
}

fn notes(outcome: &Outcome, counts: &Counts, pool: &str) -> Vec<String> {
    let mut notes = vec![
        "dispatch and end_to_end come from codex32's stored timestamps: millisecond resolution"
            .to_owned(),
    ];
    let most = outcome
        .observed
        .enqueues
        .iter()
        .map(|c| c.items)
        .max()
        .unwrap_or(1);
    if most > 1 {
        notes.push(format!(
            "enqueue latency is per request: batches of up to {most} executions each"
        ));
    }
    if crate::interrupt::requested() {
        notes.push("interrupted (Ctrl-C): the load stopped early".to_owned());
    }
    if !outcome.all_final {
        notes.push(format!(
            "gave up waiting after the drain timeout: {} executions were not final; is a worker \
             serving the pool {pool:?} running (GET /api/v1/workers)? --drain-timeout-s waits longer",
            counts.lost
        ));
    }
    notes.extend(outcome.notes.iter().cloned());
    notes.extend(trouble(outcome));
    notes
}

/// What makes a run's figures misleading, said where the figures are read.
fn trouble(outcome: &Outcome) -> Vec<String> {
    let mut notes = Vec::new();
    let errors = &outcome.observed.errors;
    let limited: u64 = errors
        .iter()
        .filter(|(kind, _)| kind.contains("http 429"))
        .map(|(_, n)| n)
        .sum();
    if limited > 0 {
        notes.push(format!(
            "{limited} requests were refused with 429{}",
            crate::client::RATE_LIMIT_HINT
        ));
    }
    if let Some(kind) = errors.keys().find(|kind| kind.starts_with("read back:")) {
        notes.push(format!(
            "the run's executions could not be read back ({kind}): every accepted one counts as lost"
        ));
    }
    let unsuccessful: Vec<&ExecRow> = outcome
        .executions
        .iter()
        .filter(|e| e.is_final() && e.status != "succeeded")
        .collect();
    if let Some(first) = unsuccessful.first() {
        notes.push(format!(
            "{} executions ended without success (the bot's outcome, counted as processed, not \
             as errors): see GET /api/v1/executions/{} for one",
            unsuccessful.len(),
            first.id
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(queued: i64, started: Option<i64>, finished: i64) -> ExecRow {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(1_800_000_000_000 + ms);
        ExecRow {
            id: uuid::Uuid::new_v4(),
            bot_id: uuid::Uuid::nil(),
            status: if started.is_some() {
                "succeeded"
            } else {
                "cancelled"
            }
            .to_owned(),
            attempt: 1,
            queued_at: at(queued).unwrap(),
            run_at: None,
            started_at: started.and_then(at),
            finished_at: at(finished),
            scheduled_for: None,
        }
    }

    #[test]
    fn a_backlog_drains_from_its_first_start_not_its_first_enqueue() {
        // Queued over the first second, nothing started before 4 s, the last ended at 6 s;
        // a cancelled one never started and does not move the drain's start.
        let rows = [
            row(0, Some(4_000), 4_010),
            row(1_000, Some(5_000), 6_000),
            row(500, None, 2_000),
        ];
        let finals: Vec<&ExecRow> = rows.iter().collect();
        assert_eq!(spans(&finals), (6.0, 2.0));
    }

    #[test]
    fn no_final_execution_spans_nothing() {
        assert_eq!(spans(&[]), (0.0, 0.0));
        let never_started = [row(0, None, 0)];
        let finals: Vec<&ExecRow> = never_started.iter().collect();
        assert_eq!(spans(&finals), (0.001, 0.0));
    }

    #[test]
    fn rate_limits_unread_executions_and_failed_bots_are_said_beside_the_figures() {
        let mut outcome = Outcome::default();
        outcome
            .observed
            .errors
            .insert("submit: http 429 rate_limited".into(), 7);
        let mut failed = row(0, Some(1), 2);
        failed.status = "failed".into();
        outcome.executions = vec![row(0, Some(1), 2), failed.clone()];
        let notes = trouble(&outcome);
        assert!(
            notes[0].starts_with("7 requests were refused with 429"),
            "{notes:?}"
        );
        assert!(
            notes[0].contains("CODEX32_RATE_LIMIT_PER_MIN=0"),
            "{notes:?}"
        );
        assert!(
            notes[1].starts_with("1 executions ended without success"),
            "{notes:?}"
        );
        assert!(notes[1].contains(&failed.id.to_string()), "{notes:?}");
        assert_eq!(notes.len(), 2, "{notes:?}");

        outcome.executions.clear();
        outcome.observed.errors.clear();
        outcome
            .observed
            .errors
            .insert("read back: timeout".into(), 1);
        let notes = trouble(&outcome);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("every accepted one counts as lost"),
            "{notes:?}"
        );
        assert!(trouble(&Outcome::default()).is_empty());
    }
}
