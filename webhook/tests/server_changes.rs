//! Approvals over real HTTPS on loopback: CustodyChange proposals, approvals and rejections at
//! `/validate-change`, and an agent's protected revision at `/validate` denied without an
//! approved change and admitted with one, with the metrics that count both.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::sync::Arc;

use custody_crds::{Approval, ChangePhase, CustodyChange, CustodyChangeStatus, Lift};
use custody_engine::{PolicySet, QuarantineIndex, TeamIndex};
use custody_testkit::admission::review_of;
use custody_testkit::approval::{AGENT_SA, agent_deployment, reviewed, team_web};
use custody_webhook::server::{LiveState, Metrics};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use server_support::*;

/// A person who proposes through the API (a team member, so only the proposer rule stops them).
const PROPOSING_PERSON: &str = "claude@acme.dev";
const ANN: &str = "ann@acme.dev";
const OUTSIDER: &str = "olga@acme.dev";

/// One policy over namespace `shop` whose approval covers every agent, approvers left to the
/// owning team; the agents' service accounts are agent identities.
fn policies() -> PolicySet {
    reviewed(Some(Approval::default()))
}

/// `team-web` (the owner the agent annotations name), whose members approve.
fn teams() -> TeamIndex {
    let (index, errors) = TeamIndex::compile([&team_web(&[ANN, PROPOSING_PERSON], &[])]);
    assert!(errors.is_empty(), "{errors:?}");
    index
}

fn live(metrics: Metrics) -> Arc<LiveState> {
    let live = LiveState::fixed(policies(), QuarantineIndex::default(), metrics);
    live.set_teams(teams());
    live
}

/// The agent's Deployment `web` in `shop` running `image`.
fn web(image: &str) -> Value {
    agent_deployment("web", "shop", image)
}

/// The change request `custody propose` makes for `object`, proposed an hour ago.
fn proposal(object: &Value, proposer: &str) -> CustodyChange {
    custody_testkit::approval::proposal(
        object,
        proposer,
        Timestamp::now() - SignedDuration::from_hours(1),
    )
}

fn approved_by(change: &CustodyChange, by: &str) -> CustodyChange {
    let mut approved = change.clone();
    approved.status = Some(CustodyChangeStatus {
        approvals: vec![Lift {
            by: by.into(),
            reason: "checked the image bump and its limits".into(),
            at: Time(Timestamp::now()),
        }],
        ..CustodyChangeStatus::default()
    });
    approved
}

/// An AdmissionReview of a CustodyChange write, as the apiserver sends it.
fn change_review(
    operation: &str,
    status: bool,
    object: &CustodyChange,
    old: Option<&CustodyChange>,
    user: &str,
) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "c-1",
            "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyChange"},
            "resource": {"group": "custody.dev", "version": "v1alpha1", "resource": "custodychanges"},
            "subResource": if status { json!("status") } else { Value::Null },
            "requestKind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyChange"},
            "operation": operation,
            "namespace": "shop",
            "name": object.metadata.name,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    })
    .to_string()
    .into_bytes()
}

/// An AdmissionReview of an update of a CustodyChange's status, from `old` to `new`.
fn status_write(new: &CustodyChange, old: &CustodyChange, user: &str) -> Vec<u8> {
    change_review("UPDATE", true, new, Some(old), user)
}

/// One write to `/validate-change` and what it must be answered.
struct Case {
    name: &'static str,
    review: Vec<u8>,
    allowed: bool,
    /// Text the denial's message contains.
    expected: &'static str,
}

impl Case {
    fn new(name: &'static str, review: Vec<u8>) -> Self {
        Self {
            name,
            review,
            allowed: true,
            expected: "",
        }
    }

    fn refused(self, expected: &'static str) -> Self {
        Self {
            allowed: false,
            expected,
            ..self
        }
    }
}

/// (allowed, status.message or "", the response's audit annotations)
fn verdict(text: &str) -> (bool, String, Value) {
    let review: Value = serde_json::from_str(text).unwrap();
    let response = &review["response"];
    (
        response["allowed"].as_bool().unwrap(),
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        response["auditAnnotations"].clone(),
    )
}

