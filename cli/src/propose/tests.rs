#![allow(clippy::unwrap_used)]

use super::*;
use custody_crds::change::is_digest;
use custody_crds::{Approval, CustodyChangeStatus, Lift, TeamMembers};
use custody_engine::attest::claim_from_view;
use custody_engine::{
    ChangeIndex, Context, GroupVersionKind, Outcome, PolicySet, QuarantineIndex, Request,
    TeamIndex, UserInfo, ViolationCode, WorkloadObject, evaluate,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

const AGENT_SA: &str = "system:serviceaccount:agents:claude";
const REASON: &str = "bump web to 1.28 for CVE-2026-1234";

/// An agent's Deployment manifest as written: no namespace, no defaults.
fn manifest(image: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web, tier: front}}
  annotations:
    custody.dev/actor: agent
    custody.dev/agent: claude-code/1.0
    custody.dev/source-repo: https://github.com/acme/shop
    custody.dev/source-commit: 3f9c2a7
    custody.dev/owner: team-web
    custody.dev/oncall: '@web-oncall'
    custody.dev/quarantine-override: 'not signed, not digested'
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 80}}]
          resources: {{limits: {{cpu: 0.5, memory: 64Mi}}}}
"
    )
}

/// What the apiserver stores, and sends the webhook, for `manifest(image)` applied to `shop`:
/// the namespace and server fields filled in, the template defaulted.
fn stored(image: &str) -> Value {
    let mut object: Value = custody_crds::yaml::from_manifest_yaml(&manifest(image)).unwrap();
    object["metadata"]["namespace"] = json!("shop");
    object["metadata"]["uid"] = json!("0b1c");
    object["metadata"]["resourceVersion"] = json!("42");
    object["metadata"]["generation"] = json!(3);
    object["metadata"]["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
    object["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{\"apiVersion\":\"apps/v1\"}");
    object["spec"]["template"] = json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {},
            "terminationGracePeriodSeconds": 30
        }
    });
    object["spec"]["strategy"] = json!({"type": "RollingUpdate"});
    object["status"] = json!({"replicas": 2, "readyReplicas": 2});
    object
}

fn one(text: &str, namespace: Option<&str>) -> Workload {
    let mut m = read_workloads("web.yaml", text, namespace, "default").unwrap();
    assert_eq!(m.workloads.len(), 1, "{m:?}");
    m.workloads.remove(0)
}

fn propose(workload: &Workload, running: Option<&Value>) -> Proposal {
    build(
        workload,
        Proposer {
            user: AGENT_SA,
            reason: REASON,
        },
        running,
        &Vocabulary::default(),
    )
    .unwrap()
}

/// The digest the webhook computes for `object`, sent in a CREATE or UPDATE by the agent.
fn admission_digest(kind: WorkloadKind, object: &Value) -> String {
    let raw = serde_json::value::to_raw_value(object).unwrap();
    let view = WorkloadObject::parse(&raw).unwrap();
    let request = Request::create(
        GroupVersionKind::new(kind.group(), "v1", kind.as_str()),
        Some("shop"),
        object["metadata"]["name"].as_str().unwrap(),
        UserInfo::named(AGENT_SA, &[]),
        view,
    );
    let namespace = request.namespace.as_deref().unwrap();
    let claim = claim_from_view(
        kind,
        namespace,
        request.object.as_ref().unwrap(),
        &Vocabulary::default(),
    )
    .unwrap();
    claim_digest(&claim)
}

#[test]
fn the_digest_is_what_admission_computes_for_the_manifest_and_its_stored_form() {
    let proposal = propose(&one(&manifest("nginx:1.28"), Some("shop")), None);
    let spec = &proposal.change.spec;
    assert!(is_digest(&spec.digest), "{}", spec.digest);

    // The manifest as sent (the namespace is kubectl's -n), and as the apiserver defaulted it.
    let mut sent: Value = custody_crds::yaml::from_manifest_yaml(&manifest("nginx:1.28")).unwrap();
    sent["metadata"]["namespace"] = json!("shop");
    assert_eq!(
        admission_digest(WorkloadKind::Deployment, &sent),
        spec.digest
    );
    assert_eq!(
        admission_digest(WorkloadKind::Deployment, &stored("nginx:1.28")),
        spec.digest,
        "the apiserver's defaults and server fields do not change the digest"
    );
    assert_ne!(
        admission_digest(WorkloadKind::Deployment, &stored("nginx:1.29")),
        spec.digest
    );
    assert_eq!(
        proposal.change.metadata.name.as_deref(),
        Some(change_name("web", &spec.digest).as_str())
    );
    assert_eq!(proposal.change.metadata.namespace.as_deref(), Some("shop"));
}

