//! Engine throughput on one core: decode + evaluate + encode of realistic AdmissionReviews.
//!
//! `cargo bench -p custody-webhook --bench engine` prints reviews per second and latency
//! percentiles per scenario, and the process's peak RSS. Numbers, not assertions.
//! `ENGINE_ONLY=<text>` runs only the scenarios whose name contains the text.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use custody_crds::{
    CustodyPolicy, CustodyPolicySpec, CustodyTeam, CustodyTeamSpec, FreezeWindow, OwnershipMode,
    Vocabulary,
};
use custody_engine::attest::AttestationCache;
use custody_engine::{
    AgentActivity, ChangeIndex, Context, PolicySet, QuarantineIndex, TeamIndex, evaluate,
};
use custody_webhook::review;

#[path = "support/approval.rs"]
mod approval;

#[path = "support/signed.rs"]
mod signed;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/admission")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// examples/policy.yaml: its policies and the teams they require.
fn example_policies() -> (PolicySet, TeamIndex) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.yaml");
    let files = custody_engine::files::load_policy_files(&[path], &mut std::io::empty());
    assert!(files.errors.is_empty(), "{:?}", files.errors);
    assert!(files.policy_errors.is_empty(), "{:?}", files.policy_errors);
    (files.policies, files.teams)
}

fn many_policies(n: usize) -> PolicySet {
    let policies = (0..n).map(|i| {
        let mut spec = custody_crds::CustodyPolicySpec::default();
        spec.match_rules.namespaces.include = vec![format!("team-{i}-*"), "shop".to_string()];
        CustodyPolicy::new(&format!("policy-{i:03}"), spec)
    });
    PolicySet::compile(policies).0
}

