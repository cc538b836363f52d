//! A person's review of an agent's change (`spec.agents.approval`): which revisions need an
//! approved CustodyChange, which change admits which revision (the digest, exactly), and who may
//! write a proposal, an approval or a rejection.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod support;

use std::collections::BTreeMap;

use custody_crds::{
    AgentGuardrails, Applied, Approval, CustodyChange, CustodyChangeStatus, CustodyPolicy,
    CustodyPolicySpec, Lift, TeamMembers, Vocabulary, WorkloadKind,
};
use custody_engine::attest::{AttestationCache, claim_from_value};
use custody_engine::{
    ChangeIndex, ChangeReview, Context, Decision, PolicySet, QuarantineIndex, TeamIndex,
    ViolationCode, evaluate, validate_change,
};
use custody_testkit::approval::{AGENT_SA, agent_deployment, reviewed, team_web};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use support::*;

const NOW: &str = "2026-12-05T10:00:00Z";
const ANN: &str = "ann@acme.dev";
const BOB: &str = "bob@acme.dev";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn hours_ago(h: i64) -> Timestamp {
    now() - SignedDuration::from_hours(h)
}

fn approval(required: u32) -> Approval {
    Approval {
        required,
        ..Approval::default()
    }
}

fn policies(approval: Approval) -> PolicySet {
    reviewed(Some(approval))
}

fn teams() -> TeamIndex {
    let team = team_web(&[ANN, BOB, "claude@acme.dev"], &["web-leads"]);
    let (index, errors) = TeamIndex::compile([&team]);
    assert!(errors.is_empty(), "{errors:?}");
    index
}

/// The agent's Deployment `web` in `shop` running `image`.
fn web(image: &str) -> Value {
    agent_deployment("web", "shop", image)
}

/// The change request `custody propose` would make for `object`, an hour ago.
fn proposal(object: &Value, proposer: &str) -> CustodyChange {
    custody_testkit::approval::proposal(object, proposer, hours_ago(1))
}

fn lift(by: &str, at: Timestamp) -> Lift {
    Lift {
        by: by.into(),
        reason: "checked the image bump and its limits".into(),
        at: Time(at),
    }
}

fn with_status(mut change: CustodyChange, status: CustodyChangeStatus) -> CustodyChange {
    change.status = Some(status);
    change
}

fn approved_by(change: CustodyChange, by: &[&str]) -> CustodyChange {
    with_status(
        change,
        CustodyChangeStatus {
            approvals: by.iter().map(|b| lift(b, hours_ago(0))).collect(),
            ..CustodyChangeStatus::default()
        },
    )
}

fn admit(
    set: &PolicySet,
    changes: &[CustodyChange],
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    user: &str,
) -> Decision {
    let body = review_of(operation, object, old, user, &[]);
    let request = request(&body);
    let vocabulary = Vocabulary::default();
    let index = ChangeIndex::from_changes(changes);
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &QuarantineIndex::default(),
        now: now(),
        attestations: &AttestationCache::default(),
        teams: &TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &index,
    };
    evaluate(set, &request, &ctx)
}

fn codes(d: &Decision) -> Vec<ViolationCode> {
    d.violations.iter().map(|v| v.code).collect()
}

