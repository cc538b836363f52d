//! A workload's revisions as rows, newest first, with the controller's marks: a Deployment's
//! ReplicaSets, or a StatefulSet's or DaemonSet's ControllerRevisions (each owned by the
//! workload through a controller ownerReference to its uid); and the metric analysis the
//! controller writes on the current one.

use custody_crds::analysis::AnalysisReport;
use custody_crds::record::marks;
use custody_crds::{AnnotationKey, Vocabulary, WorkloadKind, template_fingerprint};
use serde::Serialize;
use serde_json::Value;

/// The Deployment controller's revision annotation on a ReplicaSet.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// One revision: a ReplicaSet or a ControllerRevision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRow {
    /// The ReplicaSet or ControllerRevision.
    pub name: String,
    /// `deployment.kubernetes.io/revision`, or a ControllerRevision's `revision`.
    pub revision: Option<u64>,
    /// Desired replicas (a ReplicaSet's; a ControllerRevision has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Ready replicas (a ReplicaSet's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<i64>,
    /// Whether it is the workload's current revision: a ReplicaSet whose template is the
    /// Deployment's, a StatefulSet's `status.updateRevision`, or a DaemonSet's newest.
    pub current: bool,
    /// `healthy-since` mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<String>,
    /// `reverted-by` mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverted_by: Option<String>,
    /// `alerted-by` mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerted_by: Option<String>,
    /// The revision's declared actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The revision's declared source commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

/// The metric analysis of the workload's current revision, as the controller last wrote it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentAnalysis {
    /// The ReplicaSet or ControllerRevision.
    pub revision: String,
    /// Its number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// The analysis.
    pub report: AnalysisReport,
}

/// The revisions of `workload` (a `kind`) among `objects`, newest first. Kinds without
/// revisions of their own have none.
pub fn revisions(
    kind: WorkloadKind,
    workload: &Value,
    objects: &[Value],
    vocabulary: &Vocabulary,
) -> Vec<RevisionRow> {
    if !matches!(
        kind,
        WorkloadKind::Deployment | WorkloadKind::StatefulSet | WorkloadKind::DaemonSet
    ) {
        return Vec::new();
    }
    let Some(uid) = str_at(workload, "/metadata/uid") else {
        return Vec::new();
    };
    // The fingerprint drops `pod-template-hash`, so the ReplicaSet running the Deployment's
    // template has the Deployment's fingerprint.
    let deployment_template = workload
        .pointer("/spec/template")
        .map(|t| template_fingerprint(t).to_string());
    let mark = |o: &Value, m: &str| annotation(o, &format!("{}{m}", vocabulary.prefix()));
    let mut rows: Vec<RevisionRow> = objects
        .iter()
        .filter(|o| owned_by(o, &uid))
        .map(|o| {
            let replica_set = kind == WorkloadKind::Deployment;
            RevisionRow {
                name: str_at(o, "/metadata/name").unwrap_or_default(),
                revision: if replica_set {
                    annotation(o, REVISION_ANNOTATION).and_then(|r| r.parse().ok())
                } else {
                    o.get("revision").and_then(Value::as_u64)
                },
                replicas: replica_set.then(|| {
                    o.pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                }),
                ready: replica_set.then(|| {
                    o.pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                }),
                current: replica_set
                    && deployment_template.is_some()
                    && o.pointer("/spec/template")
                        .map(|t| template_fingerprint(t).to_string())
                        == deployment_template,
                healthy_since: mark(o, marks::HEALTHY_SINCE),
                reverted_by: mark(o, marks::REVERTED),
                alerted_by: mark(o, marks::ALERTED),
                actor: annotation(o, vocabulary.key(AnnotationKey::Actor)),
                source_commit: annotation(o, vocabulary.key(AnnotationKey::SourceCommit)),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.revision
            .cmp(&a.revision)
            .then_with(|| a.name.cmp(&b.name))
    });
    if kind != WorkloadKind::Deployment {
        // A StatefulSet names its current revision; otherwise the newest is the current one
        // (a rollback renumbers the revision it returns to as the newest).
        let current = str_at(workload, "/status/updateRevision")
            .filter(|name| {
                kind == WorkloadKind::StatefulSet && rows.iter().any(|r| &r.name == name)
            })
            .or_else(|| rows.first().map(|r| r.name.clone()));
        for row in &mut rows {
            row.current = current.as_deref() == Some(row.name.as_str());
        }
    }
    rows
}

/// The analysis written on the current revision, if it has one; an error says why the
/// annotation cannot be read.
pub fn current_analysis(
    rows: &[RevisionRow],
    objects: &[Value],
    vocabulary: &Vocabulary,
) -> Result<Option<CurrentAnalysis>, String> {
    let Some(current) = rows.iter().find(|r| r.current) else {
        return Ok(None);
    };
    let key = format!("{}{}", vocabulary.prefix(), marks::ANALYSIS);
    let Some(raw) = objects
        .iter()
        .find(|o| str_at(o, "/metadata/name").as_deref() == Some(current.name.as_str()))
        .and_then(|o| annotation(o, &key))
    else {
        return Ok(None);
    };
    serde_json::from_str(&raw)
        .map(|report| {
            Some(CurrentAnalysis {
                revision: current.name.clone(),
                number: current.revision,
                report,
            })
        })
        .map_err(|e| {
            format!(
                "the {key} annotation of {} cannot be read: {e}",
                current.name
            )
        })
}

fn owned_by(object: &Value, uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("uid").and_then(Value::as_str) == Some(uid)
                    && r.get("controller").and_then(Value::as_bool) == Some(true)
            })
        })
}

fn str_at(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn annotation(v: &Value, name: &str) -> Option<String> {
    v.pointer("/metadata/annotations")
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn revision(name: &str, number: u64, owner: &str) -> Value {
        json!({
            "kind": "ControllerRevision", "revision": number,
            "metadata": {"name": name, "ownerReferences": [{"uid": owner, "controller": true}]},
        })
    }

    #[test]
    fn the_current_controller_revision_is_the_named_one_or_the_newest() {
        let objects = [
            revision("x-1", 1, "u"),
            revision("x-3", 3, "u"),
            revision("x-2", 2, "u"),
            revision("y-9", 9, "other"),
        ];
        let cases = [
            (
                "a StatefulSet names its update revision",
                WorkloadKind::StatefulSet,
                json!({"updateRevision": "x-2"}),
                "x-2",
            ),
            (
                "a StatefulSet not yet observed: the newest",
                WorkloadKind::StatefulSet,
                json!({}),
                "x-3",
            ),
            (
                "an update revision not among those read: the newest",
                WorkloadKind::StatefulSet,
                json!({"updateRevision": "x-4"}),
                "x-3",
            ),
            (
                "a DaemonSet (which has no update revision): the newest",
                WorkloadKind::DaemonSet,
                json!({"updateRevision": "x-1"}),
                "x-3",
            ),
        ];
        for (name, kind, status, want) in cases {
            let workload = json!({"metadata": {"uid": "u"}, "status": status});
            let rows = revisions(kind, &workload, &objects, &Vocabulary::default());
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, ["x-3", "x-2", "x-1"], "{name}");
            let current: Vec<&str> = rows
                .iter()
                .filter(|r| r.current)
                .map(|r| r.name.as_str())
                .collect();
            assert_eq!(current, [want], "{name}");
            assert!(
                rows.iter()
                    .all(|r| r.ready.is_none() && r.replicas.is_none())
            );
        }
        let job = json!({"metadata": {"uid": "u"}});
        assert!(revisions(WorkloadKind::Job, &job, &objects, &Vocabulary::default()).is_empty());
    }
}
