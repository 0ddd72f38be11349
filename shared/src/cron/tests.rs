//! Unit tests of cron parsing and due fire times, with fixed clocks.
use chrono::TimeZone;

use super::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn schedule(cron: &str) -> CronSchedule {
    CronSchedule::parse(cron, "UTC").unwrap()
}

/// Every policy, so a rule meant for all of them is checked against all of them.
const POLICIES: [MissedRuns; 3] = [
    MissedRuns::Skip,
    MissedRuns::RunOnce,
    MissedRuns::RunAll { cap: 5 },
];

const NONE: Vec<DateTime<Utc>> = Vec::new();

/// `due_fire_times` after `last_fired` (`created_at` then plays no part), with the
/// 2 s grace of a busy scheduler.
fn due_after(
    s: &CronSchedule,
    last_fired: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: MissedRuns,
) -> Vec<DateTime<Utc>> {
    let created_at = last_fired - Duration::days(365);
    due_fire_times(
        s,
        Some(last_fired),
        created_at,
        now,
        policy,
        Duration::seconds(2),
    )
}

/// Whole seconds `from..=to` of 12:00, the fire times of an every-second schedule.
fn seconds(from: u32, to: u32) -> Vec<DateTime<Utc>> {
    (from..=to).map(|s| utc(2026, 1, 5, 12, 0, s)).collect()
}

#[test]
fn five_and_six_field_expressions_and_every_alias_parse() {
    let noon = utc(2026, 1, 5, 12, 0, 0);
    let cases = [
        ("30 2 * * *", utc(2026, 1, 6, 2, 30, 0)),
        ("*/10 * * * * *", utc(2026, 1, 5, 12, 0, 10)),
        ("@yearly", utc(2027, 1, 1, 0, 0, 0)),
        ("@ANNUALLY", utc(2027, 1, 1, 0, 0, 0)),
        ("@monthly", utc(2026, 2, 1, 0, 0, 0)),
        ("@weekly", utc(2026, 1, 11, 0, 0, 0)), // the next Sunday
        ("@daily", utc(2026, 1, 6, 0, 0, 0)),
        ("@midnight", utc(2026, 1, 6, 0, 0, 0)),
        ("@hourly", utc(2026, 1, 5, 13, 0, 0)),
    ];
    for (cron, next) in cases {
        assert_eq!(schedule(cron).next_after(noon), Some(next), "{cron}");
    }
}

#[test]
fn a_bad_expression_is_invalid_on_the_cron_field_with_an_example() {
    let bad = [
        "",
        "61 * * * *",
        "* * *",
        "0 0 0 1 1 * 2030",
        "@reboot",
        "0 0 30 2 *",
    ];
    for cron in bad {
        let err = CronSchedule::parse(cron, "UTC").unwrap_err();
        assert_eq!(err.field, "schedule.cron", "{cron:?}");
        assert!(
            err.message.contains("\"30 2 * * *\""),
            "{cron:?}: {}",
            err.message
        );
    }
    let err = CronSchedule::parse("0 0 30 2 *", "UTC").unwrap_err();
    assert!(err.message.contains("never fires"), "{}", err.message);
}

#[test]
fn an_unknown_time_zone_is_invalid_on_the_timezone_field() {
    let err = CronSchedule::parse("0 9 * * *", "Europe/Pariss").unwrap_err();
    assert_eq!(err.field, "schedule.timezone");
    assert!(err.message.contains("\"Europe/Pariss\""), "{}", err.message);
    assert!(err.message.contains("Europe/Paris\""), "{}", err.message);
}

#[test]
fn next_after_a_fire_time_is_the_following_one() {
    let s = schedule("0 * * * *");
    assert_eq!(
        s.next_after(utc(2026, 1, 5, 12, 0, 0)),
        Some(utc(2026, 1, 5, 13, 0, 0))
    );
    let just_after = utc(2026, 1, 5, 12, 0, 0) + Duration::milliseconds(500);
    assert_eq!(s.next_after(just_after), Some(utc(2026, 1, 5, 13, 0, 0)));
}

#[test]
fn upcoming_gives_n_increasing_times() {
    let times = schedule("*/15 * * * *").upcoming(utc(2026, 1, 5, 12, 7, 0), 5);
    let at = |h, m| utc(2026, 1, 5, h, m, 0);
    let expected = vec![at(12, 15), at(12, 30), at(12, 45), at(13, 0), at(13, 15)];
    assert_eq!(times, expected);
}

#[test]
fn an_on_time_tick_returns_its_one_fire_time_under_every_policy() {
    let s = schedule("0 * * * *");
    let now = utc(2026, 1, 5, 13, 0, 0) + Duration::milliseconds(300);
    for policy in POLICIES {
        let due = due_after(&s, utc(2026, 1, 5, 12, 0, 0), now, policy);
        assert_eq!(due, vec![utc(2026, 1, 5, 13, 0, 0)], "{policy:?}");
    }
}

