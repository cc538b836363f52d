//! Signed provenance through the controller loop, against an in-process API server: the cache
//! keeps only digests of the attestations, so the envelopes are read from the API server when a
//! regression is decided (the current revision's) and reverted (the target's, with its
//! template). The reverted Deployment carries the target's attestation and the record names the
//! key; an attestation that cannot be read is counted and not believed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use custody_controller::metrics::{KindLabels, Label};
use custody_testkit::fake_apiserver::FakeApiServer;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::running::{self, Running, ago, eventually, image};
use support::signing::{Key, stored};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";
const ATTESTATION: &str = "custody.dev/attestation";

fn provenance(actor: &str, commit: &str) -> BTreeMap<String, String> {
    [
        ("custody.dev/actor", actor),
        ("custody.dev/agent", "claude-code/1.0"),
        (
            "custody.dev/source-repo",
            "https://git.example.com/shop/web",
        ),
        ("custody.dev/source-commit", commit),
        ("custody.dev/owner", "team-web"),
        ("custody.dev/oncall", "web@example.com"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The envelopes as stored, by ReplicaSet name.
struct Seeded {
    v1: String,
    v2: String,
}

/// A Required signature policy trusting `release` for humans and `ci` for agents; v1 signed by
/// `release` for a human and healthy; v2 signed by `ci` for an agent, one pod not Ready.
fn seed(api: &FakeApiServer, release: &Key, ci: &Key) -> Seeded {
    api.upsert(
        POLICIES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "signed", "uid": "uid-policy"},
            "spec": {"match": {"namespaces": {"include": ["shop"]}},
                     "signatures": {"mode": "Required", "keys": [
                         release.trusted(vec![custody_crds::Actor::Human]),
                         ci.trusted(vec![custody_crds::Actor::Agent])]}}
        }),
    );
    let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}]);
    let mut a1 = provenance("human", "aaaaaaa");
    let v1 = release.sign(&stored("web:1", "h1"), &a1);
    a1.insert(ATTESTATION.into(), v1.clone());
    let mut a2 = provenance("agent", "bbbbbbb");
    let v2 = ci.sign(&stored("web:2", "h2"), &a2);
    a2.insert(ATTESTATION.into(), v2.clone());

    let mut deployment_template = stored("web:2", "h2");
    deployment_template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    api.upsert(DEPLOYMENTS, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": 2, "annotations": a2},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": deployment_template,
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    }));
    let mut rs1: Value = json!(a1);
    rs1["deployment.kubernetes.io/revision"] = json!("1");
    rs1["custody.dev/healthy-since"] = json!(ago(3600));
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-rs1", "creationTimestamp": ago(7200),
                     "annotations": rs1, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": stored("web:1", "h1")}
    }));
    let mut rs2: Value = json!(a2);
    rs2["deployment.kubernetes.io/revision"] = json!("2");
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-2", "namespace": "shop", "uid": "uid-rs2", "creationTimestamp": ago(300),
                     "annotations": rs2, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": stored("web:2", "h2")}
    }));
    api.upsert(PODS, json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-2-x", "namespace": "shop", "uid": "uid-p2", "ownerReferences": owner("ReplicaSet", "web-2", "uid-rs2")},
        "spec": {"containers": [{"name": "web", "image": "web:2"}]},
        "status": {"startTime": ago(120), "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": ago(120)}],
                   "containerStatuses": [{"name": "web", "image": "web:2", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
    }));
    Seeded { v1, v2 }
}

fn start(api: &FakeApiServer) -> Running {
    running::start(api, |_, _| running::config())
}

fn gets(api: &FakeApiServer, path: &str) -> usize {
    api.requests()
        .iter()
        .filter(|(m, p)| *m == Method::GET && p.ends_with(path))
        .count()
}

