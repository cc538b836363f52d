//! Teams against the in-process API server and a local HTTP receiver: a revert's record goes to
//! the owning team's target with the headers of a Secret in the controller's namespace, and
//! names the team and its on-call; a target whose Secret is missing fails alone; a break-glass
//! revision is announced once, across a restart; Alertmanager and PagerDuty targets are sent a
//! record's resolution once the restored revision is healthy, and nothing twice across a
//! restart; a probation is an alert until a person lifts it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use custody_controller::act::notify::Notifier;
use custody_controller::decide::route::{Destination, Via};

use custody_controller::metrics::{KindLabels, Label, Metrics, NotificationLabels, SendResult};
use custody_controller::run::RunConfig;
use custody_crds::{NoticeKind, NotifyFormat, NotifyTarget, SecretRef};
use custody_testkit::fake_apiserver::FakeApiServer;
use serde_json::{Value, json};
use support::receiver::receiver;
use support::running::{self, Running, ago, eventually, pod_template};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const RECORDS: &str = "apis/custody.dev/v1alpha1/rollbackrecords";
const TEAMS: &str = "apis/custody.dev/v1alpha1/custodyteams";
const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";
const SECRETS: &str = "api/v1/secrets";
const EVENTS: &str = "apis/events.k8s.io/v1/events";
const OWN_NAMESPACE: &str = "custody-system";

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
}

/// A Deployment `web` in `shop` whose revision 1 is healthy (marked) and whose revision 2, by
/// `actor` with `v2` annotations on top, is current; with `failing`, its one pod has been
/// unready for two minutes.
fn seed(api: &FakeApiServer, actor: &str, v2: Value, failing: bool) {
    let mut annotations =
        json!({"custody.dev/actor": actor, "custody.dev/agent": "claude-code/1.0"});
    for (k, v) in v2.as_object().unwrap() {
        annotations[k] = v.clone();
    }
    api.upsert(DEPLOYMENTS, json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "generation": 2, "annotations": annotations},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:2", None),
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    }));
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-rs1", "ownerReferences": owner("Deployment", "web", "uid-web"),
                     "annotations": {"custody.dev/actor": "human", "deployment.kubernetes.io/revision": "1", "custody.dev/healthy-since": ago(3600)}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:1", Some("h1"))}
    }));
    let mut rs_annotations = annotations.clone();
    rs_annotations["deployment.kubernetes.io/revision"] = json!("2");
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-2", "namespace": "shop", "uid": "uid-rs2", "annotations": rs_annotations, "ownerReferences": owner("Deployment", "web", "uid-web")},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:2", Some("h2"))}
    }));
    let (ready, since) = if failing {
        ("False", ago(120))
    } else {
        ("True", ago(5))
    };
    api.upsert(PODS, json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-2-x", "namespace": "shop", "uid": "uid-p2", "ownerReferences": owner("ReplicaSet", "web-2", "uid-rs2")},
        "spec": {"containers": [{"name": "web", "image": "web:2"}]},
        "status": {"startTime": since, "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": since}],
                   "containerStatuses": [{"name": "web", "image": "web:2", "imageID": "", "ready": ready == "True", "restartCount": 0, "state": {"running": {}}}]}
    }));
}

/// A policy selecting `shop` whose notifyUrl is the receiver's `/policy`.
fn policy(api: &FakeApiServer, base: &str) {
    api.upsert(POLICIES, json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "shop", "uid": "uid-policy"},
        "spec": {"match": {"namespaces": {"include": ["shop"]}}, "rollback": {"notifyUrl": format!("{base}/policy")}}
    }));
}

fn team(api: &FakeApiServer, targets: Value) {
    api.upsert(TEAMS, json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
        "metadata": {"name": "team-web", "uid": "uid-team"},
        "spec": {"oncall": ["@web-oncall", "web@example.com"], "namespaces": ["sh*"], "notify": targets}
    }));
}

