//! Fresh planner statistics while the tables that grow with every execution are young.
//!
//! PostgreSQL plans a statement that a connection keeps running once, generically, with the
//! statistics of that moment, and keeps the plan until they change. On a new deployment that
//! moment comes while `executions` holds a handful of rows: a worker's claim of eight ids is
//! then cheapest as a scan of the whole table, and stays a scan as the table grows — on this
//! project's benchmark machine, half of PostgreSQL's time in a burst of 20,000 executions.
//! Autovacuum's `ANALYZE` fixes it, but only at its next round (a minute apart by default) and
//! never where autovacuum is off. So the cron leader analyzes such a table each time it has
//! grown fourfold since its statistics were taken, until they were taken at [`MAX_PAGES`]:
//! four times in a deployment's life at most (each `ANALYZE` of the columns that steer plans
//! takes 50–80 ms of PostgreSQL's time at that size), fewer where autovacuum comes first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::store::TableSize;
use tokio_util::sync::CancellationToken;

/// How often table sizes are checked: one catalog query.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Below this many pages (8 KiB each) every plan is cheap: nothing to refresh.
const MIN_PAGES: i64 = 16;

/// Statistics taken at this size (8 MiB) make every claim plan a lookup by id (a scan of the
/// table costs more than looking up the ~180 ids of the largest batch worth that plan), and
/// the plans made then stay right as the table grows: from there on, autovacuum's rounds are
/// soon enough.
const MAX_PAGES: i64 = 1024;

/// How much a table grows between two refreshes: a plan made at one size is used up to this
/// many times that size.
const GROWTH: i64 = 4;

/// What this scheduler analyzed, by table: the size it saw then. A role that may not analyze
/// a table gets a warning from PostgreSQL, not an error, and leaves the statistics as they
/// were; remembering the size keeps it from trying again before the table has grown fourfold
/// once more.
#[derive(Default)]
struct Statistics {
    analyzed_at: HashMap<String, i64>,
}

/// What a refresh found.
enum Refreshed {
    /// A table may still come due.
    Watching,
    /// No table can come due again (they all passed [`MAX_PAGES`], or the store has none).
    Settled,
}

impl Statistics {
    /// Analyzes the tables that grew [`GROWTH`]-fold since their statistics were taken.
    async fn refresh(&mut self, backends: &Backends) -> anyhow::Result<Refreshed> {
        let sizes = backends.store.table_sizes().await?;
        if sizes.iter().all(|size| self.seen(size) >= MAX_PAGES) {
            return Ok(Refreshed::Settled);
        }
        for size in sizes {
            if !self.due(&size) {
                continue;
            }
            backends.store.analyze(&size.table).await?;
            tracing::debug!(table = %size.table, pages = size.pages, "Took new planner statistics.");
            self.analyzed_at.insert(size.table, size.pages);
        }
        Ok(Refreshed::Watching)
    }

    /// The largest size the table's statistics were taken at, as far as this scheduler knows.
    fn seen(&self, size: &TableSize) -> i64 {
        self.analyzed_at
            .get(&size.table)
            .copied()
            .unwrap_or(0)
            .max(size.pages_in_statistics)
    }

    fn due(&self, size: &TableSize) -> bool {
        let seen = self.seen(size);
        size.pages >= MIN_PAGES && seen < MAX_PAGES && size.pages >= seen.saturating_mul(GROWTH)
    }
}

/// Refreshes statistics every [`CHECK_EVERY`] while this scheduler leads (`leading`, kept by
/// the cron loop: one `ANALYZE` per growth step however many schedulers run), until
/// `shutdown` or until no table can come due again. A task of its own, so that an `ANALYZE`
/// never delays a cron fire.
pub async fn keep_fresh(backends: Backends, leading: Arc<AtomicBool>, shutdown: CancellationToken) {
    let mut statistics = Statistics::default();
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if !leading.load(Ordering::Relaxed) {
            continue;
        }
        let refreshed = tokio::select! {
            _ = shutdown.cancelled() => return,
            refreshed = statistics.refresh(&backends) => refreshed,
        };
        match refreshed {
            Ok(Refreshed::Settled) => return,
            Ok(Refreshed::Watching) => {}
            Err(e) => tracing::warn!(error = %e, "Cannot refresh planner statistics; will retry."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(pages: i64, pages_in_statistics: i64) -> TableSize {
        TableSize {
            table: "executions".into(),
            pages,
            pages_in_statistics,
        }
    }

    #[test]
    fn a_young_table_is_analyzed_each_time_it_has_grown_fourfold() {
        let mut s = Statistics::default();
        assert!(!s.due(&size(MIN_PAGES - 1, 0)), "too small to matter");
        assert!(s.due(&size(MIN_PAGES, 0)), "never analyzed");
        assert!(!s.due(&size(200, 60)), "not fourfold since its statistics");
        assert!(s.due(&size(240, 60)));
        s.analyzed_at.insert("executions".into(), 100);
        assert!(
            !s.due(&size(300, 60)),
            "fourfold since its statistics, but not since this scheduler analyzed it"
        );
        assert!(s.due(&size(400, 60)));
    }

    #[test]
    fn a_grown_table_is_left_to_autovacuum() {
        let mut s = Statistics::default();
        assert!(!s.due(&size(MAX_PAGES * 10, MAX_PAGES)));
        assert!(s.due(&size(MAX_PAGES * 10, MAX_PAGES - 1)));
        s.analyzed_at.insert("executions".into(), MAX_PAGES);
        assert!(!s.due(&size(MAX_PAGES * 10, 0)));
        assert_eq!(s.seen(&size(MAX_PAGES * 10, 0)), MAX_PAGES);
    }
}
