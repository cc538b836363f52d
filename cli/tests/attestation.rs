//! Signed attestations end to end: `custody stamp --sign` output judged by the engine, for both
//! key types; every kind of tampering denied with its own code; and no mutated envelope ever
//! verifying. Keys are the OpenSSL-made fixtures in `testkit/fixtures/keys/`, which the
//! webhook's signed benches share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use custody_cli::stamp::resolve::{Origin, Resolved};
use custody_cli::stamp::{Stamper, stamp_text};
use custody_crds::attestation::SigningKey;
use custody_crds::attestation::{Claim, Envelope, Statement, subject_digest};
use custody_crds::{
    Actor, AnnotationKey, CustodyPolicy, CustodyPolicySpec, KeyScope, SignatureMode,
    SignaturePolicy, TrustedKey, Vocabulary, WorkloadKind,
};
use custody_engine::attest::claim_from_value;
use custody_engine::{Decision, PolicySet, QuarantineIndex, ViolationCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::*;

fn key_file(name: &str) -> String {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/keys");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn signing_key(name: &str) -> SigningKey {
    SigningKey::from_pem(&key_file(&format!("{name}.key"))).unwrap()
}

fn trusted(id: &str, file: &str, scope: KeyScope) -> TrustedKey {
    TrustedKey {
        key_id: id.into(),
        public_key: key_file(&format!("{file}.pub")),
        not_before: None,
        not_after: None,
        scope,
    }
}

/// The CI key may attest agents and automation from acme's repositories; the release key,
/// humans.
fn keys() -> Vec<TrustedKey> {
    vec![
        trusted(
            "ci",
            "p256",
            KeyScope {
                actors: vec![Actor::Agent, Actor::Automation],
                source_repos: vec!["https://github.com/acme/*".into()],
                ..KeyScope::default()
            },
        ),
        trusted(
            "release",
            "ed25519",
            KeyScope {
                actors: vec![Actor::Human],
                namespaces: vec!["shop".into()],
                ..KeyScope::default()
            },
        ),
    ]
}

fn policies(mode: SignatureMode, keys: Vec<TrustedKey>) -> PolicySet {
    let spec = CustodyPolicySpec {
        signatures: Some(SignaturePolicy { mode, keys }),
        ..CustodyPolicySpec::default()
    };
    let (set, errors) = PolicySet::compile([CustodyPolicy::new("signed", spec)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

fn judge_signed(object: &Value, set: &PolicySet) -> Decision {
    judge_with(
        &review_of("CREATE", object, None, "ci-bot", &[]),
        set,
        &QuarantineIndex::default(),
    )
}

fn resolved(actor: &str, repo: &str) -> Resolved {
    let values = BTreeMap::from([
        (AnnotationKey::Actor, actor.to_string()),
        (AnnotationKey::Agent, "claude-code/1.0".to_string()),
        (AnnotationKey::SourceRepo, repo.to_string()),
        (AnnotationKey::SourceCommit, "3f9c2a7e".to_string()),
        (
            AnnotationKey::PipelineRun,
            "https://github.com/acme/shop/actions/runs/1/attempts/1".to_string(),
        ),
        (AnnotationKey::Owner, "team-shop".to_string()),
        (AnnotationKey::Oncall, "@shop-oncall".to_string()),
    ]);
    Resolved {
        values,
        fill: BTreeMap::new(),
        builder_id: "https://github.com/actions".into(),
        dirty: false,
        origin: Origin::GitHubActions,
    }
}

const MANIFEST: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports: [{containerPort: 80}]
          resources: {limits: {cpu: 0.5, memory: 64Mi}}
";

/// The manifest stamped and signed, as the object the apiserver would send.
fn signed(key: &str, keyid: &str, actor: &str, repo: &str) -> Value {
    let key = signing_key(key);
    let resolved = resolved(actor, repo);
    let vocabulary = Vocabulary::default();
    let stamper = Stamper {
        resolved: &resolved,
        vocabulary: &vocabulary,
        namespace: "default",
        signer: Some((&key, keyid)),
    };
    let out = stamp_text(MANIFEST, &stamper).unwrap();
    assert_eq!(out.workloads, 1);
    serde_saphyr::from_str(&out.text).unwrap()
}

fn ci_signed() -> Value {
    signed("p256", "ci", "agent", "https://github.com/acme/shop")
}

fn codes(d: &Decision) -> Vec<ViolationCode> {
    d.violations.iter().map(|v| v.code).collect()
}

#[test]
fn round_trip_for_both_key_types() {
    let set = policies(SignatureMode::Required, keys());
    for (key, keyid, actor) in [("p256", "ci", "agent"), ("ed25519", "release", "human")] {
        let object = signed(key, keyid, actor, "https://github.com/acme/shop");
        let d = judge_signed(&object, &set);
        assert!(d.allowed, "{key}: {:?}", d.violations);
        assert_eq!(
            d.audit_annotations
                .get("attestation-key")
                .map(String::as_str),
            Some(keyid),
            "{key}: the audit annotations name the key"
        );
    }
}

#[test]
fn the_stamped_template_digest_is_the_stored_templates_fingerprint() {
    // What the apiserver stores for MANIFEST's template: the webhook fingerprints this form.
    let stored = json!({
        "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
            "schedulerName": "default-scheduler", "securityContext": {},
            "terminationGracePeriodSeconds": 30
        }
    });
    let mut object = ci_signed();
    let before = judge_signed(&object, &policies(SignatureMode::Required, keys()));
    assert!(before.allowed);
    object["spec"]["template"] = stored.clone();
    let d = judge_signed(&object, &policies(SignatureMode::Required, keys()));
    assert!(d.allowed, "{:?}", d.violations);
    assert_eq!(
        subject_digest(WorkloadKind::Deployment, &stored),
        custody_crds::template_fingerprint(&stored),
        "defaults applied by the apiserver are a fixed point"
    );
}

/// Replaces the envelope's payload with `edit` applied to its statement, keeping the signature.
fn with_statement(object: &Value, edit: impl FnOnce(&mut Statement)) -> Value {
    let mut object = object.clone();
    let annotation = object["metadata"]["annotations"]["custody.dev/attestation"]
        .as_str()
        .unwrap()
        .to_string();
    let mut envelope: Envelope = serde_json::from_str(&annotation).unwrap();
    let mut statement: Statement =
        serde_json::from_slice(&envelope.payload_bytes().unwrap()).unwrap();
    edit(&mut statement);
    envelope.payload = STANDARD.encode(serde_json::to_vec(&statement).unwrap());
    object["metadata"]["annotations"]["custody.dev/attestation"] =
        json!(serde_json::to_string(&envelope).unwrap());
    object
}

#[test]
fn tampering_is_denied_with_the_right_code() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let set = policies(SignatureMode::Required, keys());
    let annotation = |key: &'static str, value: Option<&'static str>| -> Edit {
        Box::new(move |o: &mut Value| {
            let a = o["metadata"]["annotations"].as_object_mut().unwrap();
            match value {
                Some(v) => a.insert(key.to_string(), json!(v)),
                None => a.remove(key),
            };
        })
    };
    let mut cases: Vec<(String, Edit, ViolationCode)> = vec![
        (
            "image changed".into(),
            Box::new(|o| {
                o["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28")
            }),
            ViolationCode::SubjectMismatch,
        ),
        (
            "env var added".into(),
            Box::new(|o| {
                o["spec"]["template"]["spec"]["containers"][0]["env"] =
                    json!([{"name": "DEBUG", "value": "1"}])
            }),
            ViolationCode::SubjectMismatch,
        ),
        (
            "template label changed".into(),
            Box::new(|o| o["spec"]["template"]["metadata"]["labels"]["app"] = json!("other")),
            ViolationCode::SubjectMismatch,
        ),
        (
            "pod security context set".into(),
            Box::new(|o| {
                o["spec"]["template"]["spec"]["securityContext"] = json!({"runAsUser": 0})
            }),
            ViolationCode::SubjectMismatch,
        ),
        (
            "renamed".into(),
            Box::new(|o| o["metadata"]["name"] = json!("web-2")),
            ViolationCode::SubjectMismatch,
        ),
        (
            "moved to another namespace".into(),
            Box::new(|o| o["metadata"]["namespace"] = json!("shop-staging")),
            ViolationCode::SubjectMismatch,
        ),
        (
            "an unsigned key added".into(),
            annotation("custody.dev/model", Some("gpt-x")),
            ViolationCode::PredicateMismatch,
        ),
        (
            "rollback: alert added to escape a revert".into(),
            annotation("custody.dev/rollback", Some("alert")),
            ViolationCode::PredicateMismatch,
        ),
        (
            "signed subject digest rewritten".into(),
            Box::new(|o| {
                *o = with_statement(o, |s| {
                    s.subject[0].digest.insert("sha256".into(), "00".repeat(32));
                });
            }),
            ViolationCode::SignatureInvalid,
        ),
        (
            "signed actor rewritten".into(),
            Box::new(|o| {
                *o = with_statement(o, |s| {
                    s.predicate
                        .annotations
                        .insert("actor".into(), "human".into());
                });
            }),
            ViolationCode::SignatureInvalid,
        ),
        (
            "envelope replaced with garbage".into(),
            annotation("custody.dev/attestation", Some("{not json")),
            ViolationCode::SignatureInvalid,
        ),
        (
            "attestation removed".into(),
            annotation("custody.dev/attestation", None),
            ViolationCode::SignatureMissing,
        ),
    ];
    for key in custody_crds::attestation::SIGNED_KEYS {
        let name = Vocabulary::default().key(key).to_string();
        if ci_signed()["metadata"]["annotations"].get(&name).is_none() {
            continue;
        }
        let changed: Edit = {
            let name = name.clone();
            Box::new(move |o: &mut Value| {
                let v = o["metadata"]["annotations"][&name]
                    .as_str()
                    .unwrap()
                    .to_string();
                // Still a valid value of its format, so only the signature can object.
                let other = match key {
                    AnnotationKey::Actor => "automation".to_string(),
                    AnnotationKey::SourceCommit => "abcdef0".to_string(),
                    AnnotationKey::Oncall => "@someone-else".to_string(),
                    _ => format!("{v}-x"),
                };
                o["metadata"]["annotations"][&name] = json!(other);
            })
        };
        cases.push((
            format!("{name} changed"),
            changed,
            ViolationCode::PredicateMismatch,
        ));
        let removed: Edit = {
            let name = name.clone();
            Box::new(move |o: &mut Value| {
                o["metadata"]["annotations"]
                    .as_object_mut()
                    .unwrap()
                    .remove(&name);
            })
        };
        cases.push((
            format!("{name} removed"),
            removed,
            ViolationCode::PredicateMismatch,
        ));
    }
    for (name, edit, expected) in cases {
        let mut object = ci_signed();
        edit(&mut object);
        let d = judge_signed(&object, &set);
        assert!(!d.allowed, "{name}: admitted");
        assert!(
            codes(&d).contains(&expected),
            "{name}: expected {expected:?}, got {:?}",
            d.violations
        );
    }
}

#[test]
fn scaling_is_not_a_template_change() {
    let mut object = ci_signed();
    object["spec"]["replicas"] = json!(5);
    assert!(judge_signed(&object, &policies(SignatureMode::Required, keys())).allowed);
}

#[test]
fn a_restart_keeps_the_signature() {
    // `kubectl rollout restart` writes a timestamp into the template's annotations.
    let mut object = ci_signed();
    object["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt": "2026-12-03T12:00:00Z"});
    let d = judge_signed(&object, &policies(SignatureMode::Required, keys()));
    assert!(d.allowed, "{:?}", d.violations);
    // Any other template annotation is a change the signature does not cover.
    object["spec"]["template"]["metadata"]["annotations"]["team.example.com/note"] = json!("x");
    let d = judge_signed(&object, &policies(SignatureMode::Required, keys()));
    assert_eq!(codes(&d), vec![ViolationCode::SubjectMismatch]);
}

#[test]
fn keys_are_judged_by_trust_scope_and_window() {
    let past = |s: &str| Some(Time(s.parse::<Timestamp>().unwrap()));
    let cases: Vec<(&str, Value, Vec<TrustedKey>, Option<ViolationCode>)> = vec![
        (
            "signed by another key under a trusted id",
            signed(
                "rotated-ed25519",
                "release",
                "human",
                "https://github.com/acme/shop",
            ),
            keys(),
            Some(ViolationCode::SignatureInvalid),
        ),
        (
            "signed by a key the policy does not list",
            signed(
                "rotated-ed25519",
                "laptop",
                "human",
                "https://github.com/acme/shop",
            ),
            keys(),
            Some(ViolationCode::KeyNotTrusted),
        ),
        (
            "the CI key vouching for a human",
            signed("p256", "ci", "human", "https://github.com/acme/shop"),
            keys(),
            Some(ViolationCode::KeyOutOfScope),
        ),
        (
            "the CI key vouching for another organisation's repository",
            signed("p256", "ci", "agent", "https://github.com/evil/shop"),
            keys(),
            Some(ViolationCode::KeyOutOfScope),
        ),
        (
            "a key past notAfter",
            signed("p256", "ci", "agent", "https://github.com/acme/shop"),
            vec![TrustedKey {
                not_after: past("2020-01-01T00:00:00Z"),
                ..keys()[0].clone()
            }],
            Some(ViolationCode::KeyExpired),
        ),
        (
            "a key before notBefore",
            signed("p256", "ci", "agent", "https://github.com/acme/shop"),
            vec![TrustedKey {
                not_before: past("2099-01-01T00:00:00Z"),
                ..keys()[0].clone()
            }],
            Some(ViolationCode::KeyExpired),
        ),
        (
            "rotation overlap: the new key",
            signed(
                "rotated-ed25519",
                "release-2",
                "human",
                "https://github.com/acme/shop",
            ),
            {
                let mut k = keys();
                k.push(trusted("release-2", "rotated-ed25519", KeyScope::default()));
                k
            },
            None,
        ),
        (
            "rotation overlap: the old key",
            signed(
                "ed25519",
                "release",
                "human",
                "https://github.com/acme/shop",
            ),
            {
                let mut k = keys();
                k.push(trusted("release-2", "rotated-ed25519", KeyScope::default()));
                k
            },
            None,
        ),
    ];
    for (name, object, keys, expected) in cases {
        let d = judge_signed(&object, &policies(SignatureMode::Required, keys));
        match expected {
            None => assert!(d.allowed, "{name}: {:?}", d.violations),
            Some(code) => {
                assert!(!d.allowed, "{name}: admitted");
                assert_eq!(codes(&d), vec![code], "{name}: {:?}", d.violations);
            }
        }
    }
}

#[test]
fn optional_mode_admits_unsigned_but_not_bad_signatures() {
    let set = policies(SignatureMode::Optional, keys());
    let unsigned = deployment("web", agent_annotations(), "nginx:1.27");
    assert!(judge_signed(&unsigned, &set).allowed);
    let mut tampered = ci_signed();
    tampered["metadata"]["annotations"]["custody.dev/actor"] = json!("human");
    let d = judge_signed(&tampered, &set);
    assert_eq!(codes(&d), vec![ViolationCode::PredicateMismatch]);
}

#[test]
fn invalid_signature_specs_are_refused_with_every_problem() {
    let spec = CustodyPolicySpec {
        signatures: Some(SignaturePolicy {
            mode: SignatureMode::Required,
            keys: vec![
                trusted("", "p384", KeyScope::default()),
                TrustedKey {
                    public_key: "not a key".into(),
                    ..trusted("ci", "p256", KeyScope::default())
                },
                TrustedKey {
                    not_before: Some(Time("2027-01-01T00:00:00Z".parse().unwrap())),
                    not_after: Some(Time("2026-01-01T00:00:00Z".parse().unwrap())),
                    ..trusted(
                        "ci",
                        "p256",
                        KeyScope {
                            agents: vec![" ".into()],
                            ..KeyScope::default()
                        },
                    )
                },
            ],
        }),
        ..CustodyPolicySpec::default()
    };
    let (_, errors) = PolicySet::compile([CustodyPolicy::new("bad", spec)]);
    let problems = errors[0].problems.join("\n");
    for expected in [
        "spec.signatures.keys[0].keyId: is empty",
        "spec.signatures.keys[0].publicKey: unsupported key algorithm",
        "spec.signatures.keys[1].publicKey: not a PEM PUBLIC KEY",
        "spec.signatures.keys[2].keyId: \"ci\" is listed twice",
        "spec.signatures.keys[2]: notBefore 2027-01-01T00:00:00Z is not before notAfter",
        "spec.signatures.keys[2].scope.agents: an empty pattern",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
    let empty = CustodyPolicySpec {
        signatures: Some(SignaturePolicy::default()),
        ..CustodyPolicySpec::default()
    };
    let (_, errors) = PolicySet::compile([CustodyPolicy::new("empty", empty)]);
    assert!(errors[0].problems[0].contains("no trusted key"));
}

#[test]
fn denial_messages() {
    let set = policies(SignatureMode::Required, keys());
    let unsigned = deployment("web", agent_annotations(), "nginx:1.27");
    let mut forged = ci_signed();
    forged["metadata"]["annotations"]["custody.dev/actor"] = json!("human");
    let mut changed = ci_signed();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    let out_of_scope = signed("p256", "ci", "human", "https://github.com/acme/shop");
    // A field nobody signed, as a default the apiserver sets and Custody does not know would be.
    let mut added = ci_signed();
    added["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] =
        json!({"grpc": {"port": 9000, "mode": "strict"}});
    let mut text = String::new();
    for (name, object) in [
        ("unsigned", unsigned),
        ("forged actor", forged),
        ("template changed", changed),
        ("field added", added),
        ("key out of scope", out_of_scope),
    ] {
        let d = judge_signed(&object, &set);
        text.push_str(&format!("## {name}\n{}\n\n", d.message.unwrap()));
    }
    // The template digests in a SubjectMismatch depend only on the manifest, so they are stable.
    check_golden("signature-denials.txt", &text);
}

/// A signed envelope and the claim it verifies against.
fn envelope_and_claim() -> (String, Claim, Vec<custody_crds::attestation::CompiledKey>) {
    let object = ci_signed();
    let annotations: BTreeMap<String, String> = object["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let claim = claim_from_value(
        WorkloadKind::Deployment,
        "shop",
        &object,
        &annotations,
        &Vocabulary::default(),
    );
    let keys = keys()
        .iter()
        .map(|k| custody_crds::attestation::CompiledKey::compile(k).unwrap())
        .collect();
    (annotations["custody.dev/attestation"].clone(), claim, keys)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any one character of the envelope replaced by another: it never verifies.
    #[test]
    fn no_mutated_envelope_verifies(position in any::<prop::sample::Index>(), replacement in 0x20u8..0x7f) {
        let (envelope, claim, keys) = envelope_and_claim();
        let now = Timestamp::now();
        prop_assert!(custody_crds::attestation::verify(&envelope, &keys, &claim, now).is_ok());
        let at = position.index(envelope.len());
        prop_assume!(envelope.as_bytes()[at] != replacement);
        let mut bytes = envelope.into_bytes();
        bytes[at] = replacement;
        let mutated = String::from_utf8(bytes).unwrap();
        prop_assert!(custody_crds::attestation::verify(&mutated, &keys, &claim, now).is_err());
    }

    /// Any bit of the signed payload or of the signature flipped, re-encoded properly: it never
    /// verifies.
    #[test]
    fn no_bit_flip_verifies(position in any::<prop::sample::Index>(), bit in 0u8..8, in_signature in any::<bool>()) {
        let (envelope, claim, keys) = envelope_and_claim();
        let mut parsed: Envelope = serde_json::from_str(&envelope).unwrap();
        if in_signature {
            let mut sig = STANDARD.decode(&parsed.signatures[0].sig).unwrap();
            let at = position.index(sig.len());
            sig[at] ^= 1 << bit;
            parsed.signatures[0].sig = STANDARD.encode(sig);
        } else {
            let mut payload = parsed.payload_bytes().unwrap();
            let at = position.index(payload.len());
            payload[at] ^= 1 << bit;
            parsed.payload = STANDARD.encode(payload);
        }
        let mutated = serde_json::to_string(&parsed).unwrap();
        prop_assert!(custody_crds::attestation::verify(&mutated, &keys, &claim, Timestamp::now()).is_err());
    }
}

#[test]
fn a_policy_with_a_bad_key_is_refused_at_its_own_admission() {
    let policy = json!({
        "apiVersion": "custody.dev/v1alpha1",
        "kind": "CustodyPolicy",
        "metadata": {"name": "signed"},
        "spec": {"signatures": {"keys": [{"keyId": "ci", "publicKey": key_file("p384.pub")}]}}
    });
    let body = review_of("CREATE", &policy, None, "admin", &[]);
    let request = support::request(&body);
    let d = custody_engine::validate_policy(&request);
    assert!(!d.allowed);
    assert_eq!(codes(&d), vec![ViolationCode::InvalidPolicy]);
    assert!(
        d.message
            .unwrap()
            .contains("spec.signatures.keys[0].publicKey: unsupported key algorithm"),
    );
    let mut good = policy.clone();
    good["spec"]["signatures"]["keys"][0]["publicKey"] = json!(key_file("p256.pub"));
    let body = review_of("CREATE", &good, None, "admin", &[]);
    let request = support::request(&body);
    assert!(custody_engine::validate_policy(&request).allowed);
}
