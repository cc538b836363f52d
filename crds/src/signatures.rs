//! `spec.signatures` of a CustodyPolicy: which keys may vouch for a workload's provenance, for
//! whom, and whether a signature is required.
//!
//! The keys are data in the policy (never fetched), so the webhook verifies with what its policy
//! cache holds and the offline CLI with what `--policy` names.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocabulary::Actor;

/// Signed provenance: the trusted keys and how strictly a signature is asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignaturePolicy {
    /// `Required`: a workload without a valid attestation is a violation. `Optional`: a
    /// workload may go unsigned, but a signature that is present and bad is still a violation.
    #[serde(default)]
    pub mode: SignatureMode,
    /// The keys whose attestations are believed. During a rotation, list the old and the new
    /// key with overlapping validity windows.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["keyId"]))]
    pub keys: Vec<TrustedKey>,
}

/// Whether a workload must carry a signed attestation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SignatureMode {
    /// Every workload the policy selects must carry a valid attestation.
    #[default]
    Required,
    /// Unsigned workloads pass; a present attestation must verify.
    Optional,
}

impl SignatureMode {
    /// The mode as written in the policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Required => "Required",
            SignatureMode::Optional => "Optional",
        }
    }
}

/// One public key a policy trusts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKey {
    /// The name signers put in the envelope's `keyid` (`custody stamp --key-id`).
    pub key_id: String,
    /// The public key, PEM `PUBLIC KEY` (SubjectPublicKeyInfo): Ed25519 or ECDSA P-256, as
    /// `custody keygen`, `openssl pkey -pubout` or `cosign generate-key-pair` write it.
    pub public_key: String,
    /// Attestations are refused before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// Attestations are refused after this time (the end of a rotation overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// What the key may vouch for; an empty list allows any value.
    #[serde(default, skip_serializing_if = "KeyScope::is_empty")]
    pub scope: KeyScope,
}

/// What a key may attest. Every non-empty list must admit the workload's value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyScope {
    /// Actors the key may vouch for, e.g. a CI key `[automation, agent]`, a release key
    /// `[human]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<Actor>,
    /// Agents, as globs (`claude-code/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Source repositories, as globs (`https://github.com/acme/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repos: Vec<String>,
    /// Namespaces, as globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

impl KeyScope {
    /// True when the key may attest anything.
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
            && self.agents.is_empty()
            && self.source_repos.is_empty()
            && self.namespaces.is_empty()
    }
}
