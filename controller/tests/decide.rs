//! The rollback decision, case by case: each case is a situation a real rollout gets into.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_controller::cache::observe::{Observed, PodState};
use custody_controller::decide::{Action, decide};
use custody_crds::{Actor, RollbackSettings, SignalReason, Vocabulary, WorkloadKind};
use jiff::SignedDuration;
use support::*;

#[test]
fn agent_revision_failing_readiness_past_the_window_is_reverted() {
    let a = run(&rollout(
        "agent",
        &[],
        vec![pod("web-2", 1, false, NOW - 31)],
    ));
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");
    if let Action::Revert(v) = a {
        assert_eq!(v.detected_at, t(NOW - 1));
        assert!(
            v.explanation.contains("reverting to revision 1"),
            "{}",
            v.explanation
        );
    }
}

#[test]
fn not_ready_within_the_window_waits_until_it_closes() {
    let a = run(&rollout(
        "agent",
        &[],
        vec![pod("web-2", 1, false, NOW - 10)],
    ));
    match a {
        Action::Wait { after, .. } => assert_eq!(after, std::time::Duration::from_secs(20)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn crash_loops_and_restarts_count_at_once() {
    let mut crashing = pod("web-2", 1, false, NOW - 2);
    crashing.containers[0].waiting = Some("CrashLoopBackOff".into());
    crashing.containers[0].restarts = 1;
    assert_eq!(
        reverts_to(&run(&rollout("agent", &[], vec![crashing]))),
        Some((1, SignalReason::CrashLoop))
    );

    let mut restarting = pod("web-2", 1, true, NOW - 2);
    restarting.containers[0].restarts = 3;
    assert_eq!(
        reverts_to(&run(&rollout("agent", &[], vec![restarting]))),
        Some((1, SignalReason::Restarts))
    );

    let mut two = pod("web-2", 1, true, NOW - 2);
    two.containers[0].restarts = 2;
    assert!(matches!(
        run(&rollout("agent", &[], vec![two])),
        Action::Wait { .. }
    ));
}

#[test]
fn image_pull_failures_wait_for_their_window() {
    let mut pulling = pod("web-2", 1, false, NOW - 5);
    pulling.ready_changed = None;
    pulling.containers[0].waiting = Some("ImagePullBackOff".into());
    assert!(matches!(
        run(&rollout("agent", &[], vec![pulling.clone()])),
        Action::Wait { .. }
    ));
    pulling.started = Some(t(NOW - 40));
    pulling.ready_changed = Some(t(NOW - 40));
    let a = run(&rollout("agent", &[], vec![pulling]));
    assert!(
        matches!(
            reverts_to(&a),
            Some((1, SignalReason::ImagePull | SignalReason::NotReady))
        ),
        "{a:?}"
    );
}

#[test]
fn progress_deadline_exceeded_is_a_regression() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 5)]);
    o.workload.progress_deadline_exceeded_since = Some(t(NOW - 1));
    assert_eq!(
        reverts_to(&run(&o)),
        Some((1, SignalReason::ProgressDeadline))
    );
}

#[test]
fn availability_drop_beyond_the_strategy() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 5)]);
    o.workload.available_replicas = 1;
    o.workload.unavailable_since = Some(t(NOW - 40));
    assert_eq!(
        reverts_to(&run(&o)),
        Some((1, SignalReason::AvailabilityDrop))
    );
}

#[test]
fn a_rollout_in_progress_under_max_surge_waits() {
    // The new pod is up but not Ready yet (probe delay); old pods serve.
    let a = run(&rollout(
        "agent",
        &[],
        vec![pod("web-2", 1, false, NOW - 3)],
    ));
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
}

#[test]
fn old_revision_pods_failing_are_not_the_new_revisions_fault() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, true, NOW - 100)]);
    let old = o.pods.iter_mut().find(|p| p.revision == "web-1").unwrap();
    old.ready = false;
    old.ready_changed = Some(t(NOW - 100));
    old.containers[0].waiting = Some("CrashLoopBackOff".into());
    assert!(
        matches!(run(&o), Action::Wait { .. }),
        "old pods must not trigger a revert"
    );
}

#[test]
fn terminating_pods_of_a_scale_down_do_not_count() {
    let mut going = pod("web-2", 2, false, NOW - 100);
    going.terminating = true;
    let a = run(&rollout(
        "agent",
        &[],
        vec![pod("web-2", 1, true, NOW - 100), going],
    ));
    assert!(!matches!(a, Action::Revert(_) | Action::Alert(_)), "{a:?}");
}

