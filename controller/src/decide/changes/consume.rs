//! Whether a workload runs an approved change: the digest of the object, computed exactly as
//! the webhook computes it at admission, is the request's, and the workload's own controller
//! has caught up with it, so the revision it made is known. Then the approval is spent.

use std::collections::BTreeMap;

use custody_crds::change::{change_digest, claim_digest};
use custody_crds::{Applied, Vocabulary, WorkloadKind};
use custody_engine::attest::claim_from_value;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

/// The annotation the Deployment controller numbers a Deployment's revisions with.
pub const DEPLOYMENT_REVISION: &str = "deployment.kubernetes.io/revision";

/// What a look at the workload of an approved change found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumption {
    /// It runs the change: this is the revision the approval admitted.
    Applied(Applied),
    /// It carries the change, but its controller has not rolled it out yet.
    Rolling,
    /// It does not carry the change: not applied yet, or something else since.
    Absent,
}

/// The change digests `object` can stand for: its own, and for a Pod the scheduler bound, the
/// one without the `nodeName` the binding added after admission.
pub fn digests(
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    vocabulary: &Vocabulary,
) -> Vec<String> {
    let annotations: BTreeMap<String, String> = object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let claim = claim_from_value(kind, namespace, object, &annotations, vocabulary);
    let mut out = vec![claim_digest(&claim)];
    if let Some(unbound) = &claim.unbound_digest {
        out.push(change_digest(
            &claim.subject_name(),
            unbound.as_str(),
            &claim.annotation_map(),
        ));
    }
    out
}

/// Whether the workload's controller has seen its latest spec: `status.observedGeneration`
/// reached `metadata.generation`. Kinds without an observed generation (Jobs, CronJobs, Pods)
/// have nothing to wait for.
pub fn caught_up(kind: WorkloadKind, object: &Value) -> bool {
    let observes = matches!(
        kind,
        WorkloadKind::Deployment
            | WorkloadKind::StatefulSet
            | WorkloadKind::DaemonSet
            | WorkloadKind::ReplicaSet
            | WorkloadKind::ReplicationController
    );
    if !observes {
        return true;
    }
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    match (generation, observed) {
        (Some(generation), Some(observed)) => observed >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// The revision the workload runs: a Deployment's revision number, a StatefulSet's update
/// revision (its ControllerRevision), the generation for every other kind (1 where the API
/// server keeps none, as for Pods before Kubernetes 1.33: their spec is theirs from creation).
/// Read once the controller caught up ([`caught_up`]), when these name the revision of the
/// latest spec.
pub fn revision(kind: WorkloadKind, object: &Value) -> Option<String> {
    let text = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    match kind {
        WorkloadKind::Deployment => object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(DEPLOYMENT_REVISION))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        WorkloadKind::StatefulSet => text("/status/updateRevision"),
        _ => Some(
            object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .to_string(),
        ),
    }
}

/// Whether `object`, the workload of an approved request whose digest is `digest`, runs it.
pub fn consumption(
    digest: &str,
    kind: WorkloadKind,
    namespace: &str,
    object: &Value,
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Consumption {
    if !digests(kind, namespace, object, vocabulary)
        .iter()
        .any(|d| d == digest)
    {
        return Consumption::Absent;
    }
    if !caught_up(kind, object) {
        return Consumption::Rolling;
    }
    match revision(kind, object) {
        Some(revision) => Consumption::Applied(Applied {
            revision,
            generation: object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64),
            at: Time(now),
        }),
        None => Consumption::Rolling,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::changes::tests::{deployment, t};
    use serde_json::json;

    fn digest_of(object: &Value) -> String {
        digests(
            WorkloadKind::Deployment,
            "shop",
            object,
            &Vocabulary::default(),
        )[0]
        .clone()
    }

    #[test]
    fn consumption_by_situation() {
        let approved = deployment("web:2", 4, Some(4), Some("3"));
        let digest = digest_of(&approved);
        let mut other_commit = approved.clone();
        other_commit["metadata"]["annotations"]["custody.dev/source-commit"] = json!("fffffff");
        let mut unsigned_extra = approved.clone();
        unsigned_extra["metadata"]["annotations"]["example.com/note"] = json!("hello");
        unsigned_extra["spec"]["replicas"] = json!(9);
        // (situation, workload as read, expected)
        let cases: Vec<(&str, Value, Consumption)> = vec![
            (
                "it runs the change, rolled out: applied as the Deployment's revision",
                approved.clone(),
                Consumption::Applied(Applied {
                    revision: "3".into(),
                    generation: Some(4),
                    at: Time(t(10)),
                }),
            ),
            (
                "its controller has not caught up yet",
                deployment("web:2", 4, Some(3), Some("2")),
                Consumption::Rolling,
            ),
            (
                "not observed at all yet",
                deployment("web:2", 4, None, None),
                Consumption::Rolling,
            ),
            (
                "it still runs the old template",
                deployment("web:1", 4, Some(4), Some("3")),
                Consumption::Absent,
            ),
            (
                "the template is the same but a signed annotation differs",
                other_commit,
                Consumption::Absent,
            ),
            (
                "replicas and unsigned annotations are not the change",
                unsigned_extra,
                Consumption::Applied(Applied {
                    revision: "3".into(),
                    generation: Some(4),
                    at: Time(t(10)),
                }),
            ),
        ];
        for (situation, object, want) in cases {
            let got = consumption(
                &digest,
                WorkloadKind::Deployment,
                "shop",
                &object,
                &Vocabulary::default(),
                t(10),
            );
            assert_eq!(got, want, "{situation}");
        }
    }

    #[test]
    fn the_revision_by_kind() {
        let object = json!({
            "metadata": {"generation": 7, "annotations": {DEPLOYMENT_REVISION: "5"}},
            "status": {"observedGeneration": 7, "updateRevision": "db-6b7f9c"}
        });
        // (kind, expected revision, whether it waits for an observed generation)
        let cases = [
            (WorkloadKind::Deployment, "5", true),
            (WorkloadKind::StatefulSet, "db-6b7f9c", true),
            (WorkloadKind::DaemonSet, "7", true),
            (WorkloadKind::ReplicaSet, "7", true),
            (WorkloadKind::ReplicationController, "7", true),
            (WorkloadKind::Job, "7", false),
            (WorkloadKind::CronJob, "7", false),
            (WorkloadKind::Pod, "7", false),
        ];
        let behind = json!({"metadata": {"generation": 8}, "status": {"observedGeneration": 7}});
        for (kind, want, observes) in cases {
            assert_eq!(revision(kind, &object).as_deref(), Some(want), "{kind}");
            assert_eq!(caught_up(kind, &behind), !observes, "{kind}");
        }
        assert_eq!(
            revision(WorkloadKind::StatefulSet, &json!({"status": {}})),
            None,
            "no update revision yet"
        );
    }

    #[test]
    fn a_bound_pod_still_matches_the_digest_of_its_manifest() {
        let manifest = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "job-1", "namespace": "shop",
                         "annotations": {"custody.dev/actor": "agent", "custody.dev/agent": "claude"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}
        });
        let proposed = digests(WorkloadKind::Pod, "shop", &manifest, &Vocabulary::default());
        let mut bound = manifest.clone();
        bound["spec"]["nodeName"] = json!("node-a");
        bound["status"] = json!({"conditions": [{"type": "PodScheduled", "status": "True"}]});
        let got = consumption(
            &proposed[0],
            WorkloadKind::Pod,
            "shop",
            &bound,
            &Vocabulary::default(),
            t(0),
        );
        assert!(matches!(got, Consumption::Applied(_)), "{got:?}");
    }
}
