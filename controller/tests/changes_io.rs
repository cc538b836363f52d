//! Change requests against the in-process API server and a local HTTP receiver: an approved
//! request says so (phase, deadline, Events, the owning team's notices); once its Deployment
//! runs the approved template and its controller caught up, the revision is written once, even
//! with two controllers leading at once; a Deployment running another template never spends
//! the approval; without the CustodyChange CRD the controller keeps working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use custody_controller::act::notify::Notifier;
use custody_controller::metrics::{ChangeStateLabels, Label};
use custody_controller::run::RunConfig;
use custody_crds::change::{change_name, claim_digest};
use custody_crds::{ChangePhase, Vocabulary, WorkloadKind};
use custody_engine::attest::claim_from_value;
use custody_testkit::fake_apiserver::FakeApiServer;
use http::Method;
use serde_json::{Value, json};
use support::receiver::{Received, receiver};
use support::running::{self, Running, ago, eventually, pod_template};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const CHANGES: &str = "apis/custody.dev/v1alpha1/custodychanges";
const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";
const TEAMS: &str = "apis/custody.dev/v1alpha1/custodyteams";
const EVENTS: &str = "apis/events.k8s.io/v1/events";
const PROPOSER: &str = "system:serviceaccount:agents:claude";

/// The agent's Deployment `shop/web` running `image` at `generation`, its controller having
/// observed `observed`, at Deployment revision `revision`.
fn deployment(image: &str, generation: i64, observed: i64, revision: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": generation,
                     "annotations": {"custody.dev/actor": "agent", "custody.dev/agent": "claude-code",
                                     "custody.dev/owner": "team-web", "custody.dev/source-commit": "abcdef1",
                                     "deployment.kubernetes.io/revision": revision}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template(image, None)},
        "status": {"observedGeneration": observed, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    })
}

/// A policy protecting `shop` whose approval needs one person for an hour, and the owning team
/// whose members approve and whose target is the receiver's `/team`.
fn seed(api: &FakeApiServer, base: &str) {
    api.upsert(
        POLICIES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "reviewed", "uid": "uid-policy"},
            "spec": {"match": {"namespaces": {"include": ["shop"]}},
                     "agents": {"approval": {"required": 1, "validFor": "1h"}}}
        }),
    );
    api.upsert(
        TEAMS,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
            "metadata": {"name": "team-web", "uid": "uid-team"},
            "spec": {"namespaces": ["shop"], "members": {"users": ["alice@example.com"]},
                     "notify": [{"url": format!("{base}/team")}]}
        }),
    );
    api.upsert(DEPLOYMENTS, deployment("web:1", 1, 1, "1"));
}

/// The request `custody propose` makes for the Deployment running `image`, approved by alice
/// ten seconds ago; its name.
fn propose_approved(api: &FakeApiServer, image: &str) -> String {
    let object = deployment(image, 1, 1, "1");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(object["metadata"]["annotations"].clone()).unwrap();
    let claim = claim_from_value(
        WorkloadKind::Deployment,
        "shop",
        &object,
        &annotations,
        &Vocabulary::default(),
    );
    let digest = claim_digest(&claim);
    let name = change_name("web", &digest);
    api.upsert(CHANGES, json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyChange",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "creationTimestamp": ago(60)},
        "spec": {"workload": {"kind": "Deployment", "name": "web"}, "digest": digest,
                 "templateDigest": claim.template_digest.to_string(), "provenance": claim.annotation_map(),
                 "labels": {"app": "web"}, "agent": "claude-code", "proposer": PROPOSER,
                 "reason": "bump the image to fix CVE-2026-1234",
                 "diff": [{"field": "containers[web].image", "before": "web:1", "after": image}]},
        "status": {"approvals": [{"by": "alice@example.com", "reason": "checked the image bump", "at": ago(10)}]}
    }));
    name
}

fn start(api: &FakeApiServer) -> Running {
    running::start(api, |_, metrics| RunConfig {
        notifier: Some(Notifier::new(metrics.clone(), 2, Duration::from_millis(50)).unwrap()),
        ..running::config()
    })
}

fn status(api: &FakeApiServer, name: &str) -> Value {
    api.get(CHANGES, "shop", name).unwrap()["status"].clone()
}

/// The Events of `reason` about the object named `regarding`.
fn events(api: &FakeApiServer, reason: &str, regarding: &str) -> Vec<Value> {
    api.list(EVENTS)
        .into_iter()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == regarding)
        .collect()
}

fn notices(received: &Received, kind: &str) -> Vec<Value> {
    received
        .at("/team")
        .into_iter()
        .map(|(_, body)| body)
        .filter(|b| b["kind"] == kind)
        .collect()
}

/// The PATCHes of the request's status, accepted or refused.
fn status_writes(api: &FakeApiServer, name: &str) -> usize {
    let path = format!("/custodychanges/{name}/status");
    api.requests()
        .iter()
        .filter(|(m, p)| *m == Method::PATCH && p.ends_with(&path))
        .count()
}

