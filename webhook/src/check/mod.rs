//! `custody check`: the admission engine on manifest files, with no cluster.
//!
//! Files (or stdin) are read into documents with their positions ([`load`]), policies and teams
//! come from CustodyPolicy and CustodyTeam files (or the built-in default policy), and every
//! object is judged as a CREATE by a configurable identity at a configurable time, exactly as
//! the webhook would judge it: a manifest with a controller ownerReference is judged too, unless
//! that identity is a controller's. CustodyPolicy and CustodyTeam documents among the manifests
//! are judged as the webhook's policy endpoint would.

pub mod load;
mod report;
mod verify;

use std::borrow::Cow;
use std::path::PathBuf;

use custody_crds::{CustodyPolicy, CustodyTeam, Vocabulary, WorkloadKind};
use serde_json::Value;

use crate::attest::AttestationCache;
use crate::engine::{
    Context, Decision, PolicyError, PolicySet, QuarantineIndex, TeamIndex, evaluate,
    validate_policy,
};
use crate::review::{AdmissionRequest, GroupVersionKind, Operation, UserInfo, WorkloadObject};
pub use load::{LoadError, Origin};
pub use report::{Report, Summary};
pub use verify::verify_report;

/// Who the objects are checked as, and under which policies.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// CustodyPolicy files or directories; empty means the built-in default policy.
    pub policies: Vec<PathBuf>,
    /// The requester's user name.
    pub user: String,
    /// The requester's groups.
    pub groups: Vec<String>,
    /// The namespace of objects that do not name one.
    pub namespace: String,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// The time to judge signing keys' validity windows at.
    pub now: k8s_openapi::jiff::Timestamp,
}

/// One object's verdict.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectResult {
    /// Where it came from.
    pub origin: Origin,
    /// `Kind` or `Kind.group`.
    pub kind: String,
    /// Its namespace, if namespaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// The engine's decision.
    pub decision: Decision,
}

/// Reads, judges and reports. Never fails: every problem ends up in the report.
pub fn run(paths: &[PathBuf], stdin: &mut dyn std::io::Read, options: &CheckOptions) -> Report {
    let PolicyFiles {
        policies,
        teams,
        policy_errors,
        errors: policy_load_errors,
    } = load_policy_files(&options.policies, stdin);
    let loaded = load::load_paths(paths, stdin);
    let quarantine = QuarantineIndex::default();
    let attestations = AttestationCache::default();
    let ctx = Context {
        vocabulary: &options.vocabulary,
        namespace_labels: None,
        quarantine: &quarantine,
        now: options.now,
        attestations: &attestations,
        teams: &teams,
        background: false,
        activity: &crate::engine::AgentActivity::default(),
    };
    let results = loaded
        .objects
        .into_iter()
        .enumerate()
        .map(|(i, (origin, object))| judge(i, origin, &object, &policies, &ctx, options))
        .collect();
    let mut errors = policy_load_errors;
    errors.extend(loaded.errors);
    Report {
        results,
        errors,
        policy_errors,
        policies: policies.iter().map(|p| p.name.clone()).collect(),
    }
}

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
    let loaded = load::load_paths(paths, stdin);
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

/// A CREATE of an object by a requester, as the webhook would receive it: what `custody check`
/// judges for a manifest and `kubectl custody why` for a live object.
pub struct OfflineCreate<'a> {
    /// The request's uid (shown in nothing but logs).
    pub uid: Cow<'a, str>,
    /// The object's API group (empty for the core group).
    pub group: &'a str,
    /// Its API version.
    pub version: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its namespace, for a namespaced object.
    pub namespace: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// Who asks.
    pub user: &'a str,
    /// The requester's groups.
    pub groups: &'a [String],
}

impl<'a> OfflineCreate<'a> {
    /// The request, carrying `object`; a server dry run, as nothing is written.
    pub fn request(self, object: WorkloadObject<'a>) -> AdmissionRequest<'a> {
        AdmissionRequest {
            uid: self.uid,
            kind: GroupVersionKind {
                group: Cow::Borrowed(self.group),
                version: Cow::Borrowed(self.version),
                kind: Cow::Borrowed(self.kind),
            },
            sub_resource: None,
            operation: Operation::Create,
            namespace: self.namespace.map(Cow::Borrowed),
            name: Some(Cow::Borrowed(self.name)),
            user_info: UserInfo {
                username: Cow::Borrowed(self.user),
                groups: self
                    .groups
                    .iter()
                    .map(|g| Cow::Borrowed(g.as_str()))
                    .collect(),
            },
            dry_run: true,
            object: Some(object),
            old_object: None,
        }
    }
}

fn judge(
    index: usize,
    origin: Origin,
    object: &Value,
    policies: &PolicySet,
    ctx: &Context<'_>,
    options: &CheckOptions,
) -> ObjectResult {
    let str_at = |path: &[&str]| {
        let mut v = object;
        for p in path {
            v = v.get(p).unwrap_or(&Value::Null);
        }
        v.as_str().unwrap_or_default().to_string()
    };
    let api_version = str_at(&["apiVersion"]);
    let kind = str_at(&["kind"]);
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let name = match (
        str_at(&["metadata", "name"]),
        str_at(&["metadata", "generateName"]),
    ) {
        (n, _) if !n.is_empty() => n,
        (_, g) if !g.is_empty() => format!("{g}<generated>"),
        _ => "<unnamed>".to_string(),
    };
    let is_policy =
        group == custody_crds::GROUP && matches!(kind.as_str(), "CustodyPolicy" | "CustodyTeam");
    let namespaced = !is_policy && kind != "Namespace";
    let namespace = namespaced.then(|| {
        Some(str_at(&["metadata", "namespace"]))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| options.namespace.clone())
    });
    let raw = serde_json::value::to_raw_value(object);
    let view = raw
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|raw| WorkloadObject::parse(raw).map_err(|e| e.to_string()));
    let decision = match view {
        Ok(view) => {
            let request = OfflineCreate {
                uid: Cow::Owned(format!("custody-check-{}", index + 1)),
                group,
                version,
                kind: kind.as_str(),
                namespace: namespace.as_deref(),
                name: name.as_str(),
                user: options.user.as_str(),
                groups: &options.groups,
            }
            .request(view);
            if is_policy {
                validate_policy(&request)
            } else {
                evaluate(policies, &request, ctx)
            }
        }
        Err(e) => Decision::invalid(format!("cannot read the object: {e}")),
    };
    let kind_label = if group.is_empty() || WorkloadKind::from_group_kind(group, &kind).is_some() {
        kind.clone()
    } else {
        format!("{kind}.{group}")
    };
    ObjectResult {
        origin,
        kind: kind_label,
        namespace,
        name,
        decision,
    }
}
