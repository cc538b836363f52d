//! Verification: is this envelope a trusted key's signature of this workload, as it is now?
//!
//! In two steps so the costly one can be cached: [`open`] parses the envelope and checks the
//! signature (depends on the envelope and the keys only), [`judge`] checks the key's validity
//! window and scope and compares the statement with the object (cheap, done every time).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::jiff::Timestamp;

use super::diff::{describe, differences};
use super::dsse::{Envelope, PAYLOAD_TYPE, pae};
use super::keys::{KeyError, PublicKey};
use super::statement::{Claim, PREDICATE_TYPE, STATEMENT_TYPE, Statement};
use crate::selection::glob_matches;
use crate::signatures::{KeyScope, TrustedKey};
use crate::vocabulary::{Actor, AnnotationKey};

/// Why an attestation does not vouch for a workload. The names are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureCode {
    /// No attestation, where one is required.
    SignatureMissing,
    /// Not a DSSE envelope of an in-toto statement, or the signature does not verify.
    SignatureInvalid,
    /// The statement is about another workload, or the template changed after signing.
    SubjectMismatch,
    /// The object's annotations differ from the signed ones.
    PredicateMismatch,
    /// No trusted key has the signature's key id.
    KeyNotTrusted,
    /// The key may not vouch for this actor, agent, repository or namespace.
    KeyOutOfScope,
    /// The key is outside its validity window.
    KeyExpired,
}

impl FailureCode {
    /// The code as a fixed string.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureCode::SignatureMissing => "SignatureMissing",
            FailureCode::SignatureInvalid => "SignatureInvalid",
            FailureCode::SubjectMismatch => "SubjectMismatch",
            FailureCode::PredicateMismatch => "PredicateMismatch",
            FailureCode::KeyNotTrusted => "KeyNotTrusted",
            FailureCode::KeyOutOfScope => "KeyOutOfScope",
            FailureCode::KeyExpired => "KeyExpired",
        }
    }
}

/// A failed verification: the code, and what was found, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The code.
    pub code: FailureCode,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

fn fail(code: FailureCode, detail: impl Into<String>) -> Failure {
    Failure {
        code,
        detail: detail.into(),
    }
}

/// A trusted key, parsed once when its policy compiles.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledKey {
    /// The key id.
    pub key_id: String,
    /// The key.
    pub key: PublicKey,
    /// Not valid before.
    pub not_before: Option<Timestamp>,
    /// Not valid after.
    pub not_after: Option<Timestamp>,
    /// What it may attest.
    pub scope: KeyScope,
}

impl CompiledKey {
    /// Parses a policy's trusted key.
    pub fn compile(key: &TrustedKey) -> Result<Self, KeyError> {
        Ok(Self {
            key_id: key.key_id.clone(),
            key: PublicKey::from_pem(&key.public_key)?,
            not_before: key.not_before.as_ref().map(|t| t.0),
            not_after: key.not_after.as_ref().map(|t| t.0),
            scope: key.scope.clone(),
        })
    }
}

/// An envelope whose signature a trusted key made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The key id that verified.
    pub key_id: String,
    /// The SHA-256 of that key's SubjectPublicKeyInfo, so a cached result is only reused while
    /// the same key is trusted under the same id.
    pub key_sha256: [u8; 32],
    /// The signed statement.
    pub statement: Statement,
}

/// What a valid attestation vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The key that vouched.
    pub key_id: String,
    /// The signed actor.
    pub actor: Option<Actor>,
}

