//! `CustodyChange`: an agent's proposed revision of a protected workload, waiting for a person.
//!
//! Under a policy's `spec.agents.approval`, an agent's new revision is admitted only when a
//! change request carrying its exact [digest](change_digest) was approved by enough people, is
//! not expired, and has not admitted a revision before. The request is created by `custody
//! propose` (or by an agent harness through the API); people approve or reject it by writing
//! its status (`kubectl custody approve`, `reject`), which the webhook judges like a quarantine
//! lift; the controller marks it `Applied` once the revision it admitted runs.
//!
//! The digest is what an attestation's subject and predicate cover: the workload's subject
//! name, its pod template's subject digest and its signed provenance annotations. Any field of
//! the template, or any of those annotations, that differs makes another digest.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::attestation::Claim;
use crate::policy::WorkloadKind;
use crate::record::Lift;

/// An agent's proposed change to a protected workload.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "custody.dev",
    version = "v1alpha1",
    kind = "CustodyChange",
    plural = "custodychanges",
    shortname = "cchange",
    namespaced,
    status = "CustodyChangeStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.workload.kind"}"#,
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workload.name"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Proposer","type":"string","jsonPath":".spec.proposer","priority":1}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".spec.digest","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustodyChangeSpec {
    /// The workload the change is for, in the request's namespace.
    pub workload: ChangeWorkload,
    /// The change's digest ([`change_digest`]): `sha256:` and 64 hex digits. The webhook admits
    /// only a revision whose digest is exactly this.
    pub digest: String,
    /// The subject digest of the proposed pod template (what a signed attestation's subject
    /// carries).
    pub template_digest: String,
    /// The signed provenance annotations the revision declares, by key without prefix
    /// (`actor`, `agent`, `source-commit`, ...).
    #[serde(default)]
    pub provenance: BTreeMap<String, String>,
    /// The proposed object's labels, for policies that protect workloads by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The agent id (`agent` annotation) that proposes the change.
    pub agent: String,
    /// The authenticated user who created the request; the webhook checks it is the creator.
    pub proposer: String,
    /// Why the agent wants the change, for the reviewer.
    pub reason: String,
    /// What a reviewer needs to see, against what runs now: images, commands, arguments,
    /// environment variable names, resources, and the other fields that changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffLine>,
    /// The diff was cut at [`MAX_DIFF_LINES`] or [`MAX_DIFF_BYTES`]: the digest still names
    /// the whole change, and `kubectl custody changes <name>` says the rest must be read from
    /// the source commit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diff_truncated: bool,
    /// The template fingerprint of the revision the diff was taken against, when the workload
    /// already existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_template_digest: Option<String>,
}

/// The workload a change is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeWorkload {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
}

/// One line of a change's readable diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiffLine {
    /// What changed, e.g. `containers[web].image`.
    pub field: String,
    /// What runs now; absent for something added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// What the change brings; absent for something removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Where a change request stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustodyChangeStatus {
    /// `Pending`, `Approved`, `Rejected`, `Applied` or `Expired`, as the controller last saw
    /// it. Admission does not read it: the webhook judges the approvals themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ChangePhase>,
    /// The people who approved it, in order. Written by `kubectl custody approve`; the webhook
    /// admits one new approval per write, under the writer's own name, from a person allowed to
    /// approve (never the proposer), with a reason; none is ever rewritten or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Lift>,
    /// The person who rejected it, under the same rules. A rejected change is never admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Lift>,
    /// The revision the change admitted, written once by the controller: the approval is spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
    /// When the approval stops admitting the change (or the request stops taking approvals),
    /// as the controller computed it from the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Where the phase comes from, in a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The owning team was told of the proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_notified: Option<bool>,
    /// The decision (approval, rejection) was announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_notified: Option<bool>,
}

/// The revision an approved change admitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// The workload's revision (a Deployment's `deployment.kubernetes.io/revision`, a
    /// StatefulSet's or DaemonSet's ControllerRevision), or its generation for other kinds.
    pub revision: String,
    /// The workload's generation that carried the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the controller saw it.
    pub at: Time,
}

/// Where a change request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ChangePhase {
    /// Waiting for approvals.
    Pending,
    /// Approved by enough people, not yet applied.
    Approved,
    /// A person rejected it.
    Rejected,
    /// It admitted a revision; the approval is spent.
    Applied,
    /// Not approved, or not applied, in time.
    Expired,
}

impl ChangePhase {
    /// Every phase, for metrics.
    pub const ALL: [ChangePhase; 5] = [
        ChangePhase::Pending,
        ChangePhase::Approved,
        ChangePhase::Rejected,
        ChangePhase::Applied,
        ChangePhase::Expired,
    ];

    /// The phase as written.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangePhase::Pending => "Pending",
            ChangePhase::Approved => "Approved",
            ChangePhase::Rejected => "Rejected",
            ChangePhase::Applied => "Applied",
            ChangePhase::Expired => "Expired",
        }
    }
}