#[test]
fn which_revisions_need_an_approved_change() {
    let set = policies(approval(1));
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let approved = approved_by(proposal(&new, AGENT_SA), &[ANN]);
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    let mut relabelled = old.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("front");
    let mut restarted = old.clone();
    restarted["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-05T09:59:00Z"});
    let mut by_a_person = new.clone();
    by_a_person["metadata"]["annotations"]["custody.dev/actor"] = json!("human");
    by_a_person["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("custody.dev/agent");
    let mut elsewhere = new.clone();
    elsewhere["metadata"]["namespace"] = json!("lab");
    let cases: Vec<(
        &str,
        &str,
        &Value,
        Option<&Value>,
        &str,
        Vec<CustodyChange>,
        bool,
    )> = vec![
        (
            "an agent's new image, no request",
            "UPDATE",
            &new,
            Some(&old),
            AGENT_SA,
            vec![],
            false,
        ),
        (
            "an agent's new workload, no request",
            "CREATE",
            &new,
            None,
            AGENT_SA,
            vec![],
            false,
        ),
        (
            "the approved change itself",
            "UPDATE",
            &new,
            Some(&old),
            AGENT_SA,
            vec![approved.clone()],
            true,
        ),
        (
            "the approved change, created",
            "CREATE",
            &new,
            None,
            AGENT_SA,
            vec![approved.clone()],
            true,
        ),
        (
            "a scale",
            "UPDATE",
            &scaled,
            Some(&old),
            AGENT_SA,
            vec![],
            true,
        ),
        (
            "a label on the workload",
            "UPDATE",
            &relabelled,
            Some(&old),
            AGENT_SA,
            vec![],
            true,
        ),
        (
            "a restart",
            "UPDATE",
            &restarted,
            Some(&old),
            AGENT_SA,
            vec![],
            true,
        ),
        (
            "a person's change",
            "UPDATE",
            &by_a_person,
            Some(&old),
            ANN,
            vec![],
            true,
        ),
        (
            "outside the policy's namespaces",
            "UPDATE",
            &elsewhere,
            Some(&old),
            AGENT_SA,
            vec![],
            true,
        ),
    ];
    for (name, operation, object, old, user, changes, allowed) in cases {
        let d = admit(&set, &changes, operation, object, old, user);
        assert_eq!(d.allowed, allowed, "{name}: {:?}", d.message);
        if !allowed {
            assert_eq!(codes(&d), [ViolationCode::ApprovalRequired], "{name}");
        }
    }
}