#[test]
fn a_paused_deployment_is_left_alone() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.workload.paused = true;
    assert!(matches!(run(&o), Action::Nothing { .. }));
}

#[test]
fn an_unobserved_spec_change_waits_for_the_deployment_controller() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.workload.generation = 3;
    assert!(matches!(run(&o), Action::Wait { .. }));
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.workload.template_fingerprint = fingerprint("web:3");
    assert!(
        matches!(run(&o), Action::Wait { .. }),
        "the ReplicaSet for the new template is not there yet"
    );
}

#[test]
fn a_revision_already_reverted_is_not_reverted_again() {
    let o = rollout(
        "agent",
        &[("custody.dev/reverted-by", "web-r2-abc")],
        vec![pod("web-2", 1, false, NOW - 100)],
    );
    assert!(matches!(run(&o), Action::Nothing { .. }));
    let o = rollout(
        "agent",
        &[("custody.dev/alerted-by", "web-r2-abc")],
        vec![pod("web-2", 1, false, NOW - 100)],
    );
    assert!(matches!(run(&o), Action::Nothing { .. }));
}

#[test]
fn several_revisions_in_quick_succession_judge_only_the_newest() {
    let mut o = rollout("agent", &[], vec![pod("web-3", 1, true, NOW - 1)]);
    o.workload.template_fingerprint = fingerprint("web:3");
    o.revisions.insert(0, revision(3, "web:3", "agent", &[]));
    // web-2's pods crash, but web-2 is no longer the desired revision.
    let mut crashing = pod("web-2", 1, false, NOW - 100);
    crashing.containers[0].waiting = Some("CrashLoopBackOff".into());
    o.pods.push(crashing);
    assert!(
        matches!(run(&o), Action::Wait { .. }),
        "only revision 3 is judged"
    );
}

#[test]
fn without_a_healthy_revision_to_go_back_to_it_alerts() {
    // revisionHistoryLimit pruned v1; only v2 remains.
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.revisions.truncate(1);
    match run(&o) {
        Action::Alert(v) => {
            assert!(v.to.is_none());
            assert!(
                v.explanation
                    .contains("no earlier revision is known healthy"),
                "{}",
                v.explanation
            );
        }
        other => panic!("{other:?}"),
    }
    // v1 exists but was never marked healthy.
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.revisions[1]
        .annotations
        .remove("custody.dev/healthy-since");
    assert!(matches!(run(&o), Action::Alert(_)));
}

#[test]
fn human_and_automation_revisions_get_an_alert() {
    for actor in ["human", "automation", "nobody-knows"] {
        match run(&rollout(
            actor,
            &[],
            vec![pod("web-2", 1, false, NOW - 100)],
        )) {
            Action::Alert(v) => assert!(
                v.explanation.contains("reverts only"),
                "{actor}: {}",
                v.explanation
            ),
            other => panic!("{actor}: {other:?}"),
        }
    }
}

#[test]
fn a_human_rolling_forward_during_the_agents_rollout_is_not_reverted() {
    let mut o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    o.workload.template_fingerprint = fingerprint("web:3");
    o.revisions.insert(0, revision(3, "web:3", "human", &[]));
    o.pods.push(pod("web-3", 1, false, NOW - 100));
    assert!(
        matches!(run(&o), Action::Alert(_)),
        "the human's revision is current: alert, never revert"
    );
}

#[test]
fn rollback_annotations_limit_the_controller() {
    for (mode, expect) in [("unsafe", "irreversible"), ("alert", "rollback: alert")] {
        match run(&rollout(
            "agent",
            &[("custody.dev/rollback", mode)],
            vec![pod("web-2", 1, false, NOW - 100)],
        )) {
            Action::Alert(v) => {
                assert!(v.explanation.contains(expect), "{mode}: {}", v.explanation)
            }
            other => panic!("{mode}: {other:?}"),
        }
    }
}

