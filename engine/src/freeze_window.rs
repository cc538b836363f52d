//! Change freeze windows: compiled once per policy load, asked "open at this instant?" per
//! request.
//!
//! Time is an input (`Context::now`), so tests choose it. A recurring window's answer holds
//! for a whole interval (until it opens, or until it closes), so it is remembered with that
//! interval and a request pays for cron arithmetic only when the interval has passed.

use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use custody_crds::{Actor, FreezeWindow};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned, civil};
use jiff_cron::Schedule;

/// How many back-to-back openings are merged into one when telling when a freeze ends: a
/// schedule whose openings overlap forever still gets an answer.
const MAX_CHAINED_OPENINGS: usize = 1_000;

/// A freeze window ready to evaluate.
#[derive(Clone, Debug)]
pub struct CompiledFreeze {
    /// The window as written.
    pub window: FreezeWindow,
    /// Its time zone.
    pub tz: TimeZone,
    when: When,
    memo: Arc<Memo>,
}

#[derive(Clone, Debug)]
enum When {
    Recurring {
        schedule: Box<Schedule>,
        length: Span,
    },
    Once {
        start: Timestamp,
        end: Timestamp,
    },
}

/// The last answer of a recurring window and the interval it holds for.
#[derive(Debug, Default)]
struct Memo(ArcSwapOption<Known>);

#[derive(Debug)]
struct Known {
    /// The answer holds for instants in `[from, until)`.
    from: Timestamp,
    until: Timestamp,
    /// When open: the instant it closes.
    closes: Option<Timestamp>,
}

impl CompiledFreeze {
    /// Checks and compiles `spec.freezes[index]`; problems name the field.
    pub fn compile(
        index: usize,
        window: &FreezeWindow,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let at = format!("spec.freezes[{index}] ({:?})", window.name);
        let before = problems.len();
        if window.name.trim().is_empty() {
            problems.push(format!("spec.freezes[{index}].name is empty"));
        }
        if window.actors.is_empty() {
            problems.push(format!(
                "{at}.actors is empty, so the window binds no one; remove the window or name the actors (agent, automation, human)"
            ));
        }
        let tz = match TimeZone::get(&window.time_zone) {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push(format!(
                    "{at}.timeZone {:?} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)",
                    window.time_zone
                ));
                None
            }
        };
        let when = match (
            &window.schedule,
            &window.duration,
            &window.start,
            &window.end,
        ) {
            (Some(schedule), Some(duration), None, None) => {
                let schedule = parse_schedule(&at, schedule, problems);
                let length = parse_length(&at, duration, problems);
                schedule
                    .zip(length)
                    .map(|(schedule, length)| When::Recurring {
                        schedule: Box::new(schedule),
                        length,
                    })
            }
            (None, None, Some(start), Some(end)) => tz.as_ref().and_then(|tz| {
                let start = parse_instant(&at, "start", start, tz, problems)?;
                let end = parse_instant(&at, "end", end, tz, problems)?;
                if end <= start {
                    problems.push(format!("{at}: end {end} is not after start {start}"));
                    return None;
                }
                Some(When::Once { start, end })
            }),
            _ => {
                problems.push(format!(
                    "{at}: give either schedule and duration (a recurring window) or start and end (a one-off window)"
                ));
                None
            }
        };
        if problems.len() > before {
            return None;
        }
        Some(Self {
            window: window.clone(),
            tz: tz?,
            when: when?,
            memo: Arc::default(),
        })
    }

    /// Whether the window binds `actor`.
    pub fn binds(&self, actor: Actor) -> bool {
        self.window.actors.contains(&actor)
    }

    /// When the window is open at `now`: the instant it closes (openings that overlap or
    /// touch count as one). A window is open at the instant it opens and closed at the instant
    /// it closes.
    pub fn closes_after(&self, now: Timestamp) -> Option<Timestamp> {
        match &self.when {
            When::Once { start, end } => (*start <= now && now < *end).then_some(*end),
            When::Recurring { schedule, length } => {
                if let Some(known) = self.memo.0.load().as_ref()
                    && known.from <= now
                    && now < known.until
                {
                    return known.closes;
                }
                let known = recurring(schedule, length, &self.tz, now);
                let closes = known.closes;
                self.memo.0.store(Some(Arc::new(known)));
                closes
            }
        }
    }
}

