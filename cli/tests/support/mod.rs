//! Helpers shared by the CLI's engine-level tests: the admission test data from
//! `custody-testkit`, and golden files.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

pub use custody_testkit::admission::*;

/// Compares `actual` with `tests/golden/<file>` of this crate; `CUSTODY_BLESS=1` writes it
/// instead.
pub fn check_golden(file: &str, actual: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    custody_testkit::golden::check_golden(&dir, file, actual);
}