#[test]
fn the_approval_admits_exactly_its_change() {
    let set = policies(approval(1));
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let change = proposal(&new, AGENT_SA);
    let name = change.metadata.name.clone().unwrap();
    let approved = approved_by(change.clone(), &[ANN]);

    let d = admit(
        &set,
        std::slice::from_ref(&approved),
        "UPDATE",
        &new,
        Some(&old),
        AGENT_SA,
    );
    assert!(d.allowed, "{:?}", d.message);
    assert_eq!(
        d.audit_annotations
            .get("approved-change")
            .map(String::as_str),
        Some(format!("{name}: {ANN}").as_str())
    );
    assert!(
        d.warnings.iter().any(|w| w.contains(&name)),
        "{:?}",
        d.warnings
    );

    let mut other_env = new.clone();
    other_env["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "DEBUG", "value": "1"}]);
    let mut other_commit = new.clone();
    other_commit["metadata"]["annotations"]["custody.dev/source-commit"] = json!("9e8d7c6");
    for (what, object, needle) in [
        ("one env var more", &other_env, "the pod template differs"),
        ("another commit", &other_commit, "source-commit differs"),
    ] {
        let d = admit(
            &set,
            std::slice::from_ref(&approved),
            "UPDATE",
            object,
            Some(&old),
            AGENT_SA,
        );
        assert!(!d.allowed, "{what}");
        let message = d.message.unwrap_or_default();
        assert!(
            message.contains(&format!("CustodyChange {name:?} is for another change")),
            "{what}: {message}"
        );
        assert!(message.contains(needle), "{what}: {message}");
    }

    let d = admit(&set, &[], "UPDATE", &new, Some(&old), AGENT_SA);
    let v = &d.violations[0];
    assert_eq!(v.value.as_deref(), Some(change.spec.digest.as_str()));
    assert_eq!(v.field, "spec.template");
    assert!(
        v.message.contains(&format!("creates CustodyChange {name}")),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("kubectl custody propose -f <manifest>"),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("a member of CustodyTeam \"team-web\""),
        "{}",
        v.message
    );
}

#[test]
fn where_a_request_stands_decides_what_the_agent_is_told() {
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let change = proposal(&new, AGENT_SA);
    let status = |s: CustodyChangeStatus| with_status(change.clone(), s);
    let mut stale = change.clone();
    stale.metadata.creation_timestamp = Some(Time(hours_ago(30)));
    let late = with_status(
        stale,
        CustodyChangeStatus {
            approvals: vec![lift(ANN, hours_ago(1))],
            ..CustodyChangeStatus::default()
        },
    );
    let cases: Vec<(&str, u32, CustodyChange, bool, &str)> = vec![
        (
            "pending",
            1,
            status(CustodyChangeStatus::default()),
            false,
            "has 0 of 1 approvals",
        ),
        (
            "one of two",
            2,
            approved_by(change.clone(), &[ANN]),
            false,
            "has 1 of 2 approvals",
        ),
        (
            "two of two",
            2,
            approved_by(change.clone(), &[ANN, BOB]),
            true,
            "",
        ),
        (
            "the same person twice",
            2,
            approved_by(change.clone(), &[ANN, ANN]),
            false,
            "has 1 of 2",
        ),
        (
            "the proposer's own approval",
            1,
            approved_by(change.clone(), &[AGENT_SA]),
            false,
            "has 0 of 1",
        ),
        (
            "rejected",
            1,
            status(CustodyChangeStatus {
                approvals: vec![lift(ANN, hours_ago(0))],
                rejection: Some(lift(BOB, hours_ago(0))),
                ..CustodyChangeStatus::default()
            }),
            false,
            "was rejected by bob@acme.dev",
        ),
        (
            "spent",
            1,
            status(CustodyChangeStatus {
                approvals: vec![lift(ANN, hours_ago(0))],
                applied: Some(Applied {
                    revision: "3".into(),
                    generation: Some(3),
                    at: Time(hours_ago(0)),
                }),
                ..CustodyChangeStatus::default()
            }),
            false,
            "was spent on revision 3",
        ),
        (
            "approved too long ago",
            1,
            status(CustodyChangeStatus {
                approvals: vec![lift(ANN, hours_ago(25))],
                ..CustodyChangeStatus::default()
            }),
            false,
            "expired at",
        ),
        (
            "approved after the request expired",
            1,
            late,
            false,
            "expired at",
        ),
    ];
    for (name, required, change, allowed, needle) in cases {
        let set = policies(approval(required));
        let d = admit(&set, &[change], "UPDATE", &new, Some(&old), AGENT_SA);
        assert_eq!(d.allowed, allowed, "{name}: {:?}", d.message);
        if !allowed {
            let message = d.message.unwrap_or_default();
            assert!(message.contains(needle), "{name}: {message}");
        }
    }
}

#[test]
fn the_approval_scope_narrows_the_policy() {
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let scoped = |f: fn(&mut Approval)| {
        let mut a = approval(1);
        f(&mut a);
        policies(a)
    };
    let cases: Vec<(&str, PolicySet, bool)> = vec![
        ("every agent", scoped(|_| {}), false),
        (
            "another agent",
            scoped(|a| a.agents = vec!["copilot/*".into()]),
            true,
        ),
        (
            "this agent",
            scoped(|a| a.agents = vec!["claude-code/*".into()]),
            false,
        ),
        (
            "StatefulSets only",
            scoped(|a| a.kinds = vec![WorkloadKind::StatefulSet]),
            true,
        ),
        (
            "another team",
            scoped(|a| a.teams = vec!["team-pay*".into()]),
            true,
        ),
        (
            "this team",
            scoped(|a| a.teams = vec!["team-*".into()]),
            false,
        ),
        (
            "labelled critical",
            scoped(|a| {
                a.object_selector = Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                        match_labels: Some(BTreeMap::from([("tier".into(), "critical".into())])),
                        ..Default::default()
                    },
                )
            }),
            true,
        ),
    ];
    for (name, set, allowed) in cases {
        let d = admit(&set, &[], "UPDATE", &new, Some(&old), AGENT_SA);
        assert_eq!(d.allowed, allowed, "{name}: {:?}", d.message);
    }
}

