//! Helpers shared by the engine's table and golden tests: the admission test data from
//! `custody-testkit`, the captured AdmissionReviews, and golden files.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

pub use custody_testkit::admission::*;
use serde_json::Value;

/// The captured AdmissionReview requests (see testkit/fixtures/README.md), kept in the
/// repository so a clone alone passes; the webhook's codec tests replay them too.
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

/// Compares `actual` with `tests/golden/<file>` of this crate; `CUSTODY_BLESS=1` writes it
/// instead.
pub fn check_golden(file: &str, actual: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    custody_testkit::golden::check_golden(&dir, file, actual);
}
