//! Helpers shared by the CLI's engine-level tests: synthetic reviews judged by the engine, and
//! golden files. The server's codec is not a dependency here: a review's `request` is read
//! straight into the engine's [`Request`], whose fields follow the wire names.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

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
    let request = request(body);
    let vocabulary = Vocabulary::default();
    let ctx = Context {
        vocabulary: &vocabulary,
        namespace_labels: None,
        quarantine,
        now: k8s_openapi::jiff::Timestamp::now(),
        attestations: &custody_engine::attest::AttestationCache::default(),
        teams: &custody_engine::TeamIndex::default(),
        background: false,
        activity: &custody_engine::AgentActivity::default(),
    };
    evaluate(policies, &request, &ctx)
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

/// Compares `actual` with `tests/golden/<file>`; `CUSTODY_BLESS=1` writes it instead.
pub fn check_golden(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(file);
    if std::env::var_os("CUSTODY_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "golden {file} differs (CUSTODY_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}