#[test]
fn unsound_approval_settings_are_refused_when_the_policy_is_applied() {
    let cases: Vec<(&str, Approval, &str)> = vec![
        ("three approvers", approval(3), "must be 1 or 2"),
        ("none", approval(0), "must be 1 or 2"),
        (
            "a bad duration",
            Approval {
                valid_for: "soon".into(),
                ..approval(1)
            },
            "spec.agents.approval.validFor",
        ),
        (
            "no agents",
            Approval {
                agents: vec![],
                ..approval(1)
            },
            "no agent would need approval",
        ),
        (
            "service accounts as approvers",
            Approval {
                approvers: TeamMembers {
                    users: vec!["system:serviceaccount:ci:*".into()],
                    groups: vec![],
                },
                ..approval(1)
            },
            "never approve",
        ),
    ];
    for (name, approval, needle) in cases {
        let spec = CustodyPolicySpec {
            agents: AgentGuardrails {
                approval: Some(approval),
                ..AgentGuardrails::default()
            },
            ..CustodyPolicySpec::default()
        };
        let (_, errors) = PolicySet::compile([CustodyPolicy::new("p", spec)]);
        let problems = errors
            .first()
            .map(|e| e.problems.join("; "))
            .unwrap_or_default();
        assert!(problems.contains(needle), "{name}: {problems:?}");
    }
}

/// An AdmissionReview of a CustodyChange write.
fn change_review(
    operation: &str,
    status: bool,
    object: &CustodyChange,
    old: Option<&CustodyChange>,
    user: &str,
    groups: &[&str],
) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u1",
            "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "CustodyChange"},
            "resource": {"group": "custody.dev", "version": "v1alpha1", "resource": "custodychanges"},
            "subResource": if status { json!("status") } else { Value::Null },
            "operation": operation,
            "namespace": "shop",
            "name": object.metadata.name,
            "userInfo": {"username": user, "groups": groups},
            "object": object,
            "oldObject": old,
        }
    })
    .to_string()
    .into_bytes()
}

fn review_change(body: &[u8], set: &PolicySet) -> Decision {
    let request = request(body);
    let teams = teams();
    validate_change(
        &request,
        &ChangeReview {
            policies: set,
            teams: &teams,
            namespace_labels: None,
            now: now(),
            controller: &["system:serviceaccount:custody-system:custody-controller".to_string()],
        },
    )
}

#[test]
fn who_may_propose_what() {
    let set = policies(approval(1));
    let change = proposal(&web("shop/web:2"), AGENT_SA);
    let edit = |f: fn(&mut CustodyChange)| {
        let mut c = change.clone();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, CustodyChange, &str, &str)> = vec![
        (
            "the agent proposes its change",
            change.clone(),
            AGENT_SA,
            "",
        ),
        (
            "under another's name",
            change.clone(),
            "system:serviceaccount:agents:other",
            "but the request comes from",
        ),
        (
            "a forged digest",
            edit(|c| c.spec.template_digest = format!("sha256:{}", "0".repeat(64))),
            AGENT_SA,
            "is not the digest of",
        ),
        (
            "not a digest",
            edit(|c| c.spec.digest = "abc".into()),
            AGENT_SA,
            "64 hex digits",
        ),
        (
            "another agent than declared",
            edit(|c| c.spec.agent = "copilot".into()),
            AGENT_SA,
            "must be the agent annotation",
        ),
        (
            "no real reason",
            edit(|c| c.spec.reason = "fix".into()),
            AGENT_SA,
            "shorter than 10 characters",
        ),
        (
            "a diff too large to store",
            edit(|c| {
                c.spec.diff = (0..101)
                    .map(|i| custody_crds::DiffLine {
                        field: format!("containers[app].env[V{i}]"),
                        before: None,
                        after: Some("set".into()),
                    })
                    .collect()
            }),
            AGENT_SA,
            "at most 100 lines",
        ),
    ];
    for (name, object, user, needle) in cases {
        let d = review_change(
            &change_review("CREATE", false, &object, None, user, &[]),
            &set,
        );
        if needle.is_empty() {
            assert!(d.allowed, "{name}: {:?}", d.message);
            continue;
        }
        assert!(!d.allowed, "{name}");
        assert_eq!(codes(&d), [ViolationCode::ChangeRefused], "{name}");
        let message = d.message.unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message}");
    }
    // A sound proposal for a workload the policy's approval does not cover.
    let unprotected = policies(Approval {
        kinds: vec![WorkloadKind::StatefulSet],
        ..approval(1)
    });
    let d = review_change(
        &change_review("CREATE", false, &change, None, AGENT_SA, &[]),
        &unprotected,
    );
    assert!(!d.allowed);
    assert!(
        d.message
            .unwrap_or_default()
            .contains("there is nothing to approve")
    );

    let mut edited = change.clone();
    edited.spec.reason = "a better reason for the reviewer".into();
    let d = review_change(
        &change_review("UPDATE", false, &edited, Some(&change), AGENT_SA, &[]),
        &set,
    );
    assert!(!d.allowed);
    assert!(
        d.message
            .unwrap_or_default()
            .contains("never changes after it is proposed")
    );
}

