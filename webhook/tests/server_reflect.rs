//! The webhook's live state fed by real kube-runtime watches against an in-process API server:
//! readiness after sync, policy changes, namespace labels, RollbackRecords and CustodyChanges
//! seen live.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::time::Duration;

use custody_testkit::fake_apiserver::FakeApiServer;
use custody_webhook::server::{LiveState, reflect};
use serde_json::{Value, json};
use server_support::*;

const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const NAMESPACES: &str = "api/v1/namespaces";
const TEAMS: &str = "apis/custody.dev/v1alpha1/custodyteams";
const CHANGES: &str = "apis/custody.dev/v1alpha1/custodychanges";

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": name}, "spec": spec})
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// The webhook's live state, fed by the watches of `api` until the token is cancelled.
fn reflecting(
    api: &FakeApiServer,
) -> (
    std::sync::Arc<LiveState>,
    custody_webhook::server::Metrics,
    tokio_util::sync::CancellationToken,
) {
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = custody_webhook::server::Metrics::register(&mut registry);
    let (live, writer) = LiveState::watched(metrics.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(reflect::run(
        client,
        live.clone(),
        writer,
        metrics.clone(),
        shutdown.clone(),
    ));
    (live, metrics, shutdown)
}

fn allowed(text: &str) -> bool {
    serde_json::from_str::<Value>(text).unwrap()["response"]["allowed"]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn live_state_follows_the_cluster() {
    let api = FakeApiServer::start().await.unwrap();
    api.upsert(
        POLICIES,
        policy(
            "prod-only",
            json!({
                "mode": "Enforce",
                "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
            }),
        ),
    );
    api.upsert(
        NAMESPACES,
        namespace(
            "shop",
            json!({"kubernetes.io/metadata.name": "shop", "env": "dev"}),
        ),
    );
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();

    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let mut writer = None;
    let server = start(config(&secret), |metrics| {
        let (live, w) = LiveState::watched(metrics);
        writer = Some(w);
        live
    })
    .await;
    tokio::spawn(reflect::run(
        client,
        server.live.clone(),
        writer.take().unwrap(),
        server.metrics.clone(),
        server.shutdown.clone(),
    ));
    let ca = pki.ca_der();
    let addr = server.addr;
    let post = |body: Vec<u8>| {
        let ca = ca.clone();
        async move { post_once(addr, &ca, "/validate", body).await.1 }
    };
    let unannotated = fixture("deployment-create-unannotated.json");
    let ns = serde_json::from_slice::<Value>(&unannotated).unwrap()["request"]["namespace"]
        .as_str()
        .unwrap()
        .to_string();
    api.upsert(
        NAMESPACES,
        namespace(
            &ns,
            json!({"kubernetes.io/metadata.name": ns, "env": "dev"}),
        ),
    );

    assert!(
        eventually(Duration::from_secs(10), || async {
            server.live.is_synced()
        })
        .await,
        "caches never synced"
    );
    assert_eq!(server.live.policies().len(), 1);
    assert!(
        allowed(&post(unannotated.clone()).await),
        "a dev namespace is not selected"
    );

    // Relabelling the namespace brings it under the policy.
    api.upsert(
        NAMESPACES,
        namespace(
            &ns,
            json!({"kubernetes.io/metadata.name": ns, "env": "prod"}),
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            !allowed(&post(unannotated.clone()).await)
        })
        .await,
        "namespace label change not seen"
    );

    // Switching the policy to Warn takes effect without a restart.
    api.upsert(
        POLICIES,
        policy(
            "prod-only",
            json!({
                "mode": "Warn",
                "match": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
            }),
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            allowed(&post(unannotated.clone()).await)
        })
        .await,
        "policy change not seen"
    );

    // An invalid policy is left out and counted; the valid one keeps working.
    api.upsert(
        POLICIES,
        policy(
            "broken",
            json!({"annotations": [{"key": "owner", "pattern": "("}]}),
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            server.metrics.policies_invalid.get() == 1
        })
        .await
    );
    assert_eq!(server.live.policies().len(), 1);

    // A RollbackRecord quarantines a template.
    let annotated = fixture("deployment-create-agent-annotated.json");
    let review: Value = serde_json::from_slice(&annotated).unwrap();
    let object = &review["request"]["object"];
    let fp = custody_crds::template_fingerprint(&object["spec"]["template"]).to_string();
    api.upsert(POLICIES, policy("prod-only", json!({"mode": "Enforce"})));
    assert!(
        eventually(Duration::from_secs(5), || async {
            allowed(&post(annotated.clone()).await)
        })
        .await
    );
    api.upsert(
        RECORDS,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
            "metadata": {"name": "payments-api-r2", "namespace": object["metadata"]["namespace"]},
            "spec": {
                "workload": {"kind": "Deployment", "name": object["metadata"]["name"]},
                "action": "Reverted", "reason": "NotReady",
                "from": {"revision": "2", "templateFingerprint": fp, "images": []},
                "signals": [], "policy": "prod-only", "explanation": "x",
                "regressionDetectedAt": "2026-11-24T00:00:00Z", "actedAt": "2026-11-24T00:00:01Z"
            }
        }),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            let text = post(annotated.clone()).await;
            !allowed(&text) && text.contains("payments-api-r2")
        })
        .await,
        "quarantine not applied"
    );

    // Deleting the record lifts the quarantine.
    api.remove(
        RECORDS,
        object["metadata"]["namespace"].as_str().unwrap(),
        "payments-api-r2",
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            allowed(&post(annotated.clone()).await)
        })
        .await
    );

    // Registered ownership: the owner names no team until one is registered for the namespace.
    api.upsert(
        POLICIES,
        policy(
            "prod-only",
            json!({"mode": "Enforce", "ownership": "Registered"}),
        ),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            post(annotated.clone())
                .await
                .contains("not a registered CustodyTeam")
        })
        .await,
        "registered ownership not applied"
    );
    let owner = object["metadata"]["annotations"]["custody.dev/owner"].clone();
    api.upsert(
        TEAMS,
        json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
            "metadata": {"name": owner},
            "spec": {"namespaces": [object["metadata"]["namespace"]], "oncall": ["@pay"]}}),
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            allowed(&post(annotated.clone()).await)
        })
        .await,
        "a registered team not seen"
    );
    assert_eq!(server.metrics.teams_loaded.get(), 1);
    server.shutdown.cancel();
}

