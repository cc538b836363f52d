//! A regression belongs to the revision: readiness lost with a Node, to an eviction or a
//! deletion, or together with the previous revision's Pods is not the revision's doing. Each
//! case is a situation a real cluster gets into; the controls are broken revisions that must
//! still be reverted around such noise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_controller::cache::node::{NodeId, NodeState};
use custody_controller::cache::observe::{Observed, PodState};
use custody_controller::decide::Action;
use custody_controller::decide::attribution::Excuse;
use custody_crds::{SignalReason, WorkloadKind};
use support::*;

fn node(name: &str, ready: bool, tainted: bool) -> NodeState {
    NodeState {
        id: NodeId::of(name),
        ready,
        tainted,
    }
}

fn up(name: &str) -> NodeState {
    node(name, true, false)
}

fn on(node: &str, pod: PodState) -> PodState {
    PodState {
        node: Some(NodeId::of(node)),
        ..pod
    }
}

/// Revision 2, by `actor`, rolled out completely over n1, n2 and n3 (revision 1 healthy and
/// marked before it, its pods gone); `pods` replace the ones of revision 2 at those indices,
/// `available` replicas of 3 and, below 3, Available=False since `unavailable_since`.
fn settled(actor: &str, pods: Vec<PodState>, available: i32, nodes: Vec<NodeState>) -> Observed {
    let mut all: Vec<PodState> = (1..=3)
        .map(|i| on(&format!("n{i}"), pod("web-2", i, true, 0)))
        .collect();
    for p in pods {
        match all.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => all.push(p),
        }
    }
    let mut workload = deployment("web:2", 3, available, 3);
    if available < 3 {
        workload.unavailable_since = Some(t(NOW - 100));
    }
    Observed {
        workload,
        revisions: vec![
            revision(2, "web:2", actor, &[]),
            revision(1, "web:1", "human", &[healthy_mark()]),
        ],
        pods: all,
        nodes,
    }
}

fn healthy_nodes() -> Vec<NodeState> {
    vec![up("n1"), up("n2"), up("n3")]
}

/// Healthy nodes but n1, which is `n1`.
fn with_n1(n1: NodeState) -> Vec<NodeState> {
    vec![n1, up("n2"), up("n3")]
}

fn unready(node_name: &str, i: u32, since: i64) -> PodState {
    on(node_name, pod("web-2", i, false, since))
}

#[derive(Debug, PartialEq)]
enum Expect {
    NotAttributed(Vec<Excuse>),
    Reverted(SignalReason),
    Waits,
    MarkedHealthy,
}

