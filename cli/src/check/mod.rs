//! `custody check`: the admission engine on manifest files, with no cluster.
//!
//! Files (or stdin) are read into documents with their positions ([`manifests`]), policies and teams
//! come from CustodyPolicy and CustodyTeam files (or the built-in default policy), and every
//! object is judged as a CREATE by a configurable identity at a configurable time, exactly as
//! the webhook would judge it: a manifest with a controller ownerReference is judged too, unless
//! that identity is a controller's. CustodyPolicy and CustodyTeam documents among the manifests
//! are judged as the webhook's policy endpoint would.

mod report;
mod verify;

use std::path::PathBuf;

use custody_crds::{Vocabulary, WorkloadKind};
use custody_engine::attest::AttestationCache;
pub use custody_engine::files::{LoadError, Origin};
use custody_engine::files::{PolicyFiles, load_policy_files, manifests};
use custody_engine::{
    AgentActivity, Context, Decision, GroupVersionKind, PolicySet, QuarantineIndex, Request,
    UserInfo, WorkloadObject, evaluate, validate_policy,
};
pub use report::{Report, Summary};
use serde_json::Value;
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
    let loaded = manifests::load_paths(paths, stdin);
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
        activity: &AgentActivity::default(),
        changes: &custody_engine::ChangeIndex::default(),
    };
    let results = loaded
        .objects
        .into_iter()
        .map(|(origin, object)| judge(origin, &object, &policies, &ctx, options))
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

fn judge(
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
            let request = Request::create(
                GroupVersionKind::new(group, version, kind.as_str()),
                namespace.as_deref(),
                name.as_str(),
                UserInfo::named(options.user.as_str(), &options.groups),
                view,
            );
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