/// The most lines a change's diff keeps.
pub const MAX_DIFF_LINES: usize = 100;
/// The most bytes (fields and values together) a change's diff keeps: a reviewer reads it in a
/// terminal, and the request stays far below etcd's object limit.
pub const MAX_DIFF_BYTES: usize = 16 * 1024;
/// The longest value one diff line quotes.
const MAX_VALUE_CHARS: usize = 200;

/// The digest of a change: SHA-256 over the subject name, the template's subject digest and
/// the signed provenance annotations, in a fixed JSON form.
pub fn change_digest(
    subject_name: &str,
    template_digest: &str,
    provenance: &BTreeMap<String, String>,
) -> String {
    #[derive(Serialize)]
    struct Digested<'a> {
        subject: &'a str,
        template: &'a str,
        provenance: &'a BTreeMap<String, String>,
    }
    // A BTreeMap and a struct serialize in one order; the JSON is the same wherever it is made.
    let json = serde_json::to_vec(&Digested {
        subject: subject_name,
        template: template_digest,
        provenance,
    })
    .unwrap_or_default();
    let digest = Sha256::digest(&json);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The change digest of what a workload object claims.
pub fn claim_digest(claim: &Claim) -> String {
    change_digest(
        &claim.subject_name(),
        claim.template_digest.as_str(),
        &claim.annotation_map(),
    )
}

/// The name `custody propose` gives the request for a change: the workload's name and the
/// digest's first ten hex digits, so a denial can name the request before it exists.
pub fn change_name(workload: &str, digest: &str) -> String {
    let hex: String = digest
        .trim_start_matches("sha256:")
        .chars()
        .take(10)
        .collect();
    // 63 characters at most, as a label value (the name is also a label selector's value).
    let stem: String = workload.chars().take(63 - 11).collect();
    format!("{}-{hex}", stem.trim_end_matches(['-', '.']))
}

/// The name for a new request for a change: [`change_name`], or, when earlier requests for the
/// same change hold that name (spent, rejected or expired: they stay as the record), the
/// first of `-2`, `-3`, ... that `taken` does not hold.
pub fn next_change_name(workload: &str, digest: &str, taken: impl Fn(&str) -> bool) -> String {
    let base = change_name(workload, digest);
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken(name))
        .unwrap_or(base)
}

/// Whether `value` is written as a digest: `sha256:` and 64 lower-case hex digits.
pub fn is_digest(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The readable diff of a proposed pod template (`after`, as digested) against the running one
/// (`before`), and whether it was cut to the limits.
pub fn review_diff(before: Option<&Value>, after: &Value) -> (Vec<DiffLine>, bool) {
    let mut lines = Vec::new();
    let empty = Value::Null;
    let before = before.unwrap_or(&empty);
    let spec = |t: &'_ Value| -> Value { t.get("spec").cloned().unwrap_or(Value::Null) };
    let (old_spec, new_spec) = (spec(before), spec(after));
    for list in ["initContainers", "containers"] {
        containers(list, &old_spec, &new_spec, &mut lines);
    }
    rest(before, after, &mut lines);
    cut(lines)
}

/// Containers compared by name: image, command, args, env names, resources.
fn containers(list: &str, old: &Value, new: &Value, lines: &mut Vec<DiffLine>) {
    let by_name = |spec: &Value| -> BTreeMap<String, Value> {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                (name.to_string(), c.clone())
            })
            .collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    let label = |name: &str| format!("{list}[{name}]");
    for (name, container) in &old {
        if !new.contains_key(name) {
            lines.push(DiffLine {
                field: label(name),
                before: Some(text(container.get("image").unwrap_or(&Value::Null))),
                after: None,
            });
        }
    }
    for (name, container) in &new {
        let Some(running) = old.get(name) else {
            lines.push(DiffLine {
                field: label(name),
                before: None,
                after: Some(text(container.get("image").unwrap_or(&Value::Null))),
            });
            continue;
        };
        for field in ["image", "command", "args", "resources"] {
            let (b, a) = (running.get(field), container.get(field));
            if b != a {
                lines.push(DiffLine {
                    field: format!("{}.{field}", label(name)),
                    before: b.map(text),
                    after: a.map(text),
                });
            }
        }
        env_names(&label(name), running, container, lines);
    }
}

/// Environment variables added or removed by name, and those whose value or source changed.
fn env_names(label: &str, old: &Value, new: &Value, lines: &mut Vec<DiffLine>) {
    let env = |c: &Value| -> BTreeMap<String, Value> {
        c.get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e.clone())))
            .collect()
    };
    let (old, new) = (env(old), env(new));
    for name in old
        .keys()
        .chain(new.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (b, a) = (old.get(name), new.get(name));
        if b == a {
            continue;
        }
        // Names only: a value may be a secret someone pasted, and the reviewer sees that it
        // changed, not what it is.
        lines.push(DiffLine {
            field: format!("{label}.env[{name}]"),
            before: b.map(|_| "set".to_string()),
            after: a.map(|_| {
                if b.is_some() {
                    "changed".to_string()
                } else {
                    "set".to_string()
                }
            }),
        });
    }
}

