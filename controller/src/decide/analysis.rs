//! Judging a revision's metrics (`custody_crds::analysis`): each check of a metric is a pass, a
//! failure or inconclusive, and a metric fails the revision only after `failureLimit`
//! consecutive failing checks. Missing data and provider errors are never evidence: they leave
//! the run of failures where it was, neither confirming nor breaking it. Pure: the values come
//! in as data (see `crate::measure`), so every rule is testable without a Prometheus.

use custody_crds::analysis::{Condition, NoData};

/// What one query of a check returned: a number, or nothing (an empty result, NaN).
pub type Value = Option<f64>;

/// The outcome of one check of one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// The value is within the condition.
    Pass,
    /// The value crossed the condition; why, in words a record can carry.
    Fail(String),
    /// Nothing to judge: no data, or the query failed; why.
    Inconclusive(String),
}

/// Judges one check: the new revision's value and, for a baseline condition, the previous
/// revision's over the same window.
pub fn check(condition: &Condition, new: Value, baseline: Value, no_data: NoData) -> Check {
    let Some(new) = new.filter(|v| !v.is_nan()) else {
        return without_data(no_data, "no data for the new revision");
    };
    if let Some(above) = condition.above
        && new > above
    {
        return Check::Fail(format!("{new} is above {above}"));
    }
    if let Some(below) = condition.below
        && new < below
    {
        return Check::Fail(format!("{new} is below {below}"));
    }
    let Some(against) = &condition.baseline else {
        return Check::Pass;
    };
    let Some(base) = baseline.filter(|v| !v.is_nan()) else {
        return without_data(no_data, "no data for the previous revision");
    };
    if let Some(limit) = against.difference_above
        && new - base > limit
    {
        return Check::Fail(format!(
            "{new} is {} above the previous revision's {base} (limit {limit})",
            new - base
        ));
    }
    if let Some(limit) = against.ratio_above {
        // A baseline of 0 makes any positive value infinitely worse; a difference bound, when
        // given, is what judges such a service.
        if base > 0.0 && new / base > limit {
            return Check::Fail(format!(
                "{new} is {:.2} times the previous revision's {base} (limit {limit})",
                new / base
            ));
        }
        if base == 0.0 && new > 0.0 && against.difference_above.is_none() {
            return Check::Fail(format!(
                "{new} against the previous revision's 0 (ratio limit {limit})"
            ));
        }
    }
    Check::Pass
}

fn without_data(no_data: NoData, why: &str) -> Check {
    match no_data {
        NoData::Inconclusive => Check::Inconclusive(why.into()),
        NoData::Pass => Check::Pass,
    }
}

/// Where a metric stands after its checks so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Failing checks in a row, not counting inconclusive ones between them.
    pub failing_in_a_row: u32,
    /// Checks that passed.
    pub passed: u32,
    /// Checks that were inconclusive.
    pub inconclusive: u32,
}

impl Standing {
    /// The standing after one more check.
    #[must_use]
    pub fn after(mut self, check: &Check) -> Self {
        match check {
            Check::Pass => {
                self.passed += 1;
                self.failing_in_a_row = 0;
            }
            Check::Fail(_) => self.failing_in_a_row += 1,
            Check::Inconclusive(_) => self.inconclusive += 1,
        }
        self
    }

    /// Whether the failures confirm a regression.
    pub fn failed(&self, failure_limit: u32) -> bool {
        self.failing_in_a_row >= failure_limit.max(1)
    }
}

#[cfg(test)]
mod tests {
    use custody_crds::analysis::BaselineCondition;

    use super::*;

    fn above(v: f64) -> Condition {
        Condition {
            above: Some(v),
            ..Condition::default()
        }
    }

    fn baseline(ratio: Option<f64>, difference: Option<f64>) -> Condition {
        Condition {
            baseline: Some(BaselineCondition {
                ratio_above: ratio,
                difference_above: difference,
            }),
            ..Condition::default()
        }
    }

    const WAIT: NoData = NoData::Inconclusive;

    fn failed(c: &Check) -> bool {
        matches!(c, Check::Fail(_))
    }

    #[test]
    fn absolute_thresholds() {
        assert_eq!(check(&above(0.05), Some(0.01), None, WAIT), Check::Pass);
        assert!(failed(&check(&above(0.05), Some(0.30), None, WAIT)));
        assert_eq!(
            check(&above(0.05), Some(0.05), None, WAIT),
            Check::Pass,
            "at the limit"
        );
        let floor = Condition {
            below: Some(10.0),
            ..Condition::default()
        };
        assert!(
            failed(&check(&floor, Some(3.0), None, WAIT)),
            "orders dropped"
        );
    }

    #[test]
    fn against_the_previous_revision() {
        // 30 % errors against a 0.5 % baseline: 60 times worse.
        let ratio = baseline(Some(2.0), None);
        let c = check(&ratio, Some(0.30), Some(0.005), WAIT);
        assert!(failed(&c), "{c:?}");
        // A noisy service at 4 % against 3 %: not twice as bad.
        assert_eq!(check(&ratio, Some(0.04), Some(0.03), WAIT), Check::Pass);
        let diff = baseline(None, Some(0.02));
        assert!(failed(&check(&diff, Some(0.06), Some(0.03), WAIT)));
        assert_eq!(check(&diff, Some(0.04), Some(0.03), WAIT), Check::Pass);
        // A clean baseline: any error is infinitely worse by ratio alone...
        assert!(failed(&check(&ratio, Some(0.001), Some(0.0), WAIT)));
        // ...so a difference bound, when given, judges it.
        let both = baseline(Some(2.0), Some(0.02));
        assert_eq!(check(&both, Some(0.001), Some(0.0), WAIT), Check::Pass);
        assert!(failed(&check(&both, Some(0.05), Some(0.0), WAIT)));
        assert_eq!(check(&ratio, Some(0.0), Some(0.0), WAIT), Check::Pass);
    }

    #[test]
    fn missing_data_is_never_evidence() {
        for (new, base) in [(None, Some(0.1)), (Some(f64::NAN), Some(0.1))] {
            assert!(matches!(
                check(&above(0.05), new, base, WAIT),
                Check::Inconclusive(_)
            ));
        }
        let ratio = baseline(Some(2.0), None);
        assert!(matches!(
            check(&ratio, Some(0.3), None, WAIT),
            Check::Inconclusive(why) if why.contains("previous revision")
        ));
        assert_eq!(check(&ratio, Some(0.3), None, NoData::Pass), Check::Pass);
        // An absolute bound crossed still fails without a baseline.
        let absolute = Condition {
            above: Some(0.5),
            ..Condition::default()
        };
        assert!(failed(&check(&absolute, Some(0.9), None, WAIT)));
    }

    #[test]
    fn consecutive_failures_confirm_and_gaps_do_not_break_them() {
        let fail = Check::Fail("x".into());
        let gap = Check::Inconclusive("no data".into());
        let run = |checks: &[&Check]| checks.iter().fold(Standing::default(), |s, c| s.after(c));
        assert!(run(&[&fail, &fail, &fail]).failed(3));
        assert!(!run(&[&fail, &fail]).failed(3));
        assert!(
            run(&[&fail, &gap, &fail, &gap, &fail]).failed(3),
            "a scrape gap neither confirms nor breaks a run"
        );
        assert!(!run(&[&fail, &fail, &Check::Pass, &fail]).failed(3));
        let s = run(&[&gap, &gap, &gap, &gap]);
        assert!(!s.failed(1), "missing data never fails a revision");
        assert_eq!(s.inconclusive, 4);
    }
}
