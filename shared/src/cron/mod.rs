//! Cron schedules: the pure, clock-free core of codex32's cron scheduling.
//!
//! Owns three things: parsing a cron expression in an IANA time zone into a
//! [`CronSchedule`] (parse, don't validate: a value of that type always fires at some
//! point), finding fire times after an instant, and deciding which fire times are due on
//! a scheduler tick ([`due_fire_times`]). Nothing here reads a clock, a store or the
//! network: `now` is always a parameter, so every rule is tested with a fixed clock.
//!
//! # Time zones and daylight saving time
//!
//! Fire times are wall-clock times in the schedule's zone, returned as UTC instants.
//! Daylight saving transitions follow croner's rules (those of the Open Cron Pattern
//! Specification), which split expressions in two:
//!
//! * **Fixed-time** expressions name exactly one second, one minute and one hour
//!   (`30 2 * * *`, `0 9 * * MON-FRI`, `@daily`). They run once per matching day. When a
//!   spring-forward gap swallows the time (02:30 in Paris on 29 March 2026) they run once,
//!   at the first instant after the gap (03:00 local); when a fall-back repeats the time
//!   they run once, at the first of the two instants (02:30 summer time).
//! * **Interval** expressions have a wildcard, step, list or range in the second, minute
//!   or hour field (`*/15 * * * *`, `@hourly`, `30 2,14 * * *`). They follow real time:
//!   a wall-clock time that does not exist is skipped and one that happens twice fires
//!   twice, so `*/15` keeps firing every 15 real minutes through a repeated hour and an
//!   hourly job fires once per real hour (23 times on a spring-forward day, 25 on a
//!   fall-back day). Note the list case: `30 2,14 * * *` does *not* run at 02:30 on a
//!   spring-forward day, and runs twice at 02:30 on a fall-back day.
//!
//! # Bounded work
//!
//! [`due_fire_times`] walks backwards from `now`, newest first, and stops as soon as it
//! has the on-time fire times plus the catch-up runs the [`MissedRuns`] policy allows, so
//! a week of downtime of an every-second schedule costs a handful of searches, not
//! millions. Croner jumps field by field, so one search is cheap whatever the gap.

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::domain::Invalid;

const CRON_FIELD: &str = "schedule.cron";
const TIMEZONE_FIELD: &str = "schedule.timezone";

/// What a valid expression looks like; ends every cron error so the user can fix it.
const CRON_HELP: &str = "expected 5 fields `minute hour day-of-month month day-of-week` \
     (e.g. \"30 2 * * *\"), 6 fields with leading seconds (e.g. \"*/10 * * * * *\"), or one \
     of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly";

/// The aliases, expanded here rather than by croner because croner lacks `@midnight`.
const ALIASES: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Most fire times one tick returns as on time, and most catch-up runs it returns:
/// a ceiling on the work of one tick even with a huge `grace` or `cap`.
pub const MAX_DUE_PER_TICK: usize = 10_000;

/// A parsed cron expression in an IANA time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    expression: String,
    timezone: Tz,
    cron: Cron,
}

impl CronSchedule {
    /// 5-field (minute precision) and 6-field (leading seconds) expressions, and the
    /// aliases @yearly @annually @monthly @weekly @daily @midnight @hourly; `timezone` is
    /// an IANA name ("UTC", "Europe/Paris"). Day-of-month and day-of-week combine with OR,
    /// as in Vixie cron. An expression that never fires (`0 0 30 2 *`) is rejected.
    pub fn parse(cron: &str, timezone: &str) -> Result<Self, Invalid> {
        let expression = cron.trim();
        let parsed = parse_expression(expression)?;
        let schedule = Self {
            expression: expression.to_owned(),
            timezone: parse_timezone(timezone)?,
            cron: parsed,
        };
        // The calendar repeats, so an expression that fires at all fires after 1970;
        // one that does not names no real date, and its bot would silently never run.
        if schedule.next_after(DateTime::UNIX_EPOCH).is_none() {
            return Err(invalid_cron(format!(
                "{expression:?} never fires: it names no real date (such as 30 February)"
            )));
        }
        Ok(schedule)
    }

