//! The objects as the controller decodes them: only the fields the decision reads, so a watch
//! list of thirty thousand Pods does not first build thirty thousand full Pods (spec,
//! managedFields and all) only to throw them away. Pod templates stay raw JSON: the webhook
//! fingerprints the JSON the API server sends, and so must the controller, including fields
//! newer than the Kubernetes API types compiled in. A Node is read for its readiness alone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

impl Meta {
    fn into_object_meta(self, annotations: Option<BTreeMap<String, String>>) -> ObjectMeta {
        ObjectMeta {
            name: self.name,
            namespace: self.namespace,
            uid: self.uid,
            resource_version: self.resource_version,
            generation: self.generation,
            creation_timestamp: self.creation_timestamp,
            deletion_timestamp: self.deletion_timestamp,
            labels: self.labels,
            owner_references: self.owner_references,
            annotations,
            ..ObjectMeta::default()
        }
    }
}

/// Metadata without managedFields (often the largest part of an object).
fn meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    struct WithAnnotations {
        #[serde(flatten)]
        meta: Meta,
        annotations: Option<BTreeMap<String, String>>,
    }
    let m = WithAnnotations::deserialize(d)?;
    Ok(m.meta.into_object_meta(m.annotations))
}

/// Metadata without managedFields or annotations: a Pod's annotations are never read.
fn meta_without_annotations<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    Ok(Meta::deserialize(d)?.into_object_meta(None))
}

/// A Node's name and version only: its labels and annotations are many and never read.
fn name_only<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct NameOnly {
        name: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
    }
    let m = NameOnly::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        uid: m.uid,
        resource_version: m.resource_version,
        ..ObjectMeta::default()
    })
}

/// A condition of a workload or Pod.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Its type.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// Why, in one word.
    pub reason: Option<String>,
    /// When the status last changed.
    pub last_transition_time: Option<Time>,
}

/// A rolling update's knobs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdate {
    /// How many replicas may be unavailable.
    pub max_unavailable: Option<IntOrString>,
    /// A StatefulSet's partition.
    pub partition: Option<i32>,
}

/// A Deployment's strategy, or a StatefulSet's or DaemonSet's update strategy.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// The rolling update's knobs.
    pub rolling_update: Option<RollingUpdate>,
}

/// The spec fields of any of the three workload kinds.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Desired replicas (not for a DaemonSet).
    pub replicas: Option<i32>,
    /// A paused Deployment.
    pub paused: Option<bool>,
    /// A Deployment's strategy.
    pub strategy: Option<Strategy>,
    /// A StatefulSet's or DaemonSet's update strategy.
    pub update_strategy: Option<Strategy>,
    /// The pod template, as sent.
    pub template: Option<Value>,
}

impl WorkloadSpec {
    /// The rolling update's knobs: a Deployment's `strategy`, a StatefulSet's or DaemonSet's
    /// `updateStrategy`.
    pub fn rolling_update(&self) -> Option<&RollingUpdate> {
        self.strategy
            .as_ref()
            .or(self.update_strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref())
    }
}

/// The status fields of any of the three workload kinds.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// The generation the workload's controller has acted on.
    pub observed_generation: Option<i64>,
    /// Replicas of all revisions.
    pub replicas: Option<i32>,
    /// Replicas at the desired revision.
    pub updated_replicas: Option<i32>,
    /// Available replicas.
    pub available_replicas: Option<i32>,
    /// A Deployment's conditions.
    pub conditions: Option<Vec<Condition>>,
    /// A DaemonSet's desired number of nodes.
    pub desired_number_scheduled: Option<i32>,
    /// A DaemonSet's nodes running it.
    pub current_number_scheduled: Option<i32>,
    /// A DaemonSet's nodes running the desired revision.
    pub updated_number_scheduled: Option<i32>,
    /// A DaemonSet's nodes with it available.
    pub number_available: Option<i32>,
}

macro_rules! workload {
    ($name:ident, $inherit:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Debug, Deserialize, Resource)]
        #[resource(inherit = $inherit)]
        pub struct $name {
            /// Metadata, without managedFields.
            #[serde(deserialize_with = "meta")]
            pub metadata: ObjectMeta,
            /// The spec fields read.
            #[serde(default)]
            pub spec: WorkloadSpec,
            /// The status fields read.
            #[serde(default)]
            pub status: WorkloadStatus,
        }
    };
}

workload!(
    SlimDeployment,
    "Deployment",
    "An apps/v1 Deployment, as read."
);
workload!(
    SlimStatefulSet,
    "StatefulSet",
    "An apps/v1 StatefulSet, as read."
);
workload!(SlimDaemonSet, "DaemonSet", "An apps/v1 DaemonSet, as read.");

/// A ReplicaSet's spec, as read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReplicaSetSpec {
    /// The pod template, as sent.
    pub template: Option<Value>,
}

