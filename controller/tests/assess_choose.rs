//! The decision's two steps apart: what a rollout's health shows does not depend on who made
//! the revision, and the choice between revert and alert depends only on the regression, what
//! the revision declares and dry-run, so the controller can assess once and choose again on
//! the actor a signature vouches for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_controller::decide::assess::{Assessment, assess};
use custody_controller::decide::choose::{Declared, choose};
use custody_controller::decide::{Action, decide};
use custody_crds::{Actor, RollbackMode, RollbackSettings, SignalReason, Vocabulary};
use support::*;

fn failing(actor: &str) -> custody_controller::cache::observe::Observed {
    rollout(actor, &[], vec![pod("web-2", 1, false, NOW - 31)])
}

fn settings() -> RollbackSettings {
    RollbackSettings::default()
}

#[test]
fn the_health_of_a_rollout_does_not_depend_on_who_made_it() {
    let vocabulary = Vocabulary::default();
    let (agent, human) = (failing("agent"), failing("human"));
    let by_agent = assess(&agent, &settings(), &vocabulary, None, t(NOW));
    let by_human = assess(&human, &settings(), &vocabulary, None, t(NOW));
    let (Assessment::Regressed(a), Assessment::Regressed(h)) = (&by_agent, &by_human) else {
        panic!("expected two regressions, got {by_agent:?} and {by_human:?}");
    };
    assert_eq!(
        (a.reason, a.detected_at, a.target.map(|r| r.number)),
        (h.reason, h.detected_at, h.target.map(|r| r.number))
    );
    assert_eq!(
        (a.reason, a.target.map(|r| r.number)),
        (SignalReason::NotReady, Some(1))
    );
    assert_eq!(a.findings, h.findings);
}

#[test]
fn a_rollout_still_in_its_window_is_settled_before_anyone_is_asked() {
    let o = rollout("agent", &[], vec![pod("web-2", 1, false, NOW - 10)]);
    let a = assess(&o, &settings(), &Vocabulary::default(), None, t(NOW));
    assert!(
        matches!(a, Assessment::Settled(Action::Wait { .. })),
        "{a:?}"
    );
}

#[test]
fn the_choice_is_made_on_the_actor_believed() {
    let vocabulary = Vocabulary::default();
    let o = failing("agent");
    let Assessment::Regressed(regression) = assess(&o, &settings(), &vocabulary, None, t(NOW))
    else {
        panic!("expected a regression");
    };
    let declared = Declared::of(regression.current, &vocabulary);
    assert_eq!(declared.actor, Some(Actor::Agent));
    // As a required signature that does not verify leaves it: no actor believed.
    let unbelieved = Declared {
        actor: None,
        ..declared
    };
    let cases = [
        ("the declared agent", declared, false, "revert"),
        ("no actor believed", unbelieved, false, "alert"),
        ("the declared agent, dry run", declared, true, "dry run"),
        (
            "the declared agent, rollback: alert",
            Declared {
                mode: RollbackMode::Alert,
                ..declared
            },
            false,
            "alert",
        ),
        (
            "the declared agent, rollback: unsafe",
            Declared {
                mode: RollbackMode::Unsafe,
                ..declared
            },
            false,
            "alert",
        ),
    ];
    for (situation, declared, dry_run, expected) in cases {
        let got = match choose(&regression, declared, &settings(), dry_run) {
            Action::Revert(_) => "revert",
            Action::Alert(v) if v.dry_run => "dry run",
            Action::Alert(_) => "alert",
            other => panic!("{situation}: {other:?}"),
        };
        assert_eq!(got, expected, "{situation}");
    }
}

#[test]
fn deciding_is_assessing_then_choosing_on_the_declared_actor() {
    let vocabulary = Vocabulary::default();
    for actor in ["agent", "human", "pipeline"] {
        let o = failing(actor);
        let Assessment::Regressed(regression) = assess(&o, &settings(), &vocabulary, None, t(NOW))
        else {
            panic!("expected a regression");
        };
        let chosen = choose(
            &regression,
            Declared::of(regression.current, &vocabulary),
            &settings(),
            false,
        );
        assert_eq!(
            chosen,
            decide(&o, &settings(), &vocabulary, false, t(NOW)),
            "{actor}"
        );
    }
}