#[test]
fn who_may_approve_or_reject_what() {
    let set = policies(approval(1));
    let change = proposal(&web("shop/web:2"), AGENT_SA);
    let pending = with_status(change.clone(), CustodyChangeStatus::default());
    let approve = |by: &str, at: Timestamp| approved_by_at(&pending, by, at);
    let cases: Vec<(&str, CustodyChange, CustodyChange, &str, &[&str], &str)> = vec![
        (
            "a team member approves",
            pending.clone(),
            approve(ANN, now()),
            ANN,
            &[],
            "",
        ),
        (
            "a member by group",
            pending.clone(),
            approve("carol@acme.dev", now()),
            "carol@acme.dev",
            &["web-leads"],
            "",
        ),
        (
            "someone outside the team",
            pending.clone(),
            approve("eve@acme.dev", now()),
            "eve@acme.dev",
            &[],
            "may not decide this change",
        ),
        (
            "the proposer",
            pending.clone(),
            approve(AGENT_SA, now()),
            AGENT_SA,
            &[],
            "is a service account",
        ),
        (
            "the agent's service account",
            pending.clone(),
            approve("system:serviceaccount:agents:other", now()),
            "system:serviceaccount:agents:other",
            &[],
            "is a service account",
        ),
        (
            "a system user",
            pending.clone(),
            approve("system:admin", now()),
            "system:admin",
            &[],
            "is a system identity",
        ),
        (
            "under another's name",
            pending.clone(),
            approve(BOB, now()),
            ANN,
            &[],
            "but the request comes from",
        ),
        (
            "back-dated",
            pending.clone(),
            approve(ANN, hours_ago(2)),
            ANN,
            &[],
            "more than 5 minutes from now",
        ),
        (
            "a short reason",
            pending.clone(),
            short(approve(ANN, now())),
            ANN,
            &[],
            "shorter than 10 characters",
        ),
        (
            "approved already",
            approve(ANN, now()),
            approve2(&approve(ANN, now()), ANN),
            ANN,
            &[],
            "approved this change already",
        ),
        (
            "an approval removed",
            approve(ANN, now()),
            pending.clone(),
            BOB,
            &[],
            "never rewritten or removed",
        ),
        (
            "a phase written by a person",
            pending.clone(),
            phase(&pending, custody_crds::ChangePhase::Approved),
            ANN,
            &[],
            "written by Custody's controller only",
        ),
        (
            "the controller writes the phase",
            pending.clone(),
            phase(&pending, custody_crds::ChangePhase::Pending),
            "system:serviceaccount:custody-system:custody-controller",
            &[],
            "",
        ),
        (
            "a member rejects",
            pending.clone(),
            rejected(&pending, BOB),
            BOB,
            &[],
            "",
        ),
        (
            "a rejection rewritten",
            rejected(&pending, BOB),
            rejected(&pending, ANN),
            ANN,
            &[],
            "is never rewritten or removed",
        ),
        (
            "approving a rejected change",
            rejected(&pending, BOB),
            approved_by_at(&rejected(&pending, BOB), ANN, now()),
            ANN,
            &[],
            "was rejected by bob@acme.dev",
        ),
        (
            "approving a spent change",
            applied(&approve(ANN, now())),
            approve2(&applied(&approve(ANN, now())), BOB),
            BOB,
            &[],
            "its approval is spent",
        ),
        (
            "approving an expired request",
            expired(&pending),
            approve(ANN, now()).with_created(hours_ago(30)),
            ANN,
            &[],
            "expired at",
        ),
    ];
    for (name, old, new, user, groups, needle) in cases {
        let d = review_change(
            &change_review("UPDATE", true, &new, Some(&old), user, groups),
            &set,
        );
        if needle.is_empty() {
            assert!(d.allowed, "{name}: {:?}", d.message);
            continue;
        }
        assert!(!d.allowed, "{name}");
        assert_eq!(codes(&d), [ViolationCode::ChangeRefused], "{name}");
        let message = d.message.unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message}");
    }
    let d = review_change(
        &change_review(
            "UPDATE",
            true,
            &approve(ANN, now()),
            Some(&pending),
            ANN,
            &[],
        ),
        &set,
    );
    assert_eq!(
        d.audit_annotations
            .get("change-approved")
            .map(String::as_str),
        Some("ann@acme.dev: checked the image bump and its limits")
    );
}

