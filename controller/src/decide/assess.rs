//! What the rollout's health shows, whoever made the revision: settled (nothing to do yet, wait,
//! mark healthy, or a failure not attributed to the revision), or regressed, with the revision to
//! go back to. Pure: a function of the cached rollout, the policy's settings, the vocabulary and
//! the clock. Who made the revision and what it allows are [`choose`](super::choose::choose)'s.

use std::time::Duration;

use custody_crds::analysis::{AnalysisPhase, AnalysisReport};
use custody_crds::{RollbackSettings, SignalReason, Vocabulary};
use jiff::Timestamp;

use crate::cache::observe::{Observed, PodState, Revision, WorkloadState};
use crate::keys::{mark, marks};

use super::action::Action;
use super::analysis::Progress;
use super::attribution::{self, Attribution};
use super::health::{Finding, findings};

/// What the rollout's health shows.
#[derive(Clone, Debug, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "made once per decision and matched at once; boxing would add an allocation to every reconcile"
)]
pub enum Assessment<'o> {
    /// No regression to answer: the action stands whoever made the revision.
    Settled(Action),
    /// The current revision regressed: revert or alert is
    /// [`choose`](super::choose::choose)'s to say.
    Regressed(Regression<'o>),
}

/// A confirmed regression of the current revision, with what answering it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Regression<'o> {
    /// The regressed revision.
    pub current: &'o Revision,
    /// The newest earlier revision known healthy that runs other code, if any.
    pub target: Option<&'o Revision>,
    /// When the current revision only restarts one known healthy with the same code, that one:
    /// reverting would run the same code again.
    pub restart_of: Option<&'o Revision>,
    /// The first confirmed signal's reason.
    pub reason: SignalReason,
    /// Every finding, confirmed or not.
    pub findings: Vec<Finding>,
    /// When the regression was confirmed.
    pub detected_at: Timestamp,
    /// The revision's metric analysis, when it has one.
    pub analysis: Option<AnalysisReport>,
}

/// Judges one workload's rollout from the cache and, under a policy with metric analysis, the
/// current revision's `analysis` so far.
pub fn assess<'o>(
    observed: &'o Observed,
    settings: &RollbackSettings,
    vocabulary: &Vocabulary,
    analysis: Option<&Progress>,
    now: Timestamp,
) -> Assessment<'o> {
    if let Some(action) = catching_up(&observed.workload, vocabulary) {
        return Assessment::Settled(action);
    }
    let Some(current) = observed.revisions.first() else {
        return Assessment::Settled(Action::Nothing {
            why: "no revision yet".into(),
        });
    };
    if let Some(action) = done_with(current, &observed.workload, vocabulary) {
        return Assessment::Settled(action);
    }
    let marked = |rev: &Revision, name: &str| rev.marked(vocabulary, name);
    let target = target(observed, vocabulary);
    let judged = attribution::attribute(
        observed,
        &current.pod_key,
        target.map(|t| t.pod_key.as_str()),
        settings,
    );
    let analysis = analysis.filter(|p| p.revision == current.name);
    let mut found = findings(&observed.workload, &judged, settings, now);
    found.extend(analysis.and_then(metric_finding));
    let confirmed: Vec<&Finding> = found.iter().filter(|f| f.confirmed(now)).collect();
    if confirmed.is_empty() {
        let healthy = marked(current, marks::HEALTHY_SINCE);
        let gate = settings
            .analysis
            .as_ref()
            .filter(|_| super::analysis::wanted(observed, vocabulary).is_some())
            .and_then(|spec| analysis_gate(current, analysis, spec.interval_seconds));
        let action = settled(
            &observed.workload,
            current,
            healthy,
            &judged,
            &found,
            settings,
            now,
        );
        // A revision is the target of later reverts only once its analysis has passed too.
        return Assessment::Settled(match (action, gate) {
            (Action::MarkHealthy { .. }, Some(wait)) => wait,
            (action, _) => action,
        });
    }
    let reason = confirmed
        .iter()
        .min_by_key(|f| (f.confirmed_at, f.reason))
        .map_or(SignalReason::NotReady, |f| f.reason);
    let detected_at = confirmed
        .iter()
        .map(|f| f.confirmed_at)
        .min()
        .unwrap_or(now);
    let restart_of = current.restart_free.as_ref().and_then(|_| {
        observed
            .revisions
            .iter()
            .skip(1)
            .find(|r| marked(r, marks::HEALTHY_SINCE) && r.code() == current.code())
    });
    Assessment::Regressed(Regression {
        current,
        target,
        restart_of,
        reason,
        findings: found,
        detected_at,
        analysis: analysis.map(Progress::report),
    })
}

/// The analysis's confirmed failure, as a finding against the revision.
fn metric_finding(progress: &Progress) -> Option<Finding> {
    let (metric, at) = progress.failed()?;
    let last = metric
        .failing
        .last()
        .map_or(String::new(), |f| format!(": {}", f.why));
    Some(Finding {
        reason: SignalReason::MetricAnalysis,
        message: format!(
            "metric {} failed {} checks in a row{last}",
            metric.name, metric.standing.failing_in_a_row
        ),
        since: metric
            .failing
            .first()
            .and_then(|f| f.at.parse().ok())
            .unwrap_or(at),
        confirmed_at: at,
        pod: None,
        container: None,
    })
}