#[test]
fn dry_run_reports_instead_of_reverting() {
    let o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    let settings = RollbackSettings {
        dry_run: true,
        ..Default::default()
    };
    for (settings, global) in [(settings, false), (RollbackSettings::default(), true)] {
        match decide(&o, &settings, &Vocabulary::default(), global, t(NOW)) {
            Action::Alert(v) => {
                assert!(v.dry_run);
                assert_eq!(v.to.unwrap().number, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn revert_actors_come_from_the_policy() {
    let o = rollout("automation", &[], vec![pod("web-2", 1, false, NOW - 100)]);
    let settings = RollbackSettings {
        revert_actors: vec![Actor::Agent, Actor::Automation],
        ..Default::default()
    };
    assert!(matches!(
        decide(&o, &settings, &Vocabulary::default(), false, t(NOW)),
        Action::Revert(_)
    ));
}

#[test]
fn a_complete_rollout_is_marked_healthy_after_the_window() {
    let done = |ready_for: i64| Observed {
        workload: deployment("web:2", 3, 3, 3),
        revisions: vec![
            revision(2, "web:2", "agent", &[]),
            revision(1, "web:1", "human", &[healthy_mark()]),
        ],
        pods: (1..=3)
            .map(|i| pod("web-2", i, true, NOW - ready_for))
            .collect(),
        nodes: Vec::new(),
    };
    assert!(matches!(run(&done(10)), Action::Wait { .. }));
    assert_eq!(
        run(&done(31)),
        Action::MarkHealthy {
            revision: "web-2".into()
        }
    );
    let mut marked = done(100);
    marked.revisions[0]
        .annotations
        .insert("custody.dev/healthy-since".into(), "x".into());
    assert!(matches!(run(&marked), Action::Nothing { .. }));
}

#[test]
fn the_revert_target_skips_revisions_with_the_same_template() {
    // v1 and v3 share a template (v3 was itself an undo); v2 healthy: target is v2... unless
    // it has the regressed template, in which case an older one is chosen.
    let mut o = rollout("agent", &[], vec![pod("web-3", 1, false, NOW - 100)]);
    o.workload.template_fingerprint = fingerprint("web:1");
    o.revisions.insert(0, revision(3, "web:1", "agent", &[]));
    o.revisions[2]
        .annotations
        .insert("custody.dev/healthy-since".into(), "x".into());
    o.revisions[1]
        .annotations
        .insert("custody.dev/healthy-since".into(), "x".into());
    match run(&o) {
        Action::Revert(v) => assert_eq!(v.to.unwrap().number, 2),
        other => panic!("{other:?}"),
    }
    let _ = SignedDuration::ZERO;
}

/// A StatefulSet of 3 replicas whose revision 2 (pods known by the revision's name) rolls out
/// with `updated` replicas at it; revision 1 is marked healthy.
fn stateful_set(updated: i32, available: i32, partition: i32, pods: Vec<PodState>) -> Observed {
    let mut workload = deployment("db:2", updated, available, 3);
    workload.kind = WorkloadKind::StatefulSet;
    workload.max_unavailable = 1;
    workload.partition = partition;
    Observed {
        workload,
        revisions: vec![
            revision(2, "db:2", "agent", &[]).with_pod_key("db-7f9c"),
            revision(1, "db:1", "human", &[healthy_mark()]).with_pod_key("db-5b2a"),
        ],
        pods,
        nodes: Vec::new(),
    }
}

fn pod_of(revision: &str, i: u32, ready: bool, since: i64) -> PodState {
    PodState {
        name: format!("db-{i}"),
        ..pod(revision, i, ready, since)
    }
}

#[test]
fn a_stateful_set_revision_is_judged_by_the_pods_labelled_with_it() {
    let mut crashing = pod_of("db-7f9c", 2, false, NOW - 5);
    crashing.containers[0].waiting = Some("CrashLoopBackOff".into());
    let a = run(&stateful_set(
        1,
        2,
        0,
        vec![
            pod_of("db-5b2a", 0, true, 0),
            pod_of("db-5b2a", 1, true, 0),
            crashing,
        ],
    ));
    assert_eq!(reverts_to(&a), Some((1, SignalReason::CrashLoop)), "{a:?}");

    // The same pod failing at the old revision is not the new revision's fault.
    let mut old_crashing = pod_of("db-5b2a", 1, false, NOW - 5);
    old_crashing.containers[0].waiting = Some("CrashLoopBackOff".into());
    let a = run(&stateful_set(
        1,
        2,
        0,
        vec![
            pod_of("db-5b2a", 0, true, 0),
            old_crashing,
            pod_of("db-7f9c", 2, true, NOW - 100),
        ],
    ));
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
}

#[test]
fn a_stateful_set_partition_completes_with_the_older_ordinals_left_behind() {
    // Partition 2: only ordinal 2 moves to revision 2, and that is the whole rollout.
    let a = run(&stateful_set(
        1,
        3,
        2,
        vec![
            pod_of("db-5b2a", 0, true, 0),
            pod_of("db-5b2a", 1, true, 0),
            pod_of("db-7f9c", 2, true, 0),
        ],
    ));
    assert!(
        matches!(&a, Action::MarkHealthy { revision } if revision == "web-2"),
        "{a:?}"
    );
    // Without the partition the same state is a rollout still in progress.
    let a = run(&stateful_set(
        1,
        3,
        0,
        vec![
            pod_of("db-5b2a", 0, true, 0),
            pod_of("db-5b2a", 1, true, 0),
            pod_of("db-7f9c", 2, true, 0),
        ],
    ));
    assert!(matches!(a, Action::Wait { .. }), "{a:?}");
}

#[test]
fn a_daemon_set_availability_drop_counts_from_its_first_unready_pod() {
    // DaemonSets report no Available condition: the drop dates from the pods.
    let mut workload = deployment("agentd:2", 2, 1, 3);
    workload.kind = WorkloadKind::DaemonSet;
    workload.max_unavailable = 1;
    let observed = Observed {
        workload,
        revisions: vec![
            revision(2, "agentd:2", "agent", &[]).with_pod_key("6d9f"),
            revision(1, "agentd:1", "human", &[healthy_mark()]).with_pod_key("58c1"),
        ],
        pods: vec![
            pod_of("58c1", 0, true, 0),
            pod_of("6d9f", 1, false, NOW - 31),
            pod_of("6d9f", 2, false, NOW - 40),
        ],
        nodes: Vec::new(),
    };
    let a = run(&observed);
    match &a {
        Action::Revert(v) => {
            assert_eq!(v.to.as_ref().unwrap().number, 1);
            let drop = v
                .findings
                .iter()
                .find(|f| f.reason == SignalReason::AvailabilityDrop)
                .expect("an availability finding");
            assert_eq!(drop.since, t(NOW - 40), "{drop:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// v3 is `kubectl rollout restart` of the agent's v2 (the same template plus a restart
/// timestamp), failing; v1 healthy.
fn restarted(v2_healthy: bool) -> Observed {
    let mut restarted_template = rs_template("web:2", "h3");
    restarted_template["metadata"]["annotations"] =
        serde_json::json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let v3 = custody_controller::cache::observe::Revision::new(
        "web-3".into(),
        3,
        &restarted_template,
        annotations("agent", &[]),
        Some(t(0)),
    );
    let mut workload = deployment("web:2", 1, 3, 4);
    workload.template_fingerprint = v3.fingerprint.clone();
    let v2_marks: &[(&str, &str)] = if v2_healthy { &[healthy_mark()] } else { &[] };
    Observed {
        workload,
        revisions: vec![
            v3,
            revision(2, "web:2", "agent", v2_marks),
            revision(1, "web:1", "human", &[healthy_mark()]),
        ],
        pods: [
            vec![
                pod("web-2", 1, true, 0),
                pod("web-2", 2, true, 0),
                pod("web-2", 3, true, 0),
            ],
            vec![pod("web-3", 1, false, NOW - 100)],
        ]
        .concat(),
        nodes: Vec::new(),
    }
}

#[test]
fn a_restart_of_healthy_code_that_regresses_is_alerted_not_reverted() {
    let o = restarted(true);
    assert_eq!(o.revisions[0].code(), o.revisions[1].code());
    assert_ne!(o.revisions[0].fingerprint, o.revisions[1].fingerprint);
    match run(&o) {
        Action::Alert(v) => assert!(
            v.explanation
                .contains("is a restart of revision 2, which was healthy"),
            "{}",
            v.explanation
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restart_of_code_never_healthy_goes_back_to_other_code() {
    // The agent's v2 never became healthy; restarting it changes nothing: back to v1.
    let observed = restarted(false);
    let a = run(&observed);
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");
    // Its record keeps the code's fingerprint, which v2 (and Git's copy, without the restart
    // annotation) has too: the quarantine holds against both.
    let Action::Revert(verdict) = a else {
        unreachable!()
    };
    let record = custody_controller::act::record::build(
        &observed.workload,
        &verdict,
        custody_crds::RecordAction::Reverted,
        "p",
        &Vocabulary::default(),
        None,
        t(NOW),
    );
    assert_eq!(
        record.spec.from.template_fingerprint,
        observed.revisions[1].fingerprint
    );
    assert_ne!(
        record.spec.from.template_fingerprint,
        observed.revisions[0].fingerprint
    );
}
