//! Golden files: a test's output compared with a file kept in the repository, rewritten instead
//! when `CUSTODY_BLESS` is set, so a deliberate change is one command and a reviewed diff.

use std::path::Path;

/// Compares `actual` with `dir/<file>`; with `CUSTODY_BLESS=1` writes it instead.
///
/// # Panics
///
/// When they differ (showing both), or when blessing cannot write the file.
pub fn check_golden(dir: &Path, file: &str, actual: &str) {
    let path = dir.join(file);
    if std::env::var_os("CUSTODY_BLESS").is_some() {
        if let Err(error) = std::fs::write(&path, actual) {
            panic!("cannot bless {}: {error}", path.display());
        }
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "golden {file} differs (CUSTODY_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}