/// An apps/v1 ReplicaSet, as read.
#[derive(Clone, Debug, Deserialize, Resource)]
#[resource(inherit = "ReplicaSet")]
pub struct SlimReplicaSet {
    /// Metadata, without managedFields.
    #[serde(deserialize_with = "meta")]
    pub metadata: ObjectMeta,
    /// The spec fields read.
    #[serde(default)]
    pub spec: ReplicaSetSpec,
}

/// An apps/v1 ControllerRevision, as read.
#[derive(Clone, Debug, Deserialize, Resource)]
#[resource(inherit = "ControllerRevision")]
pub struct SlimControllerRevision {
    /// Metadata, without managedFields.
    #[serde(deserialize_with = "meta")]
    pub metadata: ObjectMeta,
    /// The revision's state: `{"spec": {"template": ...}}` for StatefulSets and DaemonSets.
    pub data: Option<Value>,
    /// The revision number.
    #[serde(default)]
    pub revision: i64,
}

/// A container's waiting state.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Waiting {
    /// Why it waits (CrashLoopBackOff, ImagePullBackOff, ...).
    pub reason: Option<String>,
}

/// A container's state.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ContainerStateView {
    /// Set while it waits.
    pub waiting: Option<Waiting>,
}

/// A container's status.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Its name.
    pub name: String,
    /// Restarts so far.
    #[serde(default)]
    pub restart_count: i32,
    /// Its state.
    pub state: Option<ContainerStateView>,
}

/// A Pod's spec, as read: only where it runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    /// The Node it is bound to, once scheduled.
    pub node_name: Option<String>,
}

/// A Pod's status, as read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    /// Why it is in its phase, in one word (Evicted, Preempting, Terminated, ...).
    pub reason: Option<String>,
    /// When the kubelet started it.
    pub start_time: Option<Time>,
    /// Its conditions.
    pub conditions: Option<Vec<Condition>>,
    /// Its containers' statuses.
    pub container_statuses: Option<Vec<ContainerStatus>>,
}

/// A v1 Pod, as read: its Node of the spec, no annotations.
#[derive(Clone, Debug, Deserialize, Resource)]
#[resource(inherit = "Pod")]
pub struct SlimPod {
    /// Metadata, without managedFields or annotations.
    #[serde(deserialize_with = "meta_without_annotations")]
    pub metadata: ObjectMeta,
    /// The spec fields read.
    #[serde(default)]
    pub spec: PodSpec,
    /// The status fields read.
    #[serde(default)]
    pub status: PodStatus,
}

/// A taint, as read: its key only (any effect of the two keys read means the same).
#[derive(Clone, Debug, Deserialize)]
pub struct Taint {
    /// Its key.
    pub key: String,
}

/// A Node's spec, as read.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeSpec {
    /// Its taints.
    pub taints: Option<Vec<Taint>>,
}

/// A Node's status, as read: its conditions (images, addresses and capacity are not).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeStatus {
    /// Its conditions.
    pub conditions: Option<Vec<Condition>>,
}

/// A v1 Node, as read: its name, conditions and taint keys.
#[derive(Clone, Debug, Deserialize, Resource)]
#[resource(inherit = "Node")]
pub struct SlimNode {
    /// Name, UID and resourceVersion only.
    #[serde(deserialize_with = "name_only")]
    pub metadata: ObjectMeta,
    /// The spec fields read.
    #[serde(default)]
    pub spec: NodeSpec,
    /// The status fields read.
    #[serde(default)]
    pub status: NodeStatus,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn managed_fields_and_pod_annotations_are_not_kept() {
        let pod: SlimPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {"a": "b"}, "managedFields": [{"manager": "kubelet"}],
                         "labels": {"controller-revision-hash": "web-1"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"containerStatuses": [{"name": "c", "restartCount": 2, "ready": false, "image": "i", "imageID": "",
                       "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        }))
        .unwrap();
        assert!(pod.metadata.annotations.is_none());
        assert!(pod.metadata.managed_fields.is_none());
        let status = &pod.status.container_statuses.unwrap()[0];
        assert_eq!(status.restart_count, 2);
        assert_eq!(
            status
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        assert_eq!(SlimPod::kind(&()), "Pod");
        assert_eq!(SlimDeployment::plural(&()), "deployments");
    }

    #[test]
    fn a_node_keeps_its_name_conditions_and_taint_keys_only() {
        let node: SlimNode = serde_json::from_value(json!({
            "metadata": {"name": "n1", "uid": "u", "resourceVersion": "7", "labels": {"kubernetes.io/hostname": "n1"},
                         "annotations": {"a": "b"}},
            "spec": {"podCIDR": "10.0.0.0/24", "taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}], "images": [{"names": ["x"], "sizeBytes": 1}]}
        }))
        .unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        assert!(node.metadata.labels.is_none() && node.metadata.annotations.is_none());
        assert_eq!(
            node.spec.taints.unwrap()[0].key,
            "node.kubernetes.io/unreachable"
        );
        assert_eq!(node.status.conditions.unwrap()[0].status, "Unknown");
        assert_eq!(SlimNode::plural(&()), "nodes");
    }
}
