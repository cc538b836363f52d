//! `custody stamp`: manifests in, the same manifests out with provenance and ownership filled
//! into each workload's annotations, and with `--sign`, a signed attestation of them.
//!
//! Values are resolved once ([`resolve`], pure, from what [`edge`] read); each document is then
//! stamped on its own. YAML documents are edited as text, so comments, quoting and key order
//! survive; a layout the editor does not handle (flow-style metadata, a `List`) and JSON input
//! are re-serialized, which keeps values but sorts keys. Objects that are not workloads pass
//! through byte for byte.

pub mod edge;
pub mod resolve;
pub mod yaml_edit;

use std::collections::BTreeMap;

use custody_crds::attestation::Statement;
use custody_crds::{Vocabulary, WorkloadKind};
use serde_json::Value;

use custody_crds::attestation::{SignError, SigningKey};
use custody_engine::attest::claim_from_value;
pub use resolve::{Resolved, resolve};

/// How to stamp.
pub struct Stamper<'a> {
    /// The values.
    pub resolved: &'a Resolved,
    /// The annotation keys.
    pub vocabulary: &'a Vocabulary,
    /// The namespace of objects that do not name one (what `kubectl apply -n` will use).
    pub namespace: &'a str,
    /// The key to sign with, and its key id.
    pub signer: Option<(&'a SigningKey, &'a str)>,
}

/// Why a stream could not be stamped.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// A document does not parse.
    #[error("document {document}: {message}")]
    Parse {
        /// 1-based document number.
        document: usize,
        /// The parser's message.
        message: String,
    },
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(#[from] SignError),
    /// Writing a document failed.
    #[error("cannot write document {document}: {message}")]
    Write {
        /// 1-based document number.
        document: usize,
        /// Why.
        message: String,
    },
}

/// A stamped stream.
#[derive(Debug)]
pub struct Stamped {
    /// The output text.
    pub text: String,
    /// How many workloads were stamped.
    pub workloads: usize,
}

/// Stamps every workload of a YAML stream or JSON document.
pub fn stamp_text(text: &str, stamper: &Stamper<'_>) -> Result<Stamped, StampError> {
    let trimmed = text.trim_start();
    // JSON (one value or a stream of them); KYAML also opens with `{` and goes the YAML way.
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Some(values) = custody_engine::files::manifests::json_stream(text)
    {
        let mut out = String::with_capacity(text.len() + 1024);
        let mut workloads = 0;
        for (i, (_, mut value)) in values.into_iter().enumerate() {
            workloads += stamp_value(&mut value, stamper)?;
            let json = serde_json::to_string_pretty(&value).map_err(|e| StampError::Write {
                document: i + 1,
                message: e.to_string(),
            })?;
            out.push_str(&json);
            out.push('\n');
        }
        return Ok(Stamped {
            text: out,
            workloads,
        });
    }
    let mut out = String::with_capacity(text.len() + 1024);
    let mut workloads = 0;
    for (i, chunk) in yaml_edit::split(text).into_iter().enumerate() {
        out.push_str(chunk.separator);
        let document = i + 1;
        let only_comments = chunk.body.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        });
        if only_comments {
            out.push_str(chunk.body);
            continue;
        }
        let original: Value =
            custody_crds::yaml::from_manifest_yaml(chunk.body).map_err(|e| StampError::Parse {
                document,
                message: format!(
                    "invalid YAML: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
            })?;
        let mut value = original.clone();
        let stamped = stamp_value(&mut value, stamper)?;
        if stamped == 0 {
            out.push_str(chunk.body);
            continue;
        }
        workloads += stamped;
        let annotations = value
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect::<Vec<_>>()
            });
        let edited = annotations
            .and_then(|a| yaml_edit::set_annotations(chunk.body, &changed(&original, &a)))
            // Trust the text edit only if it reads back as exactly the stamped object.
            .filter(|text| {
                custody_crds::yaml::from_manifest_yaml::<Value>(text)
                    .ok()
                    .as_ref()
                    == Some(&value)
            });
        match edited {
            Some(text) => out.push_str(&text),
            None => {
                let text = serde_saphyr::to_string(&value).map_err(|e| StampError::Write {
                    document,
                    message: e.to_string(),
                })?;
                out.push_str(&text);
            }
        }
    }
    Ok(Stamped {
        text: out,
        workloads,
    })
}

/// The annotations whose value differs from the original object's.
fn changed(original: &Value, annotations: &[(String, String)]) -> Vec<(String, String)> {
    annotations
        .iter()
        .filter(|(k, v)| {
            original
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                != Some(v.as_str())
        })
        .cloned()
        .collect()
}

/// Stamps `value` if it is a workload, or each workload item of a `List`. Returns how many were
/// stamped.
fn stamp_value(value: &mut Value, stamper: &Stamper<'_>) -> Result<usize, StampError> {
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        let mut n = 0;
        for item in items {
            n += stamp_value(item, stamper)?;
        }
        return Ok(n);
    }
    let Some(kind) = workload_kind(value) else {
        return Ok(0);
    };
    let vocabulary = stamper.vocabulary;
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(stamper.namespace)
        .to_string();
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Ok(0);
    };
    let annotations = metadata
        .entry("annotations")
        .or_insert_with(|| Value::Object(Default::default()));
    if !annotations.is_object() {
        *annotations = Value::Object(Default::default());
    }
    let Some(map) = annotations.as_object_mut() else {
        return Ok(0);
    };
    for (key, v) in &stamper.resolved.values {
        map.insert(vocabulary.key(*key).to_string(), Value::String(v.clone()));
    }
    for (key, v) in &stamper.resolved.fill {
        map.entry(vocabulary.key(*key).to_string())
            .or_insert_with(|| Value::String(v.clone()));
    }
    // An attestation of an earlier stamp no longer matches; a new one replaces it below.
    map.remove(vocabulary.attestation());
    if let Some((key, keyid)) = stamper.signer {
        let current: BTreeMap<String, String> = map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect();
        let claim = claim_from_value(kind, &namespace, value, &current, vocabulary);
        let statement =
            Statement::for_claim(&claim, &stamper.resolved.builder_id, stamper.resolved.dirty);
        let payload = serde_json::to_vec(&statement).map_err(|e| StampError::Write {
            document: 0,
            message: e.to_string(),
        })?;
        let envelope = key.seal(&payload, keyid)?;
        let envelope = serde_json::to_string(&envelope).map_err(|e| StampError::Write {
            document: 0,
            message: e.to_string(),
        })?;
        if let Some(map) = value
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            map.insert(
                vocabulary.attestation().to_string(),
                Value::String(envelope),
            );
        }
    }
    Ok(1)
}

fn workload_kind(value: &Value) -> Option<WorkloadKind> {
    let api_version = value.get("apiVersion")?.as_str()?;
    let kind = value.get("kind")?.as_str()?;
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    WorkloadKind::from_group_kind(group, kind)
}
