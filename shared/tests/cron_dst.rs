//! Cron schedules across daylight saving transitions, with a fixed clock.
//!
//! 2026 transitions: Europe/Paris springs forward on Sun 29 Mar (02:00 CET → 03:00 CEST)
//! and falls back on Sun 25 Oct (03:00 CEST → 02:00 CET); America/New_York springs
//! forward on Sun 8 Mar (02:00 EST → 03:00 EDT) and falls back on Sun 1 Nov
//! (02:00 EDT → 01:00 EST). Paris is UTC+1 in winter and UTC+2 in summer; New York is
//! UTC-5 in winter and UTC-4 in summer. Every expected instant below is written in UTC.

use chrono::{DateTime, Duration, TimeZone, Utc};
use codex32_shared::cron::{CronSchedule, MissedRuns, due_fire_times};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// Every fire time in `[from, to)`.
fn fires(cron: &str, timezone: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let s = CronSchedule::parse(cron, timezone).unwrap();
    let first = s.next_after(from - Duration::seconds(1));
    std::iter::successors(first, |t| s.next_after(*t))
        .take_while(|t| *t < to)
        .collect()
}

/// The three days around a transition day, from the UTC midnight before the first.
fn three_days(y: i32, mo: u32, d: u32) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = utc(y, mo, d, 0, 0) - Duration::days(1);
    (start, start + Duration::days(3))
}

#[test]
fn a_paris_0230_job_runs_at_0300_on_the_spring_forward_day_and_once_on_the_fall_back_day() {
    let (from, to) = three_days(2026, 3, 29);
    let spring = [
        utc(2026, 3, 28, 1, 30), // 02:30 CET
        utc(2026, 3, 29, 1, 0),  // 02:30 does not exist: 03:00 CEST, just after the gap
        utc(2026, 3, 30, 0, 30), // 02:30 CEST
    ];
    assert_eq!(fires("30 2 * * *", "Europe/Paris", from, to), spring);

    let (from, to) = three_days(2026, 10, 25);
    let fall = [
        utc(2026, 10, 24, 0, 30), // 02:30 CEST
        utc(2026, 10, 25, 0, 30), // the first 02:30 (CEST); not again at 01:30 UTC (CET)
        utc(2026, 10, 26, 1, 30), // 02:30 CET
    ];
    assert_eq!(fires("30 2 * * *", "Europe/Paris", from, to), fall);
}

#[test]
fn a_new_york_0230_job_runs_at_0300_on_the_spring_forward_day_and_once_on_the_fall_back_day() {
    let (from, to) = three_days(2026, 3, 8);
    let spring = [
        utc(2026, 3, 7, 7, 30), // 02:30 EST
        utc(2026, 3, 8, 7, 0),  // 02:30 does not exist: 03:00 EDT, just after the gap
        utc(2026, 3, 9, 6, 30), // 02:30 EDT
    ];
    assert_eq!(fires("30 2 * * *", "America/New_York", from, to), spring);

    // 02:30 is not in New York's repeated hour (01:00-02:00), so nothing special happens.
    let (from, to) = three_days(2026, 11, 1);
    let fall = [
        utc(2026, 10, 31, 6, 30), // 02:30 EDT
        utc(2026, 11, 1, 7, 30),  // 02:30 EST
        utc(2026, 11, 2, 7, 30),  // 02:30 EST
    ];
    assert_eq!(fires("30 2 * * *", "America/New_York", from, to), fall);
}

#[test]
fn a_new_york_0130_job_runs_once_on_the_fall_back_day_at_the_first_0130() {
    let (from, to) = three_days(2026, 11, 1);
    let fall = [
        utc(2026, 10, 31, 5, 30), // 01:30 EDT
        utc(2026, 11, 1, 5, 30),  // the first 01:30 (EDT); not again at 06:30 UTC (EST)
        utc(2026, 11, 2, 6, 30),  // 01:30 EST
    ];
    assert_eq!(fires("30 1 * * *", "America/New_York", from, to), fall);
}