/// Works out a recurring window at `now`, and for how long the answer holds.
fn recurring(schedule: &Schedule, length: &Span, tz: &TimeZone, now: Timestamp) -> Known {
    let here = now.to_zoned(tz.clone());
    let end_of = |start: &Zoned| {
        start
            .checked_add(*length)
            .map(|z| z.timestamp())
            .unwrap_or(Timestamp::MAX)
    };
    // The iterator walks back from strictly before its anchor; anchor one second later so an
    // opening at `now` itself counts.
    let anchor = here
        .checked_add(Span::new().seconds(1))
        .unwrap_or_else(|_| here.clone());
    let latest = schedule.after(anchor).next_back();
    let next = || {
        schedule
            .after(here.clone())
            .next()
            .map_or(Timestamp::MAX, |z| z.timestamp())
    };
    match latest {
        Some(opened) if now < end_of(&opened) => {
            let mut closes = end_of(&opened);
            for later in schedule.after(opened.clone()).take(MAX_CHAINED_OPENINGS) {
                if later.timestamp() > closes {
                    break;
                }
                closes = closes.max(end_of(&later));
            }
            Known {
                from: opened.timestamp(),
                until: closes,
                closes: Some(closes),
            }
        }
        Some(opened) => Known {
            from: end_of(&opened),
            until: next(),
            closes: None,
        },
        None => Known {
            from: Timestamp::MIN,
            until: next(),
            closes: None,
        },
    }
}

fn parse_schedule(at: &str, expression: &str, problems: &mut Vec<String>) -> Option<Schedule> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    // Five fields is the crontab (and CronJob) form; the parser wants seconds first.
    let (full, day_of_week) = match fields.len() {
        5 => (format!("0 {}", fields.join(" ")), fields[4]),
        6 | 7 => (fields.join(" "), fields[5]),
        _ => {
            problems.push(format!(
                "{at}.schedule {expression:?} must have five fields (minute hour day-of-month month day-of-week), or six or seven (seconds first, year last)"
            ));
            return None;
        }
    };
    // Cron dialects disagree on what day 1 is (Monday in crontab, Sunday in Quartz), so a
    // number here would silently freeze the wrong day in some reading.
    if day_of_week.bytes().any(|b| b.is_ascii_digit()) {
        problems.push(format!(
            "{at}.schedule {expression:?}: write days of the week by name (MON-FRI, SAT,SUN), not number: cron dialects number them differently"
        ));
        return None;
    }
    match Schedule::from_str(&full) {
        Ok(schedule) => Some(schedule),
        Err(error) => {
            problems.push(format!(
                "{at}.schedule {expression:?} is not a cron expression: {error}"
            ));
            None
        }
    }
}

fn parse_length(at: &str, duration: &str, problems: &mut Vec<String>) -> Option<Span> {
    match Span::from_str(duration.trim()) {
        Ok(span) if span.is_positive() && !span.is_zero() => Some(span),
        Ok(_) => {
            problems.push(format!("{at}.duration {duration:?} must be positive"));
            None
        }
        Err(error) => {
            problems.push(format!(
                "{at}.duration {duration:?} is not a duration such as 2h, 62h, \"1d 12h\" or P1DT12H: {error}"
            ));
            None
        }
    }
}

/// An instant with an offset (`…Z`, `…+01:00`), or a civil date-time in the window's zone.
fn parse_instant(
    at: &str,
    field: &str,
    value: &str,
    tz: &TimeZone,
    problems: &mut Vec<String>,
) -> Option<Timestamp> {
    let value = value.trim();
    if let Ok(instant) = Timestamp::from_str(value) {
        return Some(instant);
    }
    match civil::DateTime::from_str(value).and_then(|dt| dt.to_zoned(tz.clone())) {
        Ok(zoned) => Some(zoned.timestamp()),
        Err(error) => {
            problems.push(format!(
                "{at}.{field} {value:?} is not a date-time such as 2026-12-24T18:00:00 (in timeZone) or 2026-12-24T17:00:00Z: {error}"
            ));
            None
        }
    }
}