/// Parses `envelope` and checks its signature against `keys`.
pub fn open(envelope: &str, keys: &[CompiledKey]) -> Result<Opened, Failure> {
    let invalid = |d: String| fail(FailureCode::SignatureInvalid, d);
    let envelope: Envelope = serde_json::from_str(envelope)
        .map_err(|e| invalid(format!("the attestation is not a DSSE envelope ({e})")))?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(invalid(format!(
            "the envelope's payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
            envelope.payload_type
        )));
    }
    let payload = envelope
        .payload_bytes()
        .map_err(|e| invalid(format!("the envelope's payload is not base64 ({e})")))?;
    let message = pae(&envelope.payload_type, &payload);
    let mut candidates = 0;
    let mut verified = None;
    for signature in &envelope.signatures {
        let Ok(sig) = STANDARD.decode(&signature.sig) else {
            continue;
        };
        for key in keys.iter().filter(|k| k.key_id == signature.keyid) {
            candidates += 1;
            if key.key.verify(&message, &sig) {
                verified = Some(key);
                break;
            }
        }
        if verified.is_some() {
            break;
        }
    }
    let Some(key) = verified else {
        if candidates == 0 {
            let ids: Vec<&str> = envelope
                .signatures
                .iter()
                .map(|s| s.keyid.as_str())
                .collect();
            return Err(fail(
                FailureCode::KeyNotTrusted,
                format!(
                    "the attestation is signed with key id {:?}, which the policy does not trust",
                    ids.join(",")
                ),
            ));
        }
        return Err(invalid(
            "the signature does not verify with the trusted key it names (the envelope was altered or signed with another key)".to_string(),
        ));
    };
    let statement: Statement = serde_json::from_slice(&payload).map_err(|e| {
        invalid(format!(
            "the signed payload is not an in-toto Statement ({e})"
        ))
    })?;
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(invalid(format!(
            "the signed statement is {:?} with predicate {:?}, expected {STATEMENT_TYPE:?} with {PREDICATE_TYPE:?}",
            statement.statement_type, statement.predicate_type
        )));
    }
    Ok(Opened {
        key_id: key.key_id.clone(),
        key_sha256: *key.key.spki_sha256(),
        statement,
    })
}

/// Checks an opened envelope's key window and scope, and compares its statement with `claim`.
pub fn judge(
    opened: &Opened,
    keys: &[CompiledKey],
    claim: &Claim,
    now: Timestamp,
) -> Result<Verified, Failure> {
    let Some(key) = keys
        .iter()
        .find(|k| k.key_id == opened.key_id && k.key.spki_sha256() == &opened.key_sha256)
    else {
        return Err(fail(
            FailureCode::KeyNotTrusted,
            format!("key {:?} is no longer trusted by the policy", opened.key_id),
        ));
    };
    if let Some(nb) = key.not_before
        && now < nb
    {
        return Err(fail(
            FailureCode::KeyExpired,
            format!("key {:?} is not valid before {nb}", key.key_id),
        ));
    }
    if let Some(na) = key.not_after
        && now > na
    {
        return Err(fail(
            FailureCode::KeyExpired,
            format!("key {:?} expired at {na}", key.key_id),
        ));
    }
    let statement = &opened.statement;
    let name = claim.subject_name();
    let Some(subject) = statement.subject.iter().find(|s| s.name == name) else {
        let signed: Vec<&str> = statement.subject.iter().map(|s| s.name.as_str()).collect();
        return Err(fail(
            FailureCode::SubjectMismatch,
            format!(
                "the attestation was signed for {}, not {name}",
                signed.join(", ")
            ),
        ));
    };
    let signed_digest = subject.digest.get("sha256").map(String::as_str);
    let matches = |d: &crate::TemplateFingerprint| {
        signed_digest == Some(d.as_str().trim_start_matches("sha256:"))
    };
    if !matches(&claim.template_digest) && !claim.unbound_digest.as_ref().is_some_and(matches) {
        return Err(fail(
            FailureCode::SubjectMismatch,
            template_mismatch(statement, claim, signed_digest.unwrap_or("<none>")),
        ));
    }
    let on_object = claim.annotation_map();
    let signed = &statement.predicate.annotations;
    if &on_object != signed {
        return Err(fail(
            FailureCode::PredicateMismatch,
            predicate_difference(signed, &on_object),
        ));
    }
    let value = |k: AnnotationKey| claim.annotations.get(&k).map(String::as_str);
    let actor = value(AnnotationKey::Actor).and_then(|a| a.parse::<Actor>().ok());
    scope_check(
        key,
        actor,
        value(AnnotationKey::Agent),
        value(AnnotationKey::SourceRepo),
        &claim.namespace,
    )?;
    Ok(Verified {
        key_id: key.key_id.clone(),
        actor,
    })
}

