//! Freeze windows on their own: when each is open, in its time zone, at the edges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_crds::{Actor, FreezeWindow};
use custody_engine::CompiledFreeze;
use jiff::Timestamp;

fn recurring(schedule: &str, duration: &str, tz: &str) -> FreezeWindow {
    FreezeWindow {
        name: "w".into(),
        schedule: Some(schedule.into()),
        duration: Some(duration.into()),
        time_zone: tz.into(),
        actors: vec![Actor::Agent],
        ..FreezeWindow::default()
    }
}

fn once(start: &str, end: &str, tz: &str) -> FreezeWindow {
    FreezeWindow {
        name: "w".into(),
        start: Some(start.into()),
        end: Some(end.into()),
        time_zone: tz.into(),
        actors: vec![Actor::Agent],
        ..FreezeWindow::default()
    }
}

fn compile(window: &FreezeWindow) -> CompiledFreeze {
    let mut problems = Vec::new();
    let compiled = CompiledFreeze::compile(0, window, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    compiled.unwrap()
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// (instant, when the window closes if it is open then)
fn check(window: &FreezeWindow, cases: &[(&str, Option<&str>)]) {
    let compiled = compile(window);
    // Twice, in order and in reverse, so a remembered answer is never reused outside the
    // interval it holds for.
    for pass in 0..2 {
        let order: Vec<&(&str, Option<&str>)> = if pass == 0 {
            cases.iter().collect()
        } else {
            cases.iter().rev().collect()
        };
        for (now, closes) in order {
            assert_eq!(
                compiled.closes_after(at(now)),
                closes.map(at),
                "{:?} at {now} (pass {pass})",
                window.schedule.as_ref().or(window.start.as_ref())
            );
        }
    }
}

#[test]
fn a_weekend_freeze_is_open_from_its_first_instant_to_just_before_its_last() {
    // Friday 18:00 Berlin for 62 hours: to Monday 08:00. December: CET, UTC+1.
    let w = recurring("0 18 * * FRI", "62h", "Europe/Berlin");
    check(
        &w,
        &[
            ("2026-12-04T16:59:59Z", None),
            ("2026-12-04T17:00:00Z", Some("2026-12-07T07:00:00Z")),
            ("2026-12-05T12:00:00Z", Some("2026-12-07T07:00:00Z")),
            ("2026-12-07T06:59:59Z", Some("2026-12-07T07:00:00Z")),
            ("2026-12-07T07:00:00Z", None),
            ("2026-12-09T12:00:00Z", None),
            ("2026-12-11T17:00:00Z", Some("2026-12-14T07:00:00Z")),
        ],
    );
}

#[test]
fn a_nightly_window_crosses_midnight() {
    let w = recurring("0 22 * * *", "4h", "America/New_York");
    // 22:00 EST is 03:00Z the next day; the window ends 02:00 local, 07:00Z.
    check(
        &w,
        &[
            ("2026-12-03T02:59:59Z", None),
            ("2026-12-03T03:00:00Z", Some("2026-12-03T07:00:00Z")),
            ("2026-12-03T05:00:00Z", Some("2026-12-03T07:00:00Z")),
            ("2026-12-03T07:00:00Z", None),
        ],
    );
}

#[test]
fn days_are_calendar_days_across_a_dst_change() {
    // Berlin moves to CEST on 2026-03-29 at 02:00: that day has 23 hours. A one-day window
    // from midnight ends at the next midnight, 23 hours later.
    let w = recurring("0 0 * * SUN", "1d", "Europe/Berlin");
    check(
        &w,
        &[
            ("2026-03-28T22:59:59Z", None),
            ("2026-03-28T23:00:00Z", Some("2026-03-29T22:00:00Z")),
            ("2026-03-29T21:59:59Z", Some("2026-03-29T22:00:00Z")),
            ("2026-03-29T22:00:00Z", None),
        ],
    );
    // In hours, the same window lasts 24 real hours and so ends at 01:00 local.
    let w = recurring("0 0 * * SUN", "24h", "Europe/Berlin");
    check(
        &w,
        &[
            ("2026-03-29T22:00:00Z", Some("2026-03-29T23:00:00Z")),
            ("2026-03-29T23:00:00Z", None),
        ],
    );
}

#[test]
fn a_schedule_in_the_skipped_hour_of_spring_forward_still_opens() {
    // 02:30 does not exist in Berlin on 2026-03-29.
    let w = recurring("30 2 * * *", "1h", "Europe/Berlin");
    let compiled = compile(&w);
    // On the days around it, 02:30 local opens the window as usual.
    assert_eq!(
        compiled.closes_after(at("2026-03-28T01:30:00Z")),
        Some(at("2026-03-28T02:30:00Z"))
    );
    assert_eq!(
        compiled.closes_after(at("2026-03-30T00:30:00Z")),
        Some(at("2026-03-30T01:30:00Z"))
    );
}

#[test]
fn overlapping_openings_count_as_one_window() {
    // Every day at 09:00 for 36 hours: always open once started, and the end is the end of the
    // chain, capped but far away.
    let w = recurring("0 9 * * MON-FRI", "36h", "UTC");
    check(
        &w,
        &[
            ("2026-12-07T08:59:59Z", None),
            // Monday 09:00 to Saturday 21:00 (Friday's opening + 36h).
            ("2026-12-07T09:00:00Z", Some("2026-12-12T21:00:00Z")),
            ("2026-12-10T09:00:00Z", Some("2026-12-12T21:00:00Z")),
            ("2026-12-12T21:00:00Z", None),
        ],
    );
}

#[test]
fn a_one_off_window_in_its_zone_or_with_an_offset() {
    check(
        &once(
            "2026-12-24T00:00:00",
            "2026-12-27T00:00:00",
            "Europe/Berlin",
        ),
        &[
            ("2026-12-23T22:59:59Z", None),
            ("2026-12-23T23:00:00Z", Some("2026-12-26T23:00:00Z")),
            ("2026-12-26T22:59:59Z", Some("2026-12-26T23:00:00Z")),
            ("2026-12-26T23:00:00Z", None),
        ],
    );
    check(
        &once(
            "2026-12-24T00:00:00Z",
            "2026-12-24T02:00:00+01:00",
            "Asia/Tokyo",
        ),
        &[
            ("2026-12-23T23:59:59Z", None),
            ("2026-12-24T00:00:00Z", Some("2026-12-24T01:00:00Z")),
            ("2026-12-24T01:00:00Z", None),
        ],
    );
}

#[test]
fn bad_windows_are_refused_with_the_field() {
    let cases: Vec<(FreezeWindow, &str)> = vec![
        (
            recurring("0 18 * * 5", "62h", "UTC"),
            "write days of the week by name",
        ),
        (recurring("0 18 * *", "1h", "UTC"), "must have five fields"),
        (
            recurring("0 61 * * *", "1h", "UTC"),
            "is not a cron expression",
        ),
        (
            recurring("0 18 * * FRI", "soon", "UTC"),
            "is not a duration",
        ),
        (recurring("0 18 * * FRI", "0h", "UTC"), "must be positive"),
        (recurring("0 18 * * FRI", "-2h", "UTC"), "must be positive"),
        (
            recurring("0 18 * * FRI", "2h", "Mars/Olympus"),
            "is not an IANA time zone",
        ),
        (
            once("2026-12-27T00:00:00", "2026-12-24T00:00:00", "UTC"),
            "is not after start",
        ),
        (
            once("Christmas", "2026-12-24T00:00:00", "UTC"),
            ".start \"Christmas\"",
        ),
        (
            FreezeWindow {
                name: "w".into(),
                schedule: Some("0 18 * * FRI".into()),
                start: Some("2026-12-24T00:00:00".into()),
                time_zone: "UTC".into(),
                actors: vec![Actor::Agent],
                ..FreezeWindow::default()
            },
            "give either schedule and duration",
        ),
        (
            FreezeWindow {
                actors: vec![],
                ..recurring("0 18 * * FRI", "2h", "UTC")
            },
            "binds no one",
        ),
    ];
    for (window, expected) in cases {
        let mut problems = Vec::new();
        assert!(CompiledFreeze::compile(3, &window, &mut problems).is_none());
        let text = problems.join("; ");
        assert!(text.contains(expected), "{expected:?} not in {text:?}");
        assert!(text.contains("spec.freezes[3]"), "{text}");
    }
}