fn approved_by_at(change: &CustodyChange, by: &str, at: Timestamp) -> CustodyChange {
    let mut c = change.clone();
    c.status
        .get_or_insert_with(Default::default)
        .approvals
        .push(lift(by, at));
    c
}

fn approve2(change: &CustodyChange, by: &str) -> CustodyChange {
    approved_by_at(change, by, now())
}

fn short(mut change: CustodyChange) -> CustodyChange {
    if let Some(a) = change.status.as_mut().and_then(|s| s.approvals.last_mut()) {
        a.reason = "ok".into();
    }
    change
}

fn phase(change: &CustodyChange, phase: custody_crds::ChangePhase) -> CustodyChange {
    let mut c = change.clone();
    c.status.get_or_insert_with(Default::default).phase = Some(phase);
    c
}

fn rejected(change: &CustodyChange, by: &str) -> CustodyChange {
    let mut c = change.clone();
    c.status.get_or_insert_with(Default::default).rejection = Some(lift(by, now()));
    c
}

fn applied(change: &CustodyChange) -> CustodyChange {
    let mut c = change.clone();
    c.status.get_or_insert_with(Default::default).applied = Some(Applied {
        revision: "4".into(),
        generation: Some(4),
        at: Time(now()),
    });
    c
}

fn expired(change: &CustodyChange) -> CustodyChange {
    change.clone().with_created(hours_ago(30))
}

trait Created {
    fn with_created(self, at: Timestamp) -> Self;
}

impl Created for CustodyChange {
    fn with_created(mut self, at: Timestamp) -> Self {
        self.metadata.creation_timestamp = Some(Time(at));
        self
    }
}