fn secret(api: &FakeApiServer, name: &str, data: Value) {
    api.upsert(
        SECRETS,
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": OWN_NAMESPACE, "uid": format!("uid-{name}")},
            "data": data
        }),
    );
}

fn start(api: &FakeApiServer) -> Running {
    running::start(api, |client, metrics| {
        let notifier = Notifier::new(metrics.clone(), 2, Duration::from_millis(50))
            .unwrap()
            .with_secrets(kube::Api::namespaced(client.clone(), OWN_NAMESPACE));
        RunConfig {
            notifier: Some(notifier),
            ..running::config()
        }
    })
}

fn record_status(api: &FakeApiServer) -> Value {
    api.list(RECORDS)
        .first()
        .map(|r| r["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_revert_notifies_the_owning_team_with_headers_from_its_secret() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    policy(&api, &base);
    // base64 of "Bearer s3cret\n": a trailing newline from a file is trimmed.
    secret(
        &api,
        "web-pager",
        json!({"Authorization": "QmVhcmVyIHMzY3JldAo="}),
    );
    team(
        &api,
        json!([{"url": format!("{base}/team"), "headersFrom": {"name": "web-pager"}}]),
    );
    seed(
        &api,
        "agent",
        json!({"custody.dev/owner": "team-web"}),
        true,
    );
    let controller = start(&api);

    assert!(
        eventually(Duration::from_secs(10), || !received.at("/team").is_empty()).await,
        "the team's target got nothing"
    );
    let (headers, body) = &received.at("/team")[0];
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["kind"], "RollbackRecord", "the record, as before");
    assert_eq!(body["spec"]["team"], "team-web");
    assert_eq!(body["spec"]["oncall"], "@web-oncall, web@example.com");
    assert!(
        received.at("/policy").is_empty(),
        "the team's targets replace the policy's URL"
    );

    let record = &api.list(RECORDS)[0];
    assert_eq!(record["spec"]["team"], "team-web");
    assert_eq!(record["spec"]["oncall"], "@web-oncall, web@example.com");
    assert!(
        eventually(Duration::from_secs(5), || record_status(&api)["notified"]
            == json!(true))
        .await,
        "status.notified not written: {}",
        record_status(&api)
    );
    controller.stop().await;
}

#[tokio::test]
async fn a_missing_secret_fails_its_target_alone_and_the_policy_url_serves_unregistered_owners() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    policy(&api, &base);
    team(
        &api,
        json!([
            {"url": format!("{base}/team"), "headersFrom": {"name": "nowhere"}},
            {"url": format!("{base}/team-2")}
        ]),
    );
    // The revision declares its own on-call, which wins over the team's.
    seed(
        &api,
        "agent",
        json!({"custody.dev/owner": "team-web", "custody.dev/oncall": "@me"}),
        true,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || !received
            .at("/team-2")
            .is_empty())
        .await,
        "the healthy target got nothing"
    );
    assert!(
        eventually(Duration::from_secs(5), || record_status(&api)["notified"]
            == json!(false))
        .await,
        "status: {}",
        record_status(&api)
    );
    let error = record_status(&api)["notificationError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("team team-web json (127.0.0.1)") && error.contains("\"nowhere\""),
        "{error}"
    );
    assert!(
        received.at("/team").is_empty(),
        "never sent without its headers"
    );
    assert_eq!(api.list(RECORDS)[0]["spec"]["oncall"], "@me");
    let failed = Destination {
        target: NotifyTarget {
            headers_from: Some(SecretRef {
                name: "nowhere".into(),
            }),
            ..NotifyTarget::json(&format!("{base}/team"))
        },
        via: Via::Team("team-web".into()),
    };
    let failures = controller
        .metrics
        .notifications
        .get_or_create(&NotificationLabels {
            target: failed.id(),
            format: Label(NotifyFormat::Json),
            kind: Label(NoticeKind::Reverted),
            result: Label(SendResult::Failed),
        })
        .get();
    assert!(
        failures >= 1,
        "failures counted by target and format: {failures}"
    );
    controller.stop().await;

    // An owner no CustodyTeam registers: the policy's URL, and no on-call.
    let api = FakeApiServer::start().await.unwrap();
    policy(&api, &base);
    seed(
        &api,
        "agent",
        json!({"custody.dev/owner": "team-ghost"}),
        true,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || !received
            .at("/policy")
            .is_empty())
        .await,
        "the policy's URL got nothing"
    );
    let body = &received.at("/policy")[0].1;
    assert_eq!(body["spec"]["team"], "team-ghost");
    assert!(body["spec"].get("oncall").is_none());
    controller.stop().await;
}

