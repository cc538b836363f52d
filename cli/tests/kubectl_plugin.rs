//! `kubectl custody`'s pure half: `why` judged on constructed live objects, revisions, records,
//! and the text both commands print.
#![allow(clippy::unwrap_used)]

use custody_cli::plugin::why::{WhyInput, WhyReport, explain};
use custody_cli::plugin::{ObjectRef, format, records};
use custody_crds::{
    CustodyChange, CustodyPolicy, RollbackRecord, Vocabulary, WorkloadKind, template_fingerprint,
};
use custody_engine::{Outcome, ViolationCode};
use serde_json::{Value, json};

const DEPLOY_UID: &str = "d-uid-1";

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
}

fn deployment(annotations: Value, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": DEPLOY_UID, "annotations": annotations},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(image)}
    })
}

fn complete(actor: &str) -> Value {
    json!({
        "custody.dev/actor": actor,
        "custody.dev/agent": "claude-code/1.0",
        "custody.dev/source-repo": "https://github.com/acme/shop",
        "custody.dev/source-commit": "3f9c2a7",
        "custody.dev/owner": "team-shop",
        "custody.dev/oncall": "shop-oncall@acme.dev",
    })
}

fn replica_set(name: &str, revision: u64, owner_uid: &str, image: &str, marks: Value) -> Value {
    let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string(), "custody.dev/actor": "agent"});
    for (k, v) in marks.as_object().unwrap() {
        annotations[format!("custody.dev/{k}")] = v.clone();
    }
    let mut t = template(image);
    t["metadata"]["labels"]["pod-template-hash"] = json!(name.rsplit('-').next().unwrap());
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid, "controller": true}]},
        "spec": {"replicas": 1, "template": t},
        "status": {"readyReplicas": 1}
    })
}

fn record(
    name: &str,
    action: &str,
    from: &str,
    fingerprint: &str,
    acted_at: &str,
) -> RollbackRecord {
    serde_json::from_value(json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "workload": {"kind": "Deployment", "name": "web"},
            "action": action, "reason": "NotReady",
            "from": {"revision": from, "templateFingerprint": fingerprint, "actor": "agent", "agent": "claude-code/1.0"},
            "to": {"revision": "1", "templateFingerprint": "sha256:00"},
            "policy": "custody-builtin-default", "explanation": "test",
            "regressionDetectedAt": acted_at, "actedAt": acted_at
        }
    }))
    .unwrap()
}

fn agents_policy() -> CustodyPolicy {
    serde_json::from_value(json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "agents"},
        "spec": {"identities": {"agents": {"users": ["system:serviceaccount:ci:agent"]}}}
    }))
    .unwrap()
}

struct World {
    object: Value,
    policies: Vec<CustodyPolicy>,
    records: Vec<RollbackRecord>,
    revisions: Vec<Value>,
    changes: Vec<CustodyChange>,
    user: &'static str,
}

impl World {
    fn new(object: Value) -> Self {
        Self {
            object,
            policies: vec![CustodyPolicy::builtin_default()],
            records: Vec::new(),
            revisions: Vec::new(),
            changes: Vec::new(),
            user: "kubectl-custody",
        }
    }