/// 1,000 teams (the fixture's `payments` owns `shop`), and one policy requiring registered
/// owners with 10 freeze windows: nine recurring ones that are closed at the bench's instant
/// and, when `open` is set, a one-off window around it.
fn teams_and_freezes(open: bool) -> (PolicySet, TeamIndex) {
    let teams: Vec<CustodyTeam> = (0..1_000)
        .map(|i| {
            let name = if i == 500 {
                "payments".to_string()
            } else {
                format!("team-{i:04}")
            };
            let namespaces = if i == 500 {
                vec!["shop".to_string(), "payments-*".to_string()]
            } else {
                vec![format!("team-{i:04}-*")]
            };
            CustodyTeam::new(
                &name,
                CustodyTeamSpec {
                    oncall: vec![format!("@{name}-oncall")],
                    namespaces,
                    ..CustodyTeamSpec::default()
                },
            )
        })
        .collect();
    let (teams, errors) = TeamIndex::compile(&teams);
    assert!(errors.is_empty(), "{errors:?}");
    // Each recurring window opens on one day of a year long gone by, so it stays closed and its
    // answer stays remembered, as in a cluster between freezes.
    let mut freezes: Vec<FreezeWindow> = (1..=9)
        .map(|i| FreezeWindow {
            name: format!("closed-{i}"),
            schedule: Some(format!("0 0 18 {i} JAN * 2001")),
            duration: Some("12h".to_string()),
            time_zone: "Europe/Berlin".to_string(),
            actors: vec![custody_crds::Actor::Agent],
            ..FreezeWindow::default()
        })
        .collect();
    freezes.push(FreezeWindow {
        name: "now".to_string(),
        start: Some("2001-01-01T00:00:00Z".to_string()),
        end: Some(
            if open {
                "2999-01-01T00:00:00Z"
            } else {
                "2001-01-02T00:00:00Z"
            }
            .to_string(),
        ),
        time_zone: "UTC".to_string(),
        actors: vec![custody_crds::Actor::Agent],
        ..FreezeWindow::default()
    });
    let spec = CustodyPolicySpec {
        ownership: OwnershipMode::Registered,
        freezes,
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("registered", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    (set, teams)
}

/// 10,000 RollbackRecords of 1,000 agents (the fixture's agent among them, 3 reverts in
/// another namespace), one policy with probation and an in-flight and a revisions budget, and
/// the controller's summaries of those 1,000 agents (20 revisions and 2 rollouts in flight
/// each).
fn guardrails() -> (PolicySet, QuarantineIndex, AgentActivity) {
    use custody_crds::{
        AgentGuardrails, AgentLimit, AgentRevision, CustodyAgent, CustodyAgentSpec,
        CustodyAgentStatus, Probation, RecordAction, RevisionSnapshot, RollbackRecord,
        RollbackRecordSpec, SignalReason, WorkloadKind, WorkloadRef,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let now = k8s_openapi::jiff::Timestamp::now();
    let agent = |i: usize| {
        if i == 0 {
            "claude-code/1.0".to_string()
        } else {
            format!("agent-{i:04}/1.0")
        }
    };
    let records: Vec<RollbackRecord> = (0..10_000)
        .map(|i| {
            let mut r = RollbackRecord::new(
                &format!("r{i}"),
                RollbackRecordSpec {
                    workload: WorkloadRef {
                        kind: WorkloadKind::Deployment,
                        name: format!("app-{i}"),
                        uid: None,
                    },
                    action: RecordAction::Reverted,
                    reason: SignalReason::NotReady,
                    from: RevisionSnapshot {
                        revision: "2".into(),
                        template_fingerprint: format!("sha256:{i}"),
                        actor: Some(custody_crds::Actor::Agent),
                        agent: Some(agent(i % 1_000)),
                        ..RevisionSnapshot::default()
                    },
                    to: None,
                    signals: vec![],
                    policy: "guarded".into(),
                    explanation: String::new(),
                    revision_seen_at: None,
                    regression_detected_at: Time(now),
                    acted_at: Time(now - k8s_openapi::jiff::SignedDuration::from_secs(60)),
                    team: Some("team-x".into()),
                    oncall: None,
                    analysis: None,
                },
            );
            r.metadata.namespace = Some(format!("ns-{}", i % 100));
            r
        })
        .collect();
    let quarantine = QuarantineIndex::from_records(&records);
    let revision = |i: usize, j: usize| AgentRevision {
        namespace: format!("ns-{}", j % 100),
        kind: WorkloadKind::Deployment,
        name: format!("app-{i}-{j}"),
        revision: format!("app-{i}-{j}-abc"),
        team: Some("team-x".into()),
        at: Time(now - k8s_openapi::jiff::SignedDuration::from_secs(j as i64 * 60)),
    };
    let objects: Vec<CustodyAgent> = (0..1_000)
        .map(|i| {
            let mut a = CustodyAgent::new(&format!("a{i}"), CustodyAgentSpec { agent: agent(i) });
            a.status = Some(CustodyAgentStatus {
                in_flight: (0..2).map(|j| revision(i, j)).collect(),
                revisions: (0..20).map(|j| revision(i, j)).collect(),
                updated_at: None,
            });
            a
        })
        .collect();
    let activity = AgentActivity::from_objects(&objects);
    let spec = CustodyPolicySpec {
        agents: AgentGuardrails {
            probation: Some(Probation::default()),
            limits: vec![AgentLimit {
                agents: vec!["*".into()],
                scope: custody_crds::ProbationScope::Namespace,
                max_in_flight: Some(5),
                max_revisions: Some(50),
                window: "1h".into(),
            }],
            canary: None,
            approval: None,
        },
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("guarded", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    (set, quarantine, activity)
}

fn run(name: &str, body: &[u8], policies: &PolicySet) {
    run_with(name, body, policies, true, &TeamIndex::default());
}

/// With `cached` false, every review gets an empty attestation cache, so a signed one pays for
/// its signature check each time.
fn run_with(name: &str, body: &[u8], policies: &PolicySet, cached: bool, teams: &TeamIndex) {
    run_full(
        name,
        body,
        policies,
        cached,
        &Live {
            teams: Some(teams),
            ..Live::default()
        },
    );
}

/// The live state a review is judged against besides the policies; empty where not given.
#[derive(Default)]
struct Live<'a> {
    teams: Option<&'a TeamIndex>,
    quarantine: Option<&'a QuarantineIndex>,
    activity: Option<&'a AgentActivity>,
    changes: Option<&'a ChangeIndex>,
}

fn run_full(name: &str, body: &[u8], policies: &PolicySet, cached: bool, live: &Live<'_>) {
    if !selected(name) {
        return;
    }
    let vocabulary = Vocabulary::default();
    let shared = AttestationCache::default();
    let empty = (
        TeamIndex::default(),
        QuarantineIndex::default(),
        AgentActivity::default(),
        ChangeIndex::default(),
    );
    let teams = live.teams.unwrap_or(&empty.0);
    let quarantine = live.quarantine.unwrap_or(&empty.1);
    let activity = live.activity.unwrap_or(&empty.2);
    let changes = live.changes.unwrap_or(&empty.3);
    let once = || {
        let fresh;
        let attestations = if cached {
            &shared
        } else {
            fresh = AttestationCache::with_capacity(1);
            &fresh
        };
        let ctx = Context {
            vocabulary: &vocabulary,
            namespace_labels: None,
            quarantine,
            now: k8s_openapi::jiff::Timestamp::now(),
            attestations,
            teams,
            background: false,
            activity,
            changes,
        };
        let request = review::decode(black_box(body)).expect("decodes");
        let decision = evaluate(policies, &request, &ctx);
        // A signed scenario that is denied would time the failure path, not verification.
        assert!(
            !name.contains("-signed") || decision.allowed,
            "{name}: {:?}",
            decision.violations
        );
        black_box(review::encode(&request.uid, &decision))
    };
    // Warm up, then time batches of 100 so the clock is read far less often than the work runs.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        once();
    }
    const BATCH: u32 = 100;
    let mut per_review_ns = Vec::new();
    let start = Instant::now();
    let mut reviews = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        for _ in 0..BATCH {
            once();
        }
        per_review_ns.push(t.elapsed().as_nanos() as f64 / f64::from(BATCH));
        reviews += u64::from(BATCH);
    }
    let elapsed = start.elapsed().as_secs_f64();
    per_review_ns.sort_by(f64::total_cmp);
    let pct = |p: f64| per_review_ns[((per_review_ns.len() as f64 - 1.0) * p) as usize] / 1000.0;
    println!(
        "{name:<58} {:>6} B  {:>9.0} reviews/s  p50 {:>6.2} µs  p99 {:>6.2} µs",
        body.len(),
        reviews as f64 / elapsed,
        pct(0.50),
        pct(0.99),
    );
}

/// `ENGINE_ONLY=<text>` runs only the scenarios whose name contains it (to profile one).
fn selected(name: &str) -> bool {
    std::env::var("ENGINE_ONLY").map_or(true, |only| name.contains(&only))
}

/// `spec.agents.approval`: requests outside its scope, each beside the same request under the
/// same policy without approval (they should cost the same: the digest is taken only in scope);
/// an agent's protected revision admitted by an approved change among 1,000 change requests;
/// and one denied for want of its own.
fn approval_scenarios() {
    let (plain, reviewed) = (approval::policy(false), approval::policy(true));
    let person = approval::person_update();
    let elsewhere = approval::agent_update("lab");
    let agent = approval::agent_update("shop");
    for (what, body) in [
        ("person's update", &person),
        ("agent, other namespace", &elsewhere),
    ] {
        run(
            &format!("approval: {what}, policy without approval"),
            body,
            &plain,
        );
        run(
            &format!("approval: {what}, out of approval's scope"),
            body,
            &reviewed,
        );
    }
    run(
        "approval: agent's update, policy without approval",
        &agent,
        &plain,
    );
    let (with_own, without_own) = approval::changes();
    for (label, changes) in [
        ("approved among 1,000 changes", &with_own),
        ("no change of its own (denied)", &without_own),
    ] {
        run_full(
            &format!("approval: agent's update, {label}"),
            &agent,
            &reviewed,
            true,
            &Live {
                changes: Some(changes),
                ..Live::default()
            },
        );
    }
}

fn peak_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn main() {
    // `cargo test --benches` runs this with --bench absent; keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        println!("engine bench: run with `cargo bench -p custody-webhook --bench engine`");
        return;
    }
    let builtin = PolicySet::builtin_default();
    let (example, example_teams) = example_policies();
    let hundred = many_policies(100);
    println!("one core, decode + evaluate + encode per review (batches of 100 timed)");
    run(
        "create, agent-annotated Deployment, built-in policy",
        &fixture("deployment-create-agent-annotated.json"),
        &builtin,
    );
    run_with(
        "create, agent-annotated Deployment, examples/policy.yaml",
        &fixture("deployment-create-agent-annotated.json"),
        &example,
        true,
        &example_teams,
    );
    run(
        "create, unannotated Deployment (denied), built-in policy",
        &fixture("deployment-create-unannotated.json"),
        &builtin,
    );
    run(
        "update, image + provenance changed, built-in policy",
        &fixture("deployment-update-image-and-provenance-changed.json"),
        &builtin,
    );
    run(
        "update, stale provenance (denied), built-in policy",
        &fixture("deployment-update-image-changed-provenance-unchanged.json"),
        &builtin,
    );
    run(
        "create, Pod by ReplicaSet controller (skipped)",
        &fixture("pod-create-by-replicaset-controller.json"),
        &builtin,
    );
    run(
        "create, agent-annotated Deployment, 100 matching policies",
        &fixture("deployment-create-agent-annotated.json"),
        &hundred,
    );
    let (signing, errors) = PolicySet::compile([signed::policy()]);
    assert!(errors.is_empty(), "{errors:?}");
    for key in ["ed25519", "p256"] {
        let body = signed::signed_review(key, 0);
        run_with(
            &format!("create, {key}-signed Deployment, verified each time"),
            &body,
            &signing,
            false,
            &TeamIndex::default(),
        );
        run_with(
            &format!("create, {key}-signed Deployment, cached envelope"),
            &body,
            &signing,
            true,
            &TeamIndex::default(),
        );
    }
    for (open, label) in [(false, "none open"), (true, "one open (denied)")] {
        let (policies, teams) = teams_and_freezes(open);
        run_with(
            &format!("create, 1,000 teams + 10 freezes, {label}"),
            &fixture("deployment-create-agent-annotated.json"),
            &policies,
            true,
            &teams,
        );
    }
    let (guarded, records, activity) = guardrails();
    run_full(
        "create, 10,000 records + 1,000 agents' summaries, probation + budgets",
        &fixture("deployment-create-agent-annotated.json"),
        &guarded,
        true,
        &Live {
            quarantine: Some(&records),
            activity: Some(&activity),
            ..Live::default()
        },
    );
    approval_scenarios();
    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS {:.1} MiB", kib as f64 / 1024.0);
    }
}
