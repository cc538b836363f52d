//! The pod-template fingerprint shared by the webhook and the controller.
//!
//! The controller computes it from a ReplicaSet's template when it reverts a revision; the webhook
//! computes it from the Deployment a GitOps re-sync sends back. Both must agree, so the hash is
//! taken over a canonical form: object keys sorted, nulls dropped, the `pod-template-hash` label
//! (which the Deployment controller adds to its ReplicaSets' templates) removed, and empty label
//! and annotation maps treated as absent.
//!
//! The fingerprint tells a restarted ReplicaSet from the one before it. The code fingerprint
//! does not: it leaves out the annotation `kubectl rollout restart` writes, and is what
//! RollbackRecords keep and signatures cover.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The label the Deployment controller adds to each ReplicaSet's pod template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The pod-template annotation `kubectl rollout restart` writes (a timestamp). A restart runs
/// the same code again, so the annotation is no part of what a signature vouches for, and a
/// change to it alone is no new revision.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// A pod template's fingerprint, `sha256:` followed by 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateFingerprint(String);

impl TemplateFingerprint {
    /// The fingerprint as written in a RollbackRecord.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a fingerprint read back from a record.
    pub fn from_recorded(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl fmt::Display for TemplateFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fingerprints a pod template (`spec.template` of a workload, or of a CronJob's job template).
pub fn template_fingerprint(template: &Value) -> TemplateFingerprint {
    let mut hasher = Sha256::new();
    write_canonical(&mut hasher, template, Position::Template);
    let digest = hasher.finalize();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for byte in digest {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    TemplateFingerprint(out)
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

/// The fingerprint of a stored pod template without its restart annotation, when it has one:
/// the subject digest of a revision made by `kubectl rollout restart` (a stored template
/// carries the apiserver's defaults already), which its plain fingerprint is not.
pub fn restart_free_fingerprint(template: &Value) -> Option<TemplateFingerprint> {
    template
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))?;
    let mut template = template.clone();
    remove_restart(&mut template);
    Some(template_fingerprint(&template))
}

/// The fingerprint of the code a stored pod template runs: its fingerprint without the restart
/// annotation. A RollbackRecord keeps this one, so the quarantine holds against the reverted
/// template however often it is restarted, and against the template without the annotation
/// that Git holds.
pub fn code_fingerprint(template: &Value) -> TemplateFingerprint {
    restart_free_fingerprint(template).unwrap_or_else(|| template_fingerprint(template))
}

/// Removes the restart annotation from a pod template, and the annotations with it when it was
/// the only one (the apiserver writes no empty map); whether there was one.
pub fn remove_restart(template: &mut Value) -> bool {
    let Some(metadata) = template.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    if annotations.remove(RESTARTED_AT_ANNOTATION).is_none() {
        return false;
    }
    if annotations.is_empty() {
        metadata.remove("annotations");
    }
    true
}

/// Where in the template a value sits, for the few places canonicalisation treats specially.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Template,
    TemplateMetadata,
    TemplateLabels,
    Other,
}

fn write_canonical(hasher: &mut Sha256, value: &Value, at: Position) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(b) => hasher.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            hasher.update(b"#");
            hasher.update(n.to_string().as_bytes());
            hasher.update(b";");
        }
        Value::String(s) => write_str(hasher, s),
        Value::Array(items) => {
            hasher.update(b"[");
            for item in items {
                write_canonical(hasher, item, Position::Other);
            }
            hasher.update(b"]");
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(key, value)| keep(at, key, value))
                .collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            hasher.update(b"{");
            for (key, value) in entries {
                write_str(hasher, key);
                let child = match (at, key.as_str()) {
                    (Position::Template, "metadata") => Position::TemplateMetadata,
                    (Position::TemplateMetadata, "labels") => Position::TemplateLabels,
                    _ => Position::Other,
                };
                write_canonical(hasher, value, child);
            }
            hasher.update(b"}");
        }
    }
}

fn keep(at: Position, key: &str, value: &Value) -> bool {
    if value.is_null() {
        return false;
    }
    match at {
        Position::TemplateLabels => key != POD_TEMPLATE_HASH_LABEL,
        Position::TemplateMetadata if key == "labels" || key == "annotations" => {
            value.as_object().is_some_and(|m| {
                m.iter()
                    .any(|(k, v)| !(v.is_null() || key == "labels" && k == POD_TEMPLATE_HASH_LABEL))
            })
        }
        _ => true,
    }
}

fn write_str(hasher: &mut Sha256, s: &str) {
    // Length-prefixed, so that no two different structures hash the same byte stream.
    hasher.update(b"s");
    hasher.update((s.len() as u64).to_le_bytes());
    hasher.update(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {"containers": [{"name": "web", "image": "web:1", "resources": {}}]}
        })
    }

    #[test]
    fn stable_and_prefixed() {
        let fp = template_fingerprint(&template());
        assert!(fp.as_str().starts_with("sha256:"));
        assert_eq!(fp.as_str().len(), 7 + 64);
        assert_eq!(fp, template_fingerprint(&template()));
    }

    #[test]
    fn replicaset_template_matches_deployment_template() {
        let mut rs = template();
        rs["metadata"]["labels"]["pod-template-hash"] = json!("7d9f8b6c5");
        assert_eq!(template_fingerprint(&rs), template_fingerprint(&template()));
    }

    #[test]
    fn key_order_and_nulls_do_not_matter() {
        let a =
            json!({"spec": {"containers": [{"image": "web:1", "name": "web"}]}, "metadata": {}});
        let b = json!({"metadata": {"labels": {}, "annotations": null}, "spec": {"containers": [{"name": "web", "image": "web:1", "command": null}]}});
        assert_eq!(template_fingerprint(&a), template_fingerprint(&b));
    }

    #[test]
    fn a_changed_image_changes_the_fingerprint() {
        let mut other = template();
        other["spec"]["containers"][0]["image"] = json!("web:2");
        assert_ne!(
            template_fingerprint(&other),
            template_fingerprint(&template())
        );
    }

    #[test]
    fn pod_template_hash_is_only_ignored_in_template_labels() {
        let mut a = template();
        a["metadata"]["annotations"] = json!({"pod-template-hash": "x"});
        assert_ne!(template_fingerprint(&a), template_fingerprint(&template()));
    }

    #[test]
    fn structure_is_not_ambiguous() {
        let a = json!({"spec": {"args": ["ab", "c"]}});
        let b = json!({"spec": {"args": ["a", "bc"]}});
        assert_ne!(template_fingerprint(&a), template_fingerprint(&b));
    }
}
