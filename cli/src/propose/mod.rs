//! `custody propose` and `kubectl custody propose`: an agent's workload manifest turned into the
//! CustodyChange a person approves before the webhook admits that exact revision.
//!
//! Data flows one way: the manifest's text is read into its workload documents
//! ([`read_workloads`]); each is built into a change ([`build`]) with the digest the webhook
//! computes at admission for the same object ([`claim_from_value`] then [`claim_digest`]), and
//! the readable diff against what runs now, both templates normalized so that the apiserver's
//! defaults never show as changes. Nothing here reads a file, the cluster or the clock: the
//! binaries hand in the text and the running object, and write the result.
//!
//! [`claim_from_value`]: custody_engine::attest::claim_from_value
//! [`claim_digest`]: custody_crds::change::claim_digest

mod follow;

use std::collections::BTreeMap;

use custody_crds::attestation::template_path;
use custody_crds::change::{change_name, claim_digest, review_diff};
use custody_crds::{
    Actor, AnnotationKey, ChangeWorkload, CustodyChange, CustodyChangeSpec, Vocabulary,
    WorkloadKind,
};
use custody_engine::MIN_REASON_CHARS;
use custody_engine::attest::claim_from_value;
use custody_engine::files::manifests::{Loaded, load_text};
use serde_json::Value;

pub use follow::{WAIT_TIMEOUT, follow_steps, offline_text, wait_command};

/// Why a manifest cannot be proposed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// A document does not parse.
    #[error("{0}")]
    Load(String),
    /// The request cannot be written out.
    #[error("cannot write the CustodyChange as YAML: {0}")]
    Write(String),
    /// Nothing in the manifest is a workload.
    #[error(
        "{file} holds no workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod){found}: only a workload's new revision needs a person's approval; propose the workload's manifest"
    )]
    NoWorkload {
        /// The file.
        file: String,
        /// What it holds instead, in words (empty, or `; it holds a Service ...`).
        found: String,
    },
    /// A document handed to [`build`] is not a workload.
    #[error(
        "{what} is not a workload Custody judges: only a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod makes a revision a person approves"
    )]
    NotAWorkload {
        /// `Kind name`, as the document says.
        what: String,
    },
    /// A workload without a name.
    #[error("{origin}: the {kind} has no metadata.name")]
    NoName {
        /// Where.
        origin: String,
        /// Its kind.
        kind: WorkloadKind,
    },
    /// The manifest's namespace is not the one asked for.
    #[error(
        "{workload} says namespace {manifest:?}, but --namespace is {flag:?}: a change is proposed in the namespace the manifest is applied to; drop one of them"
    )]
    NamespaceMismatch {
        /// The workload.
        workload: String,
        /// The manifest's namespace.
        manifest: String,
        /// The flag's.
        flag: String,
    },
    /// The revision is not declared an agent's.
    #[error(
        "{workload} declares {actor}: only an agent's revision needs a person's approval. If an agent made it, stamp the manifest first: custody stamp --actor agent --agent <agent-id> <manifest>"
    )]
    NotAnAgent {
        /// The workload.
        workload: String,
        /// What it declares, in words.
        actor: String,
    },
    /// The agent does not say who it is.
    #[error(
        "{workload} declares actor agent but no {annotation} annotation: the change is proposed and approved for one agent. Stamp the manifest first: custody stamp --actor agent --agent <agent-id> <manifest>"
    )]
    NoAgent {
        /// The workload.
        workload: String,
        /// The agent annotation's full name.
        annotation: String,
    },
    /// The reason says too little.
    #[error(
        "--reason must say what the change does and why, for the reviewer, in at least {MIN_REASON_CHARS} characters (e.g. \"bump web to 1.28 for CVE-2026-1234\")"
    )]
    ReasonTooShort,
}

/// One workload document of a manifest, with the namespace it will be applied to.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The namespace it is applied to: the manifest's, else the flag's, else the default.
    pub namespace: String,
    /// The document.
    pub object: Value,
}

impl Workload {
    /// `deployment/web`, as kubectl names it.
    pub fn reference(&self) -> String {
        reference(self.kind, &self.name)
    }
}

/// `deployment/web`.
pub fn reference(kind: WorkloadKind, name: &str) -> String {
    format!("{}/{name}", kind.as_str().to_ascii_lowercase())
}

