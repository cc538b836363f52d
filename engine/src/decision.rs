//! What the engine answers: a decision with its violations, warnings and audit annotations, and
//! the human message composed from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use custody_crds::{AnnotationKey, EnforcementMode, FailurePolicy};
use serde::Serialize;

/// Why a workload breaks a policy. The names are stable: agents and dashboards key on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ViolationCode {
    /// A required annotation is absent.
    MissingAnnotation,
    /// A value breaks the key's built-in format.
    InvalidValue,
    /// A value does not match the policy's pattern.
    PatternMismatch,
    /// A value is not among the policy's allowed values.
    ValueNotAllowed,
    /// The pod template changed but the revision's provenance did not.
    StaleProvenance,
    /// A request from an agent identity does not declare `actor: agent`.
    ActorMismatch,
    /// The template is one the controller reverted.
    Quarantined,
    /// A CustodyPolicy is invalid.
    InvalidPolicy,
    /// No signed attestation, and the policy requires one.
    SignatureMissing,
    /// The attestation is malformed or its signature does not verify.
    SignatureInvalid,
    /// The attestation is about another workload, or the template changed after signing.
    SubjectMismatch,
    /// The provenance annotations differ from the signed ones.
    PredicateMismatch,
    /// The attestation's key is not one the policy trusts.
    KeyNotTrusted,
    /// The key may not vouch for this actor, agent, repository or namespace.
    KeyOutOfScope,
    /// The key is outside its validity window.
    KeyExpired,
    /// A CustodyPolicy update weakens it without acknowledgement.
    UnacknowledgedWeakening,
    /// A RollbackRecord's lift is not a person's, under their own name, with a reason.
    LiftRefused,
    /// `owner` names no registered CustodyTeam (`ownership: Registered`).
    OwnerNotRegistered,
    /// `owner` names a registered team that may not own workloads in this namespace.
    NamespaceNotOwned,
    /// A change freeze binding the revision's actor is in effect.
    Frozen,
    /// Break-glass asked by an agent identity, or on a revision that is not a person's.
    BreakGlassRefused,
    /// A CustodyTeam is invalid.
    InvalidTeam,
    /// The revision's agent is on probation after repeated reverts.
    OnProbation,
    /// The agent has as many rollouts in flight as its budget allows.
    RolloutLimit,
    /// The agent shipped as many revisions in the window as its budget allows.
    RevisionLimit,
    /// An agent's update would release the controller's hold on a rollout's first step.
    HoldReleaseRefused,
    /// An agent's change to a protected workload has no approved CustodyChange with its digest.
    ApprovalRequired,
    /// A write to a CustodyChange breaks its rules (proposer, digest, a person's decision).
    ChangeRefused,
}

impl ViolationCode {
    /// Whether the code is a signature check's (`spec.signatures`).
    pub const fn is_signature(self) -> bool {
        matches!(
            self,
            ViolationCode::SignatureMissing
                | ViolationCode::SignatureInvalid
                | ViolationCode::SubjectMismatch
                | ViolationCode::PredicateMismatch
                | ViolationCode::KeyNotTrusted
                | ViolationCode::KeyOutOfScope
                | ViolationCode::KeyExpired
        )
    }

    /// The code as a fixed string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ViolationCode::MissingAnnotation => "MissingAnnotation",
            ViolationCode::InvalidValue => "InvalidValue",
            ViolationCode::PatternMismatch => "PatternMismatch",
            ViolationCode::ValueNotAllowed => "ValueNotAllowed",
            ViolationCode::StaleProvenance => "StaleProvenance",
            ViolationCode::ActorMismatch => "ActorMismatch",
            ViolationCode::Quarantined => "Quarantined",
            ViolationCode::InvalidPolicy => "InvalidPolicy",
            ViolationCode::SignatureMissing => "SignatureMissing",
            ViolationCode::SignatureInvalid => "SignatureInvalid",
            ViolationCode::SubjectMismatch => "SubjectMismatch",
            ViolationCode::PredicateMismatch => "PredicateMismatch",
            ViolationCode::KeyNotTrusted => "KeyNotTrusted",
            ViolationCode::KeyOutOfScope => "KeyOutOfScope",
            ViolationCode::KeyExpired => "KeyExpired",
            ViolationCode::UnacknowledgedWeakening => "UnacknowledgedWeakening",
            ViolationCode::LiftRefused => "LiftRefused",
            ViolationCode::OwnerNotRegistered => "OwnerNotRegistered",
            ViolationCode::NamespaceNotOwned => "NamespaceNotOwned",
            ViolationCode::Frozen => "Frozen",
            ViolationCode::BreakGlassRefused => "BreakGlassRefused",
            ViolationCode::InvalidTeam => "InvalidTeam",
            ViolationCode::OnProbation => "OnProbation",
            ViolationCode::RolloutLimit => "RolloutLimit",
            ViolationCode::RevisionLimit => "RevisionLimit",
            ViolationCode::HoldReleaseRefused => "HoldReleaseRefused",
            ViolationCode::ApprovalRequired => "ApprovalRequired",
            ViolationCode::ChangeRefused => "ChangeRefused",
        }
    }
}

