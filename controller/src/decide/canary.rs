//! The guarded first step of an agent's rollout (`spec.agents.canary`): hold it once the new
//! revision has its first Pods, and resume it once those Pods have stayed Ready for the hold and
//! the analysis has passed. A regression meanwhile is [`assess`](super::assess::assess)'s, and
//! the revert lifts the hold with the template. Pure: the writers carry the step out.
//!
//! Custody's hold is told apart from a person's by the `held` mark on the workload: a
//! Deployment someone else paused is left alone, and the hold names the revision it holds, so a
//! hold whose revision is no longer the workload's (a person applied another template; a
//! paused Deployment would never roll it out) is released.

use std::time::Duration;

use custody_crds::analysis::{AnalysisPhase, AnalysisSpec};
use custody_crds::{Actor, Canary, Vocabulary, WorkloadKind};
use jiff::{SignedDuration, Timestamp};

use crate::cache::observe::{Observed, Revision, WorkloadState};
use crate::keys::{mark, marks};

use super::analysis::Progress;

/// What the guarded first step asks of the writers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Hold the rollout at `revision`: pause the Deployment, or keep the StatefulSet's
    /// partition at `partition` (its last ordinal).
    Hold {
        /// The ReplicaSet or ControllerRevision held.
        revision: String,
        /// The revision's number, for words.
        number: i64,
        /// The partition that holds a StatefulSet after its first Pod.
        partition: i32,
    },
    /// Held: look again after `after`.
    Holding {
        /// When the hold may end, or the next check.
        after: Duration,
        /// Why, in words.
        why: String,
    },
    /// End the hold on `revision`: resume the rollout.
    Release {
        /// The revision held.
        revision: String,
        /// Why, in words.
        why: String,
    },
}

/// What the policy says about holds, and what the revision's analysis shows.
#[derive(Clone, Copy, Debug)]
pub struct Guard<'a> {
    /// The policy's `spec.agents.canary`.
    pub canary: Option<&'a Canary>,
    /// The policy's `spec.rollback.analysis`.
    pub analysis: Option<&'a AnalysisSpec>,
    /// The current revision's analysis so far.
    pub progress: Option<&'a Progress>,
    /// Dry run (the controller's or the policy's): record, never write; no new hold.
    pub dry_run: bool,
}

