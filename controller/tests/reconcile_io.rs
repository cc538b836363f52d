//! The controller loop against an in-process API server speaking list, watch, get, create and
//! patch: a real revert end to end, conflicts, API errors, and a restart mid-rollout, each
//! ending in exactly one revert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use custody_controller::decide::attribution::Excuse;
use custody_controller::metrics::{Label, ReconcileError};
use custody_controller::run::RunConfig;
use custody_testkit::fake_apiserver::FakeApiServer;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::running::{self, Running, ago, eventually, image, pod_template};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const EVENTS: &str = "apis/events.k8s.io/v1/events";
const STATEFULSETS: &str = "apis/apps/v1/statefulsets";
const DAEMONSETS: &str = "apis/apps/v1/daemonsets";
const CONTROLLER_REVISIONS: &str = "apis/apps/v1/controllerrevisions";
const NODES: &str = "api/v1/nodes";

fn provenance(actor: &str, commit: &str) -> Value {
    json!({
        "custody.dev/actor": actor, "custody.dev/agent": "claude-code/1.0",
        "custody.dev/source-repo": "https://git.example.com/shop/web", "custody.dev/source-commit": commit,
        "custody.dev/owner": "team-web", "custody.dev/oncall": "web@example.com"
    })
}

/// v1 healthy (marked), v2 by `actor` with one pod not Ready for two minutes.
fn seed(api: &FakeApiServer, actor: &str) {
    let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}]);
    // The Deployment carries annotations nobody at Custody owns; a revert must leave them be.
    let mut deployment_annotations = provenance(actor, "bbbbbbb");
    deployment_annotations["custody.dev/model"] = json!("claude-sonnet-4");
    deployment_annotations["kubectl.kubernetes.io/last-applied-configuration"] = json!("{}");
    api.upsert(DEPLOYMENTS, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": 2, "annotations": deployment_annotations},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:2", None),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    }));
    let mut v1_annotations = provenance("human", "aaaaaaa");
    v1_annotations["deployment.kubernetes.io/revision"] = json!("1");
    v1_annotations["custody.dev/healthy-since"] = json!(ago(3600));
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-rs1", "annotations": v1_annotations, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:1", Some("h1"))}
    }));
    let mut v2_annotations = provenance(actor, "bbbbbbb");
    v2_annotations["custody.dev/model"] = json!("claude-sonnet-4");
    v2_annotations["deployment.kubernetes.io/revision"] = json!("2");
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-2", "namespace": "shop", "uid": "uid-rs2", "annotations": v2_annotations, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:2", Some("h2"))}
    }));
    api.upsert(PODS, json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-2-x", "namespace": "shop", "uid": "uid-p2", "ownerReferences": owner("ReplicaSet", "web-2", "uid-rs2")},
        "spec": {"containers": [{"name": "web", "image": "web:2"}]},
        "status": {"startTime": ago(120), "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": ago(120)}],
                   "containerStatuses": [{"name": "web", "image": "web:2", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
    }));
}

fn start(api: &FakeApiServer, dry_run: bool) -> Running {
    running::start(api, |_, _| RunConfig {
        dry_run,
        ..running::config()
    })
}

fn deployment_patches(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|(m, p)| *m == Method::PATCH && p.contains("/deployments/web"))
        .count()
}

#[tokio::test]
async fn a_follower_waits_and_reverts_once_it_takes_the_lease() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    let (controller, lease) = running::start_with_lease(
        &api,
        |_, _| RunConfig {
            dry_run: false,
            ..running::config()
        },
        false,
    );
    assert!(
        eventually(Duration::from_secs(10), || controller.readiness.is_ready()).await,
        "the follower never reported its caches synced"
    );
    // A follower keeps its cache warm and writes nothing, however long it follows.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deployment_patches(&api), 0, "a follower reverted");
    assert_eq!(image(&api), "web:2");

    // Nothing changes in the cluster when the Lease comes: the controller must look at the
    // workloads it already holds by itself.
    lease.send_replace(true);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "no revert after taking the Lease"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deployment_patches(&api), 1);
    assert_eq!(api.list(RECORDS).len(), 1);
    controller.stop().await;
}

