//! The rollback decision: a pure function of the observed rollout (the Nodes its Pods run on
//! included), the governing policy's settings, the vocabulary and the clock.

use std::time::Duration;

use custody_crds::{
    Actor, AnnotationKey, RollbackMode, RollbackSettings, SignalReason, Vocabulary,
};
use jiff::Timestamp;

use crate::attribution::{self, Excuse};
use crate::health::{Finding, findings};
use crate::observe::{Observed, Revision};

pub use custody_crds::record::marks;

/// What to do about one workload.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Nothing to do until something changes.
    Nothing {
        /// Why.
        why: String,
    },
    /// Look again after `after`, or sooner if something changes.
    Wait {
        /// When a window closes.
        after: Duration,
        /// Why.
        why: String,
    },
    /// The current revision's Pods have been unready past the window, but not by its doing
    /// (their Node is down, the cluster is evicting or deleting them, or the previous
    /// revision's Pods failed at the same time): neither revert nor alert; look again after
    /// `after`, or sooner if something changes.
    NotAttributed {
        /// The revision not blamed.
        revision: Revision,
        /// Why, each reason once.
        reasons: Vec<Excuse>,
        /// When a window closes.
        after: Duration,
        /// Why, in words.
        why: String,
    },
    /// Mark the current revision healthy: it becomes the target of later reverts.
    MarkHealthy {
        /// The ReplicaSet or ControllerRevision.
        revision: String,
    },
    /// Revert to `to`.
    Revert(Verdict),
    /// Report the regression without touching the spec.
    Alert(Verdict),
}

/// Why a regressed revision is reverted or reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// The regressed revision.
    pub from: Revision,
    /// The revision to go back to, if one is known healthy.
    pub to: Option<Revision>,
    /// The first confirmed signal's reason.
    pub reason: SignalReason,
    /// Every finding.
    pub findings: Vec<Finding>,
    /// When the regression was confirmed.
    pub detected_at: Timestamp,
    /// Why a revert or only an alert, in words.
    pub explanation: String,
    /// Whether this is a revert that dry-run mode turned into a report.
    pub dry_run: bool,
    /// The key that vouched for the regressed revision's provenance, when its policy has
    /// `spec.signatures` (set by the caller, which verifies).
    pub attested_by: Option<String>,
}

/// The controller's own marks, under the vocabulary prefix.
pub fn mark(vocabulary: &Vocabulary, name: &str) -> String {
    format!("{}{name}", vocabulary.prefix())
}

