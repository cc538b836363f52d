//! The watches that feed the cache: each event of a workload, revision, Pod or Node is applied
//! to the [`Cache`] and triggers exactly the workloads it concerns, by UID, on the channel the
//! work queue reads (`crate::schedule`).

use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use super::compact::Uid;
use super::index::Cache;
use super::slim::{
    SlimControllerRevision, SlimDaemonSet, SlimDeployment, SlimNode, SlimPod, SlimReplicaSet,
    SlimStatefulSet,
};
use super::workload::Workload;

/// Where the work queue hears "look at this workload".
pub type Triggered = mpsc::UnboundedReceiver<Uid>;

/// Sends "look at this workload" to the work queue.
#[derive(Clone)]
pub struct Triggers(mpsc::UnboundedSender<Uid>);

impl Triggers {
    /// Asks the work queue to look at the workload `uid`.
    pub fn send(&self, uid: Uid) {
        // A send fails only once the queue has shut down: nothing is left to trigger.
        let _ = self.0.unbounded_send(uid);
    }
}

/// Feeds one resource's watch into the cache and triggers the workloads each event concerns.
async fn feed<K>(
    api: Api<K>,
    config: watcher::Config,
    apply: impl Fn(&Event<K>) -> Vec<Uid>,
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

/// Starts the watches of workloads, revisions, Pods and Nodes into the cache; each event
/// triggers the workloads it concerns on the returned channel. The returned [`Triggers`] sends
/// on the same channel.
pub fn feed_cache(
    background: &mut JoinSet<()>,
    client: &Client,
    cfg: &watcher::Config,
    cache: &Arc<Cache>,
) -> (Triggered, Triggers) {
    let (trigger, triggered) = mpsc::unbounded();
    let triggers = Triggers(trigger);
    background.spawn(feed_workloads::<SlimDeployment>(
        client, cfg, cache, &triggers,
    ));
    background.spawn(feed_workloads::<SlimStatefulSet>(
        client, cfg, cache, &triggers,
    ));
    background.spawn(feed_workloads::<SlimDaemonSet>(
        client, cfg, cache, &triggers,
    ));
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
    (triggered, triggers)
}

/// The watch of one workload kind.
fn feed_workloads<K: Workload>(
    client: &Client,
    cfg: &watcher::Config,
    cache: &Arc<Cache>,
    triggers: &Triggers,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    feed(
        Api::<K>::all(client.clone()),
        cfg.clone(),
        {
            let cache = cache.clone();
            move |event| cache.apply_workload(K::FEED, event, K::reduce)
        },
        triggers.clone(),
        cache.clone(),
    )
}
