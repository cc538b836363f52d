//! Metric analysis of a revision: PromQL queries whose values, checked at an interval over a
//! window, say whether the revision regressed where probes cannot see (errors on one path,
//! doubled latency). A condition is either absolute (the new revision's value against a
//! threshold) or against the previous revision measured by the same query over the same window,
//! which is what makes a noisy service judgeable. Missing data is never evidence: by default a
//! check without data is inconclusive.
//!
//! These are the types and their checks; [`AnalysisSpec::problems`] is what a policy carrying
//! one is refused for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::notify::SecretRef;

/// The placeholders a query template may use.
pub const PLACEHOLDERS: [&str; 6] = ["namespace", "name", "kind", "revision", "pods", "window"];

/// How a revision's metrics are judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Seconds between two checks.
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 5, max = 3600))]
    pub interval_seconds: u32,
    /// Seconds of data each check reads (`{{window}}` in a query).
    #[serde(default = "default_window_seconds")]
    #[schemars(range(min = 10, max = 86400))]
    pub window_seconds: u32,
    /// Consecutive failing checks of one metric that confirm a regression.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_limit: u32,
    /// What a check without data counts as.
    #[serde(default)]
    pub no_data: NoData,
    /// Where the queries run.
    pub provider: ProviderSpec,
    /// What is measured.
    pub metrics: Vec<MetricSpec>,
}

fn default_interval_seconds() -> u32 {
    30
}

fn default_window_seconds() -> u32 {
    120
}

fn default_failure_limit() -> u32 {
    3
}

/// What a check without data counts as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NoData {
    /// Neither pass nor fail: the analysis waits for data (the default; a revert on missing
    /// data would punish a revision for a scrape gap).
    #[default]
    Inconclusive,
    /// A pass.
    Pass,
}

/// The metrics provider. Only Prometheus's HTTP API today.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// A Prometheus-compatible `/api/v1/query` endpoint.
    pub prometheus: PrometheusSpec,
}

/// A Prometheus server (or anything serving its query API: Thanos, Mimir, VictoriaMetrics).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSpec {
    /// Its base URL, `https://` or `http://` (the query path is appended).
    pub address: String,
    /// A Secret in Custody's namespace whose `ca.crt` is the PEM bundle that signs the server's
    /// certificate, trusted instead of the system's roots (as `curl --cacert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_from: Option<SecretRef>,
    /// A Secret in Custody's namespace whose keys become request headers (for example
    /// `Authorization`, or `X-Scope-OrgID` for Mimir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from: Option<SecretRef>,
    /// Seconds a query may take.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,
}

fn default_timeout_seconds() -> u32 {
    5
}

/// One measured quantity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    /// A name, unique in the analysis, for records and `kubectl custody why`.
    pub name: String,
    /// A PromQL template returning one number: `{{namespace}}`, `{{name}}`, `{{kind}}`,
    /// `{{revision}}` (the pod-template-hash or controller-revision-hash), `{{pods}}` (a regex
    /// of the revision's Pod names) and `{{window}}` (as `120s`) are filled in.
    pub query: String,
    /// When the value fails the check.
    pub condition: Condition,
    /// Record what this metric would have done without acting on it.
    #[serde(default)]
    pub dry_run: bool,
}

/// When a metric's value fails: above or below a threshold, or worse than the previous
/// revision's by a ratio or a difference. Exactly one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Fails when the value is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fails when the value is below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Fails when the value is worse than the previous revision's over the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineCondition>,
}

/// A comparison with the previous revision; either bound or both (failing when either is
/// crossed).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaselineCondition {
    /// Fails when new / baseline is above this (2 = twice the previous revision's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_above: Option<f64>,
    /// Fails when new − baseline is above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference_above: Option<f64>,
}

impl AnalysisSpec {
    /// What is wrong with the spec, each a sentence naming the field; empty when it is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.window_seconds < self.interval_seconds {
            out.push(format!(
                "analysis.windowSeconds ({}) is shorter than intervalSeconds ({}): checks would skip data",
                self.window_seconds, self.interval_seconds
            ));
        }
        let address = &self.provider.prometheus.address;
        if !(address.starts_with("https://") || address.starts_with("http://")) {
            out.push(format!(
                "analysis.provider.prometheus.address {address:?} must start with https:// or http://"
            ));
        }
        if self.metrics.is_empty() {
            out.push("analysis.metrics is empty: name at least one metric".into());
        }
        for (i, metric) in self.metrics.iter().enumerate() {
            if metric.name.trim().is_empty() {
                out.push(format!("analysis.metrics[{i}].name is empty"));
            } else if self.metrics[..i].iter().any(|m| m.name == metric.name) {
                out.push(format!(
                    "analysis.metrics[{i}].name {:?} is used twice",
                    metric.name
                ));
            }
            out.extend(
                metric
                    .problems()
                    .into_iter()
                    .map(|p| format!("analysis.metrics[{i}].{p}")),
            );
        }
        out
    }
}

