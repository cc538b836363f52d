//! What `custody stamp` reads from the machine: the environment, the git checkout and the
//! repository's `.custody.yaml`. Kept apart so [`resolve`](super::resolve) stays pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::resolve::{GitInfo, RepoConfig};

/// The file a repository declares its owner and on-call in.
pub const CONFIG_FILE: &str = ".custody.yaml";

/// The process environment.
pub fn environment() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The checkout `dir` is in, if any: its top level and what it says.
pub fn git_info(dir: &Path) -> Option<(PathBuf, GitInfo)> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let info = GitInfo {
        remote: git(dir, &["remote", "get-url", "origin"]).filter(|r| !r.is_empty()),
        head: git(dir, &["rev-parse", "HEAD"]).filter(|h| !h.is_empty()),
        dirty: git(dir, &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty()),
    };
    Some((PathBuf::from(top), info))
}

/// Reads `path`, or `.custody.yaml` in `dir` and then in the checkout's top level.
pub fn repo_config(
    path: Option<&Path>,
    dir: &Path,
    top: Option<&Path>,
) -> Result<Option<RepoConfig>, String> {
    let candidates: Vec<PathBuf> = match path {
        Some(p) => vec![p.to_path_buf()],
        None => std::iter::once(dir.join(CONFIG_FILE))
            .chain(top.map(|t| t.join(CONFIG_FILE)))
            .collect(),
    };
    for candidate in candidates {
        match std::fs::read_to_string(&candidate) {
            Ok(text) => {
                return serde_saphyr::from_str::<RepoConfig>(&text)
                    .map(Some)
                    .map_err(|e| format!("{}: {e}", candidate.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.is_none() => {}
            Err(e) => return Err(format!("{}: {e}", candidate.display())),
        }
    }
    Ok(None)
}
