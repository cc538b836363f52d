//! The revert write, as `kubectl rollout undo --to-revision` does it: the workload's pod
//! template becomes the target revision's (without the `pod-template-hash` label a ReplicaSet
//! adds) and the revision's provenance annotations come back with it, so the workload describes
//! what runs. The patch is a JSON patch whose first operation tests the resourceVersion the
//! decision saw: any concurrent change (a human rolling forward) makes it fail, and the
//! controller decides again on fresh state instead of clobbering it. Because of that test, the
//! cache's view of the annotations is exact for the version patched, so annotations are set and
//! removed key by key and the workload's other annotations are left as they are. The target's
//! attestation is the one exception: the cache keeps only its digest, so the envelope is read
//! with the target's template and passed in.

use std::collections::BTreeMap;

use custody_crds::Vocabulary;
use custody_crds::fingerprint::POD_TEMPLATE_HASH_LABEL;
use serde_json::{Value, json};

use crate::cache::observe::{Revision, WorkloadState};
use crate::decide::Verdict;
use crate::decide::canary::held_partition;
use crate::keys::{OWNERSHIP, PROVENANCE, mark, marks};

/// The target revision's template, ready to be the workload's.
pub fn template_for_workload(mut template: Value) -> Value {
    if let Some(labels) = template
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    template
}

/// The vocabulary annotations the workload carries after the revert; `None` for a key to be
/// removed. `attestation` is the target revision's envelope as read with its template (the
/// cache keeps only a digest); `None` when it carries none.
pub fn annotations_after(
    workload: &WorkloadState,
    to: &Revision,
    attestation: Option<&str>,
    verdict: &Verdict,
    record: &str,
    vocabulary: &Vocabulary,
) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    // A signed revision gets its ownership and attestation back too, so it verifies again; an
    // attestation of the reverted revision would not, so it goes.
    let signed = attestation.is_some();
    let ownership = OWNERSHIP
        .iter()
        .filter(|_| signed)
        .map(|k| vocabulary.key(*k));
    let restored = PROVENANCE
        .iter()
        .map(|k| vocabulary.key(*k))
        .chain(ownership);
    let attestation_key = vocabulary.attestation();
    match attestation {
        Some(envelope) => {
            out.insert(attestation_key.to_string(), Some(envelope.to_string()));
        }
        // The cache's view of which keys the workload has is exact for the version patched.
        None if workload.annotations.contains_key(attestation_key) => {
            out.insert(attestation_key.to_string(), None);
        }
        None => {}
    }
    for name in restored {
        match to.annotations.get(name) {
            Some(v) => {
                out.insert(name.to_string(), Some(v.clone()));
            }
            None if workload.annotations.contains_key(name) => {
                out.insert(name.to_string(), None);
            }
            None => {}
        }
    }
    // A revert ends a hold on the first step: the rollout back must run.
    for held in [marks::HELD, marks::HELD_PARTITION] {
        let key = mark(vocabulary, held);
        if workload.annotations.contains_key(&key) {
            out.insert(key, None);
        }
    }
    let mark = |k: &str| format!("{}{k}", vocabulary.prefix());
    out.insert(mark("reverted-from"), Some(verdict.from.number.to_string()));
    out.insert(mark("revert-reason"), Some(verdict.explanation.clone()));
    out.insert(mark("rollback-record"), Some(record.to_string()));
    out
}

/// A JSON pointer segment (RFC 6901).
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The JSON patch: test the resourceVersion, replace the template, set the annotations.
/// `template` is the target revision's pod template and `attestation` its attestation, both
/// as stored.
pub fn patch(
    workload: &WorkloadState,
    template: Value,
    to: &Revision,
    attestation: Option<&str>,
    verdict: &Verdict,
    record: &str,
    vocabulary: &Vocabulary,
) -> Value {
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": workload.resource_version}),
        json!({"op": "replace", "path": "/spec/template", "value": template_for_workload(template)}),
    ];
    ops.extend(unhold(workload, vocabulary));
    let annotations = annotations_after(workload, to, attestation, verdict, record, vocabulary);
    if workload.any_annotations {
        for (key, value) in annotations {
            let path = format!("/metadata/annotations/{}", pointer_segment(&key));
            ops.push(match value {
                Some(v) => json!({"op": "add", "path": path, "value": v}),
                None => json!({"op": "remove", "path": path}),
            });
        }
    } else {
        let set: BTreeMap<String, String> = annotations
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": set}));
    }
    Value::Array(ops)
}

/// The operations that lift the controller's hold on the first step, if it holds the workload:
/// a paused Deployment resumes, a StatefulSet's partition goes back to what it was.
fn unhold(workload: &WorkloadState, vocabulary: &Vocabulary) -> Option<Value> {
    if !workload
        .annotations
        .contains_key(&mark(vocabulary, marks::HELD))
    {
        return None;
    }
    match workload.kind {
        custody_crds::WorkloadKind::Deployment => {
            // `add`: a Deployment resumed by `kubectl rollout resume` has no `paused` field.
            Some(json!({"op": "add", "path": "/spec/paused", "value": false}))
        }
        custody_crds::WorkloadKind::StatefulSet => {
            let partition = held_partition(workload, vocabulary);
            Some(
                json!({"op": "add", "path": "/spec/updateStrategy/rollingUpdate/partition", "value": partition}),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_segments_escape_slash_and_tilde() {
        assert_eq!(pointer_segment("custody.dev/actor"), "custody.dev~1actor");
        assert_eq!(pointer_segment("a~b/c"), "a~0b~1c");
    }
}
