//! Latency distributions (HdrHistogram, microsecond resolution, 3 significant digits) and
//! their summaries in milliseconds, overall and per second of the run.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// One latency being collected.
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // Auto-resizing: no upper bound to guess; 3 digits keep every percentile within 0.1%.
        let mut hist = Histogram::new(3).unwrap_or_else(|_| unreachable!("3 digits is valid"));
        hist.auto(true);
        Self { hist }
    }

    pub fn record(&mut self, d: Duration) {
        let _ = self
            .hist
            .record(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// A latency known only to the millisecond (codex32's stored timestamps).
    pub fn record_ms(&mut self, ms: i64) {
        let _ = self.hist.record((ms.max(0) as u64).saturating_mul(1000));
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Summary {
            count: self.hist.len(),
            mean: round(self.hist.mean() / 1000.0),
            min: ms(self.hist.min()),
            p50: self.quantile_ms(0.50),
            p90: self.quantile_ms(0.90),
            p99: self.quantile_ms(0.99),
            p999: self.quantile_ms(0.999),
            max: ms(self.hist.max()),
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A latency per whole second of the run, for plotting over time.
#[derive(Default)]
pub struct PerSecond {
    seconds: BTreeMap<u64, Latency>,
}

impl PerSecond {
    pub fn record(&mut self, at: Duration, latency: Duration) {
        self.seconds
            .entry(at.as_secs())
            .or_default()
            .record(latency);
    }

    pub fn record_ms(&mut self, at_s: u64, ms: i64) {
        self.seconds.entry(at_s).or_default().record_ms(ms);
    }

    /// (second, p50, p99) of every second that saw one.
    pub fn p50_p99(&self) -> BTreeMap<u64, (f64, f64)> {
        self.seconds
            .iter()
            .map(|(s, l)| (*s, (l.quantile_ms(0.5), l.quantile_ms(0.99))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut l = Latency::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert!((s.p50 - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p99 - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max - 100.0).abs() < 0.1, "{s:?}");
        assert_eq!(Latency::new().summary(), Summary::default());
    }
}