#[test]
fn an_hourly_job_runs_once_per_real_hour_across_both_transitions() {
    // Once per real hour: 24 fires in any 24 real hours, which is 23 on the short local
    // day and 25 on the long one.
    let cases = [
        (
            "Europe/Paris",
            utc(2026, 3, 28, 23, 0),
            23,
            utc(2026, 10, 24, 22, 0),
            25,
        ),
        (
            "America/New_York",
            utc(2026, 3, 8, 5, 0),
            23,
            utc(2026, 11, 1, 4, 0),
            25,
        ),
    ];
    for (zone, spring_midnight, spring_count, fall_midnight, fall_count) in cases {
        for (midnight, local_day) in [(spring_midnight, spring_count), (fall_midnight, fall_count)]
        {
            let next_midnight = midnight + Duration::hours(local_day);
            let day = fires("@hourly", zone, midnight, next_midnight);
            assert_eq!(day.len(), local_day as usize, "{zone} from {midnight}");
            assert!(
                day.windows(2).all(|w| w[1] - w[0] == Duration::hours(1)),
                "{zone}"
            );
            let around = fires(
                "@hourly",
                zone,
                midnight - Duration::hours(6),
                midnight + Duration::hours(18),
            );
            assert_eq!(around.len(), 24, "{zone} around {midnight}");
        }
    }
}

#[test]
fn an_every_15_minutes_job_keeps_firing_every_15_real_minutes_through_the_repeated_hour() {
    let midnight = utc(2026, 10, 24, 22, 0); // 25 Oct 00:00 CEST
    let day = fires(
        "*/15 * * * *",
        "Europe/Paris",
        midnight,
        midnight + Duration::hours(25),
    );
    assert_eq!(day.len(), 100);
    assert!(day.windows(2).all(|w| w[1] - w[0] == Duration::minutes(15)));
}

#[test]
fn a_listed_hour_makes_an_interval_job_that_skips_a_missing_time_and_repeats_a_doubled_one() {
    // Documented limitation of croner's rule: only single-valued hours are fixed-time.
    let (from, to) = (utc(2026, 3, 28, 23, 0), utc(2026, 3, 29, 22, 0));
    let spring = fires("30 2,14 * * *", "Europe/Paris", from, to);
    assert_eq!(spring, [utc(2026, 3, 29, 12, 30)]);
    let (from, to) = (utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 23, 0));
    let fall = fires("30 2,14 * * *", "Europe/Paris", from, to);
    assert_eq!(
        fall,
        [
            utc(2026, 10, 25, 0, 30),
            utc(2026, 10, 25, 1, 30),
            utc(2026, 10, 25, 13, 30)
        ]
    );
}

/// A `last_fired` just before `from`, so a fire time at `from` is due.
fn last_fired_at_start(from: DateTime<Utc>) -> DateTime<Utc> {
    from - Duration::seconds(1)
}

#[test]
fn a_scheduler_ticking_through_each_transition_day_fires_exactly_what_the_forward_walk_finds() {
    // due_fire_times walks backwards from `now`; across a transition it must agree with
    // the forward walk, once and only once per fire time.
    let cases = [
        ("30 2 * * *", "Europe/Paris", three_days(2026, 3, 29)),
        ("30 2 * * *", "Europe/Paris", three_days(2026, 10, 25)),
        ("30 2 * * *", "America/New_York", three_days(2026, 3, 8)),
        ("30 1 * * *", "America/New_York", three_days(2026, 11, 1)),
        ("*/15 * * * *", "Europe/Paris", three_days(2026, 10, 25)),
        ("@hourly", "America/New_York", three_days(2026, 11, 1)),
    ];
    for (cron, zone, (from, to)) in cases {
        let s = CronSchedule::parse(cron, zone).unwrap();
        let mut last_fired = last_fired_at_start(from);
        let mut fired = Vec::new();
        // A tick every 5 minutes, each a little after the minute, as a real one would be.
        let mut now = from + Duration::milliseconds(300);
        while now < to {
            let due = due_fire_times(
                &s,
                Some(last_fired),
                from,
                now,
                MissedRuns::Skip,
                Duration::seconds(2),
            );
            last_fired = due.last().copied().unwrap_or(last_fired);
            fired.extend(due);
            now += Duration::minutes(5);
        }
        assert_eq!(fired, fires(cron, zone, from, to), "{cron} in {zone}");
        let before_to = to - Duration::seconds(1);
        let run_all = MissedRuns::RunAll { cap: 1000 };
        let all = due_fire_times(
            &s,
            Some(last_fired_at_start(from)),
            from,
            before_to,
            run_all,
            Duration::zero(),
        );
        assert_eq!(
            all,
            fires(cron, zone, from, to),
            "{cron} in {zone}, all at once"
        );
    }
}
