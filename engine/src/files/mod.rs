//! Policy files on disk: CustodyPolicy and CustodyTeam documents read and compiled, for the
//! binaries that take `--policy` (`custody check`, the webhook's standalone mode) and for
//! benches.
//!
//! This is the engine's one edge that touches the file system; [`crate::evaluate`] never
//! calls it. Documents are read with their positions ([`manifests`]), so every problem names
//! the file, document and line.

pub mod manifests;

use std::path::PathBuf;

use custody_crds::{CustodyPolicy, CustodyTeam};
use serde_json::Value;

pub use manifests::{LoadError, Loaded, Origin};

use crate::policies::{PolicyError, PolicySet};
use crate::teams::TeamIndex;

/// What `--policy` files hold: CustodyPolicies and the CustodyTeams they refer to.
#[derive(Debug, Default)]
pub struct PolicyFiles {
    /// The valid policies (the built-in default when no file is named).
    pub policies: PolicySet,
    /// The valid teams.
    pub teams: TeamIndex,
    /// Policies that failed to compile.
    pub policy_errors: Vec<PolicyError>,
    /// Documents that could not be read, and teams that failed their checks.
    pub errors: Vec<LoadError>,
}

/// Reads CustodyPolicy and CustodyTeam files (the built-in default policy when `paths` is
/// empty) and compiles them.
pub fn load_policy_files(paths: &[PathBuf], stdin: &mut dyn std::io::Read) -> PolicyFiles {
    if paths.is_empty() {
        return PolicyFiles {
            policies: PolicySet::builtin_default(),
            ..PolicyFiles::default()
        };
    }
    let loaded = manifests::load_paths(paths, stdin);
    let mut errors = loaded.errors;
    let mut policies = Vec::new();
    let mut teams = Vec::new();
    for (origin, value) in loaded.objects {
        match value.get("kind").and_then(Value::as_str) {
            Some("CustodyPolicy") => match serde_json::from_value::<CustodyPolicy>(value) {
                Ok(p) => policies.push(p),
                Err(e) => errors.push(LoadError {
                    origin,
                    message: format!("not a valid CustodyPolicy: {e}"),
                }),
            },
            Some("CustodyTeam") => match serde_json::from_value::<CustodyTeam>(value) {
                Ok(t) => teams.push((origin, t)),
                Err(e) => errors.push(LoadError {
                    origin,
                    message: format!("not a valid CustodyTeam: {e}"),
                }),
            },
            _ => errors.push(LoadError {
                origin,
                message: "policy files may only hold CustodyPolicy and CustodyTeam objects"
                    .to_string(),
            }),
        }
    }
    let (team_index, team_errors) = TeamIndex::compile(teams.iter().map(|(_, t)| t));
    for error in team_errors {
        let origin = teams
            .iter()
            .find(|(_, t)| t.metadata.name.as_deref() == Some(error.team.as_str()))
            .map(|(o, _)| o.clone());
        if let Some(origin) = origin {
            errors.push(LoadError {
                origin,
                message: error.to_string(),
            });
        }
    }
    let (set, policy_errors) = PolicySet::compile(policies);
    PolicyFiles {
        policies: set,
        teams: team_index,
        policy_errors,
        errors,
    }
}

/// Reads CustodyPolicy files (the built-in default when `paths` is empty) and compiles them;
/// CustodyTeams among them are left out. Returns the set, the policies that failed to compile,
/// and the documents that could not be read.
pub fn load_policies(
    paths: &[PathBuf],
    stdin: &mut dyn std::io::Read,
) -> (PolicySet, Vec<PolicyError>, Vec<LoadError>) {
    let files = load_policy_files(paths, stdin);
    (files.policies, files.policy_errors, files.errors)
}
