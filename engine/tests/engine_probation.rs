//! Probation after repeated reverts: rule tables with the time chosen by the test, and the golden
//! message an agent's harness reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_crds::{
    Actor, AgentGuardrails, CustodyPolicy, CustodyPolicySpec, Lift, Probation, ProbationScope,
    RecordAction, RevisionSnapshot, RollbackRecord, RollbackRecordSpec, RollbackRecordStatus,
    SignalReason, Vocabulary, WorkloadKind, WorkloadRef,
};
use custody_engine::attest::AttestationCache;
use custody_engine::{
    Context, Decision, PolicySet, QuarantineIndex, TeamIndex, ViolationCode, evaluate,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use support::*;

const AGENT: &str = "claude-code/1.0";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A revert of `agent`'s revision of `workload` in `namespace`, owned by `team`, at `when`.
fn revert(name: &str, namespace: &str, team: &str, agent: &str, when: &str) -> RollbackRecord {
    let mut r = RollbackRecord::new(
        name,
        RollbackRecordSpec {
            workload: WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: format!("app-{name}"),
                uid: None,
            },
            action: RecordAction::Reverted,
            reason: SignalReason::NotReady,
            from: RevisionSnapshot {
                revision: "2".into(),
                template_fingerprint: format!("sha256:{name}"),
                actor: Some(Actor::Agent),
                agent: Some(agent.into()),
                ..RevisionSnapshot::default()
            },
            to: None,
            signals: vec![],
            policy: "p".into(),
            explanation: String::new(),
            revision_seen_at: None,
            regression_detected_at: Time(at(when)),
            acted_at: Time(at(when)),
            team: Some(team.into()),
            oncall: None,
            analysis: None,
        },
    );
    r.metadata.namespace = Some(namespace.into());
    r
}

fn lifted(mut r: RollbackRecord) -> RollbackRecord {
    r.status = Some(RollbackRecordStatus {
        probation_lifted: Some(Lift {
            by: "ann@acme.dev".into(),
            reason: "reviewed with the owner".into(),
            at: r.spec.acted_at.clone(),
        }),
        ..RollbackRecordStatus::default()
    });
    r
}

