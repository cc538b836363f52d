//! Signed provenance, on the controller's side: under a policy with `spec.signatures`, the
//! actor a decision acts on is the one a trusted key vouched for, and the key goes into the
//! RollbackRecord. Pure: the revision, the policy's keys and the time are passed in.
//!
//! The cache keeps what verification needs beyond provenance (owner and on-call), but of the
//! attestation (a DSSE envelope of a few kB, on every signed revision) only its [`digest`]:
//! ten thousand signed Deployments would otherwise hold tens of MB of envelopes that are read
//! only when a regression is decided or reverted. The envelope is read from the API server
//! then ([`Attestation`]), and a revert restores it with the template, as `kubectl rollout
//! undo` does, so the restored revision verifies again.

use custody_crds::attestation::{Claim, CompiledKey, SIGNED_KEYS, verify};
use custody_crds::{Actor, CustodyPolicy, SignatureMode, Vocabulary};
use jiff::Timestamp;

use crate::cache::observe::{Revision, WorkloadState};

pub use crate::cache::digest::digest;

/// The digest the cache keeps of `revision`'s attestation, if it carries one.
pub fn cached_digest<'r>(revision: &'r Revision, vocabulary: &Vocabulary) -> Option<&'r str> {
    revision
        .annotations
        .get(vocabulary.attestation())
        .map(String::as_str)
}

/// A revision's attestation as read from the API server when a decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attestation {
    /// The revision carries none.
    Absent,
    /// The envelope, as stored.
    Read(String),
    /// It could not be read (the error, in words): never believed.
    Unreadable(String),
}

impl Attestation {
    /// The envelope, if one was read.
    pub fn envelope(&self) -> Option<&str> {
        match self {
            Attestation::Read(e) => Some(e),
            _ => None,
        }
    }

    /// Whether it is another envelope than the one the cache saw (`cached`, a [`digest`]): the
    /// revision was re-signed or stripped since, and what was read is the truth.
    pub fn differs_from(&self, cached: Option<&str>) -> bool {
        match (self, cached) {
            (Attestation::Read(e), Some(d)) => digest(e) != d,
            (Attestation::Read(_), None) | (Attestation::Absent, Some(_)) => true,
            (Attestation::Absent, None) | (Attestation::Unreadable(_), _) => false,
        }
    }
}

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

/// Verifies `revision`'s attestation, `attestation` as read from the API server (the cache
/// keeps only its digest). The key window is judged at the revision's creation (when it was
/// admitted), so a key retired since does not disown the revisions it signed.
pub fn vouch(
    workload: &WorkloadState,
    revision: &Revision,
    attestation: &Attestation,
    policy: Option<&CustodyPolicy>,
    keys: &[CompiledKey],
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Vouch {
    let Some(signatures) = policy.and_then(|p| p.spec.signatures.as_ref()) else {
        return Vouch::NotRequired;
    };
    let required = signatures.mode == SignatureMode::Required;
    let envelope = match attestation {
        Attestation::Read(envelope) => envelope,
        Attestation::Absent => {
            return Vouch::Unverified {
                why: "the revision carries no signed attestation".to_string(),
                required,
            };
        }
        Attestation::Unreadable(error) => {
            return Vouch::Unverified {
                why: format!("the revision's attestation cannot be read: {error}"),
                // The revision is signed (the cache saw an attestation) but nothing can be
                // checked: like a bad attestation, it is not believed, whatever the mode.
                required: true,
            };
        }
    };
    let claim = Claim {
        kind: workload.kind,
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        template_digest: custody_crds::TemplateFingerprint::from_recorded(revision.code()),
        // The cache keeps fingerprints, not templates: `custody verify` on the live object
        // names the differing fields.
        template: None,
        unbound_digest: None,
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

/// The actor a decision acts on: under a required signature that does not verify, the declared
/// actor is not believed, so the revision is judged as made by an undeclared actor (an alert,
/// never a revert on a claim no key vouched for); otherwise the declared one.
pub fn believed(declared: Option<Actor>, vouch: &Vouch) -> Option<Actor> {
    match vouch {
        Vouch::Unverified { required: true, .. } => None,
        _ => declared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_read_differs_from_what_was_cached() {
        let envelope = "{\"payload\":\"x\"}";
        let cached = digest(envelope);
        let read = |e: &str| Attestation::Read(e.to_string());
        let cases: [(&str, Attestation, Option<&str>, bool); 7] = [
            ("the same envelope", read(envelope), Some(&cached), false),
            ("re-signed since", read("{}"), Some(&cached), true),
            ("signed since", read(envelope), None, true),
            ("stripped since", Attestation::Absent, Some(&cached), true),
            ("unsigned still", Attestation::Absent, None, false),
            (
                "unreadable: nothing to compare",
                Attestation::Unreadable("e".into()),
                Some(&cached),
                false,
            ),
            (
                "unreadable, unsigned",
                Attestation::Unreadable("e".into()),
                None,
                false,
            ),
        ];
        for (situation, attestation, cached, differs) in cases {
            assert_eq!(attestation.differs_from(cached), differs, "{situation}");
        }
    }

    #[test]
    fn without_signatures_nothing_is_verified() {
        let workload_fp = custody_crds::template_fingerprint(&serde_json::json!({})).to_string();
        let revision = Revision::new(
            "web-1".into(),
            1,
            &serde_json::json!({}),
            Default::default(),
            None,
        );
        let workload = WorkloadState {
            uid: "u".into(),
            ..WorkloadState::sample(&workload_fp)
        };
        let v = vouch(
            &workload,
            &revision,
            &Attestation::Unreadable("never read".into()),
            None,
            &[],
            &Vocabulary::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(v, Vouch::NotRequired);
    }
}