/// Under `spec.signatures`, the approved digest is what the attestation vouches for: the
/// subject (name and template digest) and the signed provenance. A signed revision whose
/// statement matches the change is admitted; the change's parts are the statement's.
#[test]
fn signed_provenance_composes_with_approval() {
    use custody_crds::attestation::{SigningKey, Statement};
    use custody_crds::{SignaturePolicy, TrustedKey};
    let keys = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/keys");
    let key =
        SigningKey::from_pem(&std::fs::read_to_string(keys.join("ed25519.key")).unwrap()).unwrap();
    let public = std::fs::read_to_string(keys.join("ed25519.pub")).unwrap();
    let old = web("shop/web:1");
    let mut new = web("shop/web:2");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(new["metadata"]["annotations"].clone()).unwrap();
    let vocabulary = Vocabulary::default();
    let claim = claim_from_value(
        WorkloadKind::Deployment,
        "shop",
        &new,
        &annotations,
        &vocabulary,
    );
    let statement = Statement::for_claim(&claim, "https://ci.acme.dev", false);
    let envelope = key
        .seal(&serde_json::to_vec(&statement).unwrap(), "ci")
        .unwrap();
    new["metadata"]["annotations"][vocabulary.attestation()] =
        json!(serde_json::to_string(&envelope).unwrap());
    let change = approved_by(proposal(&new, AGENT_SA), &[ANN]);
    assert_eq!(
        format!("sha256:{}", statement.subject[0].digest["sha256"]),
        change.spec.template_digest,
        "the change's template digest is the attested subject's"
    );
    assert_eq!(statement.subject[0].name, "Deployment/shop/web");
    assert_eq!(statement.predicate.annotations, change.spec.provenance);

    let mut spec = policies(approval(1)).iter().next().unwrap().spec.clone();
    spec.signatures = Some(SignaturePolicy {
        keys: vec![TrustedKey {
            key_id: "ci".into(),
            public_key: public,
            not_before: None,
            not_after: None,
            scope: Default::default(),
        }],
        ..SignaturePolicy::default()
    });
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("signed", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    let d = admit(
        &set,
        std::slice::from_ref(&change),
        "UPDATE",
        &new,
        Some(&old),
        AGENT_SA,
    );
    assert!(d.allowed, "{:?}", d.message);
    assert!(d.audit_annotations.contains_key("attestation-key"));
    assert!(d.audit_annotations.contains_key("approved-change"));
    let d = admit(&set, &[], "UPDATE", &new, Some(&old), AGENT_SA);
    assert_eq!(codes(&d), [ViolationCode::ApprovalRequired]);
}

/// Dropping or loosening the review of agents' changes is a weakening: refused without a fresh
/// acknowledgement, like lowering the mode.
#[test]
fn removing_the_review_is_a_weakening() {
    let doc = |approval: Option<Value>, ack: Option<&str>| {
        let mut d = json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "reviewed"},
            "spec": {"agents": {}}
        });
        if let Some(a) = approval {
            d["spec"]["agents"]["approval"] = a;
        }
        if let Some(ack) = ack {
            d["metadata"]["annotations"] = json!({"custody.dev/acknowledge-weakening": ack});
        }
        d
    };
    let two = doc(Some(json!({"required": 2})), None);
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("removed", doc(None, None), Some("agents.approval removed")),
        (
            "two to one",
            doc(Some(json!({"required": 1})), None),
            Some("agents.approval.required 2 -> 1"),
        ),
        (
            "removed, acknowledged",
            doc(None, Some("pilot over, reviewed by sec")),
            None,
        ),
        (
            "a longer validity",
            doc(Some(json!({"required": 2, "validFor": "48h"})), None),
            None,
        ),
    ];
    for (name, new, needle) in cases {
        let body = review_of("UPDATE", &new, Some(&two), ANN, &[]);
        let d = custody_engine::validate_policy(&request(&body));
        match needle {
            None => assert!(d.allowed, "{name}: {:?}", d.message),
            Some(needle) => {
                assert_eq!(
                    codes(&d),
                    [ViolationCode::UnacknowledgedWeakening],
                    "{name}"
                );
                assert!(d.message.unwrap_or_default().contains(needle), "{name}");
            }
        }
    }
}

/// A spent request keeps its name as the record; the denial names the next free one, which
/// `kubectl custody propose` also picks.
#[test]
fn proposing_again_after_a_spent_request_names_the_next_request() {
    let set = policies(approval(1));
    let old = web("shop/web:1");
    let new = web("shop/web:2");
    let change = proposal(&new, AGENT_SA);
    let name = change.metadata.name.clone().unwrap();
    let spent = applied(&approved_by(change, &[ANN]));
    let d = admit(&set, &[spent], "UPDATE", &new, Some(&old), AGENT_SA);
    let message = d.message.unwrap_or_default();
    assert!(message.contains("was spent on revision 4"), "{message}");
    assert!(
        message.contains(&format!("creates CustodyChange {name}-2)")),
        "{message}"
    );
}
