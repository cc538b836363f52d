//! Signed provenance, on the controller's side: under a policy with `spec.signatures`, the
//! actor a decision acts on is the one a trusted key vouched for, and the key goes into the
//! RollbackRecord. Pure: the revision, the policy's keys and the time are passed in.
//!
//! The cache keeps what verification needs beyond provenance (owner, on-call and the
//! attestation itself), and a revert restores them with the template, as `kubectl rollout undo`
//! does, so the restored revision verifies again.

use std::borrow::Cow;

use custody_crds::attestation::{Claim, CompiledKey, SIGNED_KEYS, verify};
use custody_crds::{Actor, AnnotationKey, CustodyPolicy, SignatureMode, Vocabulary};
use jiff::Timestamp;

use crate::observe::{Observed, Revision, WorkloadState};

/// Vocabulary keys kept for verification (and the audit) besides
/// [`PROVENANCE`](crate::observe::PROVENANCE).
pub use crate::observe::OWNERSHIP;

/// What the attestation of the current revision says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Vouch {
    /// The policy has no `spec.signatures`: the declared actor stands.
    NotRequired,
    /// A trusted key vouched for the revision.
    Verified {
        /// The key.
        key_id: String,
        /// The signed actor.
        actor: Option<Actor>,
    },
    /// No valid attestation.
    Unverified {
        /// Why, in words.
        why: String,
        /// Whether the policy requires one (`Optional` policies keep the declared actor of an
        /// unsigned revision).
        required: bool,
    },
}

impl Vouch {
    /// The key that vouched, if one did.
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Vouch::Verified { key_id, .. } => Some(key_id),
            _ => None,
        }
    }
}

/// The trusted keys of `policy` that parse (the webhook refuses a policy with a bad key; one
/// already stored is judged with the keys that do parse).
pub fn keys_of(policy: &CustodyPolicy) -> Vec<CompiledKey> {
    policy
        .spec
        .signatures
        .iter()
        .flat_map(|s| s.keys.iter())
        .filter_map(|k| CompiledKey::compile(k).ok())
        .collect()
}

/// Verifies `revision`'s attestation. The key window is judged at the revision's creation (when
/// it was admitted), so a key retired since does not disown the revisions it signed.
pub fn vouch(
    workload: &WorkloadState,
    revision: &Revision,
    policy: Option<&CustodyPolicy>,
    keys: &[CompiledKey],
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Vouch {
    let Some(signatures) = policy.and_then(|p| p.spec.signatures.as_ref()) else {
        return Vouch::NotRequired;
    };
    let required = signatures.mode == SignatureMode::Required;
    let Some(envelope) = revision.annotations.get(vocabulary.attestation()) else {
        return Vouch::Unverified {
            why: "the revision carries no signed attestation".to_string(),
            required,
        };
    };
    let claim = Claim {
        kind: workload.kind,
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        template_digest: custody_crds::TemplateFingerprint::from_recorded(
            revision.fingerprint.clone(),
        ),
        annotations: SIGNED_KEYS
            .into_iter()
            .filter_map(|k| {
                revision
                    .annotations
                    .get(vocabulary.key(k))
                    .map(|v| (k, v.clone()))
            })
            .collect(),
    };
    match verify(envelope, keys, &claim, revision.created.unwrap_or(now)) {
        Ok(v) => Vouch::Verified {
            key_id: v.key_id,
            actor: v.actor,
        },
        Err(failure) => Vouch::Unverified {
            why: failure.to_string(),
            // A present but bad attestation is never believed, whatever the mode.
            required: true,
        },
    }
}

/// The observed state a decision should see: under a required signature that does not verify,
/// the current revision's declared actor is not believed, so it is judged as undeclared (an
/// alert, never a revert on a claim no key vouched for).
pub fn as_believed<'o>(
    observed: &'o Observed,
    current: &str,
    vouch: &Vouch,
    vocabulary: &Vocabulary,
) -> Cow<'o, Observed> {
    match vouch {
        Vouch::Unverified { required: true, .. } => {
            let mut believed = observed.clone();
            if let Some(r) = believed.revisions.iter_mut().find(|r| r.name == current) {
                r.annotations.remove(vocabulary.key(AnnotationKey::Actor));
            }
            Cow::Owned(believed)
        }
        _ => Cow::Borrowed(observed),
    }
}
