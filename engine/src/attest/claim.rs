//! What a workload object claims about itself, in the form an attestation is checked against.

use std::collections::BTreeMap;

use custody_crds::attestation::{Claim, SIGNED_KEYS, normalized_template, scheduled_pod_digest};
use custody_crds::template_fingerprint;
use custody_crds::{Vocabulary, WorkloadKind};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::object::WorkloadObject;

/// The claim of an object as the webhook sees it.
pub fn claim_from_view(
    kind: WorkloadKind,
    namespace: &str,
    object: &WorkloadObject<'_>,
    vocabulary: &Vocabulary,
) -> Result<Claim, serde_json::Error> {
    claim_from_template(
        kind,
        namespace,
        object,
        object.pod_template(kind)?,
        vocabulary,
    )
}

/// The claim of an object whose pod template was already located (`template`, as
/// [`WorkloadObject::pod_template`] found it), so its spec is not scanned a second time.
pub fn claim_from_template(
    kind: WorkloadKind,
    namespace: &str,
    object: &WorkloadObject<'_>,
    template: Option<&RawValue>,
    vocabulary: &Vocabulary,
) -> Result<Claim, serde_json::Error> {
    let template: Value = match template {
        Some(raw) => serde_json::from_str(raw.get())?,
        None => Value::Null,
    };
    let template = normalized_template(kind, template);
    // Only a bound Pod's status can matter (see `scheduled_pod_digest`): read it for no other.
    let status: Option<Value> = match object.status {
        Some(raw) if kind == WorkloadKind::Pod && template.get("nodeName").is_some() => {
            serde_json::from_str(raw.get()).ok()
        }
        _ => None,
    };
    let annotations = SIGNED_KEYS
        .into_iter()
        .filter_map(|k| {
            object
                .annotation(vocabulary.key(k))
                .map(|v| (k, v.into_owned()))
        })
        .collect();
    Ok(Claim {
        kind,
        namespace: namespace.to_string(),
        name: object
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        template_digest: template_fingerprint(&template),
        unbound_digest: scheduled_pod_digest(kind, &template, status.as_ref()),
        template: Some(template),
        annotations,
    })
}

/// The claim of a manifest: `object` as parsed, `annotations` the values it will carry.
pub fn claim_from_value(
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    annotations: &BTreeMap<String, String>,
    vocabulary: &Vocabulary,
) -> Claim {
    let template = match kind {
        WorkloadKind::Pod => object.get("spec"),
        WorkloadKind::CronJob => object.pointer("/spec/jobTemplate/spec/template"),
        _ => object.pointer("/spec/template"),
    }
    .cloned()
    .unwrap_or(Value::Null);
    let template = normalized_template(kind, template);
    let status = object.get("status").filter(|_| kind == WorkloadKind::Pod);
    Claim {
        kind,
        namespace: namespace.to_string(),
        name: object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        template_digest: template_fingerprint(&template),
        unbound_digest: scheduled_pod_digest(kind, &template, status),
        template: Some(template),
        annotations: SIGNED_KEYS
            .into_iter()
            .filter_map(|k| annotations.get(vocabulary.key(k)).map(|v| (k, v.clone())))
            .collect(),
    }
}