/// Decides what to do about one workload's rollout.
pub fn decide(
    observed: &Observed,
    settings: &RollbackSettings,
    vocabulary: &Vocabulary,
    global_dry_run: bool,
    now: Timestamp,
) -> Action {
    let d = &observed.workload;
    if d.paused {
        return Action::Nothing {
            why: "the Deployment is paused".into(),
        };
    }
    if d.observed_generation < d.generation {
        return Action::Wait {
            after: Duration::from_secs(1),
            why: format!(
                "the {} controller has not observed the latest spec yet",
                d.kind.as_str()
            ),
        };
    }
    let Some(current) = observed.revisions.first() else {
        return Action::Nothing {
            why: "no revision yet".into(),
        };
    };
    if current.fingerprint != d.template_fingerprint {
        return Action::Wait {
            after: Duration::from_secs(1),
            why: format!(
                "the newest revision does not carry the {}'s template yet",
                d.kind.as_str()
            ),
        };
    }
    let marked = |rev: &Revision, name: &str| rev.annotations.contains_key(&mark(vocabulary, name));
    if marked(current, marks::REVERTED) {
        return Action::Nothing {
            why: format!(
                "revision {} was reverted once and re-admitted since; Custody does not revert it again",
                current.number
            ),
        };
    }
    if marked(current, marks::ALERTED) {
        return Action::Nothing {
            why: format!("revision {} was already reported", current.number),
        };
    }
    // Going back means going to other code: a revision that differs from the current one only
    // by a restart (`kubectl rollout restart`) runs the same.
    let target = observed
        .revisions
        .iter()
        .skip(1)
        .find(|r| marked(r, marks::HEALTHY_SINCE) && r.code() != current.code());
    let judged = attribution::attribute(
        observed,
        &current.pod_key,
        target.map(|t| t.pod_key.as_str()),
        settings,
    );
    // Pods on their way out (deleted, evicted, preempted) are no longer replicas of it.
    let pods: Vec<_> = judged
        .current
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !p.terminating && !p.disrupted)
        .collect();
    let found = findings(d, &judged, settings, now);
    let confirmed: Vec<&Finding> = found.iter().filter(|f| f.confirmed(now)).collect();

    if confirmed.is_empty() {
        // A StatefulSet's partition keeps that many replicas at older revisions on purpose.
        let complete = d.updated_replicas >= d.replicas - d.partition
            && d.total_replicas - d.updated_replicas <= d.partition
            && d.available_replicas >= d.replicas
            && pods.iter().all(|p| p.ready);
        if complete {
            if marked(current, marks::HEALTHY_SINCE) {
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
            return match healthy_at {
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
            };
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
        return match next {
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
        };
    }

    let first = confirmed
        .iter()
        .min_by_key(|f| (f.confirmed_at, f.reason))
        .map_or(SignalReason::NotReady, |f| f.reason);
    let detected_at = confirmed
        .iter()
        .map(|f| f.confirmed_at)
        .min()
        .unwrap_or(now);
    let value = |key: AnnotationKey| current.annotations.get(vocabulary.key(key));
    let actor = value(AnnotationKey::Actor).and_then(|a| a.parse::<Actor>().ok());
    let mode = value(AnnotationKey::Rollback)
        .and_then(|m| m.parse::<RollbackMode>().ok())
        .unwrap_or_default();
    let mut verdict = Verdict {
        from: current.clone(),
        to: target.cloned(),
        reason: first,
        findings: found.clone(),
        detected_at,
        explanation: String::new(),
        dry_run: false,
        attested_by: None,
    };
    let actor_word = actor.map_or("an undeclared actor", Actor::as_str);
    if current.restart_free.is_some()
        && let Some(same) = observed
            .revisions
            .iter()
            .skip(1)
            .find(|r| marked(r, marks::HEALTHY_SINCE) && r.code() == current.code())
    {
        verdict.explanation = format!(
            "revision {} is a restart of revision {}, which was healthy with the same code; the regression is not the revision's doing (reverting would run the same code again); alert only",
            current.number, same.number
        );
        return Action::Alert(verdict);
    }
    let why_alert = match (mode, actor) {
        (RollbackMode::Unsafe, _) => Some("the revision is marked rollback: unsafe (an irreversible change); alert only, never revert".to_string()),
        (RollbackMode::Alert, _) => Some("the revision is marked rollback: alert".to_string()),
        (_, Some(a)) if settings.revert_actors.contains(&a) => None,
        _ => Some(format!(
            "revision {} was made by {actor_word}; the policy reverts only {:?}",
            current.number,
            settings.revert_actors.iter().map(|a| a.as_str()).collect::<Vec<_>>()
        )),
    };
    if let Some(why) = why_alert {
        verdict.explanation = why;
        return Action::Alert(verdict);
    }
    let Some(to) = &verdict.to else {
        verdict.explanation = format!(
            "revision {} regressed but no earlier revision is known healthy (never marked, or pruned by revisionHistoryLimit); alert only",
            current.number
        );
        return Action::Alert(verdict);
    };
    let explanation = format!(
        "revision {} by {actor_word} regressed ({}); reverting to revision {}, the last known healthy",
        current.number,
        first.as_str(),
        to.number
    );
    if global_dry_run || settings.dry_run {
        verdict.explanation = format!("dry run: {explanation}");
        verdict.dry_run = true;
        return Action::Alert(verdict);
    }
    verdict.explanation = explanation;
    Action::Revert(verdict)
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    let d = at.duration_since(now);
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(0).max(100))
}
