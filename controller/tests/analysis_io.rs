//! Metric analysis and the guarded first step through the whole controller loop, against the
//! in-process API server and a stand-in metric source: an agent's first step held, then
//! reverted on bad metrics (the revert lifting the hold) or released on good ones. The real
//! Prometheus is `prometheus_io.rs`'s and the lab's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use custody_controller::decide::analysis::Value as Measured;
use custody_controller::measure::prometheus::{MetricSource, QueryError};
use custody_controller::measure::sources::Sources;
use custody_controller::run::RunConfig;
use custody_testkit::fake_apiserver::FakeApiServer;
use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::{Value, json};
use support::running::{self, ago, eventually, image, pod_template};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";

/// Answers 0.3 for the revision `bad` and 0.005 for any other, and counts the queries.
struct StandIn {
    bad: &'static str,
    queries: AtomicUsize,
}

impl MetricSource for StandIn {
    fn value<'a>(
        &'a self,
        query: &'a str,
        _at: Timestamp,
    ) -> BoxFuture<'a, Result<Measured, QueryError>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let bad = query.contains(&format!("revision=\"{}\"", self.bad));
        Box::pin(async move { Ok(Some(if bad { 0.3 } else { 0.005 })) })
    }
}

fn provenance(actor: &str, revision: &str) -> Value {
    json!({
        "custody.dev/actor": actor, "custody.dev/agent": "claude-code/1.0",
        "custody.dev/source-repo": "https://git.example.com/shop/web", "custody.dev/source-commit": "abcdef1",
        "custody.dev/owner": "team-web", "custody.dev/oncall": "web@example.com",
        "deployment.kubernetes.io/revision": revision
    })
}

fn ready_pod(name: &str, rs: &str, rs_uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": rs_uid, "controller": true}]},
        "spec": {"containers": [{"name": "web", "image": "web"}]},
        "status": {"startTime": ago(60), "conditions": [{"type": "Ready", "status": "True", "reason": "", "lastTransitionTime": ago(60)}],
                   "containerStatuses": [{"name": "web", "image": "web", "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {}}}]}
    })
}

/// An agent's v2 at its first step (one Ready Pod of three), v1 healthy and serving, under a
/// policy that analyses every check and holds agents' first steps.
fn seed(api: &FakeApiServer) {
    api.upsert(POLICIES, json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "analysed", "uid": "uid-policy"},
        "spec": {
            "match": {"namespaces": {"include": ["shop"]}},
            "rollback": {"analysis": {
                "intervalSeconds": 5, "windowSeconds": 10, "failureLimit": 1,
                "provider": {"prometheus": {"address": "http://prometheus.invalid:9090"}},
                "metrics": [{"name": "error-ratio",
                    "query": "sum(rate(errors{namespace=\"{{namespace}}\",revision=\"{{revision}}\"}[{{window}}]))",
                    "condition": {"baseline": {"ratioAbove": 5, "differenceAbove": 0.05}}}]
            }},
            "agents": {"canary": {"holdSeconds": 5}}
        }
    }));
    let owner = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web", "controller": true}]);
    api.upsert(DEPLOYMENTS, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": 2, "annotations": provenance("agent", "2")},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:2", None),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 4}
    }));
    let mut v1 = provenance("human", "1");
    v1["custody.dev/healthy-since"] = json!(ago(3600));
    for (name, annotations, image, hash, replicas) in [
        ("web-h1", v1, "web:1", "h1", 3),
        ("web-h2", provenance("agent", "2"), "web:2", "h2", 1),
    ] {
        api.upsert(REPLICASETS, json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "annotations": annotations, "ownerReferences": owner},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template(image, Some(hash))}
        }));
    }
    for i in 0..3 {
        api.upsert(
            PODS,
            ready_pod(&format!("web-h1-{i}"), "web-h1", "uid-web-h1"),
        );
    }
    api.upsert(PODS, ready_pod("web-h2-0", "web-h2", "uid-web-h2"));
}