#[tokio::test]
async fn a_signed_agent_revision_is_reverted_with_the_targets_attestation_read_at_revert_time() {
    let api = FakeApiServer::start().await.unwrap();
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    let seeded = seed(&api, &release, &ci);
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "no revert"
    );
    let deployment = api.get(DEPLOYMENTS, "shop", "web").unwrap();
    let annotations = &deployment["metadata"]["annotations"];
    assert_eq!(
        annotations[ATTESTATION], seeded.v1,
        "the target's attestation, as stored, comes back with its template"
    );
    assert_ne!(annotations[ATTESTATION], seeded.v2);
    assert_eq!(annotations["custody.dev/actor"], "human");
    assert_eq!(annotations["custody.dev/owner"], "team-web");

    let records = api.list(RECORDS);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["spec"]["action"], "Reverted");
    assert_eq!(records[0]["spec"]["from"]["attestedBy"], "ci");
    // One read of each envelope: the current revision's to verify it, the target's with its
    // template.
    assert_eq!(gets(&api, "/replicasets/web-2"), 1);
    assert_eq!(gets(&api, "/replicasets/web-1"), 1);
    controller.stop().await;
}

#[tokio::test]
async fn an_attestation_that_cannot_be_read_is_counted_and_not_believed() {
    let api = FakeApiServer::start().await.unwrap();
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    seed(&api, &release, &ci);
    api.inject(
        Method::GET,
        "/replicasets/web-2",
        StatusCode::INTERNAL_SERVER_ERROR,
        1,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || api.list(RECORDS).len() == 1).await,
        "no record"
    );
    let record = &api.list(RECORDS)[0];
    assert_eq!(
        record["spec"]["action"], "Alerted",
        "an actor no key could be checked for is not acted on"
    );
    assert!(record["spec"]["from"].get("attestedBy").is_none());
    assert_eq!(
        controller
            .metrics
            .attestation_read_failures
            .get_or_create(&KindLabels {
                kind: Label(custody_crds::WorkloadKind::Deployment),
            })
            .get(),
        1
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(image(&api), "web:2");
    controller.stop().await;
}

const STATEFULSETS: &str = "apis/apps/v1/statefulsets";
const CONTROLLER_REVISIONS: &str = "apis/apps/v1/controllerrevisions";

/// A StatefulSet `db` under the same policy: revision 1 (a ControllerRevision the controller
/// marked healthy, so it carries the provenance and attestation of its day) signed for a human,
/// revision 2 signed for an agent on the StatefulSet itself (its ControllerRevision carries
/// none) with the annotations `v2_extra` besides its provenance, one pod crash-looping.
fn seed_stateful_set(
    api: &FakeApiServer,
    release: &Key,
    ci: &Key,
    v2_extra: &[(&str, &str)],
) -> Seeded {
    use custody_crds::WorkloadKind::StatefulSet;
    api.upsert(
        POLICIES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "signed", "uid": "uid-policy"},
            "spec": {"match": {"namespaces": {"include": ["shop"]}},
                     "signatures": {"mode": "Required", "keys": [
                         release.trusted(vec![custody_crds::Actor::Human]),
                         ci.trusted(vec![custody_crds::Actor::Agent])]}}
        }),
    );
    let template = |image: &str| {
        let mut t = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": image}]}});
        custody_crds::attestation::apply_server_defaults(StatefulSet, &mut t);
        t
    };
    let mut a1 = provenance("human", "aaaaaaa");
    let v1 = release.sign_for(StatefulSet, "shop", "db", &template("db:1"), &a1);
    a1.insert(ATTESTATION.into(), v1.clone());
    a1.insert("custody.dev/healthy-since".into(), ago(3600));
    let mut a2 = provenance("agent", "bbbbbbb");
    a2.extend(v2_extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let v2 = ci.sign_for(StatefulSet, "shop", "db", &template("db:2"), &a2);
    a2.insert(ATTESTATION.into(), v2.clone());
    api.upsert(STATEFULSETS, json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "uid": "uid-db", "generation": 2, "annotations": a2},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "db"}}, "template": template("db:2")},
        "status": {"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                   "updatedReplicas": 1, "currentRevision": "db-h1", "updateRevision": "db-h2"}
    }));
    let owner = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "uid-db", "controller": true}]);
    for (n, image, annotations, created) in [
        (1, "db:1", json!(a1), ago(7200)),
        (2, "db:2", json!({}), ago(300)),
    ] {
        let mut data = template(image);
        data["$patch"] = json!("replace");
        api.upsert(CONTROLLER_REVISIONS, json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": format!("db-h{n}"), "namespace": "shop", "uid": format!("uid-cr{n}"),
                         "creationTimestamp": created, "labels": {"app": "db", "controller-revision-hash": format!("h{n}")},
                         "annotations": annotations, "ownerReferences": owner},
            "revision": n,
            "data": {"spec": {"template": data}}
        }));
    }
    for (n, ready, state) in [
        (1, true, json!({"running": {}})),
        (2, false, json!({"waiting": {"reason": "CrashLoopBackOff"}})),
    ] {
        api.upsert(PODS, json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("db-{n}"), "namespace": "shop", "uid": format!("uid-db-{n}"),
                         "labels": {"app": "db", "controller-revision-hash": format!("db-h{n}")}, "ownerReferences": owner},
            "spec": {"containers": [{"name": "db", "image": "db"}]},
            "status": {"startTime": ago(120), "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ago(120)}],
                       "containerStatuses": [{"name": "db", "image": "db", "imageID": "", "ready": ready, "restartCount": 4, "state": state}]}
        }));
    }
    Seeded { v1, v2 }
}