#[test]
fn ticks_of_an_every_second_schedule_return_each_second_exactly_once() {
    let s = schedule("* * * * * *");
    for policy in POLICIES {
        let mut last_fired = utc(2026, 1, 5, 12, 0, 0);
        let mut fired = Vec::new();
        // A tick every 300 ms, and one 900 ms late, as a busy scheduler's would be.
        for ms in (1..=30).map(|i| 300 * i + if i > 16 { 900 } else { 0 }) {
            let now = utc(2026, 1, 5, 12, 0, 0) + Duration::milliseconds(ms);
            let due = due_after(&s, last_fired, now, policy);
            last_fired = due.last().copied().unwrap_or(last_fired);
            fired.extend(due);
        }
        assert_eq!(fired, seconds(1, 9), "{policy:?}");
    }
}

#[test]
fn after_a_long_downtime_skip_runs_only_an_on_time_fire_time() {
    let s = schedule("0 * * * *");
    let last = utc(2026, 1, 1, 0, 0, 0);
    let between_fires = utc(2026, 1, 5, 12, 30, 0);
    assert_eq!(due_after(&s, last, between_fires, MissedRuns::Skip), NONE);
    let on_time = utc(2026, 1, 5, 13, 0, 1);
    let due = due_after(&s, last, on_time, MissedRuns::Skip);
    assert_eq!(due, vec![utc(2026, 1, 5, 13, 0, 0)]);
}

#[test]
fn after_a_long_downtime_run_once_runs_one_catch_up_at_the_latest_missed_time() {
    let s = schedule("0 * * * *");
    let last = utc(2026, 1, 1, 0, 0, 0);
    let due = due_after(&s, last, utc(2026, 1, 5, 12, 30, 0), MissedRuns::RunOnce);
    assert_eq!(due, vec![utc(2026, 1, 5, 12, 0, 0)]);
    // With an on-time run on the same tick, the catch-up comes first, then the on-time one.
    let due = due_after(&s, last, utc(2026, 1, 5, 13, 0, 1), MissedRuns::RunOnce);
    assert_eq!(
        due,
        vec![utc(2026, 1, 5, 12, 0, 0), utc(2026, 1, 5, 13, 0, 0)]
    );
}

#[test]
fn after_a_long_downtime_run_all_runs_the_newest_cap_missed_times_oldest_first() {
    let s = schedule("0 * * * *");
    let at = |h| utc(2026, 1, 5, h, 0, 0);
    let now = utc(2026, 1, 5, 13, 0, 1);
    let due = due_after(
        &s,
        utc(2026, 1, 1, 0, 0, 0),
        now,
        MissedRuns::RunAll { cap: 3 },
    );
    assert_eq!(due, vec![at(10), at(11), at(12), at(13)]);
    let due = due_after(&s, at(10), now, MissedRuns::RunAll { cap: 100 });
    assert_eq!(due, vec![at(11), at(12), at(13)]);
}

#[test]
fn an_every_second_schedule_after_30_s_of_downtime_follows_each_policy() {
    let s = schedule("* * * * * *");
    let now = utc(2026, 1, 5, 12, 0, 30) + Duration::milliseconds(400);
    let due = |policy| due_after(&s, utc(2026, 1, 5, 12, 0, 0), now, policy);
    // 12:00:29 and 12:00:30 are within the 2 s grace of 12:00:30.4: on time.
    assert_eq!(due(MissedRuns::Skip), seconds(29, 30));
    assert_eq!(due(MissedRuns::RunOnce), seconds(28, 30));
    assert_eq!(due(MissedRuns::RunAll { cap: 5 }), seconds(24, 30));
    assert_eq!(due(MissedRuns::RunAll { cap: 1000 }), seconds(1, 30));
}

#[test]
fn a_week_of_downtime_of_an_every_second_schedule_walks_only_what_it_returns() {
    let s = schedule("* * * * * *");
    let now = utc(2026, 1, 12, 12, 0, 0);
    let due = due_after(
        &s,
        utc(2026, 1, 5, 12, 0, 0),
        now,
        MissedRuns::RunAll { cap: 2 },
    );
    let at = |s| utc(2026, 1, 12, 11, 59, s);
    assert_eq!(due, vec![at(56), at(57), at(58), at(59), now]);
}

#[test]
fn last_fired_and_times_after_now_are_never_returned() {
    let s = schedule("* * * * * *");
    let now = utc(2026, 1, 5, 12, 0, 1);
    for policy in POLICIES {
        assert_eq!(due_after(&s, now, now, policy), NONE, "{policy:?}");
        let due = due_after(&s, utc(2026, 1, 5, 12, 0, 0), now, policy);
        assert_eq!(due, vec![now], "{policy:?}");
    }
}

#[test]
fn a_new_schedule_starts_from_created_at() {
    let s = schedule("0 * * * *");
    let created_at = utc(2026, 1, 5, 12, 0, 0) + Duration::milliseconds(1);
    let due = |now| {
        let run_all = MissedRuns::RunAll { cap: 10 };
        due_fire_times(&s, None, created_at, now, run_all, Duration::seconds(2))
    };
    assert_eq!(due(utc(2026, 1, 5, 12, 59, 59)), NONE);
    assert_eq!(
        due(utc(2026, 1, 5, 13, 0, 0)),
        vec![utc(2026, 1, 5, 13, 0, 0)]
    );
}
