//! `kubectl custody`'s pure half: `why` judged on constructed live objects, revisions, records,
//! and the text both commands print.
#![allow(clippy::unwrap_used)]

use custody_cli::plugin::why::{WhyInput, WhyReport, explain};
use custody_cli::plugin::{ObjectRef, format, records};
use custody_crds::{CustodyPolicy, RollbackRecord, Vocabulary, WorkloadKind, template_fingerprint};
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
    replica_sets: Vec<Value>,
    user: &'static str,
}

impl World {
    fn new(object: Value) -> Self {
        Self {
            object,
            policies: vec![CustodyPolicy::builtin_default()],
            records: Vec::new(),
            replica_sets: Vec::new(),
            user: "kubectl-custody",
        }
    }

    fn explain(&self) -> WhyReport {
        let kind = match self.object["kind"].as_str().unwrap() {
            "ReplicaSet" => WorkloadKind::ReplicaSet,
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
            replica_sets: &self.replica_sets,
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
        replica_sets: vec![
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