    /// The expression as given (trimmed), for showing back to the user.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA name of the schedule's time zone.
    pub fn timezone(&self) -> &'static str {
        self.timezone.name()
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.timezone);
        let next = self.cron.find_next_occurrence(&local, false).ok()?;
        Some(next.with_timezone(&Utc)).filter(|next| *next > after)
    }

    /// The next `n` fire times strictly after `after` (for showing in the API).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(self.next_after(after), |t| self.next_after(*t))
            .take(n)
            .collect()
    }

    /// Fire times at or before `now`, newest first.
    fn newest_first(&self, now: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Only the first search is inclusive: croner drops sub-second parts, so an
        // exclusive search from `now` = 12:00:00.5 would miss a 12:00:00 fire time, while
        // later searches start from fire times, which are whole seconds.
        let latest = self.previous(now, true).filter(|t| *t <= now);
        std::iter::successors(latest, |t| self.previous(*t, false).filter(|p| p < t))
    }

    fn previous(&self, at: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let local = at.with_timezone(&self.timezone);
        let previous = self.cron.find_previous_occurrence(&local, inclusive).ok()?;
        Some(previous.with_timezone(&Utc))
    }
}

fn parse_expression(expression: &str) -> Result<Cron, Invalid> {
    let expanded = expand_alias(expression)?;
    // Croner also takes a 7th (year) field; codex32 promises 5 or 6, so say so here.
    let fields = expanded.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(invalid_cron(format!("{expression:?} has {fields} fields")));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expanded)
        .map_err(|e| {
            invalid_cron(format!(
                "{expression:?} is not a valid cron expression ({e})"
            ))
        })
}

fn expand_alias(expression: &str) -> Result<&str, Invalid> {
    if !expression.starts_with('@') {
        return Ok(expression);
    }
    ALIASES
        .iter()
        .find(|(alias, _)| alias.eq_ignore_ascii_case(expression))
        .map(|(_, expanded)| *expanded)
        .ok_or_else(|| invalid_cron(format!("unknown alias {expression:?}")))
}

fn parse_timezone(timezone: &str) -> Result<Tz, Invalid> {
    Tz::from_str(timezone.trim()).map_err(|_| {
        Invalid::new(
            TIMEZONE_FIELD,
            format!(
                "unknown time zone {timezone:?}; expected an IANA name such as \"UTC\", \
                 \"Europe/Paris\" or \"America/New_York\""
            ),
        )
    })
}

fn invalid_cron(what: String) -> Invalid {
    Invalid::new(CRON_FIELD, format!("{what}; {CRON_HELP}"))
}

/// What to do with fire times missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedRuns {
    /// Drop missed fire times; only on-time ones run.
    Skip,
    /// One catch-up run for all the missed fire times, at the latest of them, besides any
    /// on-time run: a scheduler that was down owes the missed work one run.
    RunOnce,
    /// Run the newest `cap` missed fire times, oldest first, before the on-time ones.
    RunAll { cap: usize },
}

impl MissedRuns {
    /// How many missed fire times to run.
    fn catch_up_runs(self) -> usize {
        match self {
            MissedRuns::Skip => 0,
            MissedRuns::RunOnce => 1,
            MissedRuns::RunAll { cap } => cap.min(MAX_DUE_PER_TICK),
        }
    }
}

/// The fire times to create executions for now, in ascending order.
///
/// The window is every fire time in `(from, now]`, where `from` is `last_fired`, or
/// `created_at` for a new schedule (`last_fired: None`). A fire time within `grace` of
/// `now` (`now - grace <= t`) is **on time** and is returned under every policy; an
/// on-time tick of an every-second schedule with a 2 s grace returns its one new time (or
/// two, if the tick came late). Older ones are **missed** and handled by `missed`:
/// [`MissedRuns::Skip`] returns none of them, [`MissedRuns::RunOnce`] the latest one, [`MissedRuns::RunAll`] the newest `cap` of them (`cap`
/// bounds the catch-up runs, not the on-time ones).
///
/// Never returns a time `<= from` or `> now`. The caller records the newest returned time
/// as `last_fired` (and leaves it when nothing is returned: missed times stay missed, as
/// being missed depends only on `now`). Work is bounded by the number of times returned
/// (see the module docs), and each group by [`MAX_DUE_PER_TICK`].
pub fn due_fire_times(
    s: &CronSchedule,
    last_fired: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    missed: MissedRuns,
    grace: Duration,
) -> Vec<DateTime<Utc>> {
    let from = last_fired.unwrap_or(created_at);
    let on_time_since = now
        .checked_sub_signed(grace.max(Duration::zero()))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut window = s.newest_first(now).take_while(|t| *t > from).peekable();
    let mut due: Vec<_> = std::iter::from_fn(|| window.next_if(|t| *t >= on_time_since))
        .take(MAX_DUE_PER_TICK)
        .collect();
    let catch_up = missed.catch_up_runs();
    due.extend(window.take(catch_up));
    due.reverse();
    due
}

#[cfg(test)]
mod tests;
