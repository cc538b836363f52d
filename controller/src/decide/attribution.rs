//! Whether a Pod's readiness is evidence against its revision. A Pod on a Node that is down, a
//! Pod the cluster is evicting, preempting or deleting, and a Pod failing at the same moment as
//! the previous revision's Pods fail is not: its revision did not make it unready, and
//! reverting would not make it ready. Such failures are held against no one; [`Ledger`] keeps
//! the controller from reporting the same one at every look. Pure: Nodes come in as data with
//! the rollout, the clock as `now`.

use std::collections::HashMap;

use custody_crds::RollbackSettings;
use jiff::{SignedDuration, Timestamp};

use crate::cache::compact::Uid;
use crate::cache::node::NodeState;
use crate::cache::observe::{Observed, PodState};

/// Why a Pod's unreadiness is not held against its revision. The order is precedence: a Pod
/// on a lost Node is also evicted and then deleted, and its Node is why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Excuse {
    /// Its Node's Ready condition is not True, the Node carries the unreachable or not-ready
    /// taint, or the Node is gone; or the node lifecycle controller took the Pod's readiness
    /// away while its Node was silent and no kubelet has reported the Pod since (after a
    /// control-plane outage the Node may be back before that happens).
    NodeNotReady,
    /// It is being evicted or preempted (DisruptionTarget, or reason Evicted, Preempting or
    /// Terminated).
    Disruption,
    /// It is being deleted.
    Terminating,
    /// Pods of an earlier revision lost their readiness within the same window.
    SharedWithPreviousRevision,
}

impl Excuse {
    /// Every excuse, in precedence order.
    pub const ALL: [Excuse; 4] = [
        Excuse::NodeNotReady,
        Excuse::Disruption,
        Excuse::Terminating,
        Excuse::SharedWithPreviousRevision,
    ];

    /// The metric label and log field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Excuse::NodeNotReady => "node_not_ready",
            Excuse::Disruption => "disruption",
            Excuse::Terminating => "terminating",
            Excuse::SharedWithPreviousRevision => "shared_with_previous_revision",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Since when a Pod has not been Ready; `None` while it is Ready or before it started (a Pod
/// still pending has no readiness to lose).
pub fn unready_since(pod: &PodState) -> Option<Timestamp> {
    let started = pod.started?;
    (!pod.ready).then(|| pod.ready_changed.map_or(started, |t| t.max(started)))
}

/// Why the Pod itself, whatever its revision, is no evidence: the Node it is bound to is down
/// or gone (the rollout's `nodes` are every Node the cache knows of its Pods), its readiness
/// was taken away with its Node's, or it is leaving.
pub fn excuse(pod: &PodState, nodes: &[NodeState]) -> Option<Excuse> {
    let node_down = pod.readiness_withdrawn
        || pod
            .node
            .is_some_and(|id| !nodes.iter().any(|n| n.id == id && n.up()));
    if node_down {
        Some(Excuse::NodeNotReady)
    } else if pod.disrupted {
        Some(Excuse::Disruption)
    } else if pod.terminating {
        Some(Excuse::Terminating)
    } else {
        None
    }
}

/// The current revision's Pods judged: each with why its readiness does not count, if it does
/// not.
#[derive(Debug)]
pub struct Attribution<'a> {
    /// The current revision's Pods and their excuses.
    pub current: Vec<(&'a PodState, Option<Excuse>)>,
    /// Pods of any revision the workload counts as replicas (not leaving) that are unready
    /// through no fault of a revision: the availability they take away is not the current
    /// revision's doing.
    pub excused_unavailable: i32,
}

/// Judges the Pods of the revision whose Pods are known by `current` in `observed`.
///
/// A current Pod's readiness failure is shared with the previous revision when a Pod of the
/// revision a revert would go back to (known by `previous`: healthy once, so not failing on
/// its own), itself without an excuse, lost its readiness within `not_ready_seconds` of it:
/// both failing at once points at what they share (a dependency, the network), not at what
/// differs, and reverting would not help. Terminating and evicted earlier Pods are no such
/// evidence: a rollout takes them down while the new ones start.
pub fn attribute<'a>(
    observed: &'a Observed,
    current: &str,
    previous: Option<&str>,
    settings: &RollbackSettings,
) -> Attribution<'a> {
    let window = SignedDuration::from_secs(i64::from(settings.not_ready_seconds));
    let own: Vec<Option<Excuse>> = observed
        .pods
        .iter()
        .map(|p| excuse(p, &observed.nodes))
        .collect();
    let previous_failing: Vec<(usize, Timestamp)> = observed
        .pods
        .iter()
        .zip(&own)
        .enumerate()
        .filter(|(_, (p, e))| previous == Some(p.revision.as_str()) && e.is_none())
        .filter_map(|(i, (p, _))| Some((i, unready_since(p)?)))
        .collect();
    let mut excuses = own;
    let mut shared_previous = Vec::new();
    for (i, pod) in observed.pods.iter().enumerate() {
        if pod.revision != current || excuses.get(i).copied().flatten().is_some() {
            continue;
        }
        let Some(since) = unready_since(pod) else {
            continue;
        };
        let together: Vec<usize> = previous_failing
            .iter()
            .filter(|(_, other)| since.duration_since(*other).abs() <= window)
            .map(|(j, _)| *j)
            .collect();
        if !together.is_empty() {
            excuses[i] = Some(Excuse::SharedWithPreviousRevision);
            shared_previous.extend(together);
        }
    }
    for j in shared_previous {
        excuses[j] = Some(Excuse::SharedWithPreviousRevision);
    }
    let excused_unavailable = observed
        .pods
        .iter()
        .zip(&excuses)
        .filter(|(p, e)| {
            !p.ready
                && !p.terminating
                && !p.disrupted
                && matches!(
                    e,
                    Some(Excuse::NodeNotReady | Excuse::SharedWithPreviousRevision)
                )
        })
        .count();
    Attribution {
        current: observed
            .pods
            .iter()
            .zip(excuses)
            .filter(|(p, _)| p.revision == current)
            .collect(),
        excused_unavailable: i32::try_from(excused_unavailable).unwrap_or(i32::MAX),
    }
}

