//! Blast-radius budgets: rule tables over the controller's summaries, with the time chosen by
//! the test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_crds::{
    AgentGuardrails, AgentLimit, AgentRevision, CustodyAgent, CustodyAgentSpec, CustodyAgentStatus,
    CustodyPolicy, CustodyPolicySpec, ProbationScope, Vocabulary, WorkloadKind,
};
use custody_engine::attest::AttestationCache;
use custody_engine::{
    AgentActivity, Context, Decision, PolicySet, QuarantineIndex, TeamIndex, ViolationCode,
    evaluate,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use support::*;

const AGENT: &str = "claude-code/1.0";
const NOW: &str = "2026-12-03T12:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn rev(namespace: &str, name: &str, team: &str, when: &str) -> AgentRevision {
    AgentRevision {
        namespace: namespace.into(),
        kind: WorkloadKind::Deployment,
        name: name.into(),
        revision: format!("{name}-abc"),
        team: Some(team.into()),
        at: Time(at(when)),
    }
}

fn activity(in_flight: Vec<AgentRevision>, revisions: Vec<AgentRevision>) -> AgentActivity {
    let mut object = CustodyAgent::new(
        "claude-code-1-0",
        CustodyAgentSpec {
            agent: AGENT.into(),
        },
    );
    object.status = Some(CustodyAgentStatus {
        in_flight,
        revisions,
        updated_at: None,
    });
    AgentActivity::from_objects([&object])
}