#[tokio::test]
async fn an_agent_regression_is_reverted_once_with_record_event_and_marks() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    let controller = start(&api, false);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "no revert"
    );
    assert!(
        eventually(Duration::from_secs(10), || controller.readiness.is_ready()).await,
        "the controller never reported its caches synced"
    );

    let deployment = api.get(DEPLOYMENTS, "shop", "web").unwrap();
    let annotations = &deployment["metadata"]["annotations"];
    assert_eq!(
        annotations["custody.dev/source-commit"], "aaaaaaa",
        "provenance restored with the template"
    );
    assert_eq!(annotations["custody.dev/actor"], "human");
    assert_eq!(annotations["custody.dev/reverted-from"], "2");
    assert!(
        annotations.get("custody.dev/model").is_none(),
        "provenance the target revision lacks is removed"
    );
    assert_eq!(
        annotations["kubectl.kubernetes.io/last-applied-configuration"], "{}",
        "annotations outside the vocabulary are left as they were"
    );
    assert!(
        deployment["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );

    let records = api.list(RECORDS);
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record["spec"]["action"], "Reverted");
    assert_eq!(record["spec"]["reason"], "NotReady");
    assert_eq!(record["spec"]["from"]["revision"], "2");
    assert_eq!(record["spec"]["to"]["revision"], "1");
    assert_eq!(record["spec"]["from"]["agent"], "claude-code/1.0");
    assert_eq!(record["spec"]["from"]["images"], json!(["web:2"]));
    assert_eq!(record["spec"]["signals"][0]["pod"], "web-2-x");
    let fp = custody_crds::template_fingerprint(&pod_template("web:2", None)).to_string();
    assert_eq!(
        record["spec"]["from"]["templateFingerprint"], fp,
        "the webhook's fingerprint of the Deployment template"
    );

    assert!(eventually(Duration::from_secs(5), || {
        api.get(REPLICASETS, "shop", "web-2").unwrap()["metadata"]["annotations"]["custody.dev/reverted-by"].is_string()
    }).await);
    assert!(
        eventually(Duration::from_secs(5), || !api.list(EVENTS).is_empty()).await,
        "no Event"
    );
    let event = &api.list(EVENTS)[0];
    assert_eq!(event["reason"], "Reverted");
    assert_eq!(event["regarding"]["name"], "web");

    // Give it time to act again if it were going to: it must not.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(deployment_patches(&api), 1);
    assert_eq!(
        controller
            .metrics
            .reverts
            .get_or_create(&custody_controller::metrics::ReasonLabels {
                reason: Label(custody_crds::SignalReason::NotReady),
            })
            .get(),
        1
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_conflict_makes_it_decide_again_and_revert_once() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    api.inject(Method::PATCH, "/deployments/web", StatusCode::CONFLICT, 1);
    let controller = start(&api, false);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "no revert after the conflict"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(deployment_patches(&api), 2, "one refused, one written");
    assert_eq!(api.list(RECORDS).len(), 1, "the record is not duplicated");
    assert_eq!(
        controller
            .metrics
            .reconcile_errors
            .get_or_create(&custody_controller::metrics::ErrorLabels {
                error: Label(ReconcileError::Conflict),
            })
            .get(),
        1
    );
    controller.stop().await;
}

#[tokio::test]
async fn api_errors_are_retried() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    api.inject(
        Method::POST,
        "rollbackrecords",
        StatusCode::INTERNAL_SERVER_ERROR,
        2,
    );
    let controller = start(&api, false);
    assert!(
        eventually(Duration::from_secs(15), || image(&api) == "web:1").await,
        "no revert after API errors"
    );
    assert_eq!(api.list(RECORDS).len(), 1);
    assert_eq!(deployment_patches(&api), 1, "no revert without its record");
    controller.stop().await;
}

#[tokio::test]
async fn a_restart_mid_revert_converges_to_one_revert() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    // The first run records, then its revert patch fails (a crash between the two writes).
    api.inject(
        Method::PATCH,
        "/deployments/web",
        StatusCode::INTERNAL_SERVER_ERROR,
        1,
    );
    let first = start(&api, false);
    assert!(eventually(Duration::from_secs(10), || api.list(RECORDS).len() == 1).await);
    first.stop().await;
    let reverted_by_first = image(&api) == "web:1";

    let second = start(&api, false);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "the restarted controller did not finish the revert"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.stop().await;
    // A third start on the reverted state does nothing.
    let third = start(&api, false);
    tokio::time::sleep(Duration::from_millis(700)).await;
    third.stop().await;
    let successful = deployment_patches(&api) - 1;
    assert_eq!(
        successful, 1,
        "exactly one revert written (first run reverted: {reverted_by_first})"
    );
    assert_eq!(api.list(RECORDS).len(), 1);
}

