//! The engine on requests captured from a real kube-apiserver: what arrives on the wire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod support;

use custody_engine::{Outcome, ViolationCode};
use support::{fixture, fixture_dir, judge};

/// What the built-in policy reports for an object with no custody annotations.
const UNANNOTATED: &[(ViolationCode, &str)] = &[
    (ViolationCode::MissingAnnotation, "custody.dev/actor"),
    (ViolationCode::MissingAnnotation, "custody.dev/source-repo"),
    (
        ViolationCode::MissingAnnotation,
        "custody.dev/source-commit",
    ),
    (ViolationCode::MissingAnnotation, "custody.dev/owner"),
    (ViolationCode::MissingAnnotation, "custody.dev/oncall"),
];

/// (fixture, allowed, outcome, violation codes with the annotation each concerns)
const CASES: &[(&str, bool, Outcome, &[(ViolationCode, &str)])] = &[
    (
        "deployment-create-agent-annotated.json",
        true,
        Outcome::Allowed,
        &[],
    ),
    (
        "deployment-create-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    (
        "deployment-create-dry-run-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    (
        "deployment-create-server-side-apply-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    (
        "deployment-update-image-and-provenance-changed.json",
        true,
        Outcome::Allowed,
        &[],
    ),
    (
        "deployment-update-metadata-only-provenance-changed.json",
        true,
        Outcome::Allowed,
        &[],
    ),
    (
        "deployment-update-image-changed-provenance-unchanged.json",
        false,
        Outcome::Denied,
        &[(ViolationCode::StaleProvenance, "custody.dev/source-commit")],
    ),
    (
        "deployment-update-env-changed-provenance-unchanged.json",
        false,
        Outcome::Denied,
        &[(ViolationCode::StaleProvenance, "custody.dev/source-commit")],
    ),
    // `kubectl rollout undo` restores the annotations the target ReplicaSet recorded. In this
    // capture the earlier revisions were made without new provenance, so the restored
    // provenance equals the current one: stale. Under Custody each admitted revision carries
    // its own provenance, and an undo restores it.
    (
        "deployment-update-rollout-undo-by-human.json",
        false,
        Outcome::Denied,
        &[(ViolationCode::StaleProvenance, "custody.dev/source-commit")],
    ),
    (
        "deployment-scale-subresource.json",
        true,
        Outcome::Skipped,
        &[],
    ),
    ("deployment-delete.json", true, Outcome::Skipped, &[]),
    (
        "replicaset-create-by-deployment-controller.json",
        true,
        Outcome::Skipped,
        &[],
    ),
    (
        "pod-create-by-replicaset-controller.json",
        true,
        Outcome::Skipped,
        &[],
    ),
    (
        "pod-create-by-job-controller.json",
        true,
        Outcome::Skipped,
        &[],
    ),
    (
        "pod-create-bare-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    // The same Pod with a user-written controller ownerReference: an ownerReference is a field
    // anyone may write, so only a controller identity makes a write a controller's.
    (
        "pod-create-forged-owner-reference-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    (
        "statefulset-create-human-missing-provenance.json",
        false,
        Outcome::Denied,
        &[
            (ViolationCode::MissingAnnotation, "custody.dev/source-repo"),
            (
                ViolationCode::MissingAnnotation,
                "custody.dev/source-commit",
            ),
        ],
    ),
    (
        "cronjob-create-automation-missing-provenance.json",
        false,
        Outcome::Denied,
        &[
            (ViolationCode::MissingAnnotation, "custody.dev/source-repo"),
            (
                ViolationCode::MissingAnnotation,
                "custody.dev/source-commit",
            ),
        ],
    ),
    (
        "daemonset-create-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
    (
        "job-create-unannotated.json",
        false,
        Outcome::Denied,
        UNANNOTATED,
    ),
];

#[test]
fn every_captured_request_gets_the_expected_decision() {
    for (name, allowed, outcome, expected) in CASES {
        let decision = judge(&fixture(name));
        assert_eq!(decision.allowed, *allowed, "{name}: {decision:#?}");
        assert_eq!(decision.outcome, *outcome, "{name}: {decision:#?}");
        let found: Vec<(ViolationCode, String)> = decision
            .violations
            .iter()
            .map(|v| {
                let annotation = v
                    .field
                    .trim_start_matches("metadata.annotations[")
                    .trim_end_matches(']')
                    .to_string();
                (v.code, annotation)
            })
            .collect();
        let expected: Vec<(ViolationCode, String)> =
            expected.iter().map(|(c, a)| (*c, a.to_string())).collect();
        assert_eq!(found, expected, "{name}");
        if !allowed {
            assert_eq!(decision.code, 403, "{name}");
            let message = decision.message.as_deref().unwrap_or_default();
            for (_, annotation) in &expected {
                assert!(message.contains(annotation.as_str()), "{name}: {message}");
            }
        }
    }
}

#[test]
fn every_fixture_is_covered() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut covered: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    covered.sort();
    assert_eq!(names, covered, "a fixture without an expected decision");
}

#[test]
fn the_response_echoes_the_uid_and_carries_structured_causes() {
    let body = fixture("deployment-create-unannotated.json");
    let request = custody_webhook::review::decode(&body).unwrap();
    let decision = judge(&body);
    let response: serde_json::Value =
        serde_json::from_slice(&custody_webhook::review::encode(&request.uid, &decision)).unwrap();
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], request.uid.as_ref());
    assert_eq!(response["response"]["allowed"], false);
    assert_eq!(response["response"]["status"]["code"], 403);
    assert_eq!(response["response"]["status"]["reason"], "Forbidden");
    let causes = response["response"]["status"]["details"]["causes"]
        .as_array()
        .unwrap();
    assert_eq!(causes.len(), 5);
    assert_eq!(causes[0]["reason"], "MissingAnnotation");
    assert_eq!(
        causes[0]["field"],
        "metadata.annotations[custody.dev/actor]"
    );
}
