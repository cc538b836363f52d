//! The revert write, as `kubectl rollout undo --to-revision` does it: the Deployment's pod
//! template becomes the target revision's (without its `pod-template-hash` label) and the
//! revision's provenance annotations come back with it, so the Deployment describes what runs.
//! The patch is a JSON patch whose first operation tests the resourceVersion the decision saw:
//! any concurrent change (a human rolling forward) makes it fail with 409, and the controller
//! decides again on fresh state instead of clobbering it.

use std::collections::BTreeMap;

use custody_crds::fingerprint::POD_TEMPLATE_HASH_LABEL;
use custody_crds::{AnnotationKey, Vocabulary};
use serde_json::{Value, json};

use crate::decide::Verdict;
use crate::observe::{DeploymentState, Revision};

/// Provenance keys restored from the target revision.
const PROVENANCE: [AnnotationKey; 6] = [
    AnnotationKey::Actor,
    AnnotationKey::Agent,
    AnnotationKey::Model,
    AnnotationKey::SourceRepo,
    AnnotationKey::SourceCommit,
    AnnotationKey::PipelineRun,
];

/// The target revision's template, ready to be the Deployment's.
pub fn template_of(revision: &Revision) -> Value {
    let mut template = revision.template_value();
    if let Some(labels) = template
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    template
}

/// The annotations the Deployment carries after the revert.
pub fn annotations_after(
    deployment: &DeploymentState,
    to: &Revision,
    verdict: &Verdict,
    record: &str,
    vocabulary: &Vocabulary,
) -> BTreeMap<String, String> {
    let mut out = deployment.annotations.clone();
    for key in PROVENANCE {
        let name = vocabulary.key(key);
        match to.annotations.get(name) {
            Some(v) => out.insert(name.to_string(), v.clone()),
            None => out.remove(name),
        };
    }
    let mark = |k: &str| format!("{}{k}", vocabulary.prefix());
    out.insert(mark("reverted-from"), verdict.from.number.to_string());
    out.insert(mark("revert-reason"), verdict.explanation.clone());
    out.insert(mark("rollback-record"), record.to_string());
    out
}

/// The JSON patch: test the resourceVersion, replace the template and the annotations.
pub fn patch(
    deployment: &DeploymentState,
    to: &Revision,
    verdict: &Verdict,
    record: &str,
    vocabulary: &Vocabulary,
) -> Value {
    json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": deployment.resource_version},
        {"op": "replace", "path": "/spec/template", "value": template_of(to)},
        {"op": "add", "path": "/metadata/annotations", "value": annotations_after(deployment, to, verdict, record, vocabulary)},
    ])
}
