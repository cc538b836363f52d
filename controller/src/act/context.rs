//! What every writer needs ([`Context`]) and why a reconcile failed ([`Error`]).

use std::sync::{Arc, Mutex};

use custody_crds::{CustodyPolicy, CustodyTeam, Vocabulary};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::cache::index::Cache;
use crate::decide::attribution::Ledger;
use crate::measure::analyses::Analyses;
use crate::metrics::{Metrics, ReconcileError};

use super::agent_status::AgentLedger;
use super::notify::dispatch::Oncall;

/// What reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Workloads, revisions and Pods, reduced.
    pub cache: Arc<Cache>,
    /// CustodyPolicies.
    pub policies: Store<CustodyPolicy>,
    /// Namespace metadata, for policies' namespace selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// CustodyTeams: owners' on-call and notification targets. Empty when the CRD is not
    /// installed.
    pub teams: Store<CustodyTeam>,
    /// Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Record and alert instead of reverting, whatever the policies say.
    pub dry_run: bool,
    /// Whether this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
    /// Where notices are queued for the notification loop; `None` when notifications are off.
    pub oncall: Option<Oncall>,
    /// The workloads whose failing revision is not blamed, and why, as last reported.
    pub not_attributed: Mutex<Ledger>,
    /// Each workload's part of the agents' summaries, for the webhook's budgets.
    pub agents: Arc<AgentLedger>,
    /// The metric analyses in progress.
    pub analyses: Arc<Analyses>,
}

/// Why a reconcile failed. The variant names are the metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Someone changed the workload or its target revision between the decision and the write.
    #[error("the workload changed since the decision; deciding again")]
    Conflict,
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Api(#[source] kube::Error),
    /// A patch could not be built.
    #[error("cannot build the patch: {0}")]
    Encode(#[from] serde_json::Error),
    /// A signed revision's attestation, to be copied onto it with a mark, could not be read.
    #[error("cannot read the revision's attestation to keep it with the mark; retrying")]
    AttestationUnreadable,
}

impl Error {
    /// The metric label.
    pub const fn label(&self) -> ReconcileError {
        match self {
            Error::Conflict => ReconcileError::Conflict,
            Error::Api(_) => ReconcileError::Api,
            Error::Encode(_) => ReconcileError::Encode,
            Error::AttestationUnreadable => ReconcileError::AttestationUnreadable,
        }
    }
}

/// Whether a write failed because the object changed since the decision.
pub(super) fn is_conflict(error: &kube::Error) -> bool {
    // A failed `test` operation in a JSON patch is answered 422 by the apiserver, a stale
    // resourceVersion 409: both mean "decide again".
    matches!(error, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}
