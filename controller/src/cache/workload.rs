//! The workload kinds the controller follows, and what it keeps of each: the decision's reduced
//! state, in the [`Cache`](super::index::Cache). Nothing else keeps a copy of a workload: the
//! work queue names it by UID.

use std::fmt::Debug;

use custody_crds::Vocabulary;
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
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
    /// The cache feed its watch is.
    const FEED: Feed;
    /// What the decision reads of it.
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState;
}

impl Workload for SlimDeployment {
    const FEED: Feed = Feed::Deployments;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::deployment_state(self, vocabulary)
    }
}

impl Workload for SlimStatefulSet {
    const FEED: Feed = Feed::StatefulSets;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::stateful_set_state(self, vocabulary)
    }
}

impl Workload for SlimDaemonSet {
    const FEED: Feed = Feed::DaemonSets;
    fn reduce(&self, vocabulary: &Vocabulary) -> WorkloadState {
        observe::daemon_set_state(self, vocabulary)
    }
}