#[tokio::test]
async fn an_approved_change_is_applied_once_when_its_workload_runs_it() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    seed(&api, &base);
    let name = propose_approved(&api, "web:2");
    // Two controllers that both think they lead: the guarded writes still happen once.
    let first = start(&api);
    let second = start(&api);

    assert!(
        eventually(Duration::from_secs(10), || status(&api, &name)["phase"]
            == "Approved")
        .await,
        "never approved: {}",
        status(&api, &name)
    );
    let s = status(&api, &name);
    assert_eq!(s["proposalNotified"], true);
    assert_eq!(s["decisionNotified"], true);
    assert!(s["expiresAt"].is_string(), "{s}");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("approved by alice@example.com under policy \"reviewed\""),
        "{s}"
    );
    assert!(
        eventually(Duration::from_secs(5), || notices(
            &received,
            "ChangeApproved"
        )
        .len()
            == 1)
        .await,
        "the team got no approval notice"
    );
    let proposed = notices(&received, "ChangeProposed");
    assert_eq!(proposed.len(), 1, "proposed once: {proposed:?}");
    assert_eq!(
        proposed[0]["approve"],
        format!("kubectl custody approve {name} -n shop --reason \"<why>\"")
    );
    assert_eq!(proposed[0]["diff"][0]["after"], "web:2");
    assert_eq!(events(&api, "ChangeProposed", &name).len(), 1);
    assert_eq!(events(&api, "ChangeApproved", &name).len(), 1);

    // The agent applies the approved template; the Deployment controller has not caught up.
    api.upsert(DEPLOYMENTS, deployment("web:2", 2, 1, "1"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        status(&api, &name).get("applied").is_none(),
        "applied before the rollout was observed: {}",
        status(&api, &name)
    );
    // It catches up at revision 2.
    api.upsert(DEPLOYMENTS, deployment("web:2", 2, 2, "2"));
    assert!(
        eventually(Duration::from_secs(10), || status(&api, &name)["phase"]
            == "Applied")
        .await,
        "never applied: {}",
        status(&api, &name)
    );
    let s = status(&api, &name);
    assert_eq!(s["applied"]["revision"], "2");
    assert_eq!(s["applied"]["generation"], 2);
    assert!(
        s.get("expiresAt").is_none(),
        "a spent approval has no deadline: {s}"
    );
    let written = s["applied"]["at"].clone();

    // A few polls later, by either controller: the same record, one Event each way.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(status(&api, &name)["applied"]["at"], written);
    assert_eq!(events(&api, "ChangeApplied", &name).len(), 1);
    let on_workload = events(&api, "ChangeApplied", "web");
    assert_eq!(on_workload.len(), 1);
    assert_eq!(on_workload[0]["regarding"]["kind"], "Deployment");
    assert_eq!(on_workload[0]["related"]["name"], name.as_str());
    let applied = first.metrics.changes_applied.get() + second.metrics.changes_applied.get();
    assert_eq!(applied, 1, "counted once across both");
    // Two looks wrote (approved, applied), each perhaps tried by both controllers and once more
    // by one whose store was a moment behind (refused: its resourceVersion is stale); nothing
    // rewrites a settled request.
    let writes = status_writes(&api, &name);
    assert!(
        writes <= 6,
        "the status is rewritten over and over: {writes} writes"
    );
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn a_workload_running_another_template_never_spends_the_approval() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, _received) = receiver().await;
    seed(&api, &base);
    let name = propose_approved(&api, "web:2");
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || status(&api, &name)["phase"]
            == "Approved")
        .await,
        "never approved: {}",
        status(&api, &name)
    );
    // Something else rolls out, fully observed.
    api.upsert(DEPLOYMENTS, deployment("web:3", 2, 2, "2"));
    // Long enough for a few polls of the approved request's workload.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let s = status(&api, &name);
    assert_eq!(s["phase"], "Approved", "{s}");
    assert!(s.get("applied").is_none(), "{s}");
    assert!(events(&api, "ChangeApplied", &name).is_empty());
    let reads = api
        .requests()
        .iter()
        .filter(|(m, p)| *m == Method::GET && p.ends_with("/namespaces/shop/deployments/web"))
        .count();
    assert!(reads >= 2, "the workload was read {reads} times");
    assert_eq!(controller.metrics.changes_applied.get(), 0);
    let approved = controller
        .metrics
        .changes
        .get_or_create(&ChangeStateLabels {
            state: Label(ChangePhase::Approved),
        })
        .get();
    assert_eq!(approved, 1);
    controller.stop().await;
}

#[tokio::test]
async fn without_the_change_crd_the_controller_keeps_working() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, _received) = receiver().await;
    seed(&api, &base);
    // An install from before approvals: CustodyChanges are answered 404, every time.
    api.inject(
        Method::GET,
        "custodychanges",
        http::StatusCode::NOT_FOUND,
        usize::MAX,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || controller.readiness.is_ready()).await,
        "readiness waited for the missing CRD"
    );
    // The watch retries with backoff rather than spinning.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tries = api
        .requests()
        .iter()
        .filter(|(_, p)| p.contains("custodychanges"))
        .count();
    assert!((1..=10).contains(&tries), "{tries} tries in two seconds");
    controller.stop().await;
}