    fn explain(&self) -> WhyReport {
        let kind = match self.object["kind"].as_str().unwrap() {
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "StatefulSet" => WorkloadKind::StatefulSet,
            _ => WorkloadKind::Deployment,
        };
        let target = ObjectRef {
            kind,
            name: self.object["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        };
        let vocabulary = Vocabulary::default();
        explain(&WhyInput {
            target: &target,
            namespace: "shop",
            object: &self.object,
            policies: &self.policies,
            namespace_labels: None,
            records: &self.records,
            teams: &[],
            changes: &self.changes,
            revisions: &self.revisions,
            user: self.user,
            groups: &[],
            vocabulary: &vocabulary,
            now: k8s_openapi::jiff::Timestamp::now(),
        })
    }
}

fn codes(r: &WhyReport) -> Vec<(ViolationCode, String)> {
    r.decision
        .violations
        .iter()
        .map(|v| (v.code, v.field.clone()))
        .collect()
}

/// The violations expected, as (code, field).
type Expected = Vec<(ViolationCode, &'static str)>;

#[test]
fn why_judges_the_live_object_as_the_webhook_would() {
    let quarantined_fp = template_fingerprint(&template("shop:2")).to_string();
    let cases: Vec<(&str, World, Outcome, Expected)> = vec![
        (
            "unannotated deployment is denied for every missing key",
            World::new(deployment(json!({}), "shop:1")),
            Outcome::Denied,
            vec![
                (
                    ViolationCode::MissingAnnotation,
                    "metadata.annotations[custody.dev/actor]",
                ),
                (
                    ViolationCode::MissingAnnotation,
                    "metadata.annotations[custody.dev/source-repo]",
                ),
                (
                    ViolationCode::MissingAnnotation,
                    "metadata.annotations[custody.dev/source-commit]",
                ),
                (
                    ViolationCode::MissingAnnotation,
                    "metadata.annotations[custody.dev/owner]",
                ),
                (
                    ViolationCode::MissingAnnotation,
                    "metadata.annotations[custody.dev/oncall]",
                ),
            ],
        ),
        (
            "fully annotated human deployment is admitted",
            World::new(deployment(complete("human"), "shop:1")),
            Outcome::Allowed,
            vec![],
        ),
        (
            "agent identity declaring a human actor fails the cross-check under that name",
            World {
                policies: vec![agents_policy()],
                user: "system:serviceaccount:ci:agent",
                ..World::new(deployment(complete("human"), "shop:1"))
            },
            Outcome::Denied,
            vec![(
                ViolationCode::ActorMismatch,
                "metadata.annotations[custody.dev/actor]",
            )],
        ),
        (
            "the same object judged as the default plugin user passes the cross-check",
            World {
                policies: vec![agents_policy()],
                ..World::new(deployment(complete("human"), "shop:1"))
            },
            Outcome::Allowed,
            vec![],
        ),
        (
            "a reverted template is quarantined",
            World {
                records: vec![record(
                    "web-r2",
                    "Reverted",
                    "2",
                    &quarantined_fp,
                    "2026-01-02T00:00:00Z",
                )],
                ..World::new(deployment(complete("agent"), "shop:2"))
            },
            Outcome::Denied,
            vec![(ViolationCode::Quarantined, "spec.template")],
        ),
        (
            "an alert does not quarantine",
            World {
                records: vec![record(
                    "web-r2",
                    "Alerted",
                    "2",
                    &quarantined_fp,
                    "2026-01-02T00:00:00Z",
                )],
                ..World::new(deployment(complete("agent"), "shop:2"))
            },
            Outcome::Allowed,
            vec![],
        ),
        (
            "no policy in the cluster: not judged",
            World {
                policies: vec![],
                ..World::new(deployment(json!({}), "shop:1"))
            },
            Outcome::Skipped,
            vec![],
        ),
    ];
    for (name, world, outcome, want) in cases {
        let report = world.explain();
        assert_eq!(
            report.decision.outcome, outcome,
            "{name}: {:#?}",
            report.decision
        );
        let got = codes(&report);
        let got: Vec<(ViolationCode, &str)> = got.iter().map(|(c, f)| (*c, f.as_str())).collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn why_reports_provenance_quarantine_and_notes() {
    let fp = template_fingerprint(&template("shop:2")).to_string();
    let world = World {
        policies: vec![],
        records: vec![
            record("web-r2", "Reverted", "2", &fp, "2026-01-02T00:00:00Z"),
            record(
                "web-r1",
                "Alerted",
                "1",
                "sha256:11",
                "2026-01-01T00:00:00Z",
            ),
        ],
        ..World::new(deployment(
            json!({"custody.dev/actor": "agent", "custody.dev/agent": "claude-code/1.0"}),
            "shop:2",
        ))
    };
    let report = world.explain();
    let provenance: Vec<(&str, Option<&str>)> = report
        .provenance
        .iter()
        .map(|p| (p.annotation.as_str(), p.value.as_deref()))
        .collect();
    assert_eq!(provenance[0], ("custody.dev/actor", Some("agent")));
    assert_eq!(
        provenance[1],
        ("custody.dev/agent", Some("claude-code/1.0"))
    );
    assert_eq!(provenance[7], ("custody.dev/oncall", None));
    assert_eq!(
        report.quarantined_by.as_ref().map(|r| r.name.as_str()),
        Some("web-r2")
    );
    let names: Vec<&str> = report.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web-r2", "web-r1"], "newest first");
    // No policy: the webhook would not apply the quarantine, and the report says both.
    assert!(report.notes.iter().any(|n| n.contains("no CustodyPolicy")));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("quarantined, but no policy"))
    );

    let text = format::why_text(&report);
    assert!(text.contains("NOT JUDGED"), "{text}");
    assert!(
        text.contains(
            "QUARANTINED: the current template is revision 2 reverted by RollbackRecord web-r2"
        ),
        "{text}"
    );
    assert!(
        text.contains("custody.dev/oncall         <unset>"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&format::json(&report)).unwrap();
    assert_eq!(json["quarantinedBy"]["name"], "web-r2");
    assert_eq!(json["decision"]["outcome"], "Skipped");
}

#[test]
fn deployment_revisions_are_newest_first_with_marks() {
    let world = World {
        revisions: vec![
            replica_set(
                "web-aaa",
                1,
                DEPLOY_UID,
                "shop:1",
                json!({"healthy-since": "2026-01-01T00:00:00Z"}),
            ),
            replica_set(
                "web-ccc",
                3,
                DEPLOY_UID,
                "shop:3",
                json!({"reverted-by": "web-r3", "alerted-by": "web-a3"}),
            ),
            replica_set("web-bbb", 2, DEPLOY_UID, "shop:2", json!({})),
            replica_set("other-ddd", 9, "someone-else", "shop:9", json!({})),
        ],
        ..World::new(deployment(complete("agent"), "shop:2"))
    };
    let report = world.explain();
    let rows: Vec<(&str, Option<u64>, bool)> = report
        .revisions
        .iter()
        .map(|r| (r.name.as_str(), r.revision, r.current))
        .collect();
    assert_eq!(
        rows,
        [
            ("web-ccc", Some(3), false),
            ("web-bbb", Some(2), true),
            ("web-aaa", Some(1), false)
        ],
        "another Deployment's ReplicaSet is left out; the current one matches the template"
    );
    assert_eq!(report.revisions[0].reverted_by.as_deref(), Some("web-r3"));
    assert_eq!(report.revisions[0].alerted_by.as_deref(), Some("web-a3"));
    assert_eq!(
        report.revisions[2].healthy_since.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );

    let text = format::why_text(&report);
    assert!(
        text.contains("REVISION  REPLICASET  READY  ACTOR  COMMIT  MARKS"),
        "{text}"
    );
    assert!(text.contains("2*        web-bbb"), "{text}");
    assert!(
        text.contains("reverted by web-r3, alerted by web-a3"),
        "{text}"
    );
}

#[test]
fn a_replicaset_is_judged_with_a_note_about_its_controller() {
    let rs = replica_set("web-aaa", 1, DEPLOY_UID, "shop:1", json!({}));
    let report = World::new(rs).explain();
    assert_eq!(report.kind, "ReplicaSet");
    assert!(report.revisions.is_empty());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("controlled by Deployment/web"))
    );
}

#[test]
fn records_are_listed_newest_first_across_namespaces() {
    let mut other = record("api-r5", "DryRun", "5", "sha256:55", "2026-01-03T00:00:00Z");
    other.metadata.namespace = Some("billing".to_string());
    other.spec.to = None;
    other.spec.from.actor = None;
    other.spec.from.agent = None;
    let all = [
        record(
            "web-r2",
            "Reverted",
            "2",
            "sha256:22",
            "2026-01-02T00:00:00Z",
        ),
        other,
        record(
            "web-r1",
            "Alerted",
            "1",
            "sha256:11",
            "2026-01-01T00:00:00Z",
        ),
    ];
    let rows = records::rows(&all);
    let got: Vec<(&str, String, bool)> = rows
        .iter()
        .map(|r| (r.name.as_str(), r.revisions(), r.quarantines))
        .collect();
    assert_eq!(
        got,
        [
            ("api-r5", "5→-".to_string(), false),
            ("web-r2", "2→1".to_string(), true),
            ("web-r1", "1→1".to_string(), false),
        ]
    );
    let text = format::records_text(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "  ACTED                 WORKLOAD                ACTION    REASON    FROM→TO  ACTOR/AGENT            RECORD"
    );
    assert_eq!(
        lines[1],
        "  2026-01-03T00:00:00Z  billing/deployment/web  DryRun    NotReady  5→-      -/-                    api-r5"
    );
    assert_eq!(format::records_text(&[]), "No RollbackRecords.\n");
    let json: Value = serde_json::from_str(&format::json(&rows)).unwrap();
    assert_eq!(json[1]["action"], "Reverted");
    assert!(json[0].get("toRevision").is_none());
}

/// What the controller writes on a revision under analysis.
fn analysis_json() -> Value {
    json!({
        "phase": "Running", "checks": 2,
        "started": "2026-03-01T10:00:00Z", "updated": "2026-03-01T10:00:30Z",
        "metrics": [{
            "name": "error-ratio", "result": "Fail", "failingInARow": 1,
            "why": "0.03 is more than 2 times the previous revision's 0.01",
            "condition": "fails when more than 2 times the previous revision's",
            "new": 0.03, "baseline": 0.01,
            "query": "sum(rate(errors{pod=~\"web-bbb-.*\"}[120s]))"
        }]
    })
}

#[test]
fn a_held_deployment_shows_its_hold_the_resume_command_and_the_current_analysis() {
    let mut held = deployment(complete("agent"), "shop:2");
    held["metadata"]["annotations"]["custody.dev/held"] = json!("web-bbb");
    held["spec"]["paused"] = json!(true);
    let world = World {
        revisions: vec![
            replica_set(
                "web-aaa",
                1,
                DEPLOY_UID,
                "shop:1",
                json!({"healthy-since": "2026-01-01T00:00:00Z", "analysis": "{\"phase\":\"Passed\",\"checks\":9}"}),
            ),
            replica_set(
                "web-bbb",
                2,
                DEPLOY_UID,
                "shop:2",
                json!({"analysis": analysis_json().to_string()}),
            ),
        ],
        ..World::new(held)
    };
    let report = world.explain();
    let held = report.held.as_ref().unwrap();
    assert_eq!((held.revision.as_str(), held.number), ("web-bbb", Some(2)));
    assert_eq!(held.restores_partition, None);
    let analysis = report.analysis.as_ref().unwrap();
    assert_eq!(
        (analysis.revision.as_str(), analysis.number),
        ("web-bbb", Some(2)),
        "the current revision's analysis, not an older one's"
    );
    assert_eq!(analysis.report.metrics[0].failing_in_a_row, 1);

    let text = format::why_text(&report);
    for line in [
        "  HELD after its first step, on revision 2 (web-bbb): the controller resumes it once that step stays Ready (and its metric analysis passes), or reverts it if it regresses.",
        "  To release it now: kubectl custody resume deployment/web -n shop",
        "Analysis of the current revision (revision 2, web-bbb):",
        "  Running, 2 checks (2026-03-01T10:00:00Z to 2026-03-01T10:00:30Z)",
        "  METRIC       RESULT  NEW   BASELINE  FAILING IN A ROW",
        "  error-ratio  Fail    0.03  0.01      1",
        "  - error-ratio: fails when more than 2 times the previous revision's; last check: 0.03 is more than 2 times the previous revision's 0.01",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    let json: Value = serde_json::from_str(&format::json(&report)).unwrap();
    assert_eq!(
        json["held"]["resume"],
        "kubectl custody resume deployment/web -n shop"
    );
    assert_eq!(json["analysis"]["report"]["phase"], "Running");
}

#[test]
fn a_workload_nobody_holds_or_analyses_prints_neither() {
    let world = World {
        revisions: vec![replica_set("web-bbb", 2, DEPLOY_UID, "shop:2", json!({}))],
        ..World::new(deployment(complete("agent"), "shop:2"))
    };
    let report = world.explain();
    assert!(report.held.is_none() && report.analysis.is_none());
    let text = format::why_text(&report);
    assert!(
        !text.contains("HELD") && !text.contains("Analysis"),
        "{text}"
    );
    let json: Value = serde_json::from_str(&format::json(&report)).unwrap();
    assert!(json.get("held").is_none() && json.get("analysis").is_none());
}

#[test]
fn an_unreadable_analysis_is_a_note_not_a_failure() {
    let world = World {
        revisions: vec![replica_set(
            "web-bbb",
            2,
            DEPLOY_UID,
            "shop:2",
            json!({"analysis": "{not json"}),
        )],
        ..World::new(deployment(complete("agent"), "shop:2"))
    };
    let report = world.explain();
    assert!(report.analysis.is_none());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("the custody.dev/analysis annotation of web-bbb cannot be read")),
        "{:?}",
        report.notes
    );
}

const STS_UID: &str = "s-uid-1";

fn controller_revision(name: &str, revision: u64, marks: Value) -> Value {
    let mut annotations = json!({"custody.dev/actor": "agent"});
    for (k, v) in marks.as_object().unwrap() {
        annotations[format!("custody.dev/{k}")] = v.clone();
    }
    json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision", "revision": revision,
        "metadata": {"name": name, "namespace": "shop", "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": STS_UID, "controller": true}]},
        "data": {"spec": {"template": {"$patch": "replace"}}}
    })
}