/// Does what the Deployment controller does that matters here: observes each new generation
/// (a hold, a revert), so the controller does not wait for it to catch up.
fn observe_generations(api: &FakeApiServer) -> tokio::task::JoinHandle<()> {
    let api = api.clone();
    tokio::spawn(async move {
        loop {
            if let Some(mut d) = api.get(DEPLOYMENTS, "shop", "web")
                && d["metadata"]["generation"] != d["status"]["observedGeneration"]
            {
                d["status"]["observedGeneration"] = d["metadata"]["generation"].clone();
                api.upsert(DEPLOYMENTS, d);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn start(api: &FakeApiServer, source: Arc<StandIn>) -> running::Running {
    running::start(api, move |_, _| RunConfig {
        sources: Sources::fixed(source),
        ..running::config()
    })
}

fn deployment(api: &FakeApiServer) -> Value {
    api.get(DEPLOYMENTS, "shop", "web").unwrap()
}

fn held(api: &FakeApiServer) -> bool {
    let d = deployment(api);
    d["spec"]["paused"] == json!(true)
        && d["metadata"]["annotations"]["custody.dev/held"] == "web-h2"
}

#[tokio::test]
async fn an_agents_first_step_with_bad_metrics_is_held_then_reverted_with_the_evidence() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api);
    let source = Arc::new(StandIn {
        bad: "h2",
        queries: AtomicUsize::new(0),
    });
    let deployment_controller = observe_generations(&api);
    let controller = start(&api, source.clone());
    assert!(
        eventually(Duration::from_secs(5), || held(&api)).await,
        "the first step was not held: {}",
        deployment(&api)
    );
    assert!(
        eventually(Duration::from_secs(15), || image(&api) == "web:1").await,
        "not reverted on bad metrics: {}",
        deployment(&api)
    );
    let d = deployment(&api);
    assert_eq!(
        d["spec"]["paused"],
        json!(false),
        "the revert lifts the hold"
    );
    assert!(
        d["metadata"]["annotations"]
            .get("custody.dev/held")
            .is_none(),
        "{d}"
    );
    let records = api.list(RECORDS);
    assert_eq!(records.len(), 1, "{records:?}");
    let spec = &records[0]["spec"];
    assert_eq!(spec["reason"], "MetricAnalysis");
    assert_eq!(spec["action"], "Reverted");
    let metric = &spec["analysis"]["metrics"][0];
    assert_eq!(
        (metric["new"].as_f64(), metric["baseline"].as_f64()),
        (Some(0.3), Some(0.005))
    );
    assert!(
        metric["query"]
            .as_str()
            .unwrap()
            .contains(r#"revision="h2""#),
        "{metric}"
    );
    assert!(
        metric["baselineQuery"]
            .as_str()
            .unwrap()
            .contains(r#"revision="h1""#),
        "{metric}"
    );
    assert_eq!(metric["failedChecks"].as_array().unwrap().len(), 1);
    // The revision shows its analysis to anyone reading it (written after the revert).
    let shown = || {
        api.get(REPLICASETS, "shop", "web-h2").unwrap()["metadata"]["annotations"]
            ["custody.dev/analysis"]
            .as_str()
            .map(|s| serde_json::from_str::<Value>(s).unwrap()["phase"].clone())
    };
    assert!(
        eventually(Duration::from_secs(5), || shown() == Some(json!("Failed"))).await,
        "{:?}",
        shown()
    );
    let condition = &deployment(&api)["status"]["conditions"][0];
    assert_eq!(
        (
            &condition["type"],
            &condition["status"],
            &condition["reason"]
        ),
        (&json!("CustodyHeld"), &json!("False"), &json!("Reverted"))
    );
    assert!(source.queries.load(Ordering::Relaxed) >= 2);
    controller.stop().await;
    deployment_controller.abort();
}

#[tokio::test]
async fn a_new_leader_resumes_an_analysis_where_the_revision_says_it_stood() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api);
    // An earlier leader held the first step and saw the analysis pass, then went away.
    let mut d = deployment(&api);
    d["spec"]["paused"] = json!(true);
    d["metadata"]["annotations"]["custody.dev/held"] = json!("web-h2");
    api.upsert(DEPLOYMENTS, d);
    let mut rs = api.get(REPLICASETS, "shop", "web-h2").unwrap();
    rs["metadata"]["annotations"]["custody.dev/analysis"] = json!(json!({
        "phase": "Passed", "checks": 1, "updated": ago(3),
        "metrics": [{"name": "error-ratio", "result": "Pass", "passed": 1, "new": 0.004, "baseline": 0.005}]
    }).to_string());
    api.upsert(REPLICASETS, rs);
    let source = Arc::new(StandIn {
        bad: "none",
        queries: AtomicUsize::new(0),
    });
    let deployment_controller = observe_generations(&api);
    let controller = start(&api, source.clone());
    let released = || deployment(&api)["spec"]["paused"] == json!(false);
    assert!(
        eventually(Duration::from_secs(15), released).await,
        "{}",
        deployment(&api)
    );
    assert_eq!(
        source.queries.load(Ordering::Relaxed),
        0,
        "released on the standing it resumed, before a check of its own"
    );
    controller.stop().await;
    deployment_controller.abort();
}

#[tokio::test]
async fn an_agents_first_step_with_good_metrics_is_released() {
    let api = FakeApiServer::start().await.unwrap();
    seed(&api);
    let source = Arc::new(StandIn {
        bad: "none",
        queries: AtomicUsize::new(0),
    });
    let deployment_controller = observe_generations(&api);
    let controller = start(&api, source);
    assert!(eventually(Duration::from_secs(5), || held(&api)).await);
    let released = || {
        let d = deployment(&api);
        d["spec"]["paused"] == json!(false)
            && d["metadata"]["annotations"]["custody.dev/released"] == "web-h2"
            && d["metadata"]["annotations"]
                .get("custody.dev/held")
                .is_none()
    };
    assert!(
        eventually(Duration::from_secs(15), released).await,
        "not released: {}",
        deployment(&api)
    );
    assert_eq!(image(&api), "web:2");
    assert!(api.list(RECORDS).is_empty());
    // Released once: the same revision is not held again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!held(&api));
    controller.stop().await;
    deployment_controller.abort();
}