fn policy(limit: AgentLimit) -> PolicySet {
    let spec = CustodyPolicySpec {
        agents: AgentGuardrails {
            limits: vec![limit],
            ..AgentGuardrails::default()
        },
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("budget", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn limit(scope: ProbationScope, in_flight: Option<u32>, revisions: Option<u32>) -> AgentLimit {
    AgentLimit {
        agents: vec!["claude-code/*".into()],
        scope,
        max_in_flight: in_flight,
        max_revisions: revisions,
        window: "1h".into(),
    }
}

fn judge(
    set: &PolicySet,
    activity: &AgentActivity,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
) -> Decision {
    let body = review_of(operation, object, old, "ci@acme.dev", &[]);
    let request = request(&body);
    let vocabulary = Vocabulary::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &QuarantineIndex::default(),
        now: at(NOW),
        attestations: &AttestationCache::default(),
        teams: &TeamIndex::default(),
        background: false,
        activity,
        changes: &custody_engine::ChangeIndex::default(),
    };
    evaluate(set, &request, &ctx)
}

fn codes(d: &Decision) -> Vec<ViolationCode> {
    d.violations.iter().map(|v| v.code).collect()
}

#[test]
fn budget_rules() {
    let two_in_flight = activity(
        vec![
            rev("shop", "api", "team-web", "2026-12-03T11:59:00Z"),
            rev("shop", "cart", "team-web", "2026-12-03T11:59:30Z"),
        ],
        vec![],
    );
    let one_in_flight_here = activity(
        vec![
            rev("shop", "api", "team-web", "2026-12-03T11:59:00Z"),
            rev("other", "cart", "team-web", "2026-12-03T11:59:30Z"),
        ],
        vec![],
    );
    let web_in_flight = activity(
        vec![
            rev("shop", "api", "team-web", "2026-12-03T11:59:00Z"),
            rev("shop", "web", "team-web", "2026-12-03T11:59:30Z"),
        ],
        vec![],
    );
    // The window is (now - 1h, now]: a revision of 11:00:00 has just left it at 12:00:00.
    let three_revisions = activity(
        vec![],
        vec![
            rev("shop", "a", "team-web", "2026-12-03T11:00:01Z"),
            rev("shop", "b", "team-web", "2026-12-03T11:30:00Z"),
            rev("shop", "c", "team-web", "2026-12-03T11:50:00Z"),
        ],
    );
    let old_revisions = activity(
        vec![],
        vec![
            rev("shop", "a", "team-web", "2026-12-03T11:00:00Z"),
            rev("shop", "b", "team-web", "2026-12-03T11:30:00Z"),
            rev("shop", "c", "team-web", "2026-12-03T11:50:00Z"),
        ],
    );
    let in_flight_2 = policy(limit(ProbationScope::Namespace, Some(2), None));
    let in_flight_2_cluster = policy(limit(ProbationScope::Cluster, Some(2), None));
    let revisions_3 = policy(limit(ProbationScope::Namespace, None, Some(3)));
    // The next revision: a new template with its own commit and run.
    let next = || {
        let mut a = agent_annotations();
        a["custody.dev/source-commit"] = json!("bbbbbbb");
        a["custody.dev/pipeline-run"] = json!("run-2");
        a
    };
    let v1 = deployment("web", agent_annotations(), "web:1");
    let v2 = deployment("web", next(), "web:2");
    let mut scaled = v1.clone();
    scaled["spec"]["replicas"] = json!(7);
    let mut person = next();
    person["custody.dev/actor"] = json!("human");
    let human = deployment("web", person, "web:2");
    let mut other_agent = next();
    other_agent["custody.dev/agent"] = json!("codex/2");
    let other = deployment("web", other_agent, "web:2");
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &PolicySet,
        &AgentActivity,
        &str,
        &Value,
        Option<&Value>,
        Vec<ViolationCode>,
    )> = vec![
        (
            "two in flight, limit two",
            &in_flight_2,
            &two_in_flight,
            "CREATE",
            &v2,
            None,
            vec![ViolationCode::RolloutLimit],
        ),
        (
            "one in flight here, one elsewhere",
            &in_flight_2,
            &one_in_flight_here,
            "CREATE",
            &v2,
            None,
            vec![],
        ),
        (
            "the same, cluster-wide",
            &in_flight_2_cluster,
            &one_in_flight_here,
            "CREATE",
            &v2,
            None,
            vec![ViolationCode::RolloutLimit],
        ),
        (
            "a new revision of a workload already in flight replaces it",
            &in_flight_2,
            &web_in_flight,
            "UPDATE",
            &v2,
            Some(&v1),
            vec![],
        ),
        (
            "scaling is not a revision",
            &in_flight_2,
            &two_in_flight,
            "UPDATE",
            &scaled,
            Some(&v1),
            vec![],
        ),
        (
            "a person is not budgeted",
            &in_flight_2,
            &two_in_flight,
            "UPDATE",
            &human,
            Some(&v1),
            vec![],
        ),
        (
            "an agent the limit does not name",
            &in_flight_2,
            &two_in_flight,
            "UPDATE",
            &other,
            Some(&v1),
            vec![],
        ),
        (
            "three revisions in the hour, limit three",
            &revisions_3,
            &three_revisions,
            "CREATE",
            &v2,
            None,
            vec![ViolationCode::RevisionLimit],
        ),
        (
            "the oldest is just out of the window",
            &revisions_3,
            &old_revisions,
            "CREATE",
            &v2,
            None,
            vec![],
        ),
    ];
    for (case, set, activity, op, object, old, expected) in cases {
        let d = judge(set, activity, op, object, old);
        assert_eq!(codes(&d), expected, "{case}: {:?}", d.message);
    }
}

#[test]
fn golden_budget_denials() {
    let both = policy(limit(ProbationScope::Namespace, Some(2), Some(3)));
    let busy = activity(
        vec![
            rev("shop", "api", "team-web", "2026-12-03T11:59:00Z"),
            rev("shop", "cart", "team-web", "2026-12-03T11:59:30Z"),
        ],
        vec![
            rev("shop", "api", "team-web", "2026-12-03T11:20:00Z"),
            rev("shop", "cart", "team-web", "2026-12-03T11:30:00Z"),
            rev("shop", "api", "team-web", "2026-12-03T11:59:00Z"),
            rev("shop", "cart", "team-web", "2026-12-03T11:59:30Z"),
        ],
    );
    let d = judge(
        &both,
        &busy,
        "CREATE",
        &deployment("web", agent_annotations(), "web:2"),
        None,
    );
    assert_eq!(
        codes(&d),
        [ViolationCode::RolloutLimit, ViolationCode::RevisionLimit]
    );
    check_golden("budgets.txt", d.message.as_deref().unwrap());
}

#[test]
fn bad_budgets_are_refused() {
    for (l, needle) in [
        (
            limit(ProbationScope::Namespace, None, None),
            "sets neither maxInFlight nor maxRevisions",
        ),
        (
            limit(ProbationScope::Namespace, Some(0), None),
            "a limit of 0",
        ),
        (
            limit(ProbationScope::Namespace, None, Some(5_000)),
            "a budget above 1000",
        ),
        (
            AgentLimit {
                window: "often".into(),
                ..limit(ProbationScope::Namespace, None, Some(3))
            },
            "spec.agents.limits[0].window \"often\"",
        ),
        (
            AgentLimit {
                agents: vec![],
                ..limit(ProbationScope::Namespace, Some(2), None)
            },
            "spec.agents.limits[0].agents",
        ),
    ] {
        let spec = CustodyPolicySpec {
            agents: AgentGuardrails {
                limits: vec![l],
                ..AgentGuardrails::default()
            },
            ..CustodyPolicySpec::default()
        };
        let (_, errors) = PolicySet::compile([CustodyPolicy::new("bad", spec)]);
        let text = errors
            .first()
            .map(|e| e.problems.join("; "))
            .unwrap_or_default();
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