#[test]
fn a_held_statefulset_shows_its_controller_revisions_and_the_partition_it_gets_back() {
    let mut annotations = complete("agent");
    annotations["custody.dev/held"] = json!("db-6b8c");
    annotations["custody.dev/held-partition"] = json!("1");
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "uid": STS_UID, "annotations": annotations},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "db"}}, "template": template("db:2"),
            "updateStrategy": {"rollingUpdate": {"partition": 2}}},
        "status": {"updateRevision": "db-6b8c", "currentRevision": "db-5a7b"}
    });
    let mut unowned = controller_revision("db-9z9z", 3, json!({}));
    unowned["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    let world = World {
        revisions: vec![
            controller_revision(
                "db-5a7b",
                1,
                json!({"healthy-since": "2026-01-01T00:00:00Z"}),
            ),
            controller_revision(
                "db-6b8c",
                2,
                json!({"analysis": analysis_json().to_string()}),
            ),
            unowned,
        ],
        ..World::new(sts)
    };
    let report = world.explain();
    let rows: Vec<(&str, Option<u64>, bool)> = report
        .revisions
        .iter()
        .map(|r| (r.name.as_str(), r.revision, r.current))
        .collect();
    assert_eq!(
        rows,
        [("db-6b8c", Some(2), true), ("db-5a7b", Some(1), false)],
        "another StatefulSet's revision is left out; updateRevision is the current one"
    );
    let held = report.held.as_ref().unwrap();
    assert_eq!(held.restores_partition, Some(1));
    assert_eq!(held.resume, "kubectl custody resume statefulset/db -n shop");
    assert_eq!(report.analysis.as_ref().unwrap().revision, "db-6b8c");

    let text = format::why_text(&report);
    for line in [
        "  REVISION  CONTROLLERREVISION  READY  ACTOR  COMMIT  MARKS",
        "  2*        db-6b8c             -      agent  -       -",
        "  (* = the current revision)",
        "  To release it now (its partition goes back to 1): kubectl custody resume statefulset/db -n shop",
        "Analysis of the current revision (revision 2, db-6b8c):",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
}