/// [`open`], then [`judge`].
pub fn verify(
    envelope: &str,
    keys: &[CompiledKey],
    claim: &Claim,
    now: Timestamp,
) -> Result<Verified, Failure> {
    judge(&open(envelope, keys)?, keys, claim, now)
}

/// Why the template does not match: the fields that differ, when the statement carries the
/// signed template and the caller has the object's; the two digests otherwise.
fn template_mismatch(statement: &Statement, claim: &Claim, signed_digest: &str) -> String {
    let digests = format!(
        "signed sha256:{signed_digest}, now {}",
        claim.template_digest
    );
    let (Some(signed), Some(stored)) = (&statement.predicate.pod_template, &claim.template) else {
        return format!("the pod template changed after signing ({digests})");
    };
    let found = differences(claim.kind, signed, stored);
    if found.is_empty() {
        // The signer normalized the template differently (another Custody version's defaults).
        return format!(
            "the pod template was digested with other defaults than this Custody version's ({digests}); sign it again with this version"
        );
    }
    let added = found
        .iter()
        .find(|d| matches!(d.change, super::diff::Change::Added(_)));
    let unknown_default = added.map_or(String::new(), |d| {
        format!(
            ". If nobody changed `{}` after signing, the apiserver set it: a default this Custody version does not know for the cluster's Kubernetes version (please report it)",
            d.path
        )
    });
    format!(
        "the pod template differs from the signed one: {}{unknown_default} ({digests})",
        describe(&found)
    )
}

fn predicate_difference(
    signed: &std::collections::BTreeMap<String, String>,
    on_object: &std::collections::BTreeMap<String, String>,
) -> String {
    let keys: std::collections::BTreeSet<&String> = signed.keys().chain(on_object.keys()).collect();
    for key in keys {
        match (signed.get(key), on_object.get(key)) {
            (Some(s), Some(o)) if s == o => continue,
            (Some(s), Some(o)) => {
                return format!("{key} is {o:?} on the object but {s:?} in the signed attestation");
            }
            (Some(s), None) => {
                return format!("{key} is signed as {s:?} but missing from the object");
            }
            (None, Some(o)) => {
                return format!("{key} is {o:?} on the object but not in the signed attestation");
            }
            (None, None) => {}
        }
    }
    "the annotations differ from the signed ones".to_string()
}

fn scope_check(
    key: &CompiledKey,
    actor: Option<Actor>,
    agent: Option<&str>,
    repo: Option<&str>,
    namespace: &str,
) -> Result<(), Failure> {
    let scope = &key.scope;
    let out = |what: String| {
        Err(fail(
            FailureCode::KeyOutOfScope,
            format!("key {:?} may not attest {what}", key.key_id),
        ))
    };
    let globs = |list: &[String], v: Option<&str>| {
        list.is_empty() || v.is_some_and(|v| list.iter().any(|p| glob_matches(p, v)))
    };
    if !scope.actors.is_empty() && !actor.is_some_and(|a| scope.actors.contains(&a)) {
        return out(format!(
            "actor {:?} (allowed: {})",
            actor.map_or("<none>", Actor::as_str),
            scope
                .actors
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !globs(&scope.agents, agent) {
        return out(format!(
            "agent {:?} (allowed: {})",
            agent.unwrap_or("<none>"),
            scope.agents.join(", ")
        ));
    }
    if !globs(&scope.source_repos, repo) {
        return out(format!(
            "source repository {:?} (allowed: {})",
            repo.unwrap_or("<none>"),
            scope.source_repos.join(", ")
        ));
    }
    if !globs(&scope.namespaces, Some(namespace)) {
        return out(format!(
            "namespace {namespace:?} (allowed: {})",
            scope.namespaces.join(", ")
        ));
    }
    Ok(())
}
