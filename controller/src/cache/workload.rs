//! The workload kinds the controller follows, and what it keeps of each: the decision's reduced
//! state goes to the [`Cache`](super::index::Cache); the Controller's own store keeps only a
//! name-and-version skeleton, since reconcile reads the cache, never the object.

use std::fmt::Debug;
use std::marker::PhantomData;

use custody_crds::{Vocabulary, WorkloadKind};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;

use super::index::Feed;
use super::observe::{self, WorkloadState};
use super::slim::{SlimDaemonSet, SlimDeployment, SlimStatefulSet};

/// A kind of workload whose rollouts the controller follows.
pub trait Workload:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    /// The kind.
    const KIND: WorkloadKind;
    /// The cache feed its watch is.
    const FEED: Feed;
    /// What the decision reads of it.
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState;
}

impl Workload for SlimDeployment {
    const KIND: WorkloadKind = WorkloadKind::Deployment;
    const FEED: Feed = Feed::Deployments;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::deployment_state(self, vocabulary)
    }
}

impl Workload for SlimStatefulSet {
    const KIND: WorkloadKind = WorkloadKind::StatefulSet;
    const FEED: Feed = Feed::StatefulSets;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::stateful_set_state(self, vocabulary)
    }
}

impl Workload for SlimDaemonSet {
    const KIND: WorkloadKind = WorkloadKind::DaemonSet;
    const FEED: Feed = Feed::DaemonSets;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::daemon_set_state(self, vocabulary)
    }
}

/// What the Controller's store keeps of a workload: enough to name it and find it in the cache.
pub fn skeleton<K: Workload>(object: K) -> PartialObjectMeta<K> {
    let meta = object.meta();
    PartialObjectMeta {
        types: None,
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            ..ObjectMeta::default()
        },
        _phantom: PhantomData,
    }
}

/// The same watch event about the skeleton.
pub fn skeleton_event<K: Workload>(event: Event<K>) -> Event<PartialObjectMeta<K>> {
    match event {
        Event::Apply(o) => Event::Apply(skeleton(o)),
        Event::Delete(o) => Event::Delete(skeleton(o)),
        Event::Init => Event::Init,
        Event::InitApply(o) => Event::InitApply(skeleton(o)),
        Event::InitDone => Event::InitDone,
    }
}