impl Attribution<'_> {
    /// Why readiness failures of the current revision that would have counted against it by
    /// `now` (past `not_ready_seconds`) do not, each reason once, in precedence order.
    pub fn not_attributed(&self, settings: &RollbackSettings, now: Timestamp) -> Vec<Excuse> {
        let window = SignedDuration::from_secs(i64::from(settings.not_ready_seconds));
        let mut reasons: Vec<Excuse> = self
            .current
            .iter()
            .filter_map(|(pod, excuse)| {
                let since = unready_since(pod)?;
                let confirmed = since.checked_add(window).unwrap_or(since) <= now;
                excuse.filter(|_| confirmed)
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        reasons
    }

    /// When the next excused pod crosses the not-ready window: the moment it would have been a
    /// finding, so the controller looks again then (to count it) rather than a fixed while later.
    pub fn next_excused(&self, settings: &RollbackSettings, now: Timestamp) -> Option<Timestamp> {
        let window = SignedDuration::from_secs(i64::from(settings.not_ready_seconds));
        self.current
            .iter()
            .filter(|(_, excuse)| excuse.is_some())
            .filter_map(|(pod, _)| unready_since(pod))
            .map(|since| since.checked_add(window).unwrap_or(since))
            .filter(|at| *at > now)
            .min()
    }
}

/// What the controller last reported as not attributed, per workload: a situation is logged
/// and counted when it begins, not at every reconcile while it lasts. Only workloads in such a
/// situation are kept.
#[derive(Debug, Default)]
pub struct Ledger {
    seen: HashMap<Uid, (String, u8)>,
}

impl Ledger {
    /// Notes that `revision` of `workload` is not blamed for `reasons`; answers the reasons
    /// that are new since the last note (all of them for another revision).
    pub fn note(&mut self, workload: Uid, revision: &str, reasons: &[Excuse]) -> Vec<Excuse> {
        let bits = reasons.iter().fold(0u8, |b, r| b | r.bit());
        let before = match self.seen.get(&workload) {
            Some((r, b)) if r == revision => *b,
            _ => 0,
        };
        self.seen.insert(workload, (revision.to_string(), bits));
        Excuse::ALL
            .into_iter()
            .filter(|r| bits & r.bit() != 0 && before & r.bit() == 0)
            .collect()
    }

    /// Forgets `workload`: its situation is over (or it is gone), so a recurrence is new.
    pub fn forget(&mut self, workload: Uid) {
        self.seen.remove(&workload);
    }

    /// How many workloads are in such a situation.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_situation_is_reported_when_it_begins_and_again_only_after_it_ended() {
        let mut ledger = Ledger::default();
        let node = [Excuse::NodeNotReady];
        assert_eq!(ledger.note(1, "web-2", &node), node);
        assert!(ledger.note(1, "web-2", &node).is_empty(), "still the same");
        assert_eq!(
            ledger.note(1, "web-2", &[Excuse::NodeNotReady, Excuse::Disruption]),
            [Excuse::Disruption],
            "only what is new"
        );
        assert_eq!(ledger.note(1, "web-3", &node), node, "another revision");
        assert_eq!(ledger.note(2, "db-1", &node), node, "another workload");
        ledger.forget(1);
        assert_eq!(ledger.note(1, "web-3", &node), node, "it recurred");
        assert_eq!(ledger.len(), 2);
    }

    #[test]
    fn labels_are_fixed_strings() {
        let labels: Vec<&str> = Excuse::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            labels,
            [
                "node_not_ready",
                "disruption",
                "terminating",
                "shared_with_previous_revision"
            ]
        );
    }
}
