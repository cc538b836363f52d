//! Judging a revision's metrics (`custody_crds::analysis`): each check of a metric is a pass, a
//! failure or inconclusive, and a metric fails the revision only after `failureLimit`
//! consecutive failing checks. Missing data and provider errors are never evidence: they leave
//! the run of failures where it was, neither confirming nor breaking it. Pure: the values come
//! in as data (see `crate::measure`), so every rule is testable without a Prometheus.

use custody_crds::Vocabulary;
use custody_crds::analysis::{
    AnalysisPhase, AnalysisReport, AnalysisSpec, CheckResult, Condition, FailedCheck, MetricReport,
    NoData,
};
use jiff::Timestamp;

use crate::cache::observe::{Observed, Revision};
use crate::keys::marks;

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

impl Check {
    /// The outcome, without the words.
    pub const fn result(&self) -> CheckResult {
        match self {
            Check::Pass => CheckResult::Pass,
            Check::Fail(_) => CheckResult::Fail,
            Check::Inconclusive(_) => CheckResult::Inconclusive,
        }
    }
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
        return Check::Fail(format!("{} is above {above}", num(new)));
    }
    if let Some(below) = condition.below
        && new < below
    {
        return Check::Fail(format!("{} is below {below}", num(new)));
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
            "{} is {} above the previous revision's {} (limit {limit})",
            num(new),
            num(new - base),
            num(base)
        ));
    }
    if let Some(limit) = against.ratio_above {
        // A baseline of 0 makes any positive value infinitely worse; a difference bound, when
        // given, is what judges such a service.
        if base > 0.0 && new / base > limit {
            return Check::Fail(format!(
                "{} is {:.2} times the previous revision's {} (limit {limit})",
                num(new),
                new / base,
                num(base)
            ));
        }
        if base == 0.0 && new > 0.0 && against.difference_above.is_none() {
            return Check::Fail(format!(
                "{} against the previous revision's 0 (ratio limit {limit})",
                num(new)
            ));
        }
    }
    Check::Pass
}

/// A measured value in words: six decimals at most, so float noise (0.30000000000000004) reads
/// as the number it is; a value too small for them in scientific notation.
fn num(v: f64) -> String {
    let fixed = format!("{v:.6}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        "0" | "-0" if v != 0.0 => format!("{v:.3e}"),
        "-0" => "0".into(),
        _ => trimmed.into(),
    }
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

/// The revision whose metrics are due for analysis, if any: the current one, from its first Pod
/// until it is judged (marked healthy, reverted or reported), when it replaces a revision known
/// healthy. The first revision of a workload has nothing to be compared with and nothing to go
/// back to: its probes alone judge it.
pub fn wanted<'o>(observed: &'o Observed, vocabulary: &Vocabulary) -> Option<&'o Revision> {
    let current = observed.revisions.first()?;
    let compared = observed
        .revisions
        .iter()
        .skip(1)
        .any(|r| r.marked(vocabulary, marks::HEALTHY_SINCE));
    let started = observed.pods.iter().any(|p| p.revision == current.pod_key);
    (current.fingerprint == observed.workload.template_fingerprint
        && !current.judged(vocabulary)
        && compared
        && started)
        .then_some(current)
}

/// Judges one check as [`check`] does, and, for an absolute condition, also what the previous
/// revision showed over the same window (`concurrent`: its Pods serve beside the new
/// revision's): a threshold both cross is the service's trouble or the traffic's, not the new
/// revision's doing, like a readiness failure shared with the previous revision.
pub fn judge(
    condition: &Condition,
    new: Value,
    baseline: Value,
    concurrent: bool,
    no_data: NoData,
) -> Check {
    let outcome = check(condition, new, baseline, no_data);
    if condition.baseline.is_some() || !concurrent || !matches!(outcome, Check::Fail(_)) {
        return outcome;
    }
    match check(condition, baseline, None, NoData::Pass) {
        Check::Fail(why) => Check::Inconclusive(format!(
            "the previous revision crosses it too ({why}): not the new revision's doing"
        )),
        _ => outcome,
    }
}

/// One check of one metric, as run.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The outcome.
    pub check: Check,
    /// The new revision's value.
    pub new: Value,
    /// The previous revision's value, when it was measured.
    pub baseline: Value,
    /// The query as run for the new revision (empty when it could not be filled in).
    pub query: String,
    /// The query as run for the previous revision.
    pub baseline_query: Option<String>,
}

