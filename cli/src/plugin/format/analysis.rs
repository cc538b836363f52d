//! The metric analysis in words: where the current revision's analysis stands (`why`), and the
//! evidence a RollbackRecord keeps of the checks that confirmed a regression.

use std::fmt::Write as _;

use custody_crds::analysis::{AnalysisReport, MetricReport};

use super::table::{plural, table, table_at};
use crate::plugin::revisions::CurrentAnalysis;

/// The current revision's analysis: its phase, then per metric its last check.
pub(super) fn write_standing(out: &mut String, current: &CurrentAnalysis) {
    let number = current
        .number
        .map_or(String::new(), |n| format!("revision {n}, "));
    let _ = writeln!(
        out,
        "\nAnalysis of the current revision ({number}{}):",
        current.revision
    );
    let report = &current.report;
    let _ = writeln!(out, "  {}", summary(report));
    if report.metrics.is_empty() {
        let _ = writeln!(out, "  no metric checked yet");
        return;
    }
    let rows = report.metrics.iter().map(|m| {
        vec![
            name(m),
            result(m),
            number_or_dash(m.new),
            number_or_dash(m.baseline),
            m.failing_in_a_row.to_string(),
        ]
    });
    table(
        out,
        &["METRIC", "RESULT", "NEW", "BASELINE", "FAILING IN A ROW"],
        rows,
    );
    for m in &report.metrics {
        let words: Vec<String> = [m.condition.clone(), last_check(m)]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect();
        if !words.is_empty() {
            let _ = writeln!(out, "  - {}: {}", name(m), words.join("; "));
        }
    }
}

/// A record's evidence: per metric, the queries as run, the last values and the failed checks.
pub(super) fn write_evidence(out: &mut String, record: &str, report: &AnalysisReport) {
    let _ = writeln!(
        out,
        "\nEvidence of RollbackRecord {record}: metric analysis {}",
        summary(report)
    );
    for m in &report.metrics {
        let mut head = format!("{}: {}", name(m), result(m));
        if m.failing_in_a_row > 0 {
            let _ = write!(head, ", {} failing in a row", m.failing_in_a_row);
        }
        if !m.condition.is_empty() {
            let _ = write!(head, "; {}", m.condition);
        }
        let _ = writeln!(out, "  {head}");
        if !m.query.is_empty() {
            let _ = writeln!(out, "    query:          {}", m.query);
        }
        if let Some(q) = &m.baseline_query {
            let _ = writeln!(out, "    baseline query: {q}");
        }
        let _ = writeln!(out, "    last values:    {}", values(m.new, m.baseline));
        if !m.why.is_empty() {
            let _ = writeln!(out, "    last check:     {}", m.why);
        }
        if !m.failed_checks.is_empty() {
            let _ = writeln!(out, "    failed checks:");
            let rows = m.failed_checks.iter().map(|c| {
                vec![
                    c.at.clone(),
                    number_or_dash(c.new),
                    number_or_dash(c.baseline),
                    c.why.clone(),
                ]
            });
            table_at(out, 6, &["AT", "NEW", "BASELINE", "WHY"], rows);
        }
    }
}

/// `Failed, 5 checks (2026-… to 2026-…)`.
fn summary(report: &AnalysisReport) -> String {
    let mut out = format!(
        "{:?}, {}",
        report.phase,
        plural(report.checks as usize, "check")
    );
    match (&report.started, &report.updated) {
        (Some(from), Some(to)) if from != to => {
            let _ = write!(out, " ({from} to {to})");
        }
        (Some(at), _) | (None, Some(at)) => {
            let _ = write!(out, " ({at})");
        }
        (None, None) => {}
    }
    out
}

fn name(m: &MetricReport) -> String {
    if m.dry_run {
        format!("{} (dry run)", m.name)
    } else {
        m.name.clone()
    }
}

fn result(m: &MetricReport) -> String {
    format!("{:?}", m.result)
}

fn last_check(m: &MetricReport) -> String {
    if m.why.is_empty() {
        String::new()
    } else {
        format!("last check: {}", m.why)
    }
}

fn values(new: Option<f64>, baseline: Option<f64>) -> String {
    match (new, baseline) {
        (None, None) => "no data".to_string(),
        (new, None) => format!("new {}", number_or_dash(new)),
        (new, Some(b)) => format!("new {}, baseline {b}", number_or_dash(new)),
    }
}