#[tokio::test]
async fn a_break_glass_revision_is_announced_once_across_a_restart() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    policy(&api, &base);
    team(&api, json!([{"url": format!("{base}/team")}]));
    seed(
        &api,
        "human",
        json!({"custody.dev/owner": "team-web", "custody.dev/break-glass": "INC-4711: restoring checkout"}),
        false,
    );
    let controller = start(&api);
    let break_glass_events = || {
        api.list(EVENTS)
            .into_iter()
            .filter(|e| e["reason"] == "BreakGlass")
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(10), || !break_glass_events().is_empty()).await,
        "no BreakGlass Event"
    );
    let event = &break_glass_events()[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["kind"], "Deployment");
    assert_eq!(event["regarding"]["name"], "web");
    assert_eq!(
        event["note"],
        "break-glass revision 2 (web-2) by human: INC-4711: restoring checkout"
    );
    assert_eq!(event["related"]["name"], "web-2");
    let marked = api.get(REPLICASETS, "shop", "web-2").unwrap()["metadata"]["annotations"]
        ["custody.dev/break-glass-noticed"]
        .clone();
    assert!(marked.is_string(), "the revision is not marked");

    assert!(
        eventually(Duration::from_secs(10), || !received.at("/team").is_empty()).await,
        "the team got no notice"
    );
    let notice = &received.at("/team")[0].1;
    assert_eq!(notice["kind"], "BreakGlass");
    assert_eq!(
        notice["workload"],
        json!({"kind": "Deployment", "namespace": "shop", "name": "web", "uid": "uid-web"})
    );
    assert_eq!(notice["revision"], "2");
    assert_eq!(notice["reason"], "INC-4711: restoring checkout");
    assert_eq!(notice["actor"], "human");
    assert_eq!(notice["team"], "team-web");
    assert_eq!(notice["oncall"], "@web-oncall, web@example.com");
    let count = |m: &Metrics| {
        m.break_glass
            .get_or_create(&KindLabels {
                kind: Label(custody_crds::WorkloadKind::Deployment),
            })
            .get()
    };
    assert_eq!(count(&controller.metrics), 1);
    controller.stop().await;

    // Another leader, or the same after a restart: the mark says it was announced.
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(5), || api
            .requests()
            .iter()
            .filter(|(_, p)| p.contains("custodyteams"))
            .count()
            >= 2)
        .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(break_glass_events().len(), 1, "announced again");
    assert_eq!(received.at("/team").len(), 1, "notified again");
    assert_eq!(count(&controller.metrics), 0);
    controller.stop().await;
}

#[tokio::test]
async fn without_the_team_crd_reverts_still_happen() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    policy(&api, &base);
    // An older install: listing CustodyTeams is answered 404, every time.
    api.inject(
        http::Method::GET,
        "custodyteams",
        http::StatusCode::NOT_FOUND,
        usize::MAX,
    );
    seed(
        &api,
        "agent",
        json!({"custody.dev/owner": "team-web"}),
        true,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || !received
            .at("/policy")
            .is_empty())
        .await,
        "no revert notified without the team CRD"
    );
    assert_eq!(api.list(RECORDS)[0]["spec"]["team"], "team-web");
    controller.stop().await;
}

