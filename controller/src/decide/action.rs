//! What the decision says to do about one workload, and why a regressed revision is reverted or
//! reported: plain data, for the writers ([`crate::act`]) to carry out.

use std::time::Duration;

use custody_crds::SignalReason;
use custody_crds::analysis::AnalysisReport;
use jiff::Timestamp;

use crate::cache::observe::Revision;

use super::attribution::Excuse;
use super::health::Finding;

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
    /// The revision's metric analysis, when it had one: the evidence a record carries.
    pub analysis: Option<AnalysisReport>,
}
