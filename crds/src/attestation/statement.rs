//! The in-toto Statement v1 Custody signs: the workload as its subject, its provenance and
//! ownership annotations as the predicate (`https://custody.dev/provenance/v1`), with the SLSA
//! provenance v1 names where they mean the same thing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fingerprint::TemplateFingerprint;
use crate::policy::WorkloadKind;
use crate::vocabulary::AnnotationKey;

/// The Statement's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// Custody's predicate type.
pub const PREDICATE_TYPE: &str = "https://custody.dev/provenance/v1";

/// The vocabulary keys an attestation covers: every provenance and ownership key, and the
/// rollback mode (unsigned, an agent could mark its own revision `alert` to escape a revert).
/// Not `quarantine-override`, which a human adds later to re-admit a reverted template.
pub const SIGNED_KEYS: [AnnotationKey; 9] = [
    AnnotationKey::Actor,
    AnnotationKey::Agent,
    AnnotationKey::Model,
    AnnotationKey::SourceRepo,
    AnnotationKey::SourceCommit,
    AnnotationKey::PipelineRun,
    AnnotationKey::Owner,
    AnnotationKey::Oncall,
    AnnotationKey::Rollback,
];

/// An in-toto Statement v1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// Always [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What is attested: one workload.
    pub subject: Vec<ResourceDescriptor>,
    /// Always [`PREDICATE_TYPE`].
    pub predicate_type: String,
    /// The provenance.
    pub predicate: Provenance,
}

/// An in-toto ResourceDescriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// `Kind/namespace/name`.
    pub name: String,
    /// `sha256`: the hex pod-template fingerprint.
    pub digest: BTreeMap<String, String>,
}

/// Custody's predicate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The system that produced the revision (SLSA `runDetails.builder.id`).
    pub builder: Builder,
    /// The pipeline run or agent session (SLSA `runDetails.metadata.invocationId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The source repository and commit (SLSA `buildDefinition.resolvedDependencies`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<Dependency>,
    /// Every signed vocabulary annotation on the workload, by key without prefix. Verification
    /// compares these with the object's.
    pub annotations: BTreeMap<String, String>,
    /// The work tree had uncommitted changes when stamped (`--allow-dirty`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty_tree: bool,
    /// The signed pod template as digested (defaults filled in), compact, when its JSON is at
    /// most [`MAX_SIGNED_TEMPLATE_BYTES`]: what a mismatch is explained against, field by field.
    /// The digest alone decides; this only says where the object differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<Value>,
}

/// The largest pod template (compact JSON) an attestation carries. The envelope is base64 of
/// the statement and `kubectl apply` keeps a second copy in its last-applied annotation, so a
/// 32 KiB template costs about 85 KiB of the object's 256 KiB annotation budget at most.
pub const MAX_SIGNED_TEMPLATE_BYTES: usize = 32 * 1024;

/// SLSA builder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// The builder's identity, a URI.
    pub id: String,
}

/// SLSA ResourceDescriptor of a source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    /// The repository, as in `source-repo`.
    pub uri: String,
    /// `gitCommit`: the commit.
    pub digest: BTreeMap<String, String>,
}

/// What a workload object says about itself: the facts an attestation must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// [`subject_digest`](super::subject_digest) of its pod template.
    pub template_digest: TemplateFingerprint,
    /// The pod template as digested ([`normalized_template`](super::normalized_template)),
    /// where the caller has it: a mismatch then names the fields that differ.
    pub template: Option<Value>,
    /// A scheduled bare Pod's digest without `spec.nodeName`, which the scheduler set after
    /// admission (see [`scheduled_pod_digest`](super::scheduled_pod_digest)).
    pub unbound_digest: Option<TemplateFingerprint>,
    /// Its signed vocabulary annotations ([`SIGNED_KEYS`]) that are present, by key.
    pub annotations: BTreeMap<AnnotationKey, String>,
}

/// The subject name of a workload: `Kind/namespace/name`.
pub fn subject_name(kind: WorkloadKind, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

impl Claim {
    /// The subject name of the claimed workload.
    pub fn subject_name(&self) -> String {
        subject_name(self.kind, &self.namespace, &self.name)
    }

    /// The signed annotations, by key name.
    pub fn annotation_map(&self) -> BTreeMap<String, String> {
        self.annotations
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.clone()))
            .collect()
    }
}

impl Statement {
    /// The statement attesting `claim`, made by `builder_id`.
    pub fn for_claim(claim: &Claim, builder_id: &str, dirty_tree: bool) -> Self {
        let get = |k: AnnotationKey| claim.annotations.get(&k).cloned();
        let resolved_dependencies = match (
            get(AnnotationKey::SourceRepo),
            get(AnnotationKey::SourceCommit),
        ) {
            (Some(uri), Some(commit)) => vec![Dependency {
                uri,
                digest: BTreeMap::from([("gitCommit".to_string(), commit)]),
            }],
            _ => Vec::new(),
        };
        let digest = claim
            .template_digest
            .as_str()
            .trim_start_matches("sha256:")
            .to_string();
        Self {
            statement_type: STATEMENT_TYPE.to_string(),
            subject: vec![ResourceDescriptor {
                name: claim.subject_name(),
                digest: BTreeMap::from([("sha256".to_string(), digest)]),
            }],
            predicate_type: PREDICATE_TYPE.to_string(),
            predicate: Provenance {
                builder: Builder {
                    id: builder_id.to_string(),
                },
                invocation_id: get(AnnotationKey::PipelineRun),
                resolved_dependencies,
                annotations: claim.annotation_map(),
                dirty_tree,
                pod_template: claim.template.as_ref().filter(|t| fits(t)).cloned(),
            },
        }
    }
}

fn fits(template: &Value) -> bool {
    serde_json::to_vec(template).is_ok_and(|json| json.len() <= MAX_SIGNED_TEMPLATE_BYTES)
}