/// The step due for `observed`'s rollout, if any; `actor` is the current revision's, as
/// believed.
pub fn step(
    observed: &Observed,
    guard: Guard<'_>,
    actor: Option<Actor>,
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Option<Step> {
    let w = &observed.workload;
    let current = observed.revisions.first()?;
    let held = w.annotations.get(&mark(vocabulary, marks::HELD));
    let on_template = current.fingerprint == w.template_fingerprint;
    let holdable = guard.canary.is_some()
        && !guard.dry_run
        && on_template
        && actor == Some(Actor::Agent)
        && first_step(observed, current, vocabulary);
    match held {
        Some(name) if *name == current.name && on_template => {
            Some(while_held(observed, current, guard, vocabulary, now))
        }
        Some(_) if holdable => Some(hold(w, current)),
        Some(name) => Some(Step::Release {
            revision: name.clone(),
            why: format!(
                "the held revision {name} is no longer the {}'s own",
                w.kind.as_str()
            ),
        }),
        None if holdable && !(w.paused && w.kind == WorkloadKind::Deployment) => {
            Some(hold(w, current))
        }
        None => None,
    }
}

/// The partition a held StatefulSet goes back to when the hold ends: what it had before.
pub fn held_partition(w: &WorkloadState, vocabulary: &Vocabulary) -> i32 {
    w.annotations
        .get(&mark(vocabulary, marks::HELD_PARTITION))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn hold(w: &WorkloadState, current: &Revision) -> Step {
    Step::Hold {
        revision: current.name.clone(),
        number: current.number,
        partition: (w.replicas - 1).max(0),
    }
}

/// Whether the current revision's rollout is at its first step: a Deployment or StatefulSet
/// rolling out an unjudged revision that replaces one known healthy, never released, and not
/// yet past the replicas of its first step.
fn first_step(observed: &Observed, current: &Revision, vocabulary: &Vocabulary) -> bool {
    let w = &observed.workload;
    if !matches!(w.kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet) {
        return false;
    }
    let released = w.annotations.get(&mark(vocabulary, marks::RELEASED)) == Some(&current.name);
    let replaces_healthy = observed
        .revisions
        .iter()
        .skip(1)
        .any(|r| r.marked(vocabulary, marks::HEALTHY_SINCE));
    // From the Pods, not the workload's status: when the new ReplicaSet appears the status still
    // describes the previous rollout, complete, and waiting for it to catch up would let the
    // first step's Pods turn Ready, and the next step start, before the hold.
    let on_current = observed
        .pods
        .iter()
        .filter(|p| p.revision == current.pod_key && !p.terminating)
        .count();
    let complete = i32::try_from(on_current).unwrap_or(i32::MAX) >= w.replicas;
    !current.judged(vocabulary) && !released && replaces_healthy && !complete && w.replicas > 1
}

/// While held: release once the first Pods have stayed Ready for the hold and the analysis has
/// passed; else look again when the hold may end.
fn while_held(
    observed: &Observed,
    current: &Revision,
    guard: Guard<'_>,
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Step {
    if current.marked(vocabulary, marks::ALERTED) {
        // A regression reported, not reverted (a person's call, `rollback: alert`, dry run):
        // the hold keeps it at its first step until a person resumes or rolls back.
        return Step::Holding {
            after: Duration::from_secs(300),
            why: format!(
                "revision {} regressed and was reported while held; a person resumes it (kubectl custody resume) or rolls it back",
                current.number
            ),
        };
    }
    let pods: Vec<_> = observed
        .pods
        .iter()
        .filter(|p| p.revision == current.pod_key && !p.terminating)
        .collect();
    let Some(canary) = guard.canary else {
        return Step::Release {
            revision: current.name.clone(),
            why: "the policy no longer guards agents' first steps".into(),
        };
    };
    let check_every = Duration::from_secs(
        guard
            .analysis
            .map_or(5, |a| u64::from(a.interval_seconds.min(5))),
    );
    if pods.is_empty() || !pods.iter().all(|p| p.ready) {
        return Step::Holding {
            after: check_every,
            why: format!(
                "revision {} is held after its first step; its Pods are not all Ready",
                current.number
            ),
        };
    }
    let ready_since = pods.iter().filter_map(|p| p.ready_changed).max();
    let until = ready_since
        .or(current.created)
        .and_then(|t| {
            t.checked_add(SignedDuration::from_secs(i64::from(canary.hold_seconds)))
                .ok()
        })
        .unwrap_or(now);
    if until > now {
        let left = until.duration_since(now).as_millis().max(100);
        return Step::Holding {
            after: Duration::from_millis(u64::try_from(left).unwrap_or(100)),
            why: format!(
                "revision {} is held after its first step for {}s of readiness",
                current.number, canary.hold_seconds
            ),
        };
    }
    if guard.analysis.is_some() {
        let phase = guard.progress.map(Progress::phase);
        if phase != Some(AnalysisPhase::Passed) {
            return Step::Holding {
                after: check_every,
                why: format!(
                    "revision {} is held after its first step until its metric analysis passes ({})",
                    current.number,
                    phase.map_or("not started".to_string(), |p| format!("{p:?}"))
                ),
            };
        }
    }
    Step::Release {
        revision: current.name.clone(),
        why: format!(
            "revision {}'s first step stayed Ready for {}s{}",
            current.number,
            canary.hold_seconds,
            if guard.analysis.is_some() {
                " and its metric analysis passed"
            } else {
                ""
            }
        ),
    }
}