fn metrics_text(server: &TestServer) -> String {
    let registry = server.registry.lock().unwrap();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn proposals_approvals_and_rejections_are_judged() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), live).await;
    let ca = pki.ca_der();
    let mut conn = Conn::open(server.addr, &ca).await;

    let by_agent = proposal(&web("shop/web:2"), AGENT_SA);
    let by_person = proposal(&web("shop/web:3"), PROPOSING_PERSON);
    let mut controller_write = by_agent.clone();
    controller_write.status = Some(CustodyChangeStatus {
        phase: Some(ChangePhase::Pending),
        ..CustodyChangeStatus::default()
    });
    let rejected = {
        let mut r = by_agent.clone();
        r.status = Some(CustodyChangeStatus {
            rejection: Some(Lift {
                by: ANN.into(),
                reason: "the new image is not from our registry".into(),
                at: Time(Timestamp::now()),
            }),
            ..CustodyChangeStatus::default()
        });
        r
    };
    let sa_reviewer = "system:serviceaccount:agents:reviewer";
    let cases: Vec<Case> = vec![
        Case::new(
            "the proposer's own proposal",
            change_review("CREATE", false, &by_agent, None, AGENT_SA),
        ),
        Case::new(
            "a proposal naming another proposer",
            change_review(
                "CREATE",
                false,
                &by_agent,
                None,
                "system:serviceaccount:agents:other",
            ),
        )
        .refused("spec.proposer is"),
        Case::new(
            "an approval by the proposer",
            status_write(
                &approved_by(&by_person, PROPOSING_PERSON),
                &by_person,
                PROPOSING_PERSON,
            ),
        )
        .refused("the proposer never approves or rejects it"),
        Case::new(
            "an approval by a member of the owning team",
            status_write(&approved_by(&by_agent, ANN), &by_agent, ANN),
        ),
        Case::new(
            "an approval by a person outside the team",
            status_write(&approved_by(&by_agent, OUTSIDER), &by_agent, OUTSIDER),
        )
        .refused("may not decide this change"),
        Case::new(
            "an approval by a service account",
            status_write(&approved_by(&by_agent, sa_reviewer), &by_agent, sa_reviewer),
        )
        .refused(sa_reviewer),
        Case::new(
            "a rejection by a member",
            status_write(&rejected, &by_agent, ANN),
        ),
        Case::new(
            "the phase, by the controller",
            status_write(&controller_write, &by_agent, CONTROLLER),
        ),
        Case::new(
            "the phase, by a person",
            status_write(&controller_write, &by_agent, ANN),
        )
        .refused("status.phase is written by Custody's controller only"),
    ];
    for Case {
        name: case,
        review,
        allowed,
        expected,
    } in cases
    {
        let (code, text) = conn.post("/validate-change", review).await;
        assert_eq!(code, 200, "{case}: {text}");
        let (was_allowed, message, _) = verdict(&text);
        assert_eq!(was_allowed, allowed, "{case}: {text}");
        assert!(message.contains(expected), "{case}: {message}");
        if !allowed {
            let review: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                review["response"]["status"]["details"]["causes"][0]["reason"], "ChangeRefused",
                "{case}: {text}"
            );
        }
    }

    // An admitted approval is named in the audit log.
    let (_, text) = conn
        .post(
            "/validate-change",
            change_review(
                "UPDATE",
                true,
                &approved_by(&by_agent, ANN),
                Some(&by_agent),
                ANN,
            ),
        )
        .await;
    let (_, _, audit) = verdict(&text);
    assert_eq!(
        audit["change-approved"],
        format!("{ANN}: checked the image bump and its limits"),
        "{text}"
    );
    let metrics = metrics_text(&server);
    assert!(
        metrics.contains(r#"custody_admission_requests_total{kind="change",operation="UPDATE",decision="denied",mode="Enforce"} 4"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"custody_admission_violations_total{code="ChangeRefused",mode="Enforce"} 5"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_agents_protected_revision_needs_an_approved_change() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let server = start(config(&secret), live).await;
    let ca = pki.ca_der();
    let mut conn = Conn::open(server.addr, &ca).await;
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let update = review_of("UPDATE", &new, Some(&old), AGENT_SA, &[]);
    let change = proposal(&new, AGENT_SA);
    let name = change.metadata.name.clone().unwrap();

    let (_, text) = conn.post("/validate", update.clone()).await;
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], false, "{text}");
    assert_eq!(
        review["response"]["status"]["details"]["causes"][0]["reason"], "ApprovalRequired",
        "{text}"
    );
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("creates CustodyChange {name}")),
        "{message}"
    );

    // Pending: still denied, and told why.
    server.live.set_changes([&change]);
    let (_, text) = conn.post("/validate", update.clone()).await;
    let (allowed, message, _) = verdict(&text);
    assert!(!allowed, "{text}");
    assert!(message.contains("has 0 of 1 approvals"), "{message}");

    // Approved by a member: admitted, with a warning and the audit annotation.
    let approved = approved_by(&change, ANN);
    let unrelated = proposal(&web("shop/web:9"), AGENT_SA);
    server.live.set_changes([&unrelated, &approved]);
    assert_eq!(server.metrics.change_requests_loaded.get(), 2);
    let (_, text) = conn.post("/validate", update.clone()).await;
    let (allowed, _, audit) = verdict(&text);
    assert!(allowed, "{text}");
    assert_eq!(audit["approved-change"], format!("{name}: {ANN}"), "{text}");
    let review: Value = serde_json::from_str(&text).unwrap();
    assert!(
        review["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains(&name),
        "{text}"
    );

    // A dry run is answered the same and not counted.
    let mut dry: Value = serde_json::from_slice(&update).unwrap();
    dry["request"]["dryRun"] = json!(true);
    let (_, text) = conn.post("/validate", dry.to_string().into_bytes()).await;
    assert!(verdict(&text).0, "{text}");

    let metrics = metrics_text(&server);
    for line in [
        r#"custody_approved_changes_admitted_total{kind="Deployment"} 1"#,
        r#"custody_approval_required_denials_total{kind="Deployment"} 2"#,
        "custody_change_requests_loaded 2",
    ] {
        assert!(metrics.contains(line), "{line} missing: {metrics}");
    }
}

#[tokio::test]
async fn before_sync_a_change_write_is_refused() {
    let pki = Pki::new("ca");
    let (cert, key) = pki.issue("webhook");
    let secret = SecretDir::new(&cert, &key);
    let mut cfg = config(&secret);
    // Whatever workloads get before sync, a change write waits for the caches.
    cfg.failure_before_sync = custody_crds::FailurePolicy::Ignore;
    let server = start(cfg, |metrics| LiveState::watched(metrics).0).await;
    let change = proposal(&web("shop/web:2"), AGENT_SA);
    let (_, text) = post_once(
        server.addr,
        &pki.ca_der(),
        "/validate-change",
        change_review("CREATE", false, &change, None, AGENT_SA),
    )
    .await;
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["response"]["allowed"], false, "{text}");
    assert_eq!(review["response"]["status"]["code"], 503, "{text}");
}
