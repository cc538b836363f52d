//! Signed review bodies for the benches: the captured agent Deployment review with a
//! `custody stamp --sign` attestation, and a policy that trusts the fixture keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use custody_crds::attestation::SigningKey;
use custody_crds::attestation::Statement;
use custody_crds::{
    CustodyPolicy, CustodyPolicySpec, KeyScope, SignatureMode, SignaturePolicy, TrustedKey,
    Vocabulary, WorkloadKind,
};
use custody_engine::attest::claim_from_value;
use serde_json::Value;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn key_text(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("../testkit/fixtures/keys").join(name))
        .expect("a key fixture")
}

/// The captured agent-annotated Deployment CREATE review.
pub fn review() -> Value {
    let body = std::fs::read(
        manifest_dir().join("../testkit/fixtures/admission/deployment-create-agent-annotated.json"),
    )
    .expect("fixture");
    serde_json::from_slice(&body).expect("json")
}

/// The policy: the built-in rules, and a signature required from the `p256` or `ed25519`
/// fixture key.
pub fn policy() -> CustodyPolicy {
    let trusted = |id: &str, file: &str| TrustedKey {
        key_id: id.into(),
        public_key: key_text(file),
        not_before: None,
        not_after: None,
        scope: KeyScope::default(),
    };
    CustodyPolicy::new(
        "signed",
        CustodyPolicySpec {
            signatures: Some(SignaturePolicy {
                mode: SignatureMode::Required,
                keys: vec![
                    trusted("p256", "p256.pub"),
                    trusted("ed25519", "ed25519.pub"),
                ],
            }),
            ..CustodyPolicySpec::default()
        },
    )
}

/// The review with its object signed by fixture key `key` (`p256` or `ed25519`); `run` varies
/// the pipeline-run annotation, so each value gives a distinct envelope.
pub fn signed_review(key: &str, run: usize) -> Vec<u8> {
    let signer = SigningKey::from_pem(&key_text(&format!("{key}.key"))).expect("key");
    let mut review = review();
    let object = &mut review["request"]["object"];
    object["metadata"]["annotations"]["custody.dev/pipeline-run"] =
        Value::String(format!("bench-run-{run}"));
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let annotations: BTreeMap<String, String> = object["metadata"]["annotations"]
        .as_object()
        .expect("annotations")
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
        .collect();
    let claim = claim_from_value(
        WorkloadKind::Deployment,
        &namespace,
        object,
        &annotations,
        &Vocabulary::default(),
    );
    let statement = Statement::for_claim(&claim, "https://custody.dev/bench", false);
    let payload = serde_json::to_vec(&statement).expect("statement");
    let envelope = signer.seal(&payload, key).expect("sign");
    object["metadata"]["annotations"]["custody.dev/attestation"] =
        Value::String(serde_json::to_string(&envelope).expect("envelope"));
    serde_json::to_vec(&review).expect("review")
}
