//! Health signals of one revision, from its pods and the workload's status. Pure: the
//! clock comes in as `now`.

use custody_crds::{RollbackSettings, SignalReason};
use jiff::{SignedDuration, Timestamp};

use crate::observe::{PodState, WorkloadState};

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

/// Everything that counts against the revision whose pods are `pods` (the current revision's),
/// confirmed or still within its window. Terminating pods do not count: a scale-down is not a
/// regression.
pub fn findings(
    workload: &WorkloadState,
    pods: &[&PodState],
    settings: &RollbackSettings,
    now: Timestamp,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let live: Vec<&&PodState> = pods.iter().filter(|p| !p.terminating).collect();
    for pod in &live {
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
                Some(reason @ ("ImagePullBackOff" | "ErrImagePull" | "InvalidImageName")) => out
                    .push(Finding {
                        reason: SignalReason::ImagePull,
                        message: format!("container {} cannot pull its image ({reason})", c.name),
                        since: started,
                        confirmed_at: after(started, settings.image_pull_seconds),
                        pod: Some(pod.name.clone()),
                        container: container.clone(),
                    }),
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
        if !pod.ready && pod.started.is_some() {
            let since = pod.ready_changed.map_or(started, |t| t.max(started));
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
    if let Some(since) = workload.progress_deadline_exceeded_since {
        out.push(Finding {
            reason: SignalReason::ProgressDeadline,
            message: "the Deployment reports Progressing=False (ProgressDeadlineExceeded)".into(),
            since,
            confirmed_at: since,
            pod: None,
            container: None,
        });
    }
    let floor = workload.replicas - workload.max_unavailable;
    // Only Deployments report Available=False; for the others the regression starts when the
    // first of the revision's pods went unready.
    let unavailable_since = workload.unavailable_since.or_else(|| {
        live.iter()
            .filter(|p| !p.ready)
            .filter_map(|p| p.ready_changed.or(p.started))
            .min()
    });
    if let Some(since) = unavailable_since
        && workload.available_replicas < floor
        && live.iter().any(|p| !p.ready)
    {
        out.push(Finding {
            reason: SignalReason::AvailabilityDrop,
            message: format!(
                "{} of {} replicas available, below the {} the rollout strategy allows",
                workload.available_replicas, workload.replicas, floor
            ),
            since,
            confirmed_at: after(since, settings.not_ready_seconds),
            pod: None,
            container: None,
        });
    }
    out
}