/// The manifest's workload documents, and a note for each other document (which needs no
/// approval and is left out).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifest {
    /// The workloads, in order.
    pub workloads: Vec<Workload>,
    /// What was left out, in words.
    pub notes: Vec<String>,
}

/// Reads the workloads of a manifest's text (YAML documents, JSON, `List`s). `namespace` is
/// the `--namespace` flag, `default_namespace` what an object without either gets.
pub fn read_workloads(
    file: &str,
    text: &str,
    namespace: Option<&str>,
    default_namespace: &str,
) -> Result<Manifest, ProposeError> {
    let mut loaded = Loaded::default();
    load_text(file, text, &mut loaded);
    if let Some(error) = loaded.errors.first() {
        return Err(ProposeError::Load(error.to_string()));
    }
    let mut manifest = Manifest::default();
    let mut others = Vec::new();
    for (origin, object) in loaded.objects {
        let Some(kind) = workload_kind(&object) else {
            let what = describe(&object);
            manifest.notes.push(format!(
                "{origin}: {what} is not a workload; it needs no approval and is left out"
            ));
            others.push(what);
            continue;
        };
        let name = str_at(&object, "/metadata/name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ProposeError::NoName {
                origin: origin.to_string(),
                kind,
            })?
            .to_string();
        let own = str_at(&object, "/metadata/namespace").filter(|n| !n.is_empty());
        let namespace = match (own, namespace) {
            (Some(own), Some(flag)) if own != flag => {
                return Err(ProposeError::NamespaceMismatch {
                    workload: reference(kind, &name),
                    manifest: own.to_string(),
                    flag: flag.to_string(),
                });
            }
            (Some(own), _) => own,
            (None, Some(flag)) => flag,
            (None, None) => default_namespace,
        }
        .to_string();
        manifest.workloads.push(Workload {
            kind,
            name,
            namespace,
            object,
        });
    }
    if manifest.workloads.is_empty() {
        let found = if others.is_empty() {
            String::new()
        } else {
            format!("; it holds {}", others.join(", "))
        };
        return Err(ProposeError::NoWorkload {
            file: file.to_string(),
            found,
        });
    }
    Ok(manifest)
}

/// Who proposes, and why.
#[derive(Clone, Copy, Debug)]
pub struct Proposer<'a> {
    /// The authenticated user who will create the request.
    pub user: &'a str,
    /// Why, for the reviewer.
    pub reason: &'a str,
}

/// A built change request, and what its author should know about it.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// The request.
    pub change: CustodyChange,
    /// Notes, e.g. that the template is the one running.
    pub notes: Vec<String>,
}

/// Checks a reason as the webhook will.
pub fn check_reason(reason: &str) -> Result<(), ProposeError> {
    if reason.trim().chars().count() < MIN_REASON_CHARS {
        return Err(ProposeError::ReasonTooShort);
    }
    Ok(())
}

/// Builds the change request for `workload`, against `running` (the live object, when the
/// workload exists).
pub fn build(
    workload: &Workload,
    proposer: Proposer<'_>,
    running: Option<&Value>,
    vocabulary: &Vocabulary,
) -> Result<Proposal, ProposeError> {
    check_reason(proposer.reason)?;
    let object = &workload.object;
    if workload_kind(object) != Some(workload.kind) {
        return Err(ProposeError::NotAWorkload {
            what: describe(object),
        });
    }
    let declared = annotations(object);
    let agent = declared_agent(workload, &declared, vocabulary)?;
    let claim = claim_from_value(
        workload.kind,
        &workload.namespace,
        object,
        &declared,
        vocabulary,
    );
    let digest = claim_digest(&claim);
    let running = running.map(|r| {
        claim_from_value(
            workload.kind,
            &workload.namespace,
            r,
            &annotations(r),
            vocabulary,
        )
    });
    // Against a running template both sides are normalized, so the apiserver's defaults never
    // show as changes; a new workload is shown as written, without the defaults it will get.
    let before = running
        .as_ref()
        .map(|r| diffable(workload.kind, r.template.as_ref()));
    let proposed = match before {
        Some(_) => diffable(workload.kind, claim.template.as_ref()),
        None => diffable(workload.kind, as_written(workload.kind, object)),
    };
    let (diff, diff_truncated) = review_diff(before.as_ref(), &proposed);
    let mut notes = Vec::new();
    if running
        .as_ref()
        .is_some_and(|r| r.template_digest == claim.template_digest)
    {
        notes.push(format!(
            "the pod template of {} is the one running: applying it makes no new revision, which needs no approval",
            workload.reference()
        ));
    }
    let mut change = CustodyChange::new(
        &change_name(&workload.name, &digest),
        CustodyChangeSpec {
            workload: ChangeWorkload {
                kind: workload.kind,
                name: workload.name.clone(),
            },
            digest,
            template_digest: claim.template_digest.to_string(),
            provenance: claim.annotation_map(),
            labels: labels(object),
            agent,
            proposer: proposer.user.to_string(),
            reason: proposer.reason.trim().to_string(),
            diff,
            diff_truncated,
            running_template_digest: running.map(|r| r.template_digest.to_string()),
        },
    );
    change.metadata.namespace = Some(workload.namespace.clone());
    Ok(Proposal { change, notes })
}