#[tokio::test]
async fn human_regressions_and_dry_runs_are_reported_not_reverted() {
    for (actor, dry_run, action) in [("human", false, "Alerted"), ("agent", true, "DryRun")] {
        let api = FakeApiServer::start().await.unwrap();
        seed(&api, actor);
        let controller = start(&api, dry_run);
        assert!(
            eventually(Duration::from_secs(10), || api.list(RECORDS).len() == 1).await,
            "{actor}: no record"
        );
        assert_eq!(api.list(RECORDS)[0]["spec"]["action"], action);
        assert!(eventually(Duration::from_secs(5), || {
            api.get(REPLICASETS, "shop", "web-2").unwrap()["metadata"]["annotations"]["custody.dev/alerted-by"].is_string()
        }).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(image(&api), "web:2", "{actor}: the spec must not change");
        assert_eq!(deployment_patches(&api), 0);
        controller.stop().await;
    }
}

/// A StatefulSet or DaemonSet `db` whose revision 1 (marked healthy, provenance stamped) runs
/// one pod, and whose agent-made revision 2 runs one pod in CrashLoopBackOff. A StatefulSet's
/// pods name their ControllerRevision; a DaemonSet's carry its hash.
fn seed_revisioned(api: &FakeApiServer, kind: &str) -> &'static str {
    let (resource, status) = if kind == "StatefulSet" {
        (
            STATEFULSETS,
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 1, "availableReplicas": 1,
            "updatedReplicas": 1, "currentRevision": "db-h1", "updateRevision": "db-h2"}),
        )
    } else {
        (
            DAEMONSETS,
            json!({"observedGeneration": 2, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
            "numberReady": 1, "numberAvailable": 1, "updatedNumberScheduled": 1, "numberMisscheduled": 0}),
        )
    };
    api.upsert(resource, json!({
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": "db", "namespace": "shop", "uid": "uid-db", "generation": 2,
                     "annotations": provenance("agent", "bbbbbbb")},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("db:2", None)},
        "status": status
    }));
    let owner = json!([{"apiVersion": "apps/v1", "kind": kind, "name": "db", "uid": "uid-db", "controller": true}]);
    let mut v1 = provenance("human", "aaaaaaa");
    v1["custody.dev/healthy-since"] = json!(ago(3600));
    for (n, image, annotations) in [(1, "db:1", v1), (2, "db:2", json!({}))] {
        let mut data = pod_template(image, None);
        data["$patch"] = json!("replace");
        api.upsert(CONTROLLER_REVISIONS, json!({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": format!("db-h{n}"), "namespace": "shop", "uid": format!("uid-cr{n}"),
                         "labels": {"app": "web", "controller-revision-hash": format!("h{n}")},
                         "annotations": annotations, "ownerReferences": owner},
            "revision": n,
            "data": {"spec": {"template": data}}
        }));
    }
    let pod_key = |n: u32| {
        if kind == "StatefulSet" {
            format!("db-h{n}")
        } else {
            format!("h{n}")
        }
    };
    for (n, ready, state) in [
        (1, true, json!({"running": {}})),
        (2, false, json!({"waiting": {"reason": "CrashLoopBackOff"}})),
    ] {
        api.upsert(PODS, json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("db-{n}"), "namespace": "shop", "uid": format!("uid-db-{n}"),
                         "labels": {"app": "web", "controller-revision-hash": pod_key(n)}, "ownerReferences": owner},
            "spec": {"containers": [{"name": "web", "image": "db"}]},
            "status": {"startTime": ago(120), "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ago(120)}],
                       "containerStatuses": [{"name": "web", "image": "db", "imageID": "", "ready": ready, "restartCount": 4, "state": state}]}
        }));
    }
    resource
}