#[test]
fn every_kind_digests_as_admission_does() {
    let annotations = json!({"custody.dev/actor": "agent", "custody.dev/agent": "claude-code/1.0"});
    let pod_spec =
        json!({"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "1"]}]});
    let template = json!({"metadata": {"labels": {"app": "x"}}, "spec": pod_spec});
    let objects = [
        (
            WorkloadKind::StatefulSet,
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "annotations": annotations},
                "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "x"}}, "template": template}}),
        ),
        (
            WorkloadKind::CronJob,
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "nightly", "annotations": annotations},
                "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": template}}}}),
        ),
        (
            WorkloadKind::Pod,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "debug", "annotations": annotations},
                "spec": pod_spec}),
        ),
    ];
    for (kind, object) in objects {
        let text = serde_json::to_string(&object).unwrap();
        let workload = one(&text, Some("shop"));
        assert_eq!(workload.kind, kind);
        let proposal = propose(&workload, None);
        let mut sent = object.clone();
        sent["metadata"]["namespace"] = json!("shop");
        assert_eq!(
            admission_digest(kind, &sent),
            proposal.change.spec.digest,
            "{kind}"
        );
        let diff = &proposal.change.spec.diff;
        assert_eq!(
            diff.first().map(|l| l.field.as_str()),
            Some("containers[c]"),
            "{kind}: a new workload lists its containers: {diff:?}"
        );
    }
}

#[test]
fn the_diff_against_the_running_object_shows_only_what_changed() {
    let running = stored("nginx:1.27");
    let proposal = propose(&one(&manifest("nginx:1.28"), None), Some(&running));
    let spec = &proposal.change.spec;
    let lines: Vec<(&str, Option<&str>, Option<&str>)> = spec
        .diff
        .iter()
        .map(|l| (l.field.as_str(), l.before.as_deref(), l.after.as_deref()))
        .collect();
    assert_eq!(
        lines,
        [(
            "containers[web].image",
            Some("nginx:1.27"),
            Some("nginx:1.28")
        )],
        "defaults filled in by the apiserver are not changes"
    );
    assert!(!spec.diff_truncated);
    let running_claim = claim_from_value(
        WorkloadKind::Deployment,
        "shop",
        &running,
        &annotations(&running),
        &Vocabulary::default(),
    );
    assert_eq!(
        spec.running_template_digest.as_deref(),
        Some(running_claim.template_digest.as_str())
    );
    assert_eq!(
        proposal.change.metadata.namespace.as_deref(),
        Some("default"),
        "no namespace anywhere: default"
    );
    assert!(proposal.notes.is_empty(), "{:?}", proposal.notes);
}

#[test]
fn the_spec_carries_provenance_labels_agent_and_proposer() {
    let spec = propose(&one(&manifest("nginx:1.28"), None), None)
        .change
        .spec;
    assert_eq!(spec.workload.kind, WorkloadKind::Deployment);
    assert_eq!(spec.workload.name, "web");
    assert_eq!(spec.agent, "claude-code/1.0");
    assert_eq!(spec.proposer, AGENT_SA);
    assert_eq!(spec.reason, REASON);
    assert_eq!(
        spec.provenance
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "actor",
            "agent",
            "oncall",
            "owner",
            "source-commit",
            "source-repo"
        ],
        "the signed keys only"
    );
    assert_eq!(
        spec.labels,
        BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string())
        ])
    );
    assert_eq!(spec.running_template_digest, None);
}

#[test]
fn the_running_template_is_noted() {
    let running = stored("nginx:1.28");
    let proposal = propose(&one(&manifest("nginx:1.28"), None), Some(&running));
    assert!(proposal.change.spec.diff.is_empty());
    assert_eq!(
        proposal.notes,
        [
            "the pod template of deployment/web is the one running: applying it makes no new revision, which needs no approval"
        ]
    );
}

#[test]
fn other_documents_are_left_out_and_namespaces_resolve_like_kubectl() {
    let text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\n---\n{}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: batch/v1\n  kind: Job\n  metadata: {{name: migrate, namespace: ops}}\n  spec: {{template: {{spec: {{containers: [{{name: m, image: m:1}}]}}}}}}\n",
        manifest("nginx:1.28")
    );
    let m = read_workloads("all.yaml", &text, None, "team-ns").unwrap();
    let got: Vec<(String, &str)> = m
        .workloads
        .iter()
        .map(|w| (w.reference(), w.namespace.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("deployment/web".to_string(), "team-ns"),
            ("job/migrate".to_string(), "ops")
        ]
    );
    assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
    assert!(
        m.notes[0].contains("Service \"web\" is not a workload"),
        "{:?}",
        m.notes
    );
}