impl MetricSpec {
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        match placeholders(&self.query) {
            Err(problem) => out.push(format!("query: {problem}")),
            Ok(used) => {
                let selects_revision = used.iter().any(|p| *p == "revision" || *p == "pods");
                if self.condition.baseline.is_some() && !selects_revision {
                    out.push(
                        "query uses neither {{revision}} nor {{pods}}: against the previous revision it would measure the same thing twice".into(),
                    );
                }
            }
        }
        out.extend(
            self.condition
                .problems()
                .into_iter()
                .map(|p| format!("condition{p}")),
        );
        out
    }
}

impl Condition {
    fn problems(&self) -> Vec<String> {
        let absolute = self.above.is_some() || self.below.is_some();
        let mut out = Vec::new();
        match (&self.baseline, absolute) {
            (Some(_), true) => out.push(
                ": give a threshold (above, below) or a baseline comparison, not both".into(),
            ),
            (None, false) => out.push(
                ": give a threshold (above, below) or a baseline comparison (ratioAbove, differenceAbove)".into(),
            ),
            (Some(b), false) if b.ratio_above.is_none() && b.difference_above.is_none() => {
                out.push(".baseline: give ratioAbove, differenceAbove or both".into());
            }
            _ => {}
        }
        let finite = [
            ("above", self.above),
            ("below", self.below),
            (
                "baseline.ratioAbove",
                self.baseline.as_ref().and_then(|b| b.ratio_above),
            ),
            (
                "baseline.differenceAbove",
                self.baseline.as_ref().and_then(|b| b.difference_above),
            ),
        ];
        for (field, value) in finite {
            if value.is_some_and(|v| !v.is_finite()) {
                out.push(format!(".{field} must be a finite number"));
            }
        }
        if let (Some(above), Some(below)) = (self.above, self.below)
            && below >= above
        {
            out.push(format!(
                ": below ({below}) is not under above ({above}): every value would fail"
            ));
        }
        if self
            .baseline
            .as_ref()
            .and_then(|b| b.ratio_above)
            .is_some_and(|r| r <= 0.0)
        {
            out.push(".baseline.ratioAbove must be above 0".into());
        }
        out
    }
}

impl Condition {
    /// The condition in words, as a record shows it: when a value fails.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(v) = self.above {
            parts.push(format!("above {v}"));
        }
        if let Some(v) = self.below {
            parts.push(format!("below {v}"));
        }
        if let Some(b) = &self.baseline {
            if let Some(r) = b.ratio_above {
                parts.push(format!("more than {r} times the previous revision's"));
            }
            if let Some(d) = b.difference_above {
                parts.push(format!("more than {d} above the previous revision's"));
            }
        }
        format!("fails when {}", parts.join(" or "))
    }
}

/// Where a revision's analysis stands: written on the revision (the `analysis` mark) at each
/// check, for `kubectl custody why` and dashboards, and into the RollbackRecord of a
/// regression it confirmed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisReport {
    /// Where the analysis stands.
    pub phase: AnalysisPhase,
    /// Checks run so far.
    pub checks: u32,
    /// When the first check ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When the last check ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// Each metric's standing and last values.
    #[serde(default)]
    pub metrics: Vec<MetricReport>,
}

/// Where an analysis stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisPhase {
    /// Checking; nothing concluded yet.
    #[default]
    Running,
    /// Every metric had enough conclusive checks, and none is failing.
    Passed,
    /// A metric failed `failureLimit` checks in a row.
    Failed,
    /// The last checks had no data or could not run (the provider is away): nothing is
    /// concluded, and nothing is held against the revision.
    Inconclusive,
}

/// One metric's standing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricReport {
    /// The metric's name in the policy.
    pub name: String,
    /// The last check's outcome.
    pub result: CheckResult,
    /// The last check's outcome in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// The condition, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// The new revision's last value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<f64>,
    /// The previous revision's last value, for a baseline condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Failing checks in a row (inconclusive ones between them neither count nor break it).
    #[serde(default)]
    pub failing_in_a_row: u32,
    /// Checks that passed.
    #[serde(default)]
    pub passed: u32,
    /// Checks that were inconclusive.
    #[serde(default)]
    pub inconclusive: u32,
    /// Whether the metric only records what it would have done.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The query as last run for the new revision.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The query as last run for the previous revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_query: Option<String>,
    /// The failing checks of the current run, oldest first (at most `failureLimit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<FailedCheck>,
}

/// A check's outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CheckResult {
    /// Within the condition.
    Pass,
    /// Crossed the condition.
    Fail,
    /// No data, or the query could not run.
    #[default]
    Inconclusive,
}

/// One failing check, as evidence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedCheck {
    /// When it ran (RFC 3339).
    pub at: String,
    /// The new revision's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<f64>,
    /// The previous revision's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// Why it failed.
    pub why: String,
}

