//! What the engine knows besides the request: the live state the server keeps from watches,
//! or the empty state `custody check` and the audit start from, and the time.

use std::collections::BTreeMap;

use custody_crds::Vocabulary;
use k8s_openapi::jiff::Timestamp;

use crate::approval::ChangeIndex;
use crate::attest::AttestationCache;
use crate::limits::AgentActivity;
use crate::quarantine::QuarantineIndex;
use crate::teams::TeamIndex;

/// What the engine knows besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The annotation keys in force.
    pub vocabulary: &'a Vocabulary,
    /// The labels of the request's namespace, when known. When unknown (a namespace created a
    /// moment ago, or the offline CLI), the namespace is judged by the label the apiserver always
    /// sets, `kubernetes.io/metadata.name`.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Templates the controller reverted.
    pub quarantine: &'a QuarantineIndex,
    /// The time of the request, for signing keys' validity windows and change freezes.
    pub now: Timestamp,
    /// Envelopes already opened, so a re-applied object is not verified twice.
    pub attestations: &'a AttestationCache,
    /// The registered teams, for `ownership: Registered`.
    pub teams: &'a TeamIndex,
    /// A background audit of what runs, not a change: freezes judge changes, so they do not
    /// apply.
    pub background: bool,
    /// The controller's summaries of agents' rollouts and revisions, for `spec.agents.limits`.
    pub activity: &'a AgentActivity,
    /// Change requests, for `spec.agents.approval`.
    pub changes: &'a ChangeIndex,
}
