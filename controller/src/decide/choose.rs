//! Revert or alert, once a regression is confirmed ([`assess`](super::assess::assess)): from
//! what the revision declares (its actor and rollback mode), the revision to go back to, and
//! dry-run. Pure. Under `spec.signatures` the caller passes the actor a key vouched for instead
//! of the declared one, so this is the only step that waits for the attestation.

use custody_crds::{Actor, AnnotationKey, RollbackMode, RollbackSettings, Vocabulary};

use crate::cache::observe::Revision;

use super::action::{Action, Verdict};
use super::assess::Regression;

/// What a revision says about itself that the choice reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// Who made it, as believed: the declared actor, or none when a required signature does
    /// not vouch for it.
    pub actor: Option<Actor>,
    /// Whether it may be reverted.
    pub mode: RollbackMode,
}

impl Declared {
    /// What `revision`'s annotations declare, taken at its word.
    pub fn of(revision: &Revision, vocabulary: &Vocabulary) -> Self {
        let value = |key: AnnotationKey| revision.annotations.get(vocabulary.key(key));
        Self {
            actor: value(AnnotationKey::Actor).and_then(|a| a.parse::<Actor>().ok()),
            mode: value(AnnotationKey::Rollback)
                .and_then(|m| m.parse::<RollbackMode>().ok())
                .unwrap_or_default(),
        }
    }
}

/// Reverts the regression, or reports it when the revision is only a restart of healthy code,
/// may not be reverted, was made by an actor the policy does not revert, has nothing healthy
/// to go back to, or dry-run is on (globally or in the policy).
pub fn choose(
    regression: &Regression<'_>,
    declared: Declared,
    settings: &RollbackSettings,
    global_dry_run: bool,
) -> Action {
    let current = regression.current;
    let mut verdict = Verdict {
        from: current.clone(),
        to: regression.target.cloned(),
        reason: regression.reason,
        findings: regression.findings.clone(),
        detected_at: regression.detected_at,
        explanation: String::new(),
        dry_run: false,
        attested_by: None,
        analysis: regression.analysis.clone(),
    };
    let actor_word = declared.actor.map_or("an undeclared actor", Actor::as_str);
    if let Some(same) = regression.restart_of {
        verdict.explanation = format!(
            "revision {} is a restart of revision {}, which was healthy with the same code; the regression is not the revision's doing (reverting would run the same code again); alert only",
            current.number, same.number
        );
        return Action::Alert(verdict);
    }
    let why_alert = match (declared.mode, declared.actor) {
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
        regression.reason.as_str(),
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
