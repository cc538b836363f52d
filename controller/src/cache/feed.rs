//! The watches that feed the cache: each event of a revision, Pod or Node is applied to the
//! [`Cache`] and triggers exactly the workloads it concerns, on one channel per workload kind,
//! which that kind's Controller reconciles on. The workloads' own watches are their
//! Controllers' (see [`crate::run`]).

use std::pin::pin;
use std::sync::Arc;

use custody_crds::WorkloadKind;
use futures::StreamExt;
use futures::channel::mpsc;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::index::{Cache, WorkloadKey};
use super::slim::{
    SlimControllerRevision, SlimDaemonSet, SlimDeployment, SlimNode, SlimPod, SlimReplicaSet,
    SlimStatefulSet,
};

/// Where "look at this workload" goes for a kind.
type Trigger<K> = mpsc::UnboundedSender<ObjectRef<PartialObjectMeta<K>>>;
/// Where a kind's Controller hears "look at this workload".
pub type Triggered<K> = mpsc::UnboundedReceiver<ObjectRef<PartialObjectMeta<K>>>;

/// Routes "look at this workload" to the Controller of its kind.
#[derive(Clone)]
pub struct Triggers {
    deployments: Trigger<SlimDeployment>,
    stateful_sets: Trigger<SlimStatefulSet>,
    daemon_sets: Trigger<SlimDaemonSet>,
}

impl Triggers {
    /// Asks the Controller of `key`'s kind to look at it.
    pub fn send(&self, key: WorkloadKey) {
        fn target<K: Resource<DynamicType = ()>>(key: &WorkloadKey) -> ObjectRef<K> {
            ObjectRef::new(&key.name).within(&key.namespace)
        }
        // A send fails only once that Controller has shut down: nothing is left to trigger.
        match key.kind {
            WorkloadKind::Deployment => {
                let _ = self.deployments.unbounded_send(target(&key));
            }
            WorkloadKind::StatefulSet => {
                let _ = self.stateful_sets.unbounded_send(target(&key));
            }
            WorkloadKind::DaemonSet => {
                let _ = self.daemon_sets.unbounded_send(target(&key));
            }
            _ => {}
        }
    }
}

/// Feeds one resource's watch into the cache and triggers the workloads each event concerns.
async fn feed<K>(
    api: Api<K>,
    config: watcher::Config,
    apply: impl Fn(&Event<K>) -> Vec<WorkloadKey>,
    triggers: Triggers,
    cache: Arc<Cache>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut events = pin!(watcher(api, config).backoff(custody_runtime::watch_backoff()));
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let keys = apply(&event);
                // Before the first sync nothing can be decided, and every workload is looked
                // at once the cache has synced (`crate::run`): triggers now would only churn.
                if cache.is_synced() {
                    for key in keys {
                        triggers.send(key);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, resource = %K::plural(&()), "watch failed; retrying");
            }
        }
    }
}

/// Which workloads to look at, one channel per kind, for that kind's Controller.
pub struct TriggeredKinds {
    /// Deployments to look at.
    pub deployments: Triggered<SlimDeployment>,
    /// StatefulSets to look at.
    pub stateful_sets: Triggered<SlimStatefulSet>,
    /// DaemonSets to look at.
    pub daemon_sets: Triggered<SlimDaemonSet>,
}

/// Starts the watches of revisions, Pods and Nodes into the cache; each event triggers the
/// workloads it concerns, on the returned channels. The returned [`Triggers`] sends on the
/// same channels.
pub fn feed_cache(
    background: &mut JoinSet<()>,
    client: &Client,
    cfg: &watcher::Config,
    cache: &Arc<Cache>,
) -> (TriggeredKinds, Triggers) {
    let (deployments, triggered_deployments) = mpsc::unbounded();
    let (stateful_sets, triggered_stateful_sets) = mpsc::unbounded();
    let (daemon_sets, triggered_daemon_sets) = mpsc::unbounded();
    let triggers = Triggers {
        deployments,
        stateful_sets,
        daemon_sets,
    };
    background.spawn(feed(
        Api::<SlimReplicaSet>::all(client.clone()),
        cfg.clone(),
        {
            let cache = cache.clone();
            move |event| cache.apply_replica_set(event)
        },
        triggers.clone(),
        cache.clone(),
    ));
    background.spawn(feed(
        Api::<SlimControllerRevision>::all(client.clone()),
        cfg.clone(),
        {
            let cache = cache.clone();
            move |event| cache.apply_controller_revision(event)
        },
        triggers.clone(),
        cache.clone(),
    ));
    background.spawn(feed(
        Api::<SlimPod>::all(client.clone()),
        cfg.clone(),
        {
            let cache = cache.clone();
            move |event| cache.apply_pod(event)
        },
        triggers.clone(),
        cache.clone(),
    ));
    // Needs `nodes: get, list, watch`; until the Node list succeeds the cache is not synced and
    // nothing is decided, rather than deciding blind to Nodes.
    background.spawn(feed(
        Api::<SlimNode>::all(client.clone()),
        cfg.clone(),
        {
            let cache = cache.clone();
            move |event| cache.apply_node(event)
        },
        triggers.clone(),
        cache.clone(),
    ));
    (
        TriggeredKinds {
            deployments: triggered_deployments,
            stateful_sets: triggered_stateful_sets,
            daemon_sets: triggered_daemon_sets,
        },
        triggers,
    )
}
