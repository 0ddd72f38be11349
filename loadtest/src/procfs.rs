//! Cost visibility: samples the CPU time and resident memory of processes by name (`codex32`,
//! `postgres`, `redis-server`, …) from `/proc` once a second while a run goes, on a thread of
//! its own. codex32 processes are told apart by role (`codex32 api`, `codex32 worker`, …);
//! the harness's own process is reported on its own line, never as part of the target.
//!
//! CPU time counts from the first sample for processes already running then, and from zero
//! for processes that start during the run (new PostgreSQL backends); the last slice of a
//! process that exits between two samples is lost (at most one second of it).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);
/// The group of the harness's own process.
pub const SELF_GROUP: &str = "loadtest (this process)";

/// What one group of processes used during the run.
#[derive(Debug, Clone, Default)]
pub struct GroupUsage {
    /// Distinct processes seen.
    pub processes: usize,
    pub cpu_s: f64,
    /// Largest sum of the group's resident memory at one sample.
    pub peak_rss_bytes: u64,
    /// (seconds since the start, cores in use over the previous interval).
    pub cores: Vec<(f64, f64)>,
}

/// What every sampled group used, and over how long.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub wall: Duration,
    pub groups: BTreeMap<String, GroupUsage>,
}

/// A running sampler; [`Sampler::stop`] ends it and returns what it saw.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Usage>,
}

impl Sampler {
    /// Starts sampling processes whose name (as in `/proc/<pid>/comm`) is one of `names`.
    pub fn start(names: Vec<String>) -> Self {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || sample_until(&names, &stopped));
        Self { stop, thread }
    }

    pub fn stop(self) -> Usage {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// One process at one sample.
struct Seen {
    group: String,
    ticks: u64,
    rss_pages: u64,
}

/// Per process: the group, the CPU ticks it had when first seen (0 if it started during the
/// run), and the latest ticks.
struct Track {
    group: String,
    base: u64,
    last: u64,
}

/// The sampler's state between samples.
struct Sampling {
    names: Vec<String>,
    clk: f64,
    page: u64,
    start: Instant,
    tracks: HashMap<i32, Track>,
    roles: HashMap<i32, String>,
    /// When the previous sample was taken, and each group's ticks then.
    previous: Option<(Instant, BTreeMap<String, u64>)>,
    usage: Usage,
}

fn sample_until(names: &[String], stopped: &mpsc::Receiver<()>) -> Usage {
    let mut sampling = Sampling {
        names: names.to_vec(),
        clk: clock_ticks_per_s(),
        page: page_size(),
        start: Instant::now(),
        tracks: HashMap::new(),
        roles: HashMap::new(),
        previous: None,
        usage: Usage::default(),
    };
    loop {
        sampling.observe();
        let stop = !matches!(
            stopped.recv_timeout(INTERVAL),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if stop {
            // One last sample, so that a run shorter than the interval is measured too.
            sampling.observe();
            return sampling.finish();
        }
    }
}

impl Sampling {
    fn observe(&mut self) {
        let now = Instant::now();
        let first = self.previous.is_none();
        let mut rss: BTreeMap<String, u64> = BTreeMap::new();
        for (pid, seen) in sample(&self.names, &mut self.roles) {
            let track = self.tracks.entry(pid).or_insert_with(|| Track {
                group: seen.group.clone(),
                base: if first { seen.ticks } else { 0 },
                last: seen.ticks,
            });
            track.last = seen.ticks;
            *rss.entry(seen.group).or_default() += seen.rss_pages * self.page;
        }
        for (group, bytes) in rss {
            let g = self.usage.groups.entry(group).or_default();
            g.peak_rss_bytes = g.peak_rss_bytes.max(bytes);
        }
        let totals = self.group_ticks();
        if let Some((then, before)) = self.previous.replace((now, totals.clone())) {
            self.record_interval(&totals, &before, now.duration_since(then), now);
        }
    }

    /// CPU ticks used so far by each group.
    fn group_ticks(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for t in self.tracks.values() {
            *totals.entry(t.group.clone()).or_default() += t.last.saturating_sub(t.base);
        }
        totals
    }

    /// Adds each group's cores in use since the previous sample to its series.
    fn record_interval(
        &mut self,
        totals: &BTreeMap<String, u64>,
        before: &BTreeMap<String, u64>,
        span: Duration,
        now: Instant,
    ) {
        let span = span.as_secs_f64();
        if span <= 0.0 {
            return;
        }
        let at = now.duration_since(self.start).as_secs_f64();
        for (group, ticks) in totals {
            let used = ticks.saturating_sub(before.get(group).copied().unwrap_or(0));
            let cores = used as f64 / self.clk / span;
            let g = self.usage.groups.entry(group.clone()).or_default();
            g.cores.push((at, cores));
        }
    }

    fn finish(mut self) -> Usage {
        self.usage.wall = self.start.elapsed();
        for track in self.tracks.values() {
            let g = self.usage.groups.entry(track.group.clone()).or_default();
            g.processes += 1;
            g.cpu_s += track.last.saturating_sub(track.base) as f64 / self.clk;
        }
        self.usage
    }
}

/// Every process of interest now, by pid.
fn sample(names: &[String], roles: &mut HashMap<i32, String>) -> Vec<(i32, Seen)> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, ticks, rss_pages) = parse_stat(&stat)?;
            let group = if pid == me {
                SELF_GROUP.to_owned()
            } else if names.iter().any(|n| n == comm) {
                group_of(pid, comm, roles)
            } else {
                return None;
            };
            Some((
                pid,
                Seen {
                    group,
                    ticks,
                    rss_pages,
                },
            ))
        })
        .collect()
}

/// `codex32 <role>` for codex32 processes (its first argument), else the name.
fn group_of(pid: i32, comm: &str, roles: &mut HashMap<i32, String>) -> String {
    if comm != "codex32" {
        return comm.to_owned();
    }
    roles
        .entry(pid)
        .or_insert_with(|| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let role = cmdline
                .split(|b| *b == 0)
                .nth(1)
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_default();
            format!("codex32 {role}").trim().to_owned()
        })
        .clone()
}

/// (name, user + system ticks, resident pages) from `/proc/<pid>/stat`. The name sits in
/// parentheses and may hold spaces, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(&str, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the name: state is field 3 of the man page; utime 14, stime 15, rss 24.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss: u64 = fields.get(21)?.parse().ok()?;
    Some((comm, utime + stime, rss))
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_with_spaces_in_the_name_is_read_from_the_last_parenthesis() {
        let stat = "42 (redis server) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("redis server", 300, 300)));
    }

    #[test]
    fn the_sampler_sees_this_process_on_its_own_line() {
        let sampler = Sampler::start(vec!["no-such-process".into()]);
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(300) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let usage = sampler.stop();
        let me = &usage.groups[SELF_GROUP];
        assert_eq!(me.processes, 1);
        assert!(me.cpu_s > 0.05, "{usage:?}");
        assert!(me.peak_rss_bytes > 0);
        assert!(!usage.groups.contains_key("no-such-process"));
    }
}