/// The running object among `running` (an `--against` file) for `workload`: same kind, name
/// and namespace.
pub fn running_in<'r>(running: &'r [Workload], workload: &Workload) -> Option<&'r Value> {
    running
        .iter()
        .find(|r| {
            r.kind == workload.kind && r.name == workload.name && r.namespace == workload.namespace
        })
        .map(|r| &r.object)
}

/// The changes as a YAML stream, for `kubectl create -f -`.
pub fn to_yaml(changes: &[CustodyChange]) -> Result<String, ProposeError> {
    let mut out = String::new();
    for change in changes {
        let yaml =
            serde_saphyr::to_string(change).map_err(|e| ProposeError::Write(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(&yaml);
        if !yaml.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// The agent a revision declares; an error when it is not declared an agent's.
fn declared_agent(
    workload: &Workload,
    annotations: &BTreeMap<String, String>,
    vocabulary: &Vocabulary,
) -> Result<String, ProposeError> {
    let actor_key = vocabulary.key(AnnotationKey::Actor);
    let actor = annotations.get(actor_key);
    if actor.and_then(|a| a.parse::<Actor>().ok()) != Some(Actor::Agent) {
        return Err(ProposeError::NotAnAgent {
            workload: workload.reference(),
            actor: match actor {
                Some(a) => format!("{actor_key}: {a:?}"),
                None => format!("no {actor_key} annotation"),
            },
        });
    }
    let agent_key = vocabulary.key(AnnotationKey::Agent);
    match annotations.get(agent_key).map(|a| a.trim()) {
        Some(agent) if !agent.is_empty() => Ok(agent.to_string()),
        _ => Err(ProposeError::NoAgent {
            workload: workload.reference(),
            annotation: agent_key.to_string(),
        }),
    }
}

/// A normalized template in the shape the diff reads (`metadata`, `spec`): a bare Pod's
/// template is its spec.
/// The pod template of `object` as the manifest writes it.
fn as_written(kind: WorkloadKind, object: &Value) -> Option<&Value> {
    let pointer = format!("/{}", template_path(kind).replace('.', "/"));
    object.pointer(&pointer)
}

fn diffable(kind: WorkloadKind, template: Option<&Value>) -> Value {
    let template = template.cloned().unwrap_or(Value::Null);
    match kind {
        WorkloadKind::Pod => serde_json::json!({ "spec": template }),
        _ => template,
    }
}

fn workload_kind(object: &Value) -> Option<WorkloadKind> {
    let api_version = object.get("apiVersion")?.as_str()?;
    let kind = object.get("kind")?.as_str()?;
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    WorkloadKind::from_group_kind(group, kind)
}

/// `a ConfigMap "web-config"`, for messages.
fn describe(object: &Value) -> String {
    let kind = str_at(object, "/kind").unwrap_or("document without a kind");
    match str_at(object, "/metadata/name") {
        Some(name) => format!("{kind} {name:?}"),
        None => kind.to_string(),
    }
}

fn str_at<'v>(object: &'v Value, pointer: &str) -> Option<&'v str> {
    object.pointer(pointer).and_then(Value::as_str)
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn annotations(object: &Value) -> BTreeMap<String, String> {
    string_map(object.pointer("/metadata/annotations"))
}

fn labels(object: &Value) -> BTreeMap<String, String> {
    string_map(object.pointer("/metadata/labels"))
}

#[cfg(test)]
mod tests;