/// The revision that restores v1 after a revert: revision 3, marked healthy, rolled out.
fn restored_and_healthy(api: &FakeApiServer) {
    let mut web = api.get(DEPLOYMENTS, "shop", "web").unwrap();
    web["metadata"]["generation"] = json!(3);
    web["status"] = json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
    api.upsert(DEPLOYMENTS, web);
    api.upsert(REPLICASETS, json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "uid-rs1", "ownerReferences": owner("Deployment", "web", "uid-web"),
                     "annotations": {"custody.dev/actor": "human", "deployment.kubernetes.io/revision": "3", "custody.dev/healthy-since": ago(3600)}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": pod_template("web:1", Some("h1"))}
    }));
}

fn sent(status: &Value, format: &str) -> Vec<Value> {
    status["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["format"] == format)
        .cloned()
        .collect()
}

#[tokio::test]
async fn alertmanager_and_pagerduty_are_resolved_when_the_restored_revision_is_healthy_and_nothing_is_sent_twice()
 {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    // A restored revision proves itself after the policy's healthy window since the revert.
    api.upsert(POLICIES, json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
        "metadata": {"name": "shop", "uid": "uid-policy"},
        "spec": {"match": {"namespaces": {"include": ["shop"]}}, "rollback": {"healthyAfterSeconds": 2}}
    }));
    // base64 of "R0UT1NGKEY".
    secret(
        &api,
        "pagerduty",
        json!({"routing-key": "UjBVVDFOR0tFWQ=="}),
    );
    team(
        &api,
        json!([
            {"url": format!("{base}/am"), "format": "alertmanager"},
            {"url": format!("{base}/pd"), "format": "pagerduty", "events": ["reverted"],
             "routingKeyFrom": {"name": "pagerduty", "key": "routing-key"}},
            {"url": format!("{base}/slack"), "format": "slack", "events": ["alerted"]}
        ]),
    );
    seed(
        &api,
        "agent",
        json!({"custody.dev/owner": "team-web"}),
        true,
    );
    let controller = start(&api);
    assert!(
        eventually(Duration::from_secs(10), || !received.at("/pd").is_empty()
            && !received.at("/am/api/v2/alerts").is_empty())
        .await,
        "pagerduty and alertmanager got nothing: {} {:?} {:?}",
        record_status(&api),
        received.at("/pd"),
        received.at("/am/api/v2/alerts")
    );
    let (_, trigger) = &received.at("/pd")[0];
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY");
    let (_, alerts) = &received.at("/am/api/v2/alerts")[0];
    assert_eq!(alerts[0]["labels"]["alertname"], "CustodyReverted");
    assert_eq!(alerts[0]["labels"]["team"], "team-web");
    assert!(received.at("/slack").is_empty(), "slack takes only alerted");
    assert!(
        eventually(Duration::from_secs(5), || sent(
            &record_status(&api),
            "pagerduty"
        )
        .first()
        .is_some_and(|d| d["sentAt"].is_string()))
        .await,
        "status: {}",
        record_status(&api)
    );
    controller.stop().await;

    // A new leader: nothing is sent again; the restored revision turns healthy; both resolve.
    let controller = start(&api);
    restored_and_healthy(&api);
    assert!(
        eventually(Duration::from_secs(15), || received.at("/pd").len() >= 2).await,
        "no resolution: {}",
        record_status(&api)
    );
    let pd = received.at("/pd");
    assert_eq!(pd.len(), 2, "one trigger, one resolve: {pd:?}");
    assert_eq!(pd[1].1["event_action"], "resolve");
    assert_eq!(pd[1].1["dedup_key"], trigger["dedup_key"]);
    assert!(
        eventually(Duration::from_secs(10), || received
            .at("/am/api/v2/alerts")
            .iter()
            .any(|(_, a)| a[0]["endsAt"].as_str()
                < Some(jiff::Timestamp::now().to_string().as_str())))
        .await,
        "the alert never ended"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let status = record_status(&api);
            ["alertmanager", "pagerduty"].iter().all(|f| {
                sent(&status, f)
                    .first()
                    .is_some_and(|d| d["resolvedAt"].is_string())
            })
        })
        .await,
        "status: {}",
        record_status(&api)
    );
    controller.stop().await;
}