#[tokio::test]
async fn a_signed_stateful_set_is_reverted_and_its_marked_revision_keeps_the_envelope() {
    let api = FakeApiServer::start().await.unwrap();
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    let seeded = seed_stateful_set(&api, &release, &ci, &[]);
    let controller = start(&api);
    let workload = || api.get(STATEFULSETS, "shop", "db").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            workload()["spec"]["template"]["spec"]["containers"][0]["image"] == "db:1"
        })
        .await,
        "no revert"
    );
    assert_eq!(
        workload()["metadata"]["annotations"][ATTESTATION],
        seeded.v1,
        "the target revision's attestation comes back"
    );
    let records = api.list(RECORDS);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["spec"]["from"]["attestedBy"], "ci");
    // The reverted revision is marked with the workload's provenance, its attestation the
    // envelope read from the StatefulSet, not the digest the cache keeps.
    assert!(
        eventually(Duration::from_secs(5), || {
            let cr = api.get(CONTROLLER_REVISIONS, "shop", "db-h2").unwrap();
            let a = &cr["metadata"]["annotations"];
            a["custody.dev/reverted-by"].is_string() && a[ATTESTATION] == seeded.v2.as_str()
        })
        .await,
        "the marked revision does not carry its envelope"
    );
    controller.stop().await;
}

#[tokio::test]
async fn one_decision_reads_the_current_revisions_attestation_once() {
    // A break-glass revision is announced (its mark copies the envelope), its provenance
    // verified, the revert prepared (the envelope lives on the StatefulSet the revert
    // overwrites) and the reverted revision marked: four steps that need the envelope, one read.
    let api = FakeApiServer::start().await.unwrap();
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    let seeded = seed_stateful_set(
        &api,
        &release,
        &ci,
        &[("custody.dev/break-glass", "INC-4711: restoring checkout")],
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || {
            let cr = api.get(CONTROLLER_REVISIONS, "shop", "db-h2").unwrap();
            let a = &cr["metadata"]["annotations"];
            a["custody.dev/reverted-by"].is_string()
                && a["custody.dev/break-glass-noticed"].is_string()
                && a[ATTESTATION] == seeded.v2.as_str()
        })
        .await,
        "no revert, or the revision is not marked with its envelope"
    );
    assert_eq!(api.list(RECORDS)[0]["spec"]["from"]["attestedBy"], "ci");
    assert_eq!(gets(&api, "/statefulsets/db"), 1);
    controller.stop().await;
}

#[tokio::test]
async fn an_envelope_the_announcement_could_not_read_is_read_again_for_the_decision() {
    let api = FakeApiServer::start().await.unwrap();
    let (release, ci) = (Key::new("release"), Key::new("ci"));
    seed_stateful_set(
        &api,
        &release,
        &ci,
        &[("custody.dev/break-glass", "INC-4711: restoring checkout")],
    );
    // The break-glass mark's read fails; the verification's must not inherit the failure.
    api.inject(
        Method::GET,
        "/statefulsets/db",
        StatusCode::INTERNAL_SERVER_ERROR,
        1,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || {
            api.get(STATEFULSETS, "shop", "db").unwrap()["spec"]["template"]["spec"]["containers"]
                [0]["image"]
                == "db:1"
        })
        .await,
        "no revert"
    );
    let records = api.list(RECORDS);
    assert_eq!(records[0]["spec"]["action"], "Reverted");
    assert_eq!(records[0]["spec"]["from"]["attestedBy"], "ci");
    assert_eq!(gets(&api, "/statefulsets/db"), 2);
    controller.stop().await;
}