#[test]
fn refusals_say_what_to_do() {
    let with_annotations = |annotations: &str| {
        manifest("nginx:1.28").replace(
            "    custody.dev/actor: agent\n    custody.dev/agent: claude-code/1.0\n",
            annotations,
        )
    };
    let build_err = |text: &str, reason: &str| {
        build(
            &one(text, None),
            Proposer {
                user: AGENT_SA,
                reason,
            },
            None,
            &Vocabulary::default(),
        )
        .unwrap_err()
        .to_string()
    };
    let cases: [(&str, String, &str); 5] = [
        (
            "a person's revision",
            build_err(&with_annotations("    custody.dev/actor: human\n"), REASON),
            "deployment/web declares custody.dev/actor: \"human\": only an agent's revision needs a person's approval. If an agent made it, stamp the manifest first: custody stamp --actor agent --agent <agent-id> <manifest>",
        ),
        (
            "no actor at all",
            build_err(&with_annotations(""), REASON),
            "deployment/web declares no custody.dev/actor annotation: only an agent's revision",
        ),
        (
            "an agent without its id",
            build_err(&with_annotations("    custody.dev/actor: agent\n"), REASON),
            "deployment/web declares actor agent but no custody.dev/agent annotation",
        ),
        (
            "a short reason",
            build_err(&manifest("nginx:1.28"), "  bump    "),
            "--reason must say what the change does and why",
        ),
        (
            "the manifest and the flag disagree",
            read_workloads(
                "web.yaml",
                &manifest("nginx:1.28")
                    .replace("  name: web\n", "  name: web\n  namespace: shop\n"),
                Some("prod"),
                "default",
            )
            .unwrap_err()
            .to_string(),
            "deployment/web says namespace \"shop\", but --namespace is \"prod\"",
        ),
    ];
    for (name, got, want) in cases {
        assert!(got.starts_with(want), "{name}: {got}");
    }
    let none = read_workloads(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n",
        None,
        "default",
    )
    .unwrap_err();
    assert_eq!(
        none.to_string(),
        "cm.yaml holds no workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod); it holds ConfigMap \"cfg\": only a workload's new revision needs a person's approval; propose the workload's manifest"
    );
    let not_a_workload = Workload {
        kind: WorkloadKind::Deployment,
        name: "cfg".into(),
        namespace: "shop".into(),
        object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}),
    };
    let err = build(
        &not_a_workload,
        Proposer {
            user: AGENT_SA,
            reason: REASON,
        },
        None,
        &Vocabulary::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, ProposeError::NotAWorkload { ref what } if what == "ConfigMap \"cfg\""),
        "{err}"
    );
    assert!(matches!(
        read_workloads("bad.yaml", "kind: [", None, "default"),
        Err(ProposeError::Load(_))
    ));
}

/// The policy of the engine's approval tests: agents under `agents/*` in `shop` need one
/// approval by ann.
fn reviewed() -> PolicySet {
    custody_testkit::approval::reviewed(Some(Approval {
        approvers: TeamMembers {
            users: vec!["ann@acme.dev".into()],
            groups: vec![],
        },
        ..Approval::default()
    }))
}

fn judge(object: &Value, changes: &ChangeIndex, now: Timestamp) -> custody_engine::Decision {
    let raw = serde_json::value::to_raw_value(object).unwrap();
    let request = Request::create(
        GroupVersionKind::new("apps", "v1", "Deployment"),
        Some("shop"),
        "web",
        UserInfo::named(AGENT_SA, &[]),
        WorkloadObject::parse(&raw).unwrap(),
    );
    let vocabulary = Vocabulary::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &QuarantineIndex::default(),
        now,
        attestations: &custody_engine::attest::AttestationCache::with_capacity(1),
        teams: &TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes,
    };
    evaluate(&reviewed(), &request, &ctx)
}

#[test]
fn the_webhook_admits_exactly_the_proposed_revision_once_approved() {
    let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap();
    let mut change = propose(&one(&manifest("nginx:1.28"), Some("shop")), None).change;
    change.metadata.creation_timestamp =
        Some(Time(now - k8s_openapi::jiff::SignedDuration::from_mins(5)));

    let pending = judge(
        &stored("nginx:1.28"),
        &ChangeIndex::from_changes([&change]),
        now,
    );
    assert_eq!(pending.outcome, Outcome::Denied);
    assert_eq!(pending.violations[0].code, ViolationCode::ApprovalRequired);
    assert!(
        pending.violations[0].message.contains(&format!(
            "CustodyChange {:?} has 0 of 1 approvals",
            change.metadata.name.as_deref().unwrap()
        )),
        "{}",
        pending.violations[0].message
    );

    change.status = Some(CustodyChangeStatus {
        approvals: vec![Lift {
            by: "ann@acme.dev".into(),
            reason: "checked the image bump".into(),
            at: Time(now),
        }],
        ..CustodyChangeStatus::default()
    });
    let index = ChangeIndex::from_changes([&change]);
    let admitted = judge(&stored("nginx:1.28"), &index, now);
    assert!(admitted.allowed, "{:?}", admitted.violations);
    assert_eq!(
        admitted
            .audit_annotations
            .get("approved-change")
            .map(String::as_str),
        Some(format!("{}: ann@acme.dev", change.metadata.name.as_deref().unwrap()).as_str())
    );
    let other = judge(&stored("nginx:1.29"), &index, now);
    assert_eq!(
        other.outcome,
        Outcome::Denied,
        "another image is another change"
    );
}
