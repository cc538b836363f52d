//! Helpers shared by the CLI's engine-level tests: the admission test data from
//! `custody-testkit`, and golden files.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

pub use custody_testkit::admission::*;

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
