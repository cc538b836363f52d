//! Helpers shared by the engine tests: the captured fixtures and synthetic reviews.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use custody_engine::{Decision, PolicySet, QuarantineIndex};
use custody_webhook::review;
use serde_json::Value;

/// The captured AdmissionReview requests (see testkit/fixtures/README.md), kept in the
/// repository so a clone alone passes.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/admission")
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Judges a review body, decoded by the webhook's own codec, with the given policies and
/// quarantine.
pub fn judge_with(body: &[u8], policies: &PolicySet, quarantine: &QuarantineIndex) -> Decision {
    let request = review::decode(body).expect("decodes");
    custody_testkit::admission::judge_request(&request, policies, quarantine)
}

/// Judges with the built-in policy and no quarantine.
pub fn judge(body: &[u8]) -> Decision {
    judge_with(
        body,
        &PolicySet::builtin_default(),
        &QuarantineIndex::default(),
    )
}

/// The synthetic workloads and reviews, shared with the engine's and the CLI's tests.
#[allow(unused_imports)] // Not every test binary that includes this module builds reviews.
pub use custody_testkit::admission::{agent_annotations, deployment, review_of};