/// What holds a complete rollout back from being marked healthy while its analysis has not
/// passed: a wait of one interval, saying where the analysis stands.
fn analysis_gate(
    current: &Revision,
    analysis: Option<&Progress>,
    interval_seconds: u32,
) -> Option<Action> {
    let why = match analysis.map(|p| (p.phase(), p.checks)) {
        Some((AnalysisPhase::Passed, _)) => return None,
        Some((phase, checks)) => format!(
            "revision {} is available; its metric analysis is {phase:?} after {checks} checks",
            current.number
        ),
        None => format!(
            "revision {} is available; its metric analysis has not started",
            current.number
        ),
    };
    Some(Action::Wait {
        after: Duration::from_secs(u64::from(interval_seconds)),
        why,
    })
}

/// The revision a regression goes back to, and a metric's baseline is measured on: the newest
/// earlier one known healthy that runs other code. Going back means going to other code: a
/// revision that differs from the current one only by a restart (`kubectl rollout restart`)
/// runs the same.
pub fn target<'o>(observed: &'o Observed, vocabulary: &Vocabulary) -> Option<&'o Revision> {
    let current = observed.revisions.first()?;
    observed
        .revisions
        .iter()
        .skip(1)
        .find(|r| r.marked(vocabulary, marks::HEALTHY_SINCE) && r.code() != current.code())
}

/// What to do while the workload's controller has not caught up with its spec. A Deployment a
/// person paused is theirs to resume; one Custody holds after its first step is judged.
fn catching_up(d: &WorkloadState, vocabulary: &Vocabulary) -> Option<Action> {
    if d.paused && !d.annotations.contains_key(&mark(vocabulary, marks::HELD)) {
        return Some(Action::Nothing {
            why: "the Deployment is paused".into(),
        });
    }
    (d.observed_generation < d.generation).then(|| Action::Wait {
        after: Duration::from_secs(1),
        why: format!(
            "the {} controller has not observed the latest spec yet",
            d.kind.as_str()
        ),
    })
}

/// What to do when the newest revision is not yet the workload's, or Custody has answered it
/// already (reverted or reported it).
fn done_with(current: &Revision, d: &WorkloadState, vocabulary: &Vocabulary) -> Option<Action> {
    if current.fingerprint != d.template_fingerprint {
        return Some(Action::Wait {
            after: Duration::from_secs(1),
            why: format!(
                "the newest revision does not carry the {}'s template yet",
                d.kind.as_str()
            ),
        });
    }
    let marked = |name: &str| current.annotations.contains_key(&mark(vocabulary, name));
    if marked(marks::REVERTED) {
        return Some(Action::Nothing {
            why: format!(
                "revision {} was reverted once and re-admitted since; Custody does not revert it again",
                current.number
            ),
        });
    }
    marked(marks::ALERTED).then(|| Action::Nothing {
        why: format!("revision {} was already reported", current.number),
    })
}

/// What to do when no signal is confirmed: mark the revision healthy once its rollout is
/// complete and stays so, else wait for the next window, or hold a failure against no one.
fn settled(
    d: &WorkloadState,
    current: &Revision,
    healthy: bool,
    judged: &Attribution<'_>,
    found: &[Finding],
    settings: &RollbackSettings,
    now: Timestamp,
) -> Action {
    // Pods on their way out (deleted, evicted, preempted) are no longer replicas of it.
    let pods: Vec<&PodState> = judged
        .current
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !p.terminating && !p.disrupted)
        .collect();
    // A StatefulSet's partition keeps that many replicas at older revisions on purpose.
    let complete = d.updated_replicas >= d.replicas - d.partition
        && d.total_replicas - d.updated_replicas <= d.partition
        && d.available_replicas >= d.replicas
        && pods.iter().all(|p| p.ready);
    if complete {
        return complete_rollout(current, healthy, &pods, settings, now);
    }
    let next = found
        .iter()
        .map(|f| f.confirmed_at)
        .chain(judged.next_excused(settings, now))
        .min();
    let reasons = judged.not_attributed(settings, now);
    if !reasons.is_empty() {
        let words: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        return Action::NotAttributed {
            revision: current.clone(),
            after: next.map_or(Duration::from_secs(30), |at| until(now, at)),
            why: format!(
                "pods of revision {} are not Ready, but not by its doing ({}); not attributed",
                current.number,
                words.join(", ")
            ),
            reasons,
        };
    }
    match next {
        Some(next) => Action::Wait {
            after: until(now, next),
            why: format!(
                "revision {} is rolling out; a signal is within its window",
                current.number
            ),
        },
        None => Action::Wait {
            after: Duration::from_secs(30),
            why: format!("revision {} is rolling out", current.number),
        },
    }
}

/// A complete rollout: healthy once its Pods have stayed Ready for `healthyAfterSeconds`.
fn complete_rollout(
    current: &Revision,
    healthy: bool,
    pods: &[&PodState],
    settings: &RollbackSettings,
    now: Timestamp,
) -> Action {
    if healthy {
        return Action::Nothing {
            why: format!("revision {} is healthy", current.number),
        };
    }
    let ready_since = pods
        .iter()
        .filter_map(|p| p.ready_changed)
        .max()
        .or(current.created);
    let healthy_at = ready_since.map(|t| {
        t.checked_add(jiff::SignedDuration::from_secs(i64::from(
            settings.healthy_after_seconds,
        )))
        .unwrap_or(t)
    });
    match healthy_at {
        Some(at) if at > now => Action::Wait {
            after: until(now, at),
            why: format!(
                "revision {} is available; healthy once it stays so",
                current.number
            ),
        },
        _ => Action::MarkHealthy {
            revision: current.name.clone(),
        },
    }
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(0).max(100))
}