fn policy(scope: ProbationScope) -> PolicySet {
    let spec = CustodyPolicySpec {
        agents: AgentGuardrails {
            probation: Some(Probation {
                scope,
                ..Probation::default()
            }),
            ..AgentGuardrails::default()
        },
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("guarded", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn judge(
    set: &PolicySet,
    records: &[RollbackRecord],
    now: &str,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> Decision {
    let body = review_of(operation, object, old, "ci@acme.dev", &[]);
    let request = request(&body);
    let vocabulary = Vocabulary::default();
    let quarantine = QuarantineIndex::from_records(records);
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &quarantine,
        now: at(now),
        attestations: &AttestationCache::default(),
        teams: &TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    evaluate(set, &request, &ctx)
}

fn on_probation(d: &Decision) -> bool {
    d.violations
        .iter()
        .any(|v| v.code == ViolationCode::OnProbation)
}

fn web(annotations: Value, image: &str) -> Value {
    deployment("web", annotations, image)
}

#[test]
fn probation_rules() {
    let namespace = policy(ProbationScope::Namespace);
    let team = policy(ProbationScope::Team);
    let cluster = policy(ProbationScope::Cluster);
    // Three reverts of the agent in shop (team-web, the fixtures' owner) within the hour.
    let three = vec![
        revert("r1", "shop", "team-web", AGENT, "2026-12-03T10:00:00Z"),
        revert("r2", "shop", "team-web", AGENT, "2026-12-03T10:20:00Z"),
        revert("r3", "shop", "team-web", AGENT, "2026-12-03T10:40:00Z"),
    ];
    let two = three[..2].to_vec();
    let elsewhere = vec![
        revert("r1", "other", "team-web", AGENT, "2026-12-03T10:00:00Z"),
        revert("r2", "other", "team-web", AGENT, "2026-12-03T10:20:00Z"),
        revert("r3", "other", "team-other", AGENT, "2026-12-03T10:40:00Z"),
    ];
    let another_agent = vec![
        revert("r1", "shop", "team-web", "codex/2", "2026-12-03T10:00:00Z"),
        revert("r2", "shop", "team-web", "codex/2", "2026-12-03T10:20:00Z"),
        revert("r3", "shop", "team-web", "codex/2", "2026-12-03T10:40:00Z"),
    ];
    let mut lifted_newest = three.clone();
    lifted_newest[2] = lifted(lifted_newest[2].clone());
    let mut lifted_then_more = three.clone();
    lifted_then_more[0] = lifted(lifted_then_more[0].clone());

    let agent_v2 = web(agent_annotations(), "web:2");
    let v1 = web(agent_annotations(), "web:1");
    let mut scaled = v1.clone();
    scaled["spec"]["replicas"] = json!(9);
    let mut human = agent_annotations();
    human["custody.dev/actor"] = json!("human");
    human.as_object_mut().unwrap().remove("custody.dev/agent");
    let human_v2 = web(human, "web:2");
    let mut automation = agent_annotations();
    automation["custody.dev/actor"] = json!("automation");
    let automation_v2 = web(automation, "web:2");

    let soon = "2026-12-03T10:45:00Z";
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &PolicySet,
        &[RollbackRecord],
        &str,
        &str,
        &Value,
        Option<&Value>,
        bool,
    )> = vec![
        (
            "three reverts in the hour",
            &namespace,
            &three,
            soon,
            "CREATE",
            &agent_v2,
            None,
            true,
        ),
        (
            "two reverts are not enough",
            &namespace,
            &two,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "a template change",
            &namespace,
            &three,
            soon,
            "UPDATE",
            &agent_v2,
            Some(&v1),
            true,
        ),
        (
            "scaling passes",
            &namespace,
            &three,
            soon,
            "UPDATE",
            &scaled,
            Some(&v1),
            false,
        ),
        (
            "a person's change passes",
            &namespace,
            &three,
            soon,
            "UPDATE",
            &human_v2,
            Some(&v1),
            false,
        ),
        (
            "automation passes",
            &namespace,
            &three,
            soon,
            "UPDATE",
            &automation_v2,
            Some(&v1),
            false,
        ),
        (
            "another agent's reverts",
            &namespace,
            &another_agent,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "reverts in another namespace",
            &namespace,
            &elsewhere,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "reverts of the team elsewhere (Team scope: 2 of 3)",
            &team,
            &elsewhere,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "reverts of this team (Team scope)",
            &team,
            &three,
            soon,
            "CREATE",
            &agent_v2,
            None,
            true,
        ),
        (
            "reverts anywhere (Cluster scope)",
            &cluster,
            &elsewhere,
            soon,
            "CREATE",
            &agent_v2,
            None,
            true,
        ),
        // The first revert leaves the hour at 11:00:00: from that instant two remain.
        (
            "an instant before the oldest leaves the window",
            &namespace,
            &three,
            "2026-12-03T10:59:59Z",
            "CREATE",
            &agent_v2,
            None,
            true,
        ),
        (
            "the instant it leaves",
            &namespace,
            &three,
            "2026-12-03T11:00:00Z",
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "a revert recorded after now does not count",
            &namespace,
            &three,
            "2026-12-03T10:39:59Z",
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "a person lifted the newest",
            &namespace,
            &lifted_newest,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
        (
            "lifted, then two more: not yet again",
            &namespace,
            &lifted_then_more,
            soon,
            "CREATE",
            &agent_v2,
            None,
            false,
        ),
    ];
    for (case, set, records, now, op, object, old, expected) in cases {
        let d = judge(set, records, now, op, object, old);
        assert_eq!(on_probation(&d), expected, "{case}: {:?}", d.message);
        if expected {
            assert!(!d.allowed, "{case}");
        }
    }

    // Without probation in the policy, reverts change nothing.
    let d = judge(
        &PolicySet::builtin_default(),
        &three,
        soon,
        "CREATE",
        &agent_v2,
        None,
    );
    assert!(d.allowed);
}

#[test]
fn golden_probation_denial() {
    let three = vec![
        revert("web-r1", "shop", "team-web", AGENT, "2026-12-03T10:00:00Z"),
        revert("api-r4", "shop", "team-web", AGENT, "2026-12-03T10:20:00Z"),
        revert("web-r2", "shop", "team-web", AGENT, "2026-12-03T10:40:00Z"),
    ];
    let d = judge(
        &policy(ProbationScope::Namespace),
        &three,
        "2026-12-03T10:45:00Z",
        "CREATE",
        &web(agent_annotations(), "web:2"),
        None,
    );
    let v = d
        .violations
        .iter()
        .find(|v| v.code == ViolationCode::OnProbation)
        .unwrap();
    assert_eq!(v.value.as_deref(), Some(AGENT));
    assert_eq!(v.field, "metadata.annotations[custody.dev/agent]");
    check_golden("probation.txt", d.message.as_deref().unwrap());
}

#[test]
fn who_is_on_probation_for_the_gauge() {
    let records = vec![
        revert("r1", "shop", "team-web", AGENT, "2026-12-03T10:00:00Z"),
        revert("r2", "shop", "team-web", AGENT, "2026-12-03T10:20:00Z"),
        revert("r3", "shop", "team-web", AGENT, "2026-12-03T10:40:00Z"),
        revert("r4", "other", "team-web", AGENT, "2026-12-03T10:40:00Z"),
        revert(
            "r5",
            "other",
            "team-data",
            "codex/2",
            "2026-12-03T10:41:00Z",
        ),
    ];
    let index = QuarantineIndex::from_records(&records);
    let list = |scope| {
        let set = policy(scope);
        let probation = set.iter().next().unwrap().probation.clone().unwrap();
        index
            .reverts()
            .on_probation(&probation, at("2026-12-03T10:45:00Z"))
            .into_iter()
            .map(|(a, s)| format!("{a} {s}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(ProbationScope::Namespace),
        ["claude-code/1.0 namespace/shop"]
    );
    assert_eq!(
        list(ProbationScope::Team),
        ["claude-code/1.0 team/team-web"]
    );
    assert_eq!(list(ProbationScope::Cluster), ["claude-code/1.0 cluster"]);
}

#[test]
fn bad_probation_settings_are_refused() {
    for (window, reverts, needle) in [
        ("soon", 3, "is not a duration"),
        ("-1h", 3, "must be positive"),
        ("1h", 0, "reverts must be at least 1"),
    ] {
        let spec = CustodyPolicySpec {
            agents: AgentGuardrails {
                probation: Some(Probation {
                    reverts,
                    window: window.into(),
                    scope: ProbationScope::Namespace,
                }),
                ..AgentGuardrails::default()
            },
            ..CustodyPolicySpec::default()
        };
        let (_, errors) = PolicySet::compile([CustodyPolicy::new("bad", spec)]);
        let text = errors
            .first()
            .map(|e| e.problems.join("; "))
            .unwrap_or_default();
        assert!(text.contains(needle), "{window} {reverts}: {text}");
    }
}