#[tokio::test]
async fn a_cluster_without_the_newer_crds_still_syncs() {
    let api = FakeApiServer::start().await.unwrap();
    api.upsert(POLICIES, policy("default", json!({})));
    // An install from before CustodyTeam and CustodyChange: every request for them is a 404.
    for resource in ["custodyteams", "custodychanges"] {
        api.inject(
            http::Method::GET,
            resource,
            http::StatusCode::NOT_FOUND,
            usize::MAX,
        );
    }
    let (live, metrics, shutdown) = reflecting(&api);
    assert!(
        eventually(Duration::from_secs(10), || async { live.is_synced() }).await,
        "a missing CustodyTeam or CustodyChange CRD kept the webhook from syncing"
    );
    assert!(live.teams().is_empty());
    assert!(live.changes().is_empty());
    for cache in ["custodyteams", "custodychanges"] {
        let errors = metrics
            .watch_errors
            .get_or_create(&custody_webhook::server::metrics::CacheLabels { cache })
            .get();
        assert_eq!(errors, 0, "{cache}: a missing CRD is not a watch error");
    }
    shutdown.cancel();
}

#[tokio::test]
async fn change_requests_are_followed() {
    let api = FakeApiServer::start().await.unwrap();
    api.upsert(POLICIES, policy("default", json!({})));
    let (live, metrics, shutdown) = reflecting(&api);
    assert!(
        eventually(Duration::from_secs(10), || async { live.is_synced() }).await,
        "caches never synced"
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    api.upsert(
        CHANGES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyChange",
            "metadata": {"name": "web-aaaaaaaaaa", "namespace": "shop",
                "creationTimestamp": "2026-12-05T09:00:00Z"},
            "spec": {
                "workload": {"kind": "Deployment", "name": "web"},
                "digest": digest, "templateDigest": digest,
                "provenance": {"agent": "claude-code/1.0"},
                "agent": "claude-code/1.0", "proposer": "system:serviceaccount:agents:claude",
                "reason": "bump the image to fix a CVE"
            },
            "status": {"approvals": [{"by": "ann@acme.dev", "reason": "checked the image bump", "at": "2026-12-05T09:30:00Z"}]}
        }),
    );
    let kind = custody_crds::WorkloadKind::Deployment;
    assert!(
        eventually(Duration::from_secs(5), || async {
            live.changes()
                .entries("shop", kind, "web")
                .first()
                .is_some_and(|e| e.approvals.len() == 1 && e.digest == digest)
        })
        .await,
        "the change request was not seen"
    );
    assert_eq!(metrics.change_requests_loaded.get(), 1);
    api.remove(CHANGES, "shop", "web-aaaaaaaaaa");
    assert!(
        eventually(Duration::from_secs(5), || async {
            live.changes().is_empty()
        })
        .await,
        "the deleted change request stayed"
    );
    assert_eq!(metrics.change_requests_loaded.get(), 0);
    shutdown.cancel();
}

#[tokio::test]
async fn a_failing_watch_keeps_the_last_state_and_is_counted() {
    let api = FakeApiServer::start().await.unwrap();
    api.upsert(POLICIES, policy("default", json!({})));
    // The first list of RollbackRecords fails: the cache retries with backoff and syncs later.
    api.inject(
        http::Method::GET,
        "rollbackrecords",
        http::StatusCode::INTERNAL_SERVER_ERROR,
        1,
    );
    let (live, metrics, shutdown) = reflecting(&api);
    assert!(
        eventually(Duration::from_secs(15), || async { live.is_synced() }).await,
        "never synced after the error"
    );
    let errors = metrics
        .watch_errors
        .get_or_create(&custody_webhook::server::metrics::CacheLabels {
            cache: "rollbackrecords",
        })
        .get();
    assert!(errors >= 1, "the failed list was not counted");
    shutdown.cancel();
}