/// A reverted agent revision's record, written `minutes_ago`.
fn revert_record(api: &FakeApiServer, name: &str, minutes_ago: i64, lifted: bool) {
    let at = ago(minutes_ago * 60);
    let mut record = json!({
        "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}")},
        "spec": {
            "workload": {"kind": "Deployment", "name": "api", "uid": "uid-api"},
            "action": "Reverted", "reason": "CrashLoop",
            "from": {"revision": "2", "templateFingerprint": "f", "actor": "agent", "agent": "bot/2"},
            "policy": "shop", "explanation": "reverted", "team": "team-web",
            "regressionDetectedAt": at, "actedAt": at
        },
        // Notified before: only the probation is new.
        "status": {"notified": true}
    });
    if lifted {
        record["status"]["probationLifted"] =
            json!({"by": "alice", "reason": "reviewed the agent's fixes", "at": ago(1)});
    }
    api.upsert(RECORDS, record);
}

#[tokio::test]
async fn an_agent_put_on_probation_is_an_alert_until_a_person_lifts_it() {
    let api = FakeApiServer::start().await.unwrap();
    let (base, received) = receiver().await;
    api.upsert(
        POLICIES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "shop", "uid": "uid-policy"},
            "spec": {"match": {"namespaces": {"include": ["shop"]}},
                     "agents": {"probation": {"reverts": 2, "window": "1h"}}}
        }),
    );
    team(
        &api,
        json!([{"url": format!("{base}/am"), "format": "alertmanager", "events": ["probation"]}]),
    );
    revert_record(&api, "api-r1", 30, false);
    revert_record(&api, "api-r2", 10, false);
    let controller = start(&api);
    let probation_alerts = || -> Vec<Value> {
        received
            .at("/am/api/v2/alerts")
            .into_iter()
            .map(|(_, alerts)| alerts[0].clone())
            .filter(|a| a["labels"]["alertname"] == "CustodyAgentProbation")
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || !probation_alerts().is_empty()).await,
        "no probation alert: {:?}",
        received.at("/am/api/v2/alerts")
    );
    let alert = &probation_alerts()[0];
    assert_eq!(alert["labels"]["agent"], "bot/2");
    assert_eq!(alert["labels"]["namespace"], "shop");
    assert_eq!(alert["labels"]["notice"], "probation");
    let ends: jiff::Timestamp = alert["endsAt"].as_str().unwrap().parse().unwrap();
    let expected = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(30);
    assert!(
        (ends.as_second() - expected.as_second()).abs() < 30,
        "ends when the older revert leaves the window: {ends}"
    );
    assert!(
        alert["annotations"]["commands"]
            .as_str()
            .unwrap()
            .contains("kubectl custody lift api-r2 -n shop --probation"),
        "{alert}"
    );
    let kept = api.get(RECORDS, "shop", "api-r2").unwrap()["status"]["notifications"].clone();
    assert!(
        eventually(Duration::from_secs(5), || api
            .get(RECORDS, "shop", "api-r2")
            .unwrap()["status"]["notifications"][0]["kind"]
            == "probation")
        .await,
        "kept on the newest record: {kept}"
    );

    assert_eq!(
        api.get(RECORDS, "shop", "api-r2").unwrap()["status"]["notified"],
        true,
        "the record's own notification status is left alone"
    );

    // A person lifts it: the alert ends now.
    revert_record(&api, "api-r2", 10, true);
    assert!(
        eventually(Duration::from_secs(15), || probation_alerts().iter().any(
            |a| {
                a["endsAt"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    < Some(jiff::Timestamp::now())
            }
        ))
        .await,
        "the lift did not end the alert: {:?}",
        probation_alerts()
    );
    controller.stop().await;
}
