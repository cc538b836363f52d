//! `RollbackRecord`: the audit trail of one revert or alert, and the quarantine entry the
//! webhook reads to keep a reverted template out.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisReport;
use crate::policy::WorkloadKind;
use crate::vocabulary::Actor;

/// What the controller observed and did about one regressed revision.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "custody.dev",
    version = "v1alpha1",
    kind = "RollbackRecord",
    plural = "rollbackrecords",
    shortname = "rbr",
    namespaced,
    status = "RollbackRecordStatus",
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workload.name"}"#,
    printcolumn = r#"{"name":"Action","type":"string","jsonPath":".spec.action"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.reason"}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.from.revision"}"#,
    printcolumn = r#"{"name":"To","type":"string","jsonPath":".spec.to.revision"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.from.agent"}"#,
    printcolumn = r#"{"name":"Team","type":"string","jsonPath":".spec.team","priority":1}"#,
    printcolumn = r#"{"name":"Lifted-By","type":"string","jsonPath":".status.lifted.by","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecordSpec {
    /// The workload whose revision regressed.
    pub workload: WorkloadRef,
    /// What the controller did.
    pub action: RecordAction,
    /// The signal that confirmed the regression.
    pub reason: SignalReason,
    /// The regressed revision.
    pub from: RevisionSnapshot,
    /// The revision reverted to; absent for an alert with no healthy revision to go back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<RevisionSnapshot>,
    /// Every signal observed, with its time and the pod that showed it.
    #[serde(default)]
    pub signals: Vec<Signal>,
    /// The CustodyPolicy that governed the decision.
    pub policy: String,
    /// Why the action was a revert, an alert or a dry run, in words.
    pub explanation: String,
    /// When the revision was first seen rolling out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_seen_at: Option<Time>,
    /// When the regression was confirmed.
    pub regression_detected_at: Time,
    /// When the action was taken.
    pub acted_at: Time,
    /// The owning team, from the revision's `owner` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The on-call contact that was paged: the revision's `oncall`, or else its registered
    /// team's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oncall: Option<String>,
    /// The metric analysis's evidence, when it confirmed the regression: each query as run, the
    /// new and baseline values, the condition and the checks that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisReport>,
}

/// A workload in the record's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// Its uid, so that a record does not outlive a re-created workload of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// What the controller did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RecordAction {
    /// The workload's template was set back to the last healthy revision. The regressed
    /// template is quarantined.
    Reverted,
    /// The regression was reported, the spec left alone.
    Alerted,
    /// A revert was due, but dry-run mode only recorded it.
    DryRun,
}

impl RecordAction {
    /// Whether the record quarantines the `from` template at admission.
    pub const fn quarantines(self) -> bool {
        matches!(self, RecordAction::Reverted)
    }
}

/// One revision of a workload, as the record remembers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSnapshot {
    /// The revision number (`deployment.kubernetes.io/revision`, or the ControllerRevision's).
    pub revision: String,
    /// The ReplicaSet or ControllerRevision holding the revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_object: Option<String>,
    /// [`template_fingerprint`](crate::template_fingerprint) of its pod template, without the
    /// `kubectl rollout restart` annotation
    /// ([`code_fingerprint`](crate::fingerprint::code_fingerprint)): the code it runs, however
    /// often restarted.
    pub template_fingerprint: String,
    /// The container images of its pod template.
    #[serde(default)]
    pub images: Vec<String>,
    /// The declared actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// The declared agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The declared model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The declared source commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// The declared source repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repo: Option<String>,
    /// The declared pipeline run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_run: Option<String>,
    /// The key id whose signed attestation vouched for this revision's provenance, when its
    /// policy has `spec.signatures` and the attestation verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_by: Option<String>,
}

/// Why a revision counts as regressed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum SignalReason {
    /// New-revision pods stayed not Ready past the window.
    NotReady,
    /// New-revision containers restarted at or above the threshold.
    Restarts,
    /// A new-revision container is in CrashLoopBackOff.
    CrashLoop,
    /// A new-revision image could not be pulled for longer than the window.
    ImagePull,
    /// The Deployment reports Progressing=False, ProgressDeadlineExceeded.
    ProgressDeadline,
    /// Available replicas fell below what the previous revision served, beyond the strategy's
    /// allowance.
    AvailabilityDrop,
    /// A metric of the policy's analysis failed its condition in consecutive checks.
    MetricAnalysis,
}

impl SignalReason {
    /// A fixed label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignalReason::NotReady => "NotReady",
            SignalReason::Restarts => "Restarts",
            SignalReason::CrashLoop => "CrashLoop",
            SignalReason::ImagePull => "ImagePull",
            SignalReason::ProgressDeadline => "ProgressDeadline",
            SignalReason::AvailabilityDrop => "AvailabilityDrop",
            SignalReason::MetricAnalysis => "MetricAnalysis",
        }
    }
}

/// One observation that counts against a revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    /// What was observed.
    pub reason: SignalReason,
    /// Details in words (the container's waiting reason, the restart count).
    pub message: String,
    /// Since when.
    pub since: Time,
    /// The pod that showed it, if the signal is a pod's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The container that showed it, if the signal is a container's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// What happened after the record was written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecordStatus {
    /// Whether the notification webhook accepted the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<bool>,
    /// The last notification error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_error: Option<String>,
    /// What each target was sent, and when it accepted it: the controller sends a notice (and
    /// its resolution) to a target once, across restarts and leader changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::notify::TargetDelivery>,
    /// A person lifted the quarantine: the reverted template may be applied again. Written by
    /// `kubectl custody lift`; the webhook admits it only under the writer's own name, from a
    /// person (no service account, no agent identity), with a reason, and never rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<Lift>,
    /// A person lifted the probation of the revision's agent: this record and the agent's
    /// earlier ones in its scope no longer count towards probation. Written by `kubectl custody
    /// lift --probation`, admitted under the same rules as `lifted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation_lifted: Option<Lift>,
}

/// Who lifted a record's quarantine, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lift {
    /// The authenticated user who lifted it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When.
    pub at: Time,
}

impl RollbackRecord {
    /// Whether the record keeps its `from` template out at admission: an actual revert, not
    /// lifted.
    pub fn quarantines(&self) -> bool {
        self.spec.action.quarantines() && self.status.as_ref().is_none_or(|s| s.lifted.is_none())
    }
}

/// The controller's marks on revisions (ReplicaSets, ControllerRevisions), under the
/// vocabulary's prefix: what it concluded about each one. `kubectl custody why` reads them.
pub mod marks {
    /// On a revision that stayed fully available for the policy's window: the revert target.
    pub const HEALTHY_SINCE: &str = "healthy-since";
    /// On a revision the controller reverted: the record's name. Never reverted twice.
    pub const REVERTED: &str = "reverted-by";
    /// On a revision the controller alerted about (or would have reverted in dry run).
    pub const ALERTED: &str = "alerted-by";
    /// On a revision under metric analysis: its [`AnalysisReport`](crate::analysis::AnalysisReport)
    /// as JSON, rewritten at each check.
    pub const ANALYSIS: &str = "analysis";
    /// On a workload whose rollout the controller holds after its first step: the held
    /// revision's name.
    pub const HELD: &str = "held";
    /// On a StatefulSet held by its partition: the partition to restore on release.
    pub const HELD_PARTITION: &str = "held-partition";
    /// On a workload whose held rollout was resumed (by the controller or a person): the
    /// revision's name, so it is not held again.
    pub const RELEASED: &str = "released";
    /// The condition a Deployment held after its first step carries (`True` while held).
    pub const HELD_CONDITION: &str = "CustodyHeld";
}
