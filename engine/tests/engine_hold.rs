//! The controller's hold on an agent's first step binds agents: who may release it, and what
//! counts as releasing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_crds::{
    AgentGuardrails, Canary, CustodyPolicy, CustodyPolicySpec, Identities, IdentitySet,
};
use custody_engine::{PolicySet, QuarantineIndex, ViolationCode};
use custody_testkit::admission::{agent_annotations, deployment, judge_with, review_of};
use serde_json::{Value, json};

const AGENT: &str = "system:serviceaccount:agents:claude";

fn policy(canary: bool) -> PolicySet {
    let spec = CustodyPolicySpec {
        identities: Identities {
            agents: IdentitySet {
                service_accounts: vec!["agents/*".into()],
                ..IdentitySet::default()
            },
            ..Identities::default()
        },
        agents: AgentGuardrails {
            canary: canary.then(Canary::default),
            ..AgentGuardrails::default()
        },
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("guarded", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

/// Deployment `web` held at `web-7c9` (paused), as the controller leaves it.
fn held() -> Value {
    let mut d = deployment("web", agent_annotations(), "web:2");
    d["metadata"]["annotations"]["custody.dev/held"] = json!("web-7c9");
    d["spec"]["paused"] = json!(true);
    d
}

fn held_stateful_set() -> Value {
    let mut s = held();
    s["kind"] = json!("StatefulSet");
    s["spec"].as_object_mut().unwrap().remove("paused");
    s["spec"]["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}});
    s
}

/// A case: its name, the new and old objects, the requester, whether the policy has
/// `agents.canary`, and the codes expected.
type Case<'a> = (&'a str, Value, Value, &'a str, bool, Vec<ViolationCode>);

fn codes(new: &Value, old: &Value, user: &str, canary: bool) -> Vec<ViolationCode> {
    let body = review_of("UPDATE", new, Some(old), user, &[]);
    judge_with(&body, &policy(canary), &QuarantineIndex::default())
        .violations
        .iter()
        .map(|v| v.code)
        .collect()
}

#[test]
fn only_the_controller_or_a_person_releases_a_hold() {
    let unpaused = {
        let mut d = held();
        d["spec"]["paused"] = json!(false);
        d
    };
    let unmarked = {
        let mut d = held();
        d["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("custody.dev/held");
        d
    };
    let retargeted = {
        let mut d = held();
        d["metadata"]["annotations"]["custody.dev/held"] = json!("web-000");
        d
    };
    let scaled = {
        let mut d = held();
        d["spec"]["replicas"] = json!(5);
        d
    };
    let lowered = {
        let mut s = held_stateful_set();
        s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(0);
        s
    };
    let refused = vec![ViolationCode::HoldReleaseRefused];
    let cases: Vec<Case<'_>> = vec![
        (
            "an agent unpauses",
            unpaused.clone(),
            held(),
            AGENT,
            true,
            refused.clone(),
        ),
        (
            "an agent drops the mark",
            unmarked.clone(),
            held(),
            AGENT,
            true,
            refused.clone(),
        ),
        (
            "an agent rewrites the mark",
            retargeted,
            held(),
            AGENT,
            true,
            refused.clone(),
        ),
        (
            "an agent lowers the partition",
            lowered.clone(),
            held_stateful_set(),
            AGENT,
            true,
            refused.clone(),
        ),
        (
            "an agent scales a held rollout",
            scaled,
            held(),
            AGENT,
            true,
            vec![],
        ),
        (
            "an agent re-applies it as it is",
            held(),
            held(),
            AGENT,
            true,
            vec![],
        ),
        (
            "a person resumes it",
            unmarked.clone(),
            held(),
            "alice@acme.dev",
            true,
            vec![],
        ),
        (
            "a person lowers the partition",
            lowered,
            held_stateful_set(),
            "alice@acme.dev",
            true,
            vec![],
        ),
        (
            "no canary in the policy",
            unpaused.clone(),
            held(),
            AGENT,
            false,
            vec![],
        ),
        (
            "never held",
            unpaused,
            deployment("web", agent_annotations(), "web:2"),
            AGENT,
            true,
            vec![],
        ),
    ];
    for (name, new, old, user, canary, want) in cases {
        assert_eq!(codes(&new, &old, user, canary), want, "{name}");
    }
}

#[test]
fn the_denial_says_how_the_hold_ends() {
    let mut d = held();
    d["spec"]["paused"] = json!(false);
    let body = review_of("UPDATE", &d, Some(&held()), AGENT, &[]);
    let decision = judge_with(&body, &policy(true), &QuarantineIndex::default());
    let v = &decision.violations[0];
    assert!(v.blocks());
    assert_eq!(v.value.as_deref(), Some("web-7c9"));
    assert!(
        v.message.contains("unpauses the Deployment"),
        "{}",
        v.message
    );
    assert!(
        v.message
            .contains("kubectl custody resume deployment/web -n shop"),
        "{}",
        v.message
    );
}