/// One metric's checks so far.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricProgress {
    /// Its name in the policy.
    pub name: String,
    /// Whether it only records what it would have done.
    pub dry_run: bool,
    /// The condition, in words.
    pub condition: String,
    /// Its standing.
    pub standing: Standing,
    /// The last check.
    pub last: Option<Observation>,
    /// The failing checks of the current run of failures, oldest first, at most
    /// `failureLimit`.
    pub failing: Vec<FailedCheck>,
    /// When its failures first confirmed a regression.
    pub failed_at: Option<Timestamp>,
}

impl MetricProgress {
    fn report(&self) -> MetricReport {
        let last = self.last.as_ref();
        let (result, why) = match last.map(|l| &l.check) {
            Some(Check::Pass) => (CheckResult::Pass, String::new()),
            Some(Check::Fail(why)) => (CheckResult::Fail, why.clone()),
            Some(Check::Inconclusive(why)) => (CheckResult::Inconclusive, why.clone()),
            None => (CheckResult::Inconclusive, "not checked yet".into()),
        };
        MetricReport {
            name: self.name.clone(),
            result,
            why,
            condition: self.condition.clone(),
            new: last.and_then(|l| l.new),
            baseline: last.and_then(|l| l.baseline),
            failing_in_a_row: self.standing.failing_in_a_row,
            passed: self.standing.passed,
            inconclusive: self.standing.inconclusive,
            dry_run: self.dry_run,
            query: last.map(|l| l.query.clone()).unwrap_or_default(),
            baseline_query: last.and_then(|l| l.baseline_query.clone()),
            failed_checks: self.failing.clone(),
        }
    }
}

/// A revision's analysis so far: what the decision reads, and what the writers show.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// The ReplicaSet or ControllerRevision analysed.
    pub revision: String,
    /// Consecutive failing checks that confirm a regression.
    pub failure_limit: u32,
    /// Checks run.
    pub checks: u32,
    /// When the first check ran.
    pub started: Option<Timestamp>,
    /// When the last check ran.
    pub updated: Option<Timestamp>,
    /// Since when every metric's last check was inconclusive, if it was.
    pub inconclusive_since: Option<Timestamp>,
    /// Each metric, in the policy's order.
    pub metrics: Vec<MetricProgress>,
}

impl Progress {
    /// An analysis of `revision` under `spec`, before its first check.
    pub fn new(revision: &str, spec: &AnalysisSpec) -> Self {
        Self {
            revision: revision.to_string(),
            failure_limit: spec.failure_limit.max(1),
            checks: 0,
            started: None,
            updated: None,
            inconclusive_since: None,
            metrics: spec
                .metrics
                .iter()
                .map(|m| MetricProgress {
                    name: m.name.clone(),
                    dry_run: m.dry_run,
                    condition: m.condition.describe(),
                    standing: Standing::default(),
                    last: None,
                    failing: Vec::new(),
                    failed_at: None,
                })
                .collect(),
        }
    }

    /// The analysis as `report` (the revision's `analysis` mark, written by an earlier leader)
    /// left it, so a restart or a change of leader does not start it over. Metrics the spec no
    /// longer has are dropped; new ones start from nothing.
    pub fn resume(revision: &str, spec: &AnalysisSpec, report: &AnalysisReport) -> Self {
        let mut progress = Self::new(revision, spec);
        let time = |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
        progress.checks = report.checks;
        progress.started = time(&report.started);
        progress.updated = time(&report.updated);
        let limit = progress.failure_limit;
        for metric in &mut progress.metrics {
            let Some(was) = report.metrics.iter().find(|m| m.name == metric.name) else {
                continue;
            };
            metric.standing = Standing {
                failing_in_a_row: was.failing_in_a_row,
                passed: was.passed,
                inconclusive: was.inconclusive,
            };
            metric.failing.clone_from(&was.failed_checks);
            if metric.standing.failed(limit) {
                metric.failed_at = metric
                    .failing
                    .last()
                    .and_then(|f| f.at.parse().ok())
                    .or(progress.updated);
            }
            metric.last = Some(Observation {
                check: match was.result {
                    CheckResult::Pass => Check::Pass,
                    CheckResult::Fail => Check::Fail(was.why.clone()),
                    CheckResult::Inconclusive => Check::Inconclusive(was.why.clone()),
                },
                new: was.new,
                baseline: was.baseline,
                query: was.query.clone(),
                baseline_query: was.baseline_query.clone(),
            });
        }
        if report.phase == AnalysisPhase::Inconclusive {
            progress.inconclusive_since = progress.updated;
        }
        progress
    }

