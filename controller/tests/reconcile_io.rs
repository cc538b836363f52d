//! The controller loop against an in-process API server speaking list, watch, get, create and
//! patch: a real revert end to end, conflicts, API errors, and a restart mid-rollout, each
//! ending in exactly one revert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use custody_controller::metrics::Metrics;
use custody_controller::reconcile::{self, RunConfig};
use custody_crds::Vocabulary;
use custody_runtime::fake_apiserver::FakeApiServer;
use http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const EVENTS: &str = "apis/events.k8s.io/v1/events";

fn ago(seconds: i64) -> String {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .unwrap()
        .to_string()
}

fn template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}})
}

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
    api.upsert(DEPLOYMENTS, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": 2, "annotations": provenance(actor, "bbbbbbb")},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web:2", None),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    }));
    let mut v1_annotations = provenance("human", "aaaaaaa");
    v1_annotations["deployment.kubernetes.io/revision"] = json!("1");
    v1_annotations["custody.dev/healthy-since"] = json!(ago(3600));
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-rs1", "annotations": v1_annotations, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web:1", Some("h1"))}
    }));
    let mut v2_annotations = provenance(actor, "bbbbbbb");
    v2_annotations["deployment.kubernetes.io/revision"] = json!("2");
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-2", "namespace": "shop", "uid": "uid-rs2", "annotations": v2_annotations, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template("web:2", Some("h2"))}
    }));
    api.upsert(PODS, json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-2-x", "namespace": "shop", "uid": "uid-p2", "ownerReferences": owner("ReplicaSet", "web-2", "uid-rs2")},
        "spec": {"containers": [{"name": "web", "image": "web:2"}]},
        "status": {"startTime": ago(120), "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": ago(120)}],
                   "containerStatuses": [{"name": "web", "image": "web:2", "imageID": "", "ready": false, "restartCount": 0, "state": {"running": {}}}]}
    }));
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Metrics,
    readiness: custody_runtime::Readiness,
}

fn start(api: &FakeApiServer, dry_run: bool) -> Running {
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (tx, leader) = tokio::sync::watch::channel(true);
    let shutdown = CancellationToken::new();
    let readiness = custody_runtime::Readiness::new();
    let ready = readiness.register("caches");
    let config = RunConfig {
        vocabulary: Vocabulary::default(),
        dry_run,
        identity: "test".into(),
        notifier: None,
    };
    let task = tokio::spawn({
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        async move {
            reconcile::run(client, config, metrics, leader, ready, shutdown).await;
            drop(tx);
        }
    });
    Running {
        shutdown,
        task,
        metrics,
        readiness,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn eventually(deadline: Duration, check: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

fn image(api: &FakeApiServer) -> String {
    api.get(DEPLOYMENTS, "shop", "web").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

fn deployment_patches(api: &FakeApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|(m, p)| *m == Method::PATCH && p.contains("/deployments/web"))
        .count()
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
    let fp = custody_crds::template_fingerprint(&template("web:2", None)).to_string();
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
            .get_or_create(&custody_controller::metrics::ReasonLabels { reason: "NotReady" })
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
            .get_or_create(&custody_controller::metrics::ErrorLabels { error: "Conflict" })
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