/// Every other top-level field of the template and its spec that changed, by path.
fn rest(before: &Value, after: &Value, lines: &mut Vec<DiffLine>) {
    let keys = |v: &Value, at: &str| -> BTreeMap<String, Value> {
        v.pointer(at)
            .and_then(Value::as_object)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    for (at, prefix, skip) in [
        ("/spec", "spec.", &["containers", "initContainers"][..]),
        ("/metadata", "metadata.", &[][..]),
    ] {
        let (old, new) = (keys(before, at), keys(after, at));
        let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        for name in names {
            if skip.contains(&name.as_str()) {
                continue;
            }
            let (b, a) = (old.get(name), new.get(name));
            if b != a {
                lines.push(DiffLine {
                    field: format!("{prefix}{name}"),
                    before: b.map(text),
                    after: a.map(text),
                });
            }
        }
    }
}

/// A value as one line, cut to [`MAX_VALUE_CHARS`].
fn text(value: &Value) -> String {
    let s = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match s.char_indices().nth(MAX_VALUE_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s,
    }
}

fn cut(lines: Vec<DiffLine>) -> (Vec<DiffLine>, bool) {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let total = lines.len();
    for line in lines {
        let size = line_bytes(&line);
        if kept.len() == MAX_DIFF_LINES || bytes + size > MAX_DIFF_BYTES {
            break;
        }
        bytes += size;
        kept.push(line);
    }
    let truncated = kept.len() < total;
    (kept, truncated)
}

/// The bytes one line counts towards [`MAX_DIFF_BYTES`].
pub fn line_bytes(line: &DiffLine) -> usize {
    line.field.len()
        + line.before.as_ref().map_or(0, String::len)
        + line.after.as_ref().map_or(0, String::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(image: &str, env: &[&str], cpu: &str) -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "web", "image": image,
                "env": env.iter().map(|n| json!({"name": n, "value": "x"})).collect::<Vec<_>>(),
                "resources": {"limits": {"cpu": cpu}}
            }]}
        })
    }

    #[test]
    fn the_digest_covers_subject_template_and_provenance() {
        let prov = BTreeMap::from([("agent".to_string(), "claude".to_string())]);
        let base = change_digest("Deployment/shop/web", "sha256:aa", &prov);
        assert!(is_digest(&base), "{base}");
        assert_eq!(
            base,
            change_digest("Deployment/shop/web", "sha256:aa", &prov)
        );
        assert_ne!(
            base,
            change_digest("Deployment/shop/api", "sha256:aa", &prov)
        );
        assert_ne!(
            base,
            change_digest("Deployment/shop/web", "sha256:ab", &prov)
        );
        let mut other = prov.clone();
        other.insert("source-commit".into(), "abc".into());
        assert_ne!(
            base,
            change_digest("Deployment/shop/web", "sha256:aa", &other)
        );
    }

    #[test]
    fn a_change_proposed_again_gets_the_next_free_name() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(change_name("web", &digest), "web-ababababab");
        assert_eq!(
            next_change_name("web", &digest, |_| false),
            "web-ababababab"
        );
        let taken = ["web-ababababab", "web-ababababab-2"];
        assert_eq!(
            next_change_name("web", &digest, |n| taken.contains(&n)),
            "web-ababababab-3"
        );
        let long = "a".repeat(80);
        assert!(change_name(&long, &digest).len() <= 63);
    }

    #[test]
    fn the_diff_names_what_a_reviewer_needs() {
        let before = template("web:1", &["A", "B"], "1");
        let mut after = template("web:2", &["B", "C"], "2");
        after["spec"]["serviceAccountName"] = json!("web-admin");
        let (lines, truncated) = review_diff(Some(&before), &after);
        assert!(!truncated);
        let fields: Vec<&str> = lines.iter().map(|l| l.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "containers[web].image",
                "containers[web].resources",
                "containers[web].env[A]",
                "containers[web].env[C]",
                "spec.serviceAccountName"
            ]
        );
        assert_eq!(lines[0].before.as_deref(), Some("web:1"));
        assert_eq!(lines[0].after.as_deref(), Some("web:2"));
        assert_eq!(lines[2].after, None, "A was removed");
        assert_eq!(lines[3].before, None, "C was added");
        assert!(
            lines.iter().all(|l| l.after.as_deref() != Some("x")),
            "env values are never copied"
        );
    }

    #[test]
    fn a_new_workload_lists_its_containers_and_a_huge_diff_is_cut() {
        let (lines, _) = review_diff(None, &template("web:1", &[], "1"));
        assert_eq!(lines[0].field, "containers[web]");
        assert_eq!(lines[0].after.as_deref(), Some("web:1"));
        let env: Vec<String> = (0..500).map(|i| format!("VAR_{i}")).collect();
        let names: Vec<&str> = env.iter().map(String::as_str).collect();
        let (lines, truncated) = review_diff(
            Some(&template("web:1", &[], "1")),
            &template("web:1", &names, "1"),
        );
        assert!(truncated);
        assert_eq!(lines.len(), MAX_DIFF_LINES);
    }
}
