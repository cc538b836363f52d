//! `spec.signatures`: checking a policy's trusted keys when it compiles, and judging a
//! workload's attestation against them.
//!
//! Keys are parsed once, with the policy; the time comes from the context; the signature check
//! goes through the context's cache. Nothing here reads a clock or fetches a key.

use std::collections::BTreeSet;

use custody_crds::attestation::{Claim, CompiledKey, Failure, FailureCode, Verified};
use custody_crds::{CustodyPolicySpec, SignatureMode};

use crate::context::Context;
use crate::decision::{Violation, ViolationCode};
use crate::policy_ref::PolicyRef;

/// Checks `spec.signatures` and parses its keys; problems name the field.
pub(crate) fn compile_keys(
    spec: &CustodyPolicySpec,
    problems: &mut Vec<String>,
) -> Vec<CompiledKey> {
    let Some(signatures) = &spec.signatures else {
        return Vec::new();
    };
    if signatures.keys.is_empty() {
        problems.push(
            "spec.signatures.keys: no trusted key, so no attestation could ever verify; list at least one public key"
                .to_string(),
        );
    }
    let mut ids = BTreeSet::new();
    let mut keys = Vec::with_capacity(signatures.keys.len());
    for (i, key) in signatures.keys.iter().enumerate() {
        let at = format!("spec.signatures.keys[{i}]");
        if key.key_id.trim().is_empty() {
            problems.push(format!(
                "{at}.keyId: is empty; name the key as signers do (custody stamp --key-id)"
            ));
        } else if !ids.insert(key.key_id.as_str()) {
            problems.push(format!(
                "{at}.keyId: {:?} is listed twice; give each key its own id",
                key.key_id
            ));
        }
        if let (Some(nb), Some(na)) = (&key.not_before, &key.not_after)
            && nb.0 >= na.0
        {
            problems.push(format!(
                "{at}: notBefore {} is not before notAfter {}, so the key is never valid",
                nb.0, na.0
            ));
        }
        let scope = &key.scope;
        for (field, globs) in [
            ("agents", &scope.agents),
            ("sourceRepos", &scope.source_repos),
            ("namespaces", &scope.namespaces),
        ] {
            if globs.iter().any(|g| g.trim().is_empty()) {
                problems.push(format!(
                    "{at}.scope.{field}: an empty pattern matches nothing; remove it"
                ));
            }
        }
        match CompiledKey::compile(key) {
            Ok(compiled) => keys.push(compiled),
            Err(error) => problems.push(format!("{at}.publicKey: {error}")),
        }
    }
    keys
}

/// What one policy's signature requirement found.
pub(super) enum Finding {
    /// Nothing to report (no requirement, or Optional and unsigned).
    None,
    /// Verified by a key.
    Verified(Verified),
    /// A violation.
    Violation(Violation),
}

/// Judges the attestation (`envelope`, if the object has one) under `policy`, whose trusted
/// keys are `keys`. `claim` is what the object says; an error reading it (an unparsable
/// template) is a `SubjectMismatch`.
pub(crate) fn judge(
    policy: PolicyRef<'_>,
    keys: &[CompiledKey],
    envelope: Option<&str>,
    claim: &Result<Claim, String>,
    ctx: &Context<'_>,
) -> Finding {
    let Some(signatures) = &policy.spec.signatures else {
        return Finding::None;
    };
    let Some(envelope) = envelope else {
        return match signatures.mode {
            SignatureMode::Optional => Finding::None,
            SignatureMode::Required => Finding::Violation(violation(
                policy,
                ctx,
                &Failure {
                    code: FailureCode::SignatureMissing,
                    detail: "the workload carries no signed attestation".to_string(),
                },
            )),
        };
    };
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => {
            return Finding::Violation(violation(
                policy,
                ctx,
                &Failure {
                    code: FailureCode::SubjectMismatch,
                    detail: format!("the pod template cannot be read ({error})"),
                },
            ));
        }
    };
    let result = ctx
        .attestations
        .open(policy.name, envelope, keys)
        .and_then(|opened| custody_crds::attestation::judge(&opened, keys, claim, ctx.now));
    match result {
        Ok(verified) => Finding::Verified(verified),
        Err(failure) => Finding::Violation(violation(policy, ctx, &failure)),
    }
}

fn violation(policy: PolicyRef<'_>, ctx: &Context<'_>, failure: &Failure) -> Violation {
    let annotation = ctx.vocabulary.attestation();
    let name = &policy.name;
    let (code, problem, fix) = match failure.code {
        FailureCode::SignatureMissing => (
            ViolationCode::SignatureMissing,
            format!("{annotation} is missing: the policy requires a signed attestation of the provenance"),
            "stamp and sign the manifest in the pipeline: custody stamp --sign <key> <manifest>".to_string(),
        ),
        FailureCode::SignatureInvalid => (
            ViolationCode::SignatureInvalid,
            format!("{annotation} does not verify: {}", failure.detail),
            "apply the manifest exactly as custody stamp --sign wrote it, or stamp and sign it again".to_string(),
        ),
        FailureCode::SubjectMismatch => (
            ViolationCode::SubjectMismatch,
            format!("{annotation} does not attest this workload: {}", failure.detail),
            "sign the manifest you apply, after its last change: custody stamp --sign <key>".to_string(),
        ),
        FailureCode::PredicateMismatch => (
            ViolationCode::PredicateMismatch,
            format!("the provenance differs from what {annotation} attests: {}", failure.detail),
            "keep the annotations custody stamp wrote, or stamp and sign again".to_string(),
        ),
        FailureCode::KeyNotTrusted => (
            ViolationCode::KeyNotTrusted,
            format!("{annotation} is not from a trusted key: {}", failure.detail),
            format!("sign with a key listed in spec.signatures.keys of policy {name:?}"),
        ),
        FailureCode::KeyOutOfScope => (
            ViolationCode::KeyOutOfScope,
            format!("{annotation} is signed by a key outside its scope: {}", failure.detail),
            format!("sign with a key whose scope in policy {name:?} covers this workload"),
        ),
        FailureCode::KeyExpired => (
            ViolationCode::KeyExpired,
            format!("{annotation} is signed by a key outside its validity window: {}", failure.detail),
            format!("sign with the current key of policy {name:?}"),
        ),
    };
    Violation {
        code,
        key: None,
        field: format!("metadata.annotations[{annotation}]"),
        value: None,
        policy: name.to_string(),
        mode: policy.spec.mode,
        message: format!("{problem} (policy {name:?}). Fix: {fix}"),
        fix,
    }
}
