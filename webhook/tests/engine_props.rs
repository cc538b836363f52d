//! Property tests: no input, however malformed, panics the decoder, the engine, the policy
//! compiler or the manifest reader; and every answer encodes to a valid response.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_engine::files::manifests as load;
use custody_engine::{PolicySet, QuarantineIndex, validate_policy};
use custody_webhook::review;
use proptest::prelude::*;
use serde_json::{Value, json};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z/.:-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("custody.dev/actor"),
            Just("agent"),
            Just("human"),
            Just("metadata"),
            Just("annotations"),
            Just("template"),
            Just("spec"),
            Just("3f9c2a7")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,8}",
                    Just("metadata".to_string()),
                    Just("annotations".to_string()),
                    Just("labels".to_string()),
                    Just("spec".to_string()),
                    Just("template".to_string()),
                    Just("ownerReferences".to_string()),
                    Just("custody.dev/actor".to_string()),
                    Just("custody.dev/source-commit".to_string()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_kind() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("apps", "Deployment")),
        Just(("apps", "StatefulSet")),
        Just(("apps", "DaemonSet")),
        Just(("apps", "ReplicaSet")),
        Just(("", "ReplicationController")),
        Just(("batch", "Job")),
        Just(("batch", "CronJob")),
        Just(("", "Pod")),
        Just(("custody.dev", "CustodyPolicy")),
        Just(("example.com", "Widget")),
    ]
}

fn arb_operation() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("CREATE"),
        Just("UPDATE"),
        Just("DELETE"),
        Just("CONNECT")
    ]
}

fn judge_all(body: &[u8]) {
    let Ok(request) = review::decode(body) else {
        return;
    };
    let decision = if request.kind.kind == "CustodyPolicy" {
        validate_policy(&request)
    } else {
        support::judge_with(
            body,
            &PolicySet::builtin_default(),
            &QuarantineIndex::default(),
        )
    };
    if !decision.allowed {
        assert!(decision.message.is_some(), "a denial always says why");
    }
    let encoded: Value = serde_json::from_slice(&review::encode(&request.uid, &decision)).unwrap();
    assert_eq!(
        encoded["response"]["uid"].as_str(),
        Some(request.uid.as_ref())
    );
    assert_eq!(
        encoded["response"]["allowed"].as_bool(),
        Some(decision.allowed)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        judge_all(&bytes);
    }

    #[test]
    fn arbitrary_objects_never_panic_the_engine(
        (group, kind) in arb_kind(),
        operation in arb_operation(),
        object in arb_json(),
        old in arb_json(),
        sub in prop::option::of(Just("scale")),
    ) {
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": group, "version": "v1", "kind": kind},
                "subResource": sub, "namespace": "shop", "operation": operation,
                "userInfo": {"username": "system:serviceaccount:agents:bot", "groups": ["g"]},
                "object": object, "oldObject": old}
        });
        judge_all(body.to_string().as_bytes());
    }

    #[test]
    fn mutated_captured_requests_never_panic_the_engine(
        fixture_index in 0usize..19,
        path in prop::collection::vec("[a-zA-Z]{1,10}", 1..5),
        replacement in arb_json(),
    ) {
        let mut names: Vec<_> = std::fs::read_dir(support::fixture_dir()).unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        let mut doc = support::fixture_json(&names[fixture_index % names.len()]);
        // Walk into request.object along known-ish keys, replacing the last one reached.
        let mut target = &mut doc["request"]["object"];
        for key in &path[..path.len() - 1] {
            if target.get(key.as_str()).is_none() { break; }
            target = &mut target[key.as_str()];
        }
        if target.is_object() {
            target[path[path.len() - 1].as_str()] = replacement;
        } else {
            *target = replacement;
        }
        judge_all(doc.to_string().as_bytes());
    }

    #[test]
    fn arbitrary_policies_never_panic_the_compiler(spec in arb_json()) {
        let policy = json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "p"}, "spec": spec});
        if let Ok(p) = serde_json::from_value::<custody_crds::CustodyPolicy>(policy) {
            let _ = PolicySet::compile([p]);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_the_manifest_reader(text in "(?s).{0,400}") {
        let mut loaded = load::Loaded::default();
        load::load_text("fuzz.yaml", &text, &mut loaded);
    }

    #[test]
    fn yaml_shaped_text_never_panics_the_manifest_reader(
        lines in prop::collection::vec(prop_oneof![
            Just("---".to_string()), Just("...".to_string()), Just("apiVersion: v1".to_string()),
            Just("kind: Pod".to_string()), Just("metadata:".to_string()), Just("  name: x".to_string()),
            Just("  annotations: {a: b}".to_string()), Just("- item".to_string()), Just("key: [1, 2".to_string()),
            Just("# Source: x".to_string()), Just("  - {k: v}".to_string()), Just("&a x: *a".to_string()),
            "[ -~]{0,20}",
        ], 0..20)
    ) {
        let mut loaded = load::Loaded::default();
        load::load_text("fuzz.yaml", &lines.join("\n"), &mut loaded);
    }
}