#[tokio::test]
async fn stateful_and_daemon_sets_are_reverted_through_their_controller_revisions() {
    for kind in ["StatefulSet", "DaemonSet"] {
        let api = FakeApiServer::start().await.unwrap();
        let resource = seed_revisioned(&api, kind);
        let controller = start(&api, false);
        let workload = || api.get(resource, "shop", "db").unwrap();
        let image = || workload()["spec"]["template"]["spec"]["containers"][0]["image"].clone();
        assert!(
            eventually(Duration::from_secs(10), || image() == "db:1").await,
            "{kind}: no revert"
        );
        let reverted = workload();
        assert!(
            reverted["spec"]["template"].get("$patch").is_none(),
            "{kind}: the revision's patch directive is not part of the template"
        );
        let annotations = &reverted["metadata"]["annotations"];
        assert_eq!(annotations["custody.dev/actor"], "human", "{kind}");
        assert_eq!(
            annotations["custody.dev/source-commit"], "aaaaaaa",
            "{kind}"
        );

        let records = api.list(RECORDS);
        assert_eq!(records.len(), 1, "{kind}");
        let spec = &records[0]["spec"];
        assert_eq!(spec["workload"]["kind"], kind);
        assert_eq!(spec["action"], "Reverted");
        assert_eq!(spec["from"]["revision"], "2");
        assert_eq!(
            spec["from"]["actor"], "agent",
            "{kind}: the workload's provenance is the revision's"
        );
        assert_eq!(spec["from"]["sourceCommit"], "bbbbbbb");
        assert_eq!(spec["to"]["revision"], "1");
        assert_eq!(spec["signals"][0]["pod"], "db-2");
        assert_eq!(
            spec["from"]["templateFingerprint"],
            custody_crds::template_fingerprint(&pod_template("db:2", None)).to_string(),
            "{kind}: the webhook's fingerprint of the workload template"
        );
        assert!(
            eventually(Duration::from_secs(5), || {
                let cr = api.get(CONTROLLER_REVISIONS, "shop", "db-h2").unwrap();
                let a = &cr["metadata"]["annotations"];
                a["custody.dev/reverted-by"].is_string() && a["custody.dev/actor"] == "agent"
            })
            .await,
            "{kind}: the reverted revision is marked, with its provenance stamped"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let patches = api
            .requests()
            .iter()
            .filter(|(m, p)| *m == Method::PATCH && p.ends_with("/db"))
            .count();
        assert_eq!(patches, 1, "{kind}: exactly one revert");
        controller.stop().await;
    }
}

fn node(api: &FakeApiServer, name: &str, ready: bool) {
    let (status, taints) = if ready {
        ("True", json!([]))
    } else {
        (
            "Unknown",
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
        )
    };
    api.upsert(NODES, json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": status, "reason": "NodeStatusUnknown", "lastHeartbeatTime": ago(120)}]}
    }));
}

/// The seeded rollout's failing pod, bound to `node_name`, its status written again.
fn pod_on(api: &FakeApiServer, node_name: &str) {
    let mut pod = api.get(PODS, "shop", "web-2-x").unwrap();
    pod["spec"]["nodeName"] = json!(node_name);
    api.upsert(PODS, pod);
}

#[tokio::test]
async fn a_node_going_not_ready_under_an_agent_revision_is_not_attributed_until_it_is_back() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api, "agent");
    // Revision 2's pod has been unready for two minutes because its Node stopped answering.
    pod_on(&api, "node-a");
    node(&api, "node-a", false);
    node(&api, "node-b", true);
    let controller = start(&api, false);
    let counted = || {
        controller
            .metrics
            .not_attributed
            .get_or_create(&custody_controller::metrics::NotAttributedLabels {
                kind: Label(custody_crds::WorkloadKind::Deployment),
                reason: Label(Excuse::NodeNotReady),
            })
            .get()
    };
    assert!(
        eventually(Duration::from_secs(10), || counted() == 1).await,
        "not counted as not attributed"
    );
    // More of the same situation (the pod's status written again, each a reconcile) is neither
    // acted on nor counted again.
    for _ in 0..3 {
        pod_on(&api, "node-a");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(counted(), 1, "once per situation");
    assert_eq!(image(&api), "web:2");
    assert_eq!(deployment_patches(&api), 0, "no revert");
    assert!(api.list(RECORDS).is_empty(), "no RollbackRecord");
    assert!(api.list(EVENTS).is_empty(), "no Event");

    // The Node comes back and the pod is still not Ready: now it is the revision's. Only the
    // Node changed, and the next look would be 30 s away: the Node's event must trigger it.
    node(&api, "node-a", true);
    assert!(
        eventually(Duration::from_secs(10), || image(&api) == "web:1").await,
        "the Node's return did not make the revision answer for its pod"
    );
    assert_eq!(api.list(RECORDS).len(), 1);
    controller.stop().await;
}
