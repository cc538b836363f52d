//! The rollback decision: a pure function of the observed rollout (the Nodes its Pods run on
//! included), the governing policy's settings, the vocabulary and the clock. It is two steps:
//! [`assess`](mod@assess) judges what the rollout's health shows from the cache ([`health`],
//! with the Pods whose unreadiness is not the revision's doing set apart by [`attribution`]);
//! on a regression, [`choose`](mod@choose) says revert or alert from what the revision
//! declares. Under `spec.signatures` the caller chooses on the actor a key vouched for, after
//! assessing once. Beside it, the pure choices the writers need: which policy governs
//! ([`policy`]), who owns a revision ([`owning_team`]), where notices go ([`route`]), which
//! break-glass revision is due ([`breakglass`]) and where an agent's change request stands
//! ([`changes`]).

pub mod action;
pub mod analysis;
pub mod assess;
pub mod attribution;
pub mod breakglass;
pub mod canary;
pub mod changes;
pub mod choose;
pub mod health;
pub mod oncall;
pub mod owning_team;
pub mod policy;
pub mod route;

pub use action::{Action, Verdict};

use custody_crds::{RollbackSettings, Vocabulary};
use jiff::Timestamp;

use crate::cache::observe::Observed;

use assess::{Assessment, assess};
use choose::{Declared, choose};

/// Decides what to do about one workload's rollout, taking the revision's declared actor at
/// its word.
pub fn decide(
    observed: &Observed,
    settings: &RollbackSettings,
    vocabulary: &Vocabulary,
    global_dry_run: bool,
    now: Timestamp,
) -> Action {
    match assess(observed, settings, vocabulary, None, now) {
        Assessment::Settled(action) => action,
        Assessment::Regressed(regression) => choose(
            &regression,
            Declared::of(regression.current, vocabulary),
            settings,
            global_dry_run,
        ),
    }
}