/// The placeholders a template uses, in order, each once; an error names an unknown or
/// unclosed one.
pub fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    if template.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let mut used = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a {{ is never closed".into());
        };
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{{{name}}}}}; known: {}",
                PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
            ));
        }
        if !used.contains(&name) {
            used.push(name);
        }
        rest = &after[end + 2..];
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(metrics: Vec<MetricSpec>) -> AnalysisSpec {
        AnalysisSpec {
            interval_seconds: 30,
            window_seconds: 120,
            failure_limit: 3,
            no_data: NoData::Inconclusive,
            provider: ProviderSpec {
                prometheus: PrometheusSpec {
                    address: "http://prometheus.monitoring:9090".into(),
                    ca_from: None,
                    headers_from: None,
                    timeout_seconds: 5,
                },
            },
            metrics,
        }
    }

    fn metric(name: &str, query: &str, condition: Condition) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            query: query.into(),
            condition,
            dry_run: false,
        }
    }

    const ERRORS: &str = r#"sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{pods}}",code=~"5.."}[{{window}}])) / sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{pods}}"}[{{window}}]))"#;

    #[test]
    fn a_sound_spec_has_no_problems_and_reads_with_defaults() {
        let yaml = r#"
provider: {prometheus: {address: "https://prometheus.monitoring:9090"}}
metrics:
- name: error-ratio
  query: 'sum(rate(x{pod=~"{{pods}}"}[{{window}}]))'
  condition: {baseline: {ratioAbove: 2, differenceAbove: 0.02}}
- name: latency
  query: 'histogram_quantile(0.99, sum by (le) (rate(y{pod=~"{{pods}}"}[{{window}}])))'
  condition: {above: 0.5}
"#;
        let spec: AnalysisSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.problems(), Vec::<String>::new());
        assert_eq!(
            (
                spec.interval_seconds,
                spec.window_seconds,
                spec.failure_limit
            ),
            (30, 120, 3)
        );
        assert_eq!(spec.no_data, NoData::Inconclusive);
        assert_eq!(spec.provider.prometheus.timeout_seconds, 5);
    }

    #[test]
    fn each_mistake_is_named_by_its_field() {
        let above = Condition {
            above: Some(0.05),
            ..Condition::default()
        };
        let cases: Vec<(AnalysisSpec, &str)> = vec![
            (spec(vec![]), "analysis.metrics is empty"),
            (
                spec(vec![metric("e", "rate(x[{{windw}}])", above.clone())]),
                "analysis.metrics[0].query: unknown placeholder {{windw}}",
            ),
            (
                spec(vec![metric("e", "rate(x[{{window]", above.clone())]),
                "analysis.metrics[0].query: a {{ is never closed",
            ),
            (
                spec(vec![
                    metric("e", ERRORS, above.clone()),
                    metric("e", ERRORS, above.clone()),
                ]),
                "analysis.metrics[1].name \"e\" is used twice",
            ),
            (
                spec(vec![metric("e", ERRORS, Condition::default())]),
                "analysis.metrics[0].condition: give a threshold",
            ),
            (
                spec(vec![metric(
                    "e",
                    ERRORS,
                    Condition {
                        above: Some(1.0),
                        baseline: Some(BaselineCondition {
                            ratio_above: Some(2.0),
                            difference_above: None,
                        }),
                        ..Condition::default()
                    },
                )]),
                "not both",
            ),
            (
                spec(vec![metric(
                    "e",
                    "sum(rate(x[{{window}}]))",
                    Condition {
                        baseline: Some(BaselineCondition {
                            ratio_above: Some(2.0),
                            difference_above: None,
                        }),
                        ..Condition::default()
                    },
                )]),
                "uses neither {{revision}} nor {{pods}}",
            ),
            (
                spec(vec![metric(
                    "e",
                    ERRORS,
                    Condition {
                        above: Some(0.1),
                        below: Some(0.2),
                        ..Condition::default()
                    },
                )]),
                "every value would fail",
            ),
            (
                spec(vec![metric(
                    "e",
                    ERRORS,
                    Condition {
                        above: Some(f64::NAN),
                        ..Condition::default()
                    },
                )]),
                "condition.above must be a finite number",
            ),
        ];
        for (spec, expected) in cases {
            let problems = spec.problems();
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{expected:?} not in {problems:?}"
            );
        }
        let mut short = spec(vec![metric("e", ERRORS, above)]);
        short.window_seconds = 10;
        assert!(short.problems()[0].contains("windowSeconds (10) is shorter"));
        short.provider.prometheus.address = "prometheus:9090".into();
        assert!(short.problems()[1].contains("must start with https://"));
    }

    #[test]
    fn placeholders_are_listed_once_in_order() {
        assert_eq!(
            placeholders(ERRORS).unwrap(),
            ["namespace", "pods", "window"]
        );
        assert_eq!(placeholders("up").unwrap(), Vec::<&str>::new());
        assert!(placeholders("  ").is_err());
        assert_eq!(placeholders("x{{ kind }}").unwrap(), ["kind"]);
    }
}