/// One reason a request breaks a policy, with how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// What is wrong.
    pub code: ViolationCode,
    /// The vocabulary key concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<AnnotationKey>,
    /// The field to fix, e.g. `metadata.annotations[custody.dev/owner]`.
    pub field: String,
    /// The offending value, if one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The policy that requires it.
    pub policy: String,
    /// That policy's mode.
    pub mode: EnforcementMode,
    /// One line: the key, the rule, and an example fix.
    pub message: String,
    /// A value or action that fixes it, for tools.
    pub fix: String,
}

impl Violation {
    /// Whether the violation denies the request.
    pub fn blocks(&self) -> bool {
        self.mode == EnforcementMode::Enforce
    }
}

/// The outcome of a request, a fixed metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Outcome {
    /// Judged and clean.
    Allowed,
    /// Denied by an Enforce policy.
    Denied,
    /// Admitted with warnings from a Warn policy.
    Warned,
    /// Admitted; violations recorded in the audit log only.
    Audited,
    /// Not judged: another operation, a subresource, an unknown kind, a controller-created
    /// object, or no policy selects it.
    Skipped,
    /// Could not be judged; answered by the failure policy.
    Failed,
    /// The request itself is malformed.
    Invalid,
}

impl Outcome {
    /// The outcome as a fixed string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Warned => "warned",
            Outcome::Audited => "audited",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
            Outcome::Invalid => "invalid",
        }
    }
}

/// The engine's answer to one admission request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The HTTP-style status code of a denial (403, or 400 for a malformed object).
    pub code: u16,
    /// The human message of a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every violation, of every mode.
    pub violations: Vec<Violation>,
    /// kubectl warnings.
    pub warnings: Vec<String>,
    /// Annotations for the audit log (the apiserver prefixes them with the webhook's name).
    pub audit_annotations: BTreeMap<String, String>,
    /// The outcome label.
    pub outcome: Outcome,
    /// The strictest mode among the policies that selected the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<EnforcementMode>,
}

impl Decision {
    /// A write refused for one problem with one field, under no policy (a lift, a change
    /// request): `message` opens the answer, then the fix when there is one.
    pub(crate) fn refused(
        code: ViolationCode,
        field: &str,
        mut message: String,
        problem: String,
        fix: &str,
    ) -> Self {
        if !fix.is_empty() {
            message.push_str("\n  fix: ");
            message.push_str(fix);
        }
        Self {
            allowed: false,
            code: 403,
            message: Some(message),
            violations: vec![Violation {
                code,
                key: None,
                field: field.to_string(),
                value: None,
                policy: String::new(),
                mode: EnforcementMode::Enforce,
                message: problem,
                fix: fix.to_string(),
            }],
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
            outcome: Outcome::Denied,
            mode: Some(EnforcementMode::Enforce),
        }
    }

    /// Admitted without judgement, with an optional warning.
    pub fn skipped(warning: Option<String>) -> Self {
        Self {
            allowed: true,
            code: 200,
            message: None,
            violations: Vec::new(),
            warnings: warning.into_iter().collect(),
            audit_annotations: BTreeMap::new(),
            outcome: Outcome::Skipped,
            mode: None,
        }
    }

    /// Denied because the request is malformed.
    pub fn invalid(message: String) -> Self {
        Self {
            allowed: false,
            code: 400,
            message: Some(message),
            violations: Vec::new(),
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
            outcome: Outcome::Invalid,
            mode: None,
        }
    }

