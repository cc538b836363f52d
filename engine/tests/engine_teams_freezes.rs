//! `ownership: Registered`, change freezes and break-glass: rule tables with the time chosen by
//! the test, and the golden messages a person or an agent reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_crds::{
    Actor, CustodyPolicy, CustodyPolicySpec, CustodyTeam, CustodyTeamSpec, EnforcementMode,
    FreezeWindow, Identities, IdentitySet, OwnershipMode, Vocabulary,
};
use custody_engine::attest::AttestationCache;
use custody_engine::{
    Context, Decision, PolicySet, QuarantineIndex, TeamIndex, ViolationCode, evaluate,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use support::*;

const AGENT_SA: &str = "system:serviceaccount:agents:claude";
const PERSON: &str = "jane@example.com";

fn teams() -> TeamIndex {
    let team = |name: &str, namespaces: &[&str], oncall: &[&str]| {
        CustodyTeam::new(
            name,
            CustodyTeamSpec {
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                oncall: oncall.iter().map(|s| s.to_string()).collect(),
                ..CustodyTeamSpec::default()
            },
        )
    };
    let (index, errors) = TeamIndex::compile(&[
        team("team-web", &["shop", "web-*"], &["@web-oncall"]),
        team(
            "team-checkout",
            &["shop"],
            &["checkout@example.com", "@co-pager"],
        ),
        team("team-data", &["data-*"], &[]),
    ]);
    assert!(errors.is_empty(), "{errors:?}");
    index
}

fn policy(spec: CustodyPolicySpec) -> PolicySet {
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("prod", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn agents() -> Identities {
    Identities {
        agents: IdentitySet {
            service_accounts: vec!["agents/*".into()],
            ..IdentitySet::default()
        },
        ..Identities::default()
    }
}

/// A weekend freeze in Berlin (Friday 18:00 for 62 hours) that binds agents, and a one-off
/// launch freeze that binds agents and automation.
fn freezes() -> Vec<FreezeWindow> {
    vec![
        FreezeWindow {
            name: "weekend".into(),
            message: Some("no agent changes over the weekend; #platform for exceptions".into()),
            schedule: Some("0 18 * * FRI".into()),
            duration: Some("62h".into()),
            time_zone: "Europe/Berlin".into(),
            actors: vec![Actor::Agent],
            ..FreezeWindow::default()
        },
        FreezeWindow {
            name: "launch".into(),
            start: Some("2026-12-09T09:00:00".into()),
            end: Some("2026-12-09T17:00:00".into()),
            time_zone: "America/New_York".into(),
            actors: vec![Actor::Agent, Actor::Automation],
            ..FreezeWindow::default()
        },
    ]
}

fn judge_at(
    set: &PolicySet,
    teams: &TeamIndex,
    now: &str,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    user: &str,
) -> Decision {
    let body = review_of(operation, object, old, user, &["system:authenticated"]);
    let request = request(&body);
    let vocabulary = Vocabulary::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &QuarantineIndex::default(),
        now: now.parse::<Timestamp>().unwrap(),
        attestations: &AttestationCache::default(),
        teams,
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    evaluate(set, &request, &ctx)
}

fn codes(d: &Decision) -> Vec<ViolationCode> {
    d.violations.iter().map(|v| v.code).collect()
}

fn with(annotations: &[(&str, Option<&str>)]) -> Value {
    let mut a = agent_annotations();
    for (key, value) in annotations {
        let key = format!("custody.dev/{key}");
        match value {
            Some(v) => a[&key] = json!(v),
            None => {
                a.as_object_mut().unwrap().remove(&key);
            }
        }
    }
    a
}

fn human(extra: &[(&str, Option<&str>)]) -> Value {
    let mut changes = vec![("actor", Some("human")), ("agent", None)];
    changes.extend_from_slice(extra);
    with(&changes)
}

const QUIET: &str = "2026-12-08T12:00:00Z"; // a Tuesday, no freeze
const WEEKEND: &str = "2026-12-05T12:00:00Z"; // Saturday, the weekend freeze is open
const LAUNCH: &str = "2026-12-09T15:00:00Z"; // 10:00 in New York, the launch freeze

#[test]
fn registered_ownership_rules() {
    let set = policy(CustodyPolicySpec {
        ownership: OwnershipMode::Registered,
        ..CustodyPolicySpec::default()
    });
    let teams = teams();
    let in_ns = |ns: &str, a: Value| {
        let mut d = deployment("web", a, "web:1");
        d["metadata"]["namespace"] = json!(ns);
        d
    };
    // (case, namespace, annotations, codes)
    let cases: Vec<(&str, &str, Value, Vec<ViolationCode>)> = vec![
        (
            "registered team of the namespace",
            "shop",
            with(&[]),
            vec![],
        ),
        (
            "registered, oncall omitted: the team's applies",
            "shop",
            with(&[("oncall", None)]),
            vec![],
        ),
        (
            "registered by glob",
            "web-frontend",
            with(&[("oncall", None)]),
            vec![],
        ),
        (
            "unregistered owner",
            "shop",
            with(&[("owner", Some("team-nobody"))]),
            vec![ViolationCode::OwnerNotRegistered],
        ),
        (
            "registered team, namespace it does not own",
            "data-lake",
            with(&[]),
            vec![ViolationCode::NamespaceNotOwned],
        ),
        (
            "team without on-call: oncall still required",
            "data-lake",
            with(&[("owner", Some("team-data")), ("oncall", None)]),
            vec![ViolationCode::MissingAnnotation],
        ),
        (
            "owner missing: the annotation rule reports it",
            "shop",
            with(&[("owner", None)]),
            vec![ViolationCode::MissingAnnotation],
        ),
        (
            "unregistered and no oncall: both reported",
            "shop",
            with(&[("owner", Some("team-nobody")), ("oncall", None)]),
            vec![
                ViolationCode::MissingAnnotation,
                ViolationCode::OwnerNotRegistered,
            ],
        ),
    ];
    for (case, ns, annotations, expected) in cases {
        let d = judge_at(
            &set,
            &teams,
            QUIET,
            "CREATE",
            &in_ns(ns, annotations),
            None,
            PERSON,
        );
        let mut got = codes(&d);
        got.sort_by_key(|c| c.as_str());
        assert_eq!(got, expected, "{case}: {:?}", d.message);
    }

    // The effective on-call and the team are in the audit annotations.
    let d = judge_at(
        &set,
        &teams,
        QUIET,
        "CREATE",
        &in_ns(
            "shop",
            with(&[("owner", Some("team-checkout")), ("oncall", None)]),
        ),
        None,
        PERSON,
    );
    assert!(d.allowed);
    assert_eq!(d.audit_annotations["team"], "team-checkout");
    assert_eq!(
        d.audit_annotations["oncall"],
        "checkout@example.com, @co-pager"
    );
    let d = judge_at(
        &set,
        &teams,
        QUIET,
        "CREATE",
        &in_ns("shop", with(&[])),
        None,
        PERSON,
    );
    assert_eq!(d.audit_annotations["oncall"], "web-oncall@example.com");

    // Free-form (the default) accepts any owner, as before teams existed.
    let free = PolicySet::builtin_default();
    let d = judge_at(
        &free,
        &TeamIndex::default(),
        QUIET,
        "CREATE",
        &in_ns("shop", with(&[("owner", Some("team-nobody"))])),
        None,
        PERSON,
    );
    assert!(d.allowed, "{:?}", d.message);
}

/// The install: a Registered policy next to the chart's default (FreeForm, Enforce).
/// A registered team's on-call satisfies `oncall` for both; anything short of that is still
/// denied "oncall is missing" by the FreeForm one.
#[test]
fn registered_team_oncall_satisfies_every_policy() {
    let spec = |ownership| CustodyPolicySpec {
        ownership,
        ..CustodyPolicySpec::default()
    };
    let compile = |policies: Vec<CustodyPolicy>| {
        let (set, errors) = PolicySet::compile(policies);
        assert!(errors.is_empty(), "{errors:?}");
        set
    };
    let registered = || CustodyPolicy::new("prod", spec(OwnershipMode::Registered));
    let free_form = || CustodyPolicy::new("default", spec(OwnershipMode::FreeForm));
    let both = compile(vec![registered(), free_form()]);
    let registered_only = compile(vec![registered()]);
    let free_form_only = compile(vec![free_form()]);
    let teams = teams();
    let object = |ns: &str, owner: &str, oncall: Option<&str>| {
        let mut d = deployment(
            "web",
            with(&[("owner", Some(owner)), ("oncall", oncall)]),
            "web:1",
        );
        d["metadata"]["namespace"] = json!(ns);
        d
    };
    use ViolationCode::{InvalidValue, MissingAnnotation, NamespaceNotOwned, OwnerNotRegistered};
    // (case, namespace, owner, oncall, codes under FreeForm alone, under Registered alone, under both)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &str,
        &str,
        Option<&str>,
        Vec<ViolationCode>,
        Vec<ViolationCode>,
        Vec<ViolationCode>,
    )> = vec![
        (
            "team of the namespace with on-call, oncall omitted: admitted by both",
            "shop",
            "team-checkout",
            None,
            vec![],
            vec![],
            vec![],
        ),
        (
            "team registered for another namespace: FreeForm still wants oncall",
            "web-frontend",
            "team-checkout",
            None,
            vec![MissingAnnotation],
            vec![MissingAnnotation, NamespaceNotOwned],
            vec![MissingAnnotation, NamespaceNotOwned],
        ),
        (
            "unknown owner: denied for oncall",
            "shop",
            "team-nobody",
            None,
            vec![MissingAnnotation],
            vec![MissingAnnotation, OwnerNotRegistered],
            vec![MissingAnnotation, OwnerNotRegistered],
        ),
        (
            "team without on-call: denied for oncall",
            "data-lake",
            "team-data",
            None,
            vec![MissingAnnotation],
            vec![MissingAnnotation],
            vec![MissingAnnotation],
        ),
        (
            "malformed oncall is judged as written, team or not",
            "shop",
            "team-checkout",
            Some("not a contact"),
            vec![InvalidValue],
            vec![InvalidValue],
            vec![InvalidValue],
        ),
    ];
    for (case, ns, owner, oncall, free, reg, combined) in cases {
        let obj = object(ns, owner, oncall);
        for (set, expected, which) in [
            (&free_form_only, &free, "FreeForm"),
            (&registered_only, &reg, "Registered"),
            (&both, &combined, "both"),
        ] {
            let d = judge_at(set, &teams, QUIET, "CREATE", &obj, None, PERSON);
            let mut got = codes(&d);
            got.sort_by_key(|c| c.as_str());
            assert_eq!(&got, expected, "{case} ({which}): {:?}", d.message);
            assert_eq!(d.allowed, expected.is_empty(), "{case} ({which})");
            let oncall_missing: Vec<&str> = d
                .violations
                .iter()
                .filter(|v| v.code == MissingAnnotation)
                .map(|v| v.field.as_str())
                .collect();
            if !oncall_missing.is_empty() {
                assert_eq!(
                    oncall_missing,
                    ["metadata.annotations[custody.dev/oncall]"],
                    "{case} ({which})"
                );
            }
            if expected.is_empty() && oncall.is_none() {
                // The audit log says whose on-call stood in.
                assert_eq!(d.audit_annotations["team"], owner, "{case} ({which})");
                assert_eq!(
                    d.audit_annotations["oncall"], "checkout@example.com, @co-pager",
                    "{case} ({which})"
                );
                assert_eq!(
                    d.audit_annotations["oncall-from"],
                    format!("CustodyTeam/{owner}"),
                    "{case} ({which})"
                );
            }
            if which == "FreeForm" && !expected.is_empty() {
                assert!(
                    !d.audit_annotations.contains_key("team"),
                    "{case}: no team stood in: {:?}",
                    d.audit_annotations
                );
            }
        }
        // With both installed, the FreeForm policy is the one that denies for oncall (the
        // strictest-then-name order keeps "default"'s violation).
        if combined.contains(&MissingAnnotation) {
            let d = judge_at(&both, &teams, QUIET, "CREATE", &obj, None, PERSON);
            let v = d
                .violations
                .iter()
                .find(|v| v.code == MissingAnnotation)
                .unwrap();
            assert_eq!(v.policy, "default", "{case}");
            assert!(
                v.message.contains("custody.dev/oncall is missing"),
                "{case}: {}",
                v.message
            );
        }
    }
}

fn freeze_policy(mode: EnforcementMode) -> PolicySet {
    policy(CustodyPolicySpec {
        mode,
        identities: agents(),
        freezes: freezes(),
        ..CustodyPolicySpec::default()
    })
}

#[test]
fn freeze_rules() {
    let set = freeze_policy(EnforcementMode::Enforce);
    let teams = TeamIndex::default();
    let v1 = deployment("web", with(&[]), "web:1");
    let v2 = deployment("web", with(&[("source-commit", Some("aaaaaaa"))]), "web:2");
    let mut scaled = v1.clone();
    scaled["spec"]["replicas"] = json!(5);
    let mut relabelled = v1.clone();
    relabelled["metadata"]["labels"]["tier"] = json!("gold");
    let human_v2 = deployment("web", human(&[("source-commit", Some("bbbbbbb"))]), "web:2");
    let glass = deployment(
        "web",
        human(&[
            ("source-commit", Some("bbbbbbb")),
            ("break-glass", Some("INC-4711: checkout down")),
        ]),
        "web:2",
    );
    let agent_glass = deployment(
        "web",
        with(&[
            ("source-commit", Some("ccccccc")),
            ("break-glass", Some("INC-4711: checkout down")),
        ]),
        "web:2",
    );
    let automation_v2 = deployment(
        "web",
        with(&[
            ("actor", Some("automation")),
            ("agent", None),
            ("source-commit", Some("ddddddd")),
        ]),
        "web:2",
    );
    let undeclared = deployment("web", with(&[("actor", None)]), "web:2");
    // (case, time, operation, object, old, user, codes)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        &str,
        &str,
        &str,
        &Value,
        Option<&Value>,
        &str,
        Vec<ViolationCode>,
    )> = vec![
        (
            "agent create, no freeze",
            QUIET,
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![],
        ),
        (
            "agent create, weekend",
            WEEKEND,
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![ViolationCode::Frozen],
        ),
        (
            "agent template change, weekend",
            WEEKEND,
            "UPDATE",
            &v2,
            Some(&v1),
            AGENT_SA,
            vec![ViolationCode::Frozen],
        ),
        (
            "agent scale, weekend",
            WEEKEND,
            "UPDATE",
            &scaled,
            Some(&v1),
            AGENT_SA,
            vec![],
        ),
        (
            "agent label change, weekend",
            WEEKEND,
            "UPDATE",
            &relabelled,
            Some(&v1),
            AGENT_SA,
            vec![],
        ),
        (
            "agent revision delivered by a person's kubectl, weekend",
            WEEKEND,
            "UPDATE",
            &v2,
            Some(&v1),
            PERSON,
            vec![ViolationCode::Frozen],
        ),
        (
            "human revision, weekend (agents only)",
            WEEKEND,
            "UPDATE",
            &human_v2,
            Some(&v1),
            PERSON,
            vec![],
        ),
        (
            "automation, weekend (agents only)",
            WEEKEND,
            "UPDATE",
            &automation_v2,
            Some(&v1),
            PERSON,
            vec![],
        ),
        (
            "automation, launch (binds automation)",
            LAUNCH,
            "UPDATE",
            &automation_v2,
            Some(&v1),
            PERSON,
            vec![ViolationCode::Frozen],
        ),
        (
            "no declared actor counts as an agent",
            WEEKEND,
            "CREATE",
            &undeclared,
            None,
            PERSON,
            vec![ViolationCode::MissingAnnotation, ViolationCode::Frozen],
        ),
        (
            "human break-glass, launch",
            LAUNCH,
            "UPDATE",
            &glass,
            Some(&v1),
            PERSON,
            vec![],
        ),
        (
            "break-glass from an agent identity",
            WEEKEND,
            "UPDATE",
            &glass,
            Some(&v1),
            AGENT_SA,
            vec![
                ViolationCode::ActorMismatch,
                ViolationCode::BreakGlassRefused,
            ],
        ),
        (
            "break-glass on an agent revision",
            WEEKEND,
            "UPDATE",
            &agent_glass,
            Some(&v1),
            PERSON,
            vec![ViolationCode::BreakGlassRefused],
        ),
        (
            "break-glass outside a freeze is not needed, and not judged",
            QUIET,
            "UPDATE",
            &agent_glass,
            Some(&v1),
            AGENT_SA,
            vec![],
        ),
        // The weekend freeze opens Friday 18:00 Berlin (17:00Z) and closes Monday 08:00.
        (
            "an instant before it opens",
            "2026-12-04T16:59:59Z",
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![],
        ),
        (
            "the instant it opens",
            "2026-12-04T17:00:00Z",
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![ViolationCode::Frozen],
        ),
        (
            "an instant before it closes",
            "2026-12-07T06:59:59Z",
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![ViolationCode::Frozen],
        ),
        (
            "the instant it closes",
            "2026-12-07T07:00:00Z",
            "CREATE",
            &v1,
            None,
            AGENT_SA,
            vec![],
        ),
    ];
    for (case, now, op, object, old, user, expected) in cases {
        let d = judge_at(&set, &teams, now, op, object, old, user);
        let mut got = codes(&d);
        got.sort_by_key(|c| c.as_str());
        let mut expected = expected;
        expected.sort_by_key(|c| c.as_str());
        assert_eq!(got, expected, "{case}: {:?}", d.message);
    }
}

#[test]
fn break_glass_is_admitted_and_recorded() {
    let set = freeze_policy(EnforcementMode::Enforce);
    let glass = deployment(
        "web",
        human(&[("break-glass", Some("INC-4711: checkout down"))]),
        "web:2",
    );
    let d = judge_at(
        &set,
        &TeamIndex::default(),
        LAUNCH,
        "CREATE",
        &glass,
        None,
        PERSON,
    );
    assert!(d.allowed, "{:?}", d.message);
    assert_eq!(
        d.audit_annotations["break-glass"],
        "INC-4711: checkout down"
    );
    assert_eq!(d.audit_annotations["break-glass-freezes"], "prod/launch");
    assert!(d.warnings[0].contains("break-glass during change freeze prod/launch"));
}

#[test]
fn freeze_follows_the_policy_mode_and_skips_background_audits() {
    let v1 = deployment("web", with(&[]), "web:1");
    let warn = freeze_policy(EnforcementMode::Warn);
    let d = judge_at(
        &warn,
        &TeamIndex::default(),
        WEEKEND,
        "CREATE",
        &v1,
        None,
        AGENT_SA,
    );
    assert!(d.allowed);
    assert!(d.warnings[0].contains("change freeze"), "{:?}", d.warnings);

    let set = freeze_policy(EnforcementMode::Enforce);
    let body = review_of("CREATE", &v1, None, AGENT_SA, &[]);
    let request = request(&body);
    let vocabulary = Vocabulary::default();
    let teams = TeamIndex::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine: &QuarantineIndex::default(),
        now: WEEKEND.parse().unwrap(),
        attestations: &AttestationCache::default(),
        teams: &teams,
        background: true,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    assert!(
        evaluate(&set, &request, &ctx).allowed,
        "an audit judges what runs, not a change"
    );
}

#[test]
fn golden_messages() {
    let teams = teams();
    let registered = policy(CustodyPolicySpec {
        ownership: OwnershipMode::Registered,
        ..CustodyPolicySpec::default()
    });
    let freeze = freeze_policy(EnforcementMode::Enforce);
    let v1 = deployment("web", with(&[]), "web:1");
    let mut out = String::new();
    let mut add = |title: &str, d: Decision| {
        out.push_str(&format!(
            "## {title}\n{}\n\n",
            d.message.unwrap_or_default()
        ));
    };
    add(
        "unregistered owner",
        judge_at(
            &registered,
            &teams,
            QUIET,
            "CREATE",
            &deployment("web", with(&[("owner", Some("team-nobody"))]), "web:1"),
            None,
            PERSON,
        ),
    );
    let mut lake = deployment("web", with(&[]), "web:1");
    lake["metadata"]["namespace"] = json!("data-lake");
    add(
        "a team outside its namespaces",
        judge_at(&registered, &teams, QUIET, "CREATE", &lake, None, PERSON),
    );
    let mut nowhere = deployment("web", with(&[("owner", Some("team-nobody"))]), "web:1");
    nowhere["metadata"]["namespace"] = json!("sandbox");
    add(
        "a namespace no team owns",
        judge_at(&registered, &teams, QUIET, "CREATE", &nowhere, None, PERSON),
    );
    add(
        "weekend freeze",
        judge_at(&freeze, &teams, WEEKEND, "CREATE", &v1, None, AGENT_SA),
    );
    let automation = deployment(
        "web",
        with(&[("actor", Some("automation")), ("agent", None)]),
        "web:1",
    );
    add(
        "launch freeze (no message), automation",
        judge_at(&freeze, &teams, LAUNCH, "CREATE", &automation, None, PERSON),
    );
    let agent_glass = deployment(
        "web",
        with(&[("break-glass", Some("INC-4711: checkout down"))]),
        "web:1",
    );
    add(
        "break-glass from an agent identity",
        judge_at(
            &freeze,
            &teams,
            WEEKEND,
            "CREATE",
            &agent_glass,
            None,
            AGENT_SA,
        ),
    );
    check_golden("teams-and-freezes.txt", &out);
}