#[test]
fn a_records_metric_evidence_is_shown_by_why_and_kept_in_json() {
    let fp = template_fingerprint(&template("shop:2")).to_string();
    let mut metric = record("web-r2", "Reverted", "2", &fp, "2026-01-02T00:00:00Z");
    metric.spec.reason = custody_crds::SignalReason::MetricAnalysis;
    let mut evidence = analysis_json();
    evidence["phase"] = json!("Failed");
    evidence["metrics"][0]["failedChecks"] = json!([
        {"at": "2026-03-01T10:00:30Z", "new": 0.03, "baseline": 0.01, "why": "0.03 is more than 2 times the previous revision's 0.01"}
    ]);
    metric.spec.analysis = Some(serde_json::from_value(evidence).unwrap());
    let plain = record(
        "web-r1",
        "Alerted",
        "1",
        "sha256:11",
        "2026-01-01T00:00:00Z",
    );
    let world = World {
        records: vec![metric, plain],
        ..World::new(deployment(complete("agent"), "shop:3"))
    };
    let report = world.explain();
    let text = format::why_text(&report);
    for line in [
        "Evidence of RollbackRecord web-r2: metric analysis Failed, 2 checks (2026-03-01T10:00:00Z to 2026-03-01T10:00:30Z)",
        "    query:          sum(rate(errors{pod=~\"web-bbb-.*\"}[120s]))",
        "    last values:    new 0.03, baseline 0.01",
        "      2026-03-01T10:00:30Z  0.03  0.01      0.03 is more than 2 times the previous revision's 0.01",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
    assert!(
        !text.contains("Evidence of RollbackRecord web-r1"),
        "{text}"
    );
    assert!(text.contains("MetricAnalysis"), "{text}");
    let rows = records::rows(&world.records);
    let json: Value = serde_json::from_str(&format::json(&rows)).unwrap();
    assert_eq!(
        json[0]["analysis"]["metrics"][0]["failedChecks"][0]["new"],
        0.03
    );
    assert!(json[1].get("analysis").is_none());
}

#[test]
fn a_hold_on_an_alerted_revision_says_a_person_must_end_it() {
    let mut held = deployment(complete("agent"), "shop:2");
    held["metadata"]["annotations"]["custody.dev/held"] = json!("web-bbb");
    let world = World {
        revisions: vec![replica_set(
            "web-bbb",
            2,
            DEPLOY_UID,
            "shop:2",
            json!({"alerted-by": "web-a2"}),
        )],
        ..World::new(held)
    };
    let text = format::why_text(&world.explain());
    assert!(
        text.contains("HELD after its first step, on revision 2 (web-bbb), which the controller alerted about (web-a2) and no longer judges"),
        "{text}"
    );
}

#[test]
fn resume_says_what_was_released_and_that_the_controller_still_judges_it() {
    use custody_cli::plugin::resume::ResumeReport;
    let mut report = ResumeReport {
        kind: WorkloadKind::Deployment,
        namespace: "shop".into(),
        name: "web".into(),
        revision: "web-7d9f".into(),
        partition: None,
        condition: Some("updated".into()),
        event: Some("created".into()),
    };
    assert_eq!(
        format::resume_text(&report),
        "Released revision web-7d9f of deployment/web in namespace shop, held after its first step: its rollout now proceeds (spec.paused: false).
The controller still judges revision web-7d9f and reverts it if it regresses.
Event RolloutResumed recorded on deployment/web in namespace shop.
"
    );
    report.condition = Some("deployments.apps \"web\" is forbidden".into());
    report.event = Some("events.events.k8s.io is forbidden".into());
    let text = format::resume_text(&report);
    assert!(text.contains("warning: the CustodyHeld condition still says held (deployments.apps \"web\" is forbidden)"), "{text}");
    assert!(
        text.contains("warning: no Event recorded (events.events.k8s.io is forbidden)."),
        "{text}"
    );

    let sts = ResumeReport {
        kind: WorkloadKind::StatefulSet,
        name: "db".into(),
        revision: "db-6b8c".into(),
        partition: Some(0),
        condition: None,
        ..report
    };
    let text = format::resume_text(&sts);
    assert!(text.starts_with("Released revision db-6b8c of statefulset/db in namespace shop, held after its first step: its rollout now proceeds (partition back to 0).\n"), "{text}");
    let json: Value = serde_json::from_str(&format::json(&sts)).unwrap();
    assert_eq!(json["partition"], 0);
    assert!(json.get("condition").is_none());
}

/// The agent's change request for `object`, proposed an hour ago, with `approvals` given half
/// an hour ago and, if `applied`, spent on revision 3.
fn change_for(object: &Value, approvals: &[&str], applied: bool) -> CustodyChange {
    use custody_cli::propose::{Proposer, Workload, build};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = k8s_openapi::jiff::Timestamp::now();
    let workload = Workload {
        kind: WorkloadKind::Deployment,
        name: "web".into(),
        namespace: "shop".into(),
        object: object.clone(),
    };
    let mut change = build(
        &workload,
        Proposer {
            user: "system:serviceaccount:ci:agent",
            reason: "bump the image for the CVE fix",
        },
        None,
        &Vocabulary::default(),
    )
    .unwrap()
    .change;
    change.metadata.creation_timestamp =
        Some(Time(now - k8s_openapi::jiff::SignedDuration::from_hours(1)));
    change.status = Some(custody_crds::CustodyChangeStatus {
        approvals: approvals
            .iter()
            .map(|by| custody_crds::Lift {
                by: by.to_string(),
                reason: "checked the image bump".into(),
                at: Time(now - k8s_openapi::jiff::SignedDuration::from_mins(30)),
            })
            .collect(),
        applied: applied.then(|| custody_crds::Applied {
            revision: "3".into(),
            generation: Some(3),
            at: Time(now),
        }),
        ..custody_crds::CustodyChangeStatus::default()
    });
    change
}

fn reviewed_policy() -> CustodyPolicy {
    serde_json::from_value(json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "reviewed"},
        "spec": {
            "identities": {"agents": {"users": ["system:serviceaccount:ci:agent"]}},
            "agents": {"approval": {"approvers": {"users": ["ann@acme.dev"]}}}
        }
    }))
    .unwrap()
}