    /// Takes in one check of every metric, in the policy's order, run at `at`.
    pub fn record(&mut self, observations: Vec<Observation>, at: Timestamp) {
        self.checks += 1;
        self.started.get_or_insert(at);
        self.updated = Some(at);
        let limit = self.failure_limit;
        let mut all_inconclusive = true;
        for (metric, seen) in self.metrics.iter_mut().zip(observations) {
            metric.standing = std::mem::take(&mut metric.standing).after(&seen.check);
            match &seen.check {
                Check::Fail(why) => {
                    all_inconclusive = false;
                    metric.failing.push(FailedCheck {
                        at: at.to_string(),
                        new: seen.new,
                        baseline: seen.baseline,
                        why: why.clone(),
                    });
                    let excess = metric.failing.len().saturating_sub(limit as usize);
                    metric.failing.drain(..excess);
                    if metric.standing.failed(limit) {
                        metric.failed_at.get_or_insert(at);
                    }
                }
                // A confirmed failure stands, with its evidence: a regression once confirmed is
                // answered, as a probe's is.
                Check::Pass if metric.failed_at.is_some() => all_inconclusive = false,
                Check::Pass => {
                    all_inconclusive = false;
                    metric.failing.clear();
                }
                Check::Inconclusive(_) => {}
            }
            metric.last = Some(seen);
        }
        self.inconclusive_since = if all_inconclusive {
            self.inconclusive_since.or(Some(at))
        } else {
            None
        };
    }

    fn gating(&self) -> impl Iterator<Item = &MetricProgress> {
        self.metrics.iter().filter(|m| !m.dry_run)
    }

    /// The first metric (by when) whose failures confirm a regression, and when they did.
    pub fn failed(&self) -> Option<(&MetricProgress, Timestamp)> {
        self.gating()
            .filter_map(|m| m.failed_at.map(|at| (m, at)))
            .min_by_key(|(_, at)| *at)
    }

    /// Dry-run metrics whose failures would have confirmed a regression.
    pub fn would_fail(&self) -> impl Iterator<Item = &MetricProgress> {
        self.metrics
            .iter()
            .filter(|m| m.dry_run && m.failed_at.is_some())
    }

    /// Where the analysis stands. Passed needs `failureLimit` passing checks of every metric
    /// that gates (enough to have caught a failure) and none failing now: missing data never
    /// passes a revision, as it never fails one.
    pub fn phase(&self) -> AnalysisPhase {
        if self.failed().is_some() {
            return AnalysisPhase::Failed;
        }
        let limit = self.failure_limit;
        // Even with dry-run metrics alone, as many checks as would have caught a failure.
        if self.checks >= limit
            && self
                .gating()
                .all(|m| m.standing.passed >= limit && m.standing.failing_in_a_row == 0)
        {
            return AnalysisPhase::Passed;
        }
        if self.inconclusive_since.is_some() {
            return AnalysisPhase::Inconclusive;
        }
        AnalysisPhase::Running
    }

    /// What the revision's `analysis` mark and a record show.
    pub fn report(&self) -> AnalysisReport {
        AnalysisReport {
            phase: self.phase(),
            checks: self.checks,
            started: self.started.map(|t| t.to_string()),
            updated: self.updated.map(|t| t.to_string()),
            metrics: self.metrics.iter().map(MetricProgress::report).collect(),
        }
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
    fn values_read_as_the_numbers_they_are() {
        let cases = [
            (0.300_000_000_000_000_04, "0.3"),
            (0.295_000_000_000_000_04, "0.295"),
            (0.005_000_000_000_000_001, "0.005"),
            (1234.5, "1234.5"),
            (0.0, "0"),
            (2.0, "2"),
            (0.000_000_2, "2.000e-7"),
        ];
        for (v, words) in cases {
            assert_eq!(num(v), words);
        }
        let c = check(
            &baseline(None, Some(0.05)),
            Some(0.300_000_000_000_000_04),
            Some(0.005),
            WAIT,
        );
        assert_eq!(
            c,
            Check::Fail("0.3 is 0.295 above the previous revision's 0.005 (limit 0.05)".into())
        );
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