    /// The answer when the webhook cannot decide (caches not synced, an internal error): a
    /// denial under `Fail`, an admission with a warning under `Ignore`.
    pub fn unavailable(failure: FailurePolicy, reason: &str) -> Self {
        let mut audit_annotations = BTreeMap::new();
        audit_annotations.insert("unavailable".to_string(), reason.to_string());
        match failure {
            FailurePolicy::Fail => Self {
                allowed: false,
                code: 503,
                message: Some(format!(
                    "Custody cannot evaluate this request right now ({reason}); the policy's failurePolicy is Fail, so it is denied. Retry in a few seconds."
                )),
                violations: Vec::new(),
                warnings: Vec::new(),
                audit_annotations,
                outcome: Outcome::Failed,
                mode: None,
            },
            FailurePolicy::Ignore => Self {
                allowed: true,
                code: 200,
                message: None,
                violations: Vec::new(),
                warnings: vec![format!(
                    "custody: not evaluated ({reason}); admitted because the policy's failurePolicy is Ignore"
                )],
                audit_annotations,
                outcome: Outcome::Failed,
                mode: None,
            },
        }
    }

    /// Builds the decision from the violations found for an object, given the strictest mode
    /// among the policies that selected it.
    pub(crate) fn judged(
        object: &str,
        mode: EnforcementMode,
        violations: Vec<Violation>,
        policies: &[&str],
    ) -> Self {
        let mut audit_annotations = BTreeMap::new();
        audit_annotations.insert("policies".to_string(), policies.join(","));
        if !violations.is_empty() {
            let summary: Vec<_> = violations
                .iter()
                .map(|v| {
                    serde_json::json!({"code": v.code, "field": v.field, "policy": v.policy, "mode": v.mode})
                })
                .collect();
            audit_annotations.insert(
                "violations".to_string(),
                serde_json::Value::Array(summary).to_string(),
            );
        }
        let blocking: Vec<&Violation> = violations.iter().filter(|v| v.blocks()).collect();
        let warnings: Vec<String> = violations
            .iter()
            .filter(|v| v.mode == EnforcementMode::Warn)
            .map(|v| format!("custody: {}", v.message))
            .collect();
        let audited = violations.iter().any(|v| v.mode == EnforcementMode::Audit);
        let (allowed, outcome) = if !blocking.is_empty() {
            (false, Outcome::Denied)
        } else if !warnings.is_empty() {
            (true, Outcome::Warned)
        } else if audited {
            (true, Outcome::Audited)
        } else {
            (true, Outcome::Allowed)
        };
        let message = (!allowed).then(|| denial_message(object, &blocking));
        audit_annotations.insert("decision".to_string(), outcome.as_str().to_string());
        Self {
            allowed,
            code: if allowed { 200 } else { 403 },
            message,
            violations,
            warnings,
            audit_annotations,
            outcome,
            mode: Some(mode),
        }
    }
}

/// The denial message: a headline, one line per violation, and the annotations to add as a
/// block that can be pasted into the manifest.
fn denial_message(object: &str, blocking: &[&Violation]) -> String {
    let n = blocking.len();
    let mut out = format!(
        "Custody denied {object}: {n} problem{} to fix.",
        if n == 1 { "" } else { "s" }
    );
    for v in blocking {
        let _ = write!(out, "\n- {}", v.message);
    }
    let additions: Vec<&&Violation> = blocking
        .iter()
        .filter(|v| {
            v.key.is_some()
                && matches!(
                    v.code,
                    ViolationCode::MissingAnnotation
                        | ViolationCode::InvalidValue
                        | ViolationCode::PatternMismatch
                        | ViolationCode::ValueNotAllowed
                )
        })
        .collect();
    if !additions.is_empty() {
        out.push_str("\nAdd to the manifest (example values; use the real ones):\n  metadata:\n    annotations:");
        for v in additions {
            if let Some(annotation) = annotation_of(&v.field) {
                let _ = write!(out, "\n      {annotation}: {:?}", v.fix);
            }
        }
    }
    out
}

/// The annotation name inside a `metadata.annotations[...]` field path.
pub(crate) fn annotation_of(field: &str) -> Option<&str> {
    field
        .strip_prefix("metadata.annotations[")
        .and_then(|rest| rest.strip_suffix(']'))
}

impl Decision {
    /// The same decision with another outcome label.
    pub(crate) fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}
