//! Golden denial messages: what a person or an agent reads. Regenerate with
//! `CUSTODY_BLESS=1 cargo test -p custody-engine --test denial_golden` and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_crds::{
    CustodyPolicy, RecordAction, RevisionSnapshot, RollbackRecord, RollbackRecordSpec,
    SignalReason, WorkloadKind, WorkloadRef,
};
use custody_engine::{PolicySet, QuarantineIndex};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use support::*;

#[test]
fn unannotated_deployment() {
    let d = judge(&fixture("deployment-create-unannotated.json"));
    check_golden("unannotated-deployment.txt", d.message.as_deref().unwrap());
}

#[test]
fn forged_owner_reference() {
    let body = fixture("pod-create-forged-owner-reference-unannotated.json");
    let request = request(&body);
    let owner = request.object.as_ref().unwrap().controller().unwrap();
    assert_eq!(
        (owner.kind.as_ref(), owner.name.as_ref()),
        ("ReplicaSet", "payments-api-775d7dc457"),
        "the fixture carries a controller ownerReference"
    );
    let d = judge(&body);
    assert!(!d.allowed, "a forged ownerReference exempts no one");
    let message = d.message.as_deref().unwrap();
    for key in [
        "custody.dev/actor",
        "custody.dev/source-repo",
        "custody.dev/source-commit",
        "custody.dev/owner",
        "custody.dev/oncall",
    ] {
        assert!(
            message.contains(&format!("- {key} is missing")),
            "{key}: {message}"
        );
    }
    check_golden("forged-owner-reference.txt", message);
}

#[test]
fn agent_without_agent_name_and_bad_commit() {
    let mut annotations = agent_annotations();
    annotations
        .as_object_mut()
        .unwrap()
        .remove("custody.dev/agent");
    annotations["custody.dev/source-commit"] = json!("main");
    let body = review_of(
        "CREATE",
        &deployment("web", annotations, "web:1"),
        None,
        "jane",
        &[],
    );
    let d = judge(&body);
    check_golden(
        "agent-missing-name-bad-commit.txt",
        d.message.as_deref().unwrap(),
    );
}

#[test]
fn stale_provenance() {
    let d = judge(&fixture(
        "deployment-update-image-changed-provenance-unchanged.json",
    ));
    check_golden("stale-provenance.txt", d.message.as_deref().unwrap());
}

#[test]
fn quarantined_template() {
    let v2 = deployment("web", agent_annotations(), "web:2");
    let fingerprint = custody_crds::template_fingerprint(&v2["spec"]["template"]);
    let record = RollbackRecord {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web-r2-7d9f8b6c".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        spec: RollbackRecordSpec {
            workload: WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                uid: None,
            },
            action: RecordAction::Reverted,
            reason: SignalReason::NotReady,
            from: RevisionSnapshot {
                revision: "2".into(),
                template_fingerprint: fingerprint.to_string(),
                ..Default::default()
            },
            to: None,
            signals: vec![],
            policy: "default".into(),
            explanation: "reverted".into(),
            revision_seen_at: None,
            regression_detected_at: Time(jiff_now()),
            acted_at: Time(jiff_now()),
            team: None,
            oncall: None,
            analysis: None,
        },
        status: None,
    };
    let quarantine = QuarantineIndex::from_records([&record]);
    let body = review_of(
        "CREATE",
        &v2,
        None,
        "system:serviceaccount:argocd:argocd-application-controller",
        &[],
    );
    let d = judge_with(&body, &PolicySet::builtin_default(), &quarantine);
    check_golden("quarantined.txt", d.message.as_deref().unwrap());
}

#[test]
fn policy_refused() {
    let policy = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "strict"},
        "spec": {"annotations": [{"key": "owner", "pattern": "^(team-"}]}
    });
    let _: CustodyPolicy = serde_json::from_value(policy.clone()).unwrap();
    let body = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyPolicy"},
            "operation": "CREATE", "name": "strict", "userInfo": {"username": "jane"}, "object": policy}
    });
    let request_body = body.to_string();
    let request = request(request_body.as_bytes());
    let d = custody_engine::validate_policy(&request);
    assert!(!d.allowed);
    check_golden("policy-refused.txt", d.message.as_deref().unwrap());
}

fn review_of_custody(kind: &str, object: &serde_json::Value) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": kind},
            "operation": "CREATE", "name": object["metadata"]["name"], "userInfo": {"username": "jane"}, "object": object}
    })
    .to_string()
}

#[test]
fn bad_freezes_and_teams_are_refused_when_applied() {
    let policy = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "freezes"},
        "spec": {"freezes": [
            {"name": "weekend", "schedule": "0 18 * * 5", "duration": "62h", "timeZone": "Europe/Berlin"},
            {"name": "launch", "start": "2026-12-09T17:00:00", "end": "2026-12-09T09:00:00", "timeZone": "America/New_York"},
            {"name": "weekend", "schedule": "0 18 * * FRI", "duration": "forever", "timeZone": "CET/Nowhere"}
        ]}
    });
    let body = review_of_custody("CustodyPolicy", &policy);
    let d = custody_engine::validate_policy(&request(body.as_bytes()));
    assert!(!d.allowed);
    let mut out = d.message.unwrap();
    let team = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
        "metadata": {"name": "Payments Team"},
        "spec": {"namespaces": ["shop", " "], "oncall": ["payments"], "notify": [
            {"url": "hooks.example.com"},
            {"url": "https://x", "headersFrom": {"name": ""}},
            {"format": "pagerduty", "events": ["alerted", "alerted"]},
            {"urlFrom": {"name": "slack", "key": "url"}, "url": "https://hooks.slack.com/x", "format": "slack"},
            {"format": "alertmanager", "routingKeyFrom": {"name": "pd", "key": "k"}}
        ]}
    });
    let body = review_of_custody("CustodyTeam", &team);
    let d = custody_engine::validate_policy(&request(body.as_bytes()));
    assert!(!d.allowed);
    assert!(
        d.violations
            .iter()
            .all(|v| v.code == custody_engine::ViolationCode::InvalidTeam)
    );
    out.push_str("\n\n");
    out.push_str(&d.message.unwrap());
    let good = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
        "metadata": {"name": "team-payments"},
        "spec": {"namespaces": ["shop"], "oncall": ["@pay"], "notify": [
            {"url": "https://hooks.example.com/p"},
            {"url": "http://alertmanager:9093", "format": "alertmanager", "events": ["reverted", "alerted", "probation"]},
            {"urlFrom": {"name": "slack", "key": "url"}, "format": "slack"},
            {"format": "pagerduty", "routingKeyFrom": {"name": "pd", "key": "routing-key"}},
            {"url": "https://events.example.com/custody", "format": "cloudevents"}
        ]}
    });
    let body = review_of_custody("CustodyTeam", &good);
    assert!(custody_engine::validate_policy(&request(body.as_bytes())).allowed);
    // An unknown format or kind is refused as a malformed team.
    for bad in [
        json!({"url": "https://x", "format": "teams"}),
        json!({"url": "https://x", "events": ["paged"]}),
    ] {
        let mut team = good.clone();
        team["spec"]["notify"] = json!([bad]);
        let body = review_of_custody("CustodyTeam", &team);
        let d = custody_engine::validate_policy(&request(body.as_bytes()));
        assert!(!d.allowed, "{bad}");
        assert!(
            d.message.unwrap().contains("not a valid CustodyTeam"),
            "{bad}"
        );
    }
    check_golden("freezes-and-teams-refused.txt", &out);
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(1_795_000_000).unwrap()
}
