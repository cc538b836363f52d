//! The digest against a real apiserver: every case of `tests/defaulting/cases.json`, as a
//! manifest, has the digest of what a Kubernetes apiserver returned for it (captured by
//! `tests/defaulting/capture.py` with server-side dry runs, as a bare Pod and as a
//! Deployment's template). A default or a serialization rule the implementation misses fails
//! here with the field that differs.

use custody_crds::WorkloadKind;
use custody_crds::attestation::{describe, differences, normalized_template, subject_digest};
use custody_crds::template_fingerprint;
use serde_json::{Value, json};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/defaulting/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every captured apiserver version.
const CAPTURES: [&str; 1] = ["apiserver-v1.28.7.json"];

fn check(kind: WorkloadKind, case: &str, manifest: &Value, stored: &Value) -> Option<String> {
    let signed = normalized_template(kind, manifest.clone());
    let live = normalized_template(kind, stored.clone());
    if template_fingerprint(&signed) == template_fingerprint(&live) {
        return None;
    }
    Some(format!(
        "{kind} {case}: {}",
        describe(&differences(kind, &signed, &live))
    ))
}

#[test]
fn every_case_digests_as_the_apiserver_stored_it() {
    let cases = load("cases.json");
    let cases = cases["cases"].as_object().expect("cases");
    let mut failures = Vec::new();
    for capture in CAPTURES {
        let captured = load(capture);
        let server = captured["server"].as_str().unwrap_or(capture);
        let captured = captured["cases"].as_object().expect("captured cases");
        assert_eq!(
            captured.len(),
            cases.len(),
            "{capture} is stale: capture it again"
        );
        for (name, spec) in cases {
            let stored = &captured[name];
            let template = json!({"metadata": {"labels": {"app": name}}, "spec": spec});
            failures.extend(check(WorkloadKind::Pod, name, spec, &stored["pod"]));
            failures.extend(check(
                WorkloadKind::Deployment,
                name,
                &template,
                &stored["template"],
            ));
            // The stored template's digest is its plain fingerprint: the controller records
            // the one and the webhook computes the other.
            assert_eq!(
                subject_digest(WorkloadKind::Deployment, &stored["template"]),
                template_fingerprint(&stored["template"]),
                "{server} {name}: defaulting the stored template changed it"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
