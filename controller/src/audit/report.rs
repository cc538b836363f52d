//! Findings as report objects: one report per namespace, split in parts of at most
//! `max_results` results so a namespace of thousands of workloads stays far below etcd's object
//! size limit. Each report carries a digest of its results (without timestamps), so an audit
//! that finds what the last one found writes nothing.

use custody_crds::report::{
    ReportBody, ReportFormat, ReportResult, ReportSummary, ResultTimestamp,
};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::{Value, json};

use super::judge::Finding;

/// The report name in each namespace; parts after the first get `-2`, `-3`, …
pub const REPORT_NAME: &str = "custody-audit";
/// The label that marks Custody's reports (value `custody`), so stale parts can be found.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The category every result carries.
pub const CATEGORY: &str = "Provenance and ownership";
/// The source every result names.
pub const SOURCE: &str = "custody";

/// One report to write.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportObject {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Digest of its results, without timestamps.
    pub digest: String,
    /// The object, ready for server-side apply.
    pub object: Value,
}

/// The reports of one namespace's findings, in order. An empty slice gives no report: the
/// namespace has nothing any policy selects.
pub fn namespace_reports(
    format: ReportFormat,
    namespace: &str,
    findings: &[&Finding],
    digest_annotation: &str,
    now: ResultTimestamp,
    max_results: usize,
) -> Vec<ReportObject> {
    let mut sorted: Vec<&Finding> = findings.to_vec();
    sorted
        .sort_by(|a, b| (&a.workload, &a.policy, &a.rule).cmp(&(&b.workload, &b.policy, &b.rule)));
    sorted
        .chunks(max_results.max(1))
        .enumerate()
        .map(|(i, part)| {
            let name = if i == 0 {
                REPORT_NAME.to_string()
            } else {
                format!("{REPORT_NAME}-{}", i + 1)
            };
            let mut results: Vec<ReportResult> = part.iter().map(|f| result(f)).collect();
            let digest = digest(&results);
            for r in &mut results {
                r.timestamp = Some(now);
            }
            let body = ReportBody {
                source: format.has_report_source().then(|| SOURCE.to_string()),
                summary: ReportSummary::of(&results),
                results,
            };
            let mut object = json!({
                "apiVersion": format.api_version(),
                "kind": format.kind(),
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {MANAGED_BY_LABEL: SOURCE},
                    "annotations": {digest_annotation: digest},
                },
            });
            if let (Some(map), Ok(Value::Object(body))) =
                (object.as_object_mut(), serde_json::to_value(&body))
            {
                map.extend(body);
            }
            ReportObject {
                namespace: namespace.to_string(),
                name,
                digest,
                object,
            }
        })
        .collect()
}

fn result(f: &Finding) -> ReportResult {
    ReportResult {
        source: Some(SOURCE.to_string()),
        policy: f.policy.clone(),
        rule: Some(f.rule.clone()),
        result: Some(f.result),
        severity: Some(f.severity),
        scored: Some(true),
        message: Some(f.message.clone()),
        category: Some(CATEGORY.to_string()),
        timestamp: None,
        resources: vec![ObjectReference {
            api_version: Some(format!("{}/v1", f.workload.kind.group())),
            kind: Some(f.workload.kind.as_str().to_string()),
            namespace: Some(f.workload.namespace.clone()),
            name: Some(f.workload.name.clone()),
            uid: Some(f.workload.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectReference::default()
        }],
        properties: f.properties.clone(),
    }
}

/// The template fingerprint's hash over the results' JSON: stable across runs and versions.
fn digest(results: &[ReportResult]) -> String {
    let value = serde_json::to_value(results).unwrap_or(Value::Null);
    custody_crds::template_fingerprint(&value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::judge::WorkloadId;
    use custody_crds::WorkloadKind;
    use custody_crds::report::{ResultStatus, Severity};

    fn finding(name: &str, result: ResultStatus) -> Finding {
        Finding {
            workload: WorkloadId {
                namespace: "shop".into(),
                kind: WorkloadKind::Deployment,
                name: name.into(),
                uid: format!("uid-{name}"),
            },
            policy: "default".into(),
            rule: "Compliant".into(),
            result,
            severity: Severity::Info,
            message: "ok".into(),
            properties: [("owner".to_string(), "payments".to_string())].into(),
        }
    }

    const AT: ResultTimestamp = ResultTimestamp {
        seconds: 1_800_000_000,
        nanos: 0,
    };

    #[test]
    fn a_namespace_report_carries_summary_results_and_digest() {
        let (a, b) = (
            finding("b", ResultStatus::Fail),
            finding("a", ResultStatus::Pass),
        );
        let reports = namespace_reports(
            ReportFormat::OpenReports,
            "shop",
            &[&a, &b],
            "custody.dev/audit-digest",
            AT,
            100,
        );
        assert_eq!(reports.len(), 1);
        let o = &reports[0].object;
        assert_eq!(o["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(o["kind"], "Report");
        assert_eq!(o["metadata"]["name"], "custody-audit");
        assert_eq!(o["metadata"]["labels"][MANAGED_BY_LABEL], "custody");
        assert_eq!(
            o["metadata"]["annotations"]["custody.dev/audit-digest"],
            reports[0].digest.as_str()
        );
        assert_eq!(o["source"], "custody");
        assert_eq!(
            o["summary"],
            json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
        );
        // Sorted by workload, whatever the order found.
        assert_eq!(o["results"][0]["resources"][0]["name"], "a");
        assert_eq!(o["results"][1]["result"], "fail");
        assert_eq!(o["results"][1]["resources"][0]["apiVersion"], "apps/v1");
        assert_eq!(o["results"][1]["properties"]["owner"], "payments");
        assert_eq!(o["results"][1]["timestamp"]["seconds"], 1_800_000_000);
    }

    #[test]
    fn the_digest_ignores_time_and_order_but_not_results() {
        let (a, b) = (
            finding("a", ResultStatus::Pass),
            finding("b", ResultStatus::Pass),
        );
        let at = |t: i64, fs: &[&Finding]| {
            let ts = ResultTimestamp {
                seconds: t,
                nanos: 0,
            };
            namespace_reports(ReportFormat::OpenReports, "shop", fs, "d", ts, 100)[0]
                .digest
                .clone()
        };
        assert_eq!(at(1, &[&a, &b]), at(2, &[&b, &a]));
        let failing = finding("b", ResultStatus::Fail);
        assert_ne!(at(1, &[&a, &b]), at(1, &[&a, &failing]));
    }

    #[test]
    fn many_results_are_split_in_parts_and_policy_reports_have_no_top_level_source() {
        let many: Vec<Finding> = (0..5)
            .map(|i| finding(&format!("w{i}"), ResultStatus::Pass))
            .collect();
        let refs: Vec<&Finding> = many.iter().collect();
        let reports = namespace_reports(ReportFormat::PolicyReport, "shop", &refs, "d", AT, 2);
        let names: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["custody-audit", "custody-audit-2", "custody-audit-3"]
        );
        assert_eq!(reports[2].object["summary"]["pass"], 1);
        assert_eq!(reports[0].object["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(reports[0].object["kind"], "PolicyReport");
        assert!(reports[0].object.get("source").is_none());
        assert_eq!(reports[0].object["results"][0]["source"], "custody");
    }
}
