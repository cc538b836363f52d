//! The caches the decision reads, kept small: managedFields are dropped from everything, and
//! Pods keep only metadata and status (the decision never reads a Pod's spec).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

/// Drops what no decision reads from a Deployment.
pub fn trim_deployment(d: &mut Deployment) {
    d.managed_fields_mut().clear();
}

/// Drops what no decision reads from a ReplicaSet.
pub fn trim_replica_set(rs: &mut ReplicaSet) {
    rs.managed_fields_mut().clear();
}

/// Drops what no decision reads from a Pod: its spec and managedFields.
pub fn trim_pod(pod: &mut Pod) {
    pod.managed_fields_mut().clear();
    pod.spec = None;
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.retain(|k, _| !k.starts_with("kubectl.kubernetes.io/"));
    }
}

/// The Deployment that controls a ReplicaSet, if any.
pub fn deployment_of_replica_set(rs: &ReplicaSet) -> Option<ObjectRef<Deployment>> {
    let owner = rs
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")?;
    Some(ObjectRef::new(&owner.name).within(&rs.namespace()?))
}

/// The Deployment that controls a Pod, through its ReplicaSet in the cache.
pub fn deployment_of_pod(
    pod: &Pod,
    replica_sets: &Store<ReplicaSet>,
) -> Option<ObjectRef<Deployment>> {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    let rs = replica_sets.get(&ObjectRef::new(&owner.name).within(&pod.namespace()?))?;
    deployment_of_replica_set(&rs)
}
