//! Admission test data shared by the engine's and the CLI's tests: workloads and provenance
//! annotations as JSON, AdmissionReview bodies around them, and a judge with the built-in
//! policy. A review's `request` is read straight into the engine's [`Request`] (its fields
//! follow the wire names), so these tests need not link the webhook server's codec.
#![allow(clippy::expect_used)]

use custody_crds::Vocabulary;
use custody_engine::{Context, Decision, PolicySet, QuarantineIndex, Request, evaluate};
use serde::Deserialize;
use serde_json::{Value, json};

/// The `request` of an AdmissionReview body.
pub fn request(body: &[u8]) -> Request<'_> {
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Request<'a>,
    }
    serde_json::from_slice::<Review<'_>>(body)
        .expect("an AdmissionReview with a request")
        .request
}

/// Judges a review body with the given policies and quarantine.
pub fn judge_with(body: &[u8], policies: &PolicySet, quarantine: &QuarantineIndex) -> Decision {
    judge_request(&request(body), policies, quarantine)
}

/// Judges a request, however it was decoded (the webhook's tests decode with its wire codec),
/// with the given policies and quarantine, no teams, no attestations, now.
pub fn judge_request(
    request: &Request<'_>,
    policies: &PolicySet,
    quarantine: &QuarantineIndex,
) -> Decision {
    let vocabulary = Vocabulary::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine,
        now: jiff::Timestamp::now(),
        attestations: &custody_engine::attest::AttestationCache::default(),
        teams: &custody_engine::TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    evaluate(policies, request, &ctx)
}

/// Judges with the built-in policy and no quarantine.
pub fn judge(body: &[u8]) -> Decision {
    judge_with(
        body,
        &PolicySet::builtin_default(),
        &QuarantineIndex::default(),
    )
}

/// A Deployment with the given annotations.
pub fn deployment(name: &str, annotations: Value, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}, "annotations": annotations},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// A complete, valid set of agent provenance and ownership annotations.
pub fn agent_annotations() -> Value {
    json!({
        "custody.dev/actor": "agent",
        "custody.dev/agent": "claude-code/1.0",
        "custody.dev/source-repo": "https://git.example.com/shop/web",
        "custody.dev/source-commit": "3f9c2a7",
        "custody.dev/pipeline-run": "run-1",
        "custody.dev/owner": "team-web",
        "custody.dev/oncall": "web-oncall@example.com"
    })
}

/// Wraps an object in an AdmissionReview request.
pub fn review_of(
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    username: &str,
    groups: &[&str],
) -> Vec<u8> {
    let kind = object["kind"].as_str().unwrap_or("Deployment");
    let api_version = object["apiVersion"].as_str().unwrap_or("apps/v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-0000-0000-000000000001",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": username, "groups": groups},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": false
        }
    })
    .to_string()
    .into_bytes()
}