#[test]
fn why_judges_with_the_namespaces_change_requests_and_lists_the_open_ones() {
    let live = deployment(complete("agent"), "shop:2");
    let approved = change_for(&live, &["ann@acme.dev"], false);
    let pending = change_for(&deployment(complete("agent"), "shop:3"), &[], false);
    let spent = change_for(
        &deployment(complete("agent"), "shop:1"),
        &["ann@acme.dev"],
        true,
    );
    let world = |changes: Vec<CustodyChange>| World {
        policies: vec![reviewed_policy()],
        user: "system:serviceaccount:ci:agent",
        changes,
        ..World::new(live.clone())
    };

    let report = world(vec![]).explain();
    assert_eq!(report.decision.outcome, Outcome::Denied);
    assert_eq!(
        codes(&report),
        [(ViolationCode::ApprovalRequired, "spec.template".to_string())]
    );

    let report = world(vec![approved.clone(), pending.clone(), spent.clone()]).explain();
    assert!(report.decision.allowed, "{:?}", report.decision.violations);
    let name = |c: &CustodyChange| c.metadata.name.clone().unwrap();
    let shown: Vec<(String, bool)> = report
        .changes
        .iter()
        .map(|c| (c.name.clone(), c.current))
        .collect();
    assert_eq!(
        shown.iter().filter(|(_, current)| *current).count(),
        1,
        "{shown:?}"
    );
    assert!(shown.contains(&(name(&approved), true)), "{shown:?}");
    assert!(shown.contains(&(name(&pending), false)), "{shown:?}");
    assert_eq!(report.closed_changes, 1, "the spent one is left out");
    let text = format::why_text(&report);
    assert!(
        text.contains("  warning: custody: admitted as the change CustodyChange"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("  {}*", name(&approved)))
                && l.contains("approved by ann@acme.dev: admits its revision until")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("  {} ", name(&pending)))
                && l.contains("0 of 1 approvals, takes approvals until")),
        "{text}"
    );
    assert!(
        text.contains("  and 1 other spent, rejected or expired: kubectl custody changes -n shop"),
        "{text}"
    );

    // The running revision's own change, spent: re-creating would need a new approval, and
    // the report says why that is no cause for alarm.
    let spent_here = change_for(&live, &["ann@acme.dev"], true);
    let report = world(vec![spent_here]).explain();
    assert_eq!(report.decision.outcome, Outcome::Denied);
    assert!(
        report.notes.iter().any(
            |n| n.starts_with("the change request that admitted the current revision is spent")
        ),
        "{:?}",
        report.notes
    );
    let json: Value = serde_json::from_str(&format::json(&report)).unwrap();
    assert_eq!(json["changes"][0]["phase"], "Applied");
    assert_eq!(json["changes"][0]["current"], true);
}