fn outcome(action: &Action) -> Expect {
    match action {
        Action::NotAttributed { reasons, .. } => Expect::NotAttributed(reasons.clone()),
        Action::Revert(v) => Expect::Reverted(v.reason),
        Action::Wait { .. } => Expect::Waits,
        Action::MarkHealthy { .. } => Expect::MarkedHealthy,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn readiness_lost_through_no_fault_of_the_revision_is_not_attributed() {
    use Excuse::*;
    let evicted = PodState {
        disrupted: true,
        ..unready("n1", 1, NOW - 100)
    };
    let terminating = PodState {
        terminating: true,
        ..unready("n1", 1, NOW - 100)
    };
    let replacement = |i| on("n2", pod("web-2", i, false, NOW - 5));
    let mut crashing_on_dead_node = unready("n1", 1, NOW - 100);
    crashing_on_dead_node.containers[0].waiting = Some("CrashLoopBackOff".into());
    let stalled = {
        let mut o = settled(
            "agent",
            vec![unready("n1", 1, NOW - 100)],
            2,
            with_n1(node("n1", false, false)),
        );
        o.workload.progress_deadline_exceeded_since = Some(t(NOW - 10));
        o
    };
    let mut incident = settled(
        "agent",
        vec![unready("n1", 1, NOW - 100)],
        2,
        with_n1(node("n1", false, true)),
    );
    incident.revisions[0].annotations.insert(
        "custody.dev/healthy-since".into(),
        "2027-01-15T07:00:00Z".into(),
    );
    let cases: Vec<(&str, Observed, Expect)> = vec![
        (
            "the incident: an agent revision marked healthy an hour ago, then its node's heartbeats stop",
            incident,
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a node NotReady (or Unknown) under an agent revision with a healthy predecessor",
            settled(
                "agent",
                vec![unready("n1", 1, NOW - 100)],
                2,
                with_n1(node("n1", false, false)),
            ),
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a node tainted unreachable while its condition still reads Ready",
            settled(
                "agent",
                vec![unready("n1", 1, NOW - 100)],
                2,
                with_n1(node("n1", true, true)),
            ),
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a node deleted while its pods are still bound to it",
            settled(
                "agent",
                vec![unready("n1", 1, NOW - 100)],
                2,
                vec![up("n2"), up("n3")],
            ),
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a node NotReady under a human revision: no alert either",
            settled(
                "human",
                vec![unready("n1", 1, NOW - 100)],
                2,
                with_n1(node("n1", false, false)),
            ),
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a node NotReady for less than the window: wait as for any unready pod",
            settled(
                "agent",
                vec![unready("n1", 1, NOW - 10)],
                2,
                with_n1(node("n1", false, false)),
            ),
            Expect::Waits,
        ),
        (
            "the Deployment's progress deadline passing while its only unready pod is on a dead node",
            stalled,
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "its node back after a control-plane outage, the pod's readiness withdrawn while it was away and not yet reported again",
            settled(
                "agent",
                vec![PodState {
                    readiness_withdrawn: true,
                    ..unready("n1", 1, NOW - 100)
                }],
                2,
                healthy_nodes(),
            ),
            Expect::NotAttributed(vec![NodeNotReady]),
        ),
        (
            "a pod the eviction API is disrupting, its replacement still starting",
            settled(
                "agent",
                vec![evicted.clone(), replacement(4)],
                2,
                healthy_nodes(),
            ),
            Expect::NotAttributed(vec![Disruption]),
        ),
        (
            "a pod evicted by the kubelet that stays behind, Failed, once replaced: no replica",
            settled(
                "agent",
                vec![evicted, on("n2", pod("web-2", 4, true, NOW - 50))],
                3,
                healthy_nodes(),
            ),
            Expect::MarkedHealthy,
        ),
        (
            "a terminating pod stuck past the window, its replacement still starting",
            settled(
                "agent",
                vec![terminating, replacement(4)],
                2,
                healthy_nodes(),
            ),
            Expect::NotAttributed(vec![Terminating]),
        ),
        (
            "pods on a dead node and an evicted one at once: each reason once",
            settled(
                "agent",
                vec![
                    unready("n1", 1, NOW - 100),
                    PodState {
                        disrupted: true,
                        ..unready("n2", 2, NOW - 100)
                    },
                ],
                1,
                with_n1(node("n1", false, false)),
            ),
            Expect::NotAttributed(vec![NodeNotReady, Disruption]),
        ),
        // Controls: the revision's own failures still count.
        (
            "a genuinely broken revision on a healthy node",
            settled(
                "agent",
                vec![unready("n1", 1, NOW - 100)],
                2,
                healthy_nodes(),
            ),
            Expect::Reverted(SignalReason::NotReady),
        ),
        (
            "a broken revision with one pod on a dead node and the others unready on healthy ones",
            settled(
                "agent",
                vec![
                    unready("n1", 1, NOW - 100),
                    unready("n2", 2, NOW - 100),
                    unready("n3", 3, NOW - 100),
                ],
                0,
                with_n1(node("n1", false, false)),
            ),
            Expect::Reverted(SignalReason::NotReady),
        ),
        (
            "a crash loop on a node that then died: the container's evidence stands",
            settled(
                "agent",
                vec![crashing_on_dead_node],
                2,
                with_n1(node("n1", false, false)),
            ),
            Expect::Reverted(SignalReason::CrashLoop),
        ),
    ];
    for (situation, observed, expected) in cases {
        let action = run(&observed);
        assert_eq!(outcome(&action), expected, "{situation}: {action:?}");
    }
}

#[test]
fn readiness_lost_together_with_the_previous_revision_is_not_attributed() {
    // Mid-rollout, maxSurge 1: revision 1's three pods serve, revision 2's first pod starts.
    let with = |old: PodState, new: PodState| {
        let mut o = rollout("agent", &[], vec![new]);
        let i = o.pods.iter().position(|p| p.name == old.name).unwrap();
        o.pods[i] = old;
        o
    };
    let old_unready = |since| pod("web-1", 1, false, since);
    let new_unready = pod("web-2", 1, false, NOW - 100);

    let a = run(&with(old_unready(NOW - 90), new_unready.clone()));
    match &a {
        Action::NotAttributed {
            reasons, revision, ..
        } => {
            assert_eq!(reasons, &[Excuse::SharedWithPreviousRevision]);
            assert_eq!(revision.number, 2);
        }
        other => panic!("both revisions failing in the same window: {other:?}"),
    }

    // The previous revision's pod failed long before: nothing in common.
    let a = run(&with(old_unready(NOW - 500), new_unready.clone()));
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");

    // The rollout itself takes old pods down while new ones start: no evidence of a shared
    // cause, or a broken revision rolled out with maxUnavailable would never be reverted.
    let going = PodState {
        terminating: true,
        ..old_unready(NOW - 95)
    };
    let a = run(&with(going, new_unready.clone()));
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");

    // Only the revision a revert would go back to testifies: one never known healthy may fail
    // on its own (here nothing is healthy, so the regression is reported).
    let mut o = with(old_unready(NOW - 90), new_unready.clone());
    o.revisions[1]
        .annotations
        .remove("custody.dev/healthy-since");
    assert!(matches!(run(&o), Action::Alert(_)), "{:?}", run(&o));

    // An old pod down with its Node is the Node's, not a cause the revisions share.
    let mut o = with(
        on("n9", old_unready(NOW - 95)),
        on("n1", new_unready.clone()),
    );
    o.nodes = vec![node("n9", false, false), up("n1")];
    let a = run(&o);
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");

    // The same after a control-plane outage: the node lifecycle controller withdrew the old
    // pod's readiness while n9's heartbeats could not reach it, n9 is back, and the pod reads
    // unready until its kubelet reports again. Still the Node's, so the broken revision on a
    // healthy node is reverted.
    let withdrawn = PodState {
        readiness_withdrawn: true,
        ..on("n9", old_unready(NOW - 95))
    };
    let mut o = with(withdrawn, on("n1", new_unready.clone()));
    o.nodes = vec![up("n9"), up("n1")];
    let a = run(&o);
    assert_eq!(reverts_to(&a), Some((1, SignalReason::NotReady)), "{a:?}");
}

#[test]
fn a_daemon_set_pod_on_a_dead_node_is_not_an_availability_drop() {
    // Revision 2 of agentd runs on all three nodes; n2 dies. DaemonSets report no Available
    // condition, so the drop would date from the pod.
    let mut workload = deployment("agentd:2", 3, 2, 3);
    workload.kind = WorkloadKind::DaemonSet;
    workload.max_unavailable = 0;
    let pods = vec![
        on("n1", pod("6d9f", 1, true, 0)),
        on("n2", pod("6d9f", 2, false, NOW - 100)),
        on("n3", pod("6d9f", 3, true, 0)),
    ];
    let observed = |n2: NodeState| Observed {
        workload: workload.clone(),
        revisions: vec![
            revision(2, "agentd:2", "agent", &[]).with_pod_key("6d9f"),
            revision(1, "agentd:1", "human", &[healthy_mark()]).with_pod_key("58c1"),
        ],
        pods: pods.clone(),
        nodes: vec![up("n1"), n2, up("n3")],
    };
    let a = run(&observed(node("n2", false, true)));
    assert_eq!(
        outcome(&a),
        Expect::NotAttributed(vec![Excuse::NodeNotReady]),
        "{a:?}"
    );
    // The same pod on a healthy node is the revision's.
    match run(&observed(up("n2"))) {
        Action::Revert(v) => assert!(
            v.findings
                .iter()
                .any(|f| f.reason == SignalReason::AvailabilityDrop),
            "{v:?}"
        ),
        other => panic!("{other:?}"),
    }
}

/// While a pod on a dead node is still inside the not-ready window, the controller must look
/// again when the window closes (to count the situation then), not a fixed half-minute later.
#[test]
fn an_excused_pod_inside_its_window_is_looked_at_again_when_the_window_closes() {
    let settings = custody_crds::RollbackSettings::default();
    let window = i64::from(settings.not_ready_seconds);
    let observed = settled(
        "agent",
        vec![unready("n1", 1, NOW - (window - 4))],
        2,
        with_n1(node("n1", false, true)),
    );
    match run(&observed) {
        Action::Wait { after, .. } => assert!(
            after <= std::time::Duration::from_secs(4)
                && after >= std::time::Duration::from_secs(3),
            "looks again after {after:?}, not when the window closes in 4 s"
        ),
        other => panic!("expected a wait, got {other:?}"),
    }
    let later = settled(
        "agent",
        vec![unready("n1", 1, NOW - window - 1)],
        2,
        with_n1(node("n1", false, true)),
    );
    assert_eq!(
        outcome(&run(&later)),
        Expect::NotAttributed(vec![Excuse::NodeNotReady])
    );
}