fn number_or_dash(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::analysis::{AnalysisPhase, CheckResult, FailedCheck};

    /// An error ratio that failed three checks in a row against the previous revision, and a
    /// latency in dry run that passed.
    fn failed() -> AnalysisReport {
        AnalysisReport {
            phase: AnalysisPhase::Failed,
            checks: 5,
            started: Some("2026-03-01T10:00:00Z".into()),
            updated: Some("2026-03-01T10:02:00Z".into()),
            metrics: vec![
                MetricReport {
                    name: "error-ratio".into(),
                    result: CheckResult::Fail,
                    why: "0.031 is more than 2 times the previous revision's 0.004".into(),
                    condition: "fails when more than 2 times the previous revision's".into(),
                    new: Some(0.031),
                    baseline: Some(0.004),
                    failing_in_a_row: 3,
                    passed: 2,
                    inconclusive: 0,
                    dry_run: false,
                    query: r#"sum(rate(errors{pod=~"web-7d9f-.*"}[120s]))"#.into(),
                    baseline_query: Some(r#"sum(rate(errors{pod=~"web-5c4b-.*"}[120s]))"#.into()),
                    failed_checks: vec![
                        FailedCheck {
                            at: "2026-03-01T10:01:00Z".into(),
                            new: Some(0.02),
                            baseline: Some(0.004),
                            why: "0.02 is more than 2 times the previous revision's 0.004".into(),
                        },
                        FailedCheck {
                            at: "2026-03-01T10:02:00Z".into(),
                            new: Some(0.031),
                            baseline: None,
                            why: "0.031 is more than 2 times the previous revision's 0.004".into(),
                        },
                    ],
                },
                MetricReport {
                    name: "latency-p99".into(),
                    result: CheckResult::Pass,
                    why: "0.21 is not above 0.5".into(),
                    condition: "fails when above 0.5".into(),
                    new: Some(0.21),
                    baseline: None,
                    failing_in_a_row: 0,
                    passed: 5,
                    inconclusive: 0,
                    dry_run: true,
                    query: "histogram_quantile(0.99, x)".into(),
                    baseline_query: None,
                    failed_checks: vec![],
                },
            ],
        }
    }

    #[test]
    fn the_current_revisions_analysis_reads_as_a_table_then_words() {
        let mut out = String::new();
        write_standing(
            &mut out,
            &CurrentAnalysis {
                revision: "web-7d9f".into(),
                number: Some(3),
                report: failed(),
            },
        );
        assert_eq!(
            out,
            "
Analysis of the current revision (revision 3, web-7d9f):
  Failed, 5 checks (2026-03-01T10:00:00Z to 2026-03-01T10:02:00Z)
  METRIC                 RESULT  NEW    BASELINE  FAILING IN A ROW
  error-ratio            Fail    0.031  0.004     3
  latency-p99 (dry run)  Pass    0.21   -         0
  - error-ratio: fails when more than 2 times the previous revision's; last check: 0.031 is more than 2 times the previous revision's 0.004
  - latency-p99 (dry run): fails when above 0.5; last check: 0.21 is not above 0.5
"
        );
    }

    #[test]
    fn an_analysis_just_started_says_so() {
        let mut out = String::new();
        write_standing(
            &mut out,
            &CurrentAnalysis {
                revision: "db-6b8c".into(),
                number: None,
                report: AnalysisReport {
                    started: Some("2026-03-01T10:00:00Z".into()),
                    updated: Some("2026-03-01T10:00:00Z".into()),
                    ..AnalysisReport::default()
                },
            },
        );
        assert_eq!(
            out,
            "
Analysis of the current revision (db-6b8c):
  Running, 0 checks (2026-03-01T10:00:00Z)
  no metric checked yet
"
        );
    }

    #[test]
    fn a_records_evidence_shows_queries_values_and_failed_checks() {
        let mut out = String::new();
        write_evidence(&mut out, "web-r3", &failed());
        assert_eq!(
            out,
            r#"
Evidence of RollbackRecord web-r3: metric analysis Failed, 5 checks (2026-03-01T10:00:00Z to 2026-03-01T10:02:00Z)
  error-ratio: Fail, 3 failing in a row; fails when more than 2 times the previous revision's
    query:          sum(rate(errors{pod=~"web-7d9f-.*"}[120s]))
    baseline query: sum(rate(errors{pod=~"web-5c4b-.*"}[120s]))
    last values:    new 0.031, baseline 0.004
    last check:     0.031 is more than 2 times the previous revision's 0.004
    failed checks:
      AT                    NEW    BASELINE  WHY
      2026-03-01T10:01:00Z  0.02   0.004     0.02 is more than 2 times the previous revision's 0.004
      2026-03-01T10:02:00Z  0.031  -         0.031 is more than 2 times the previous revision's 0.004
  latency-p99 (dry run): Pass; fails when above 0.5
    query:          histogram_quantile(0.99, x)
    last values:    new 0.21
    last check:     0.21 is not above 0.5
"#
        );
    }

    #[test]
    fn values_without_data_say_so() {
        assert_eq!(values(None, None), "no data");
        assert_eq!(values(None, Some(0.5)), "new -, baseline 0.5");
        assert_eq!(values(Some(1e-7), None), "new 0.0000001");
    }
}
