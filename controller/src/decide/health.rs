//! Health signals of one revision, from its pods and the workload's status. Pure: the
//! clock comes in as `now`, and which pods' readiness is no evidence comes judged
//! ([`super::attribution`]).

use custody_crds::{RollbackSettings, SignalReason};
use jiff::{SignedDuration, Timestamp};

use crate::cache::observe::{PodState, WorkloadState};

use super::attribution::{Attribution, unready_since};

/// One observation that counts against the revision, with when it started and when it crosses
/// its window (immediately for crash loops and restart thresholds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was observed.
    pub reason: SignalReason,
    /// In words.
    pub message: String,
    /// Since when.
    pub since: Timestamp,
    /// When it counts as a regression.
    pub confirmed_at: Timestamp,
    /// The pod that showed it.
    pub pod: Option<String>,
    /// The container that showed it.
    pub container: Option<String>,
}

impl Finding {
    /// Whether it has crossed its window at `now`.
    pub fn confirmed(&self, now: Timestamp) -> bool {
        self.confirmed_at <= now
    }
}

fn after(since: Timestamp, seconds: u32) -> Timestamp {
    since
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(since)
}

/// Everything that counts against the current revision, whose pods `judged` holds, confirmed
/// or still within its window. Terminating pods do not count: a scale-down is not a
/// regression. An excused pod's containers still count (a crash loop is the revision's
/// wherever it runs), but its readiness does not, neither as NotReady nor as availability.
pub fn findings(
    workload: &WorkloadState,
    judged: &Attribution<'_>,
    settings: &RollbackSettings,
    now: Timestamp,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let live: Vec<_> = judged
        .current
        .iter()
        .filter(|(p, _)| !p.terminating)
        .collect();
    // Unready with no excuse: the only readiness that is evidence.
    let blamed: Vec<&PodState> = live
        .iter()
        .filter(|(p, excuse)| !p.ready && excuse.is_none())
        .map(|(p, _)| *p)
        .collect();
    for (pod, excuse) in &live {
        container_findings(pod, settings, now, &mut out);
        if excuse.is_none()
            && let Some(since) = unready_since(pod)
        {
            out.push(Finding {
                reason: SignalReason::NotReady,
                message: format!("pod has not been Ready since {since}"),
                since,
                confirmed_at: after(since, settings.not_ready_seconds),
                pod: Some(pod.name.clone()),
                container: None,
            });
        }
    }
    // A rollout stalled only by pods that are excused stalled through no fault of the revision.
    let stalled_by_excused = blamed.is_empty() && live.iter().any(|(p, _)| !p.ready);
    if let Some(since) = workload.progress_deadline_exceeded_since
        && !stalled_by_excused
    {
        out.push(Finding {
            reason: SignalReason::ProgressDeadline,
            message: "the Deployment reports Progressing=False (ProgressDeadlineExceeded)".into(),
            since,
            confirmed_at: since,
            pod: None,
            container: None,
        });
    }
    out.extend(availability_drop(workload, judged, &blamed, settings));
    out
}

/// The crash loops, image pulls and restarts of `pod`'s containers: the revision's wherever its
/// Pod runs, so counted whether or not the Pod's readiness is excused.
fn container_findings(
    pod: &PodState,
    settings: &RollbackSettings,
    now: Timestamp,
    out: &mut Vec<Finding>,
) {
    let started = pod.started.unwrap_or(now);
    for c in &pod.containers {
        let container = Some(c.name.clone());
        match c.waiting.as_deref() {
            Some("CrashLoopBackOff") => out.push(Finding {
                reason: SignalReason::CrashLoop,
                message: format!(
                    "container {} is in CrashLoopBackOff after {} restarts",
                    c.name, c.restarts
                ),
                since: started,
                confirmed_at: started.min(now),
                pod: Some(pod.name.clone()),
                container: container.clone(),
            }),
            Some(reason @ ("ImagePullBackOff" | "ErrImagePull" | "InvalidImageName")) => {
                out.push(Finding {
                    reason: SignalReason::ImagePull,
                    message: format!("container {} cannot pull its image ({reason})", c.name),
                    since: started,
                    confirmed_at: after(started, settings.image_pull_seconds),
                    pod: Some(pod.name.clone()),
                    container: container.clone(),
                })
            }
            _ => {}
        }
        if c.restarts >= i32::try_from(settings.restart_threshold).unwrap_or(i32::MAX) {
            out.push(Finding {
                reason: SignalReason::Restarts,
                message: format!(
                    "container {} restarted {} times (threshold {})",
                    c.name, c.restarts, settings.restart_threshold
                ),
                since: started,
                confirmed_at: started.min(now),
                pod: Some(pod.name.clone()),
                container,
            });
        }
    }
}

/// Fewer replicas available than the rollout strategy allows, counting those down through no
/// fault of the revision as available; `blamed` are the revision's unready Pods with no excuse.
fn availability_drop(
    workload: &WorkloadState,
    judged: &Attribution<'_>,
    blamed: &[&PodState],
    settings: &RollbackSettings,
) -> Option<Finding> {
    let floor = workload.replicas - workload.max_unavailable;
    // Replicas down with their Node, or with the previous revision's, are not the revision's
    // to answer for: counted as if available.
    let available = workload
        .available_replicas
        .saturating_add(judged.excused_unavailable)
        .min(workload.replicas.max(workload.available_replicas));
    // Only Deployments report Available=False; for the others the regression starts when the
    // first of the revision's pods went unready. When some of the unavailability is excused,
    // the condition may date from the excused loss (an eviction, a Node): the revision answers
    // only from when its own pods went unready.
    let own_since = blamed
        .iter()
        .filter_map(|p| p.ready_changed.or(p.started))
        .min();
    let partly_excused =
        judged.excused_unavailable > 0 || judged.current.iter().any(|(_, e)| e.is_some());
    let unavailable_since = match (workload.unavailable_since, own_since) {
        (Some(condition), Some(own)) if partly_excused => Some(condition.max(own)),
        (condition, own) => condition.or(own),
    };
    let since = unavailable_since?;
    (available < floor && !blamed.is_empty()).then(|| Finding {
        reason: SignalReason::AvailabilityDrop,
        message: format!(
            "{available} of {} replicas available{}, below the {floor} the rollout strategy allows",
            workload.replicas,
            if judged.excused_unavailable > 0 {
                " (counting those down through no fault of the revision)"
            } else {
                ""
            }
        ),
        since,
        confirmed_at: after(since, settings.not_ready_seconds),
        pod: None,
        container: None,
    })
}
