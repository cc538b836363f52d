//! Signing keys and envelopes as `custody stamp --sign` writes them, for the tests of signed
//! provenance and the controller bench's signed cluster.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use base64::Engine as _;
use custody_crds::attestation::{
    Claim, Envelope, SIGNED_KEYS, Statement, apply_server_defaults, subject_digest,
};
use custody_crds::{Actor, KeyScope, TrustedKey, Vocabulary, WorkloadKind};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

pub struct Key {
    pub id: &'static str,
    pair: Ed25519KeyPair,
}

impl Key {
    pub fn new(id: &'static str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Self {
            id,
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
        }
    }

    pub fn trusted(&self, actors: Vec<Actor>) -> TrustedKey {
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(self.pair.public_key().as_ref());
        let b64 = base64::engine::general_purpose::STANDARD.encode(spki);
        TrustedKey {
            key_id: self.id.into(),
            public_key: format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"),
            scope: KeyScope {
                actors,
                ..KeyScope::default()
            },
            ..TrustedKey::default()
        }
    }

    /// The attestation `custody stamp --sign` would write for the Deployment `shop/web` with
    /// `template` and `annotations`.
    pub fn sign(&self, template: &Value, annotations: &BTreeMap<String, String>) -> String {
        self.sign_for(
            WorkloadKind::Deployment,
            "shop",
            "web",
            template,
            annotations,
        )
    }

    /// The attestation for the workload `kind` `namespace/name`.
    pub fn sign_for(
        &self,
        kind: WorkloadKind,
        namespace: &str,
        name: &str,
        template: &Value,
        annotations: &BTreeMap<String, String>,
    ) -> String {
        let vocabulary = Vocabulary::default();
        let claim = Claim {
            kind,
            namespace: namespace.into(),
            name: name.into(),
            template_digest: subject_digest(kind, template),
            template: None,
            unbound_digest: None,
            annotations: SIGNED_KEYS
                .into_iter()
                .filter_map(|k| annotations.get(vocabulary.key(k)).map(|v| (k, v.clone())))
                .collect(),
        };
        let payload = serde_json::to_vec(&Statement::for_claim(&claim, "test", false)).unwrap();
        let envelope = Envelope::seal(&payload, self.id, |m| {
            Ok::<_, ()>(self.pair.sign(m).as_ref().to_vec())
        })
        .unwrap();
        serde_json::to_string(&envelope).unwrap()
    }
}

/// A pod template as the apiserver stores it (defaults filled in), with the ReplicaSet's hash.
pub fn stored(image: &str, hash: &str) -> Value {
    let mut t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}});
    apply_server_defaults(WorkloadKind::Deployment, &mut t);
    let mut rs = t.clone();
    rs["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    rs
}
