//! The watches that keep the live state current: CustodyPolicies, CustodyTeams, CustodyAgents,
//! CustodyChanges and RollbackRecords are compiled into new snapshots on every change;
//! namespaces are kept as metadata only.

use std::sync::Arc;

use custody_crds::{CustodyAgent, CustodyChange, CustodyPolicy, CustodyTeam, RollbackRecord};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as watch};
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;

use super::metrics::{CacheLabels, Metrics};
use super::state::{Cache, LiveState};

/// How often `custody_agent_probation` is recomputed when no record changes: probation also
/// ends with time.
const PROBATION_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs the six watches, and the probation gauge's timer, until `shutdown`.
pub async fn run(
    client: Client,
    state: Arc<LiveState>,
    namespace_writer: reflector::store::Writer<PartialObjectMeta<Namespace>>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let state_for_timer = state.clone();
    let policies = follow::<CustodyPolicy>(
        &client,
        Cache::Policies,
        &state,
        &metrics,
        LiveState::rebuild_policies,
    );
    let records = follow::<RollbackRecord>(
        &client,
        Cache::Records,
        &state,
        &metrics,
        LiveState::rebuild_quarantine,
    );
    let teams = follow::<CustodyTeam>(
        &client,
        Cache::Teams,
        &state,
        &metrics,
        LiveState::rebuild_teams,
    );
    let agents = follow::<CustodyAgent>(
        &client,
        Cache::Agents,
        &state,
        &metrics,
        LiveState::rebuild_activity,
    );
    let changes = follow::<CustodyChange>(
        &client,
        Cache::Changes,
        &state,
        &metrics,
        LiveState::rebuild_changes,
    );
    let namespaces = {
        let stream = reflector(
            namespace_writer,
            // Api<PartialObjectMeta<_>> asks for metadata only: labels, not whole namespaces.
            watch(
                Api::<PartialObjectMeta<Namespace>>::all(client),
                watcher::Config::default(),
            ),
        );
        drive(stream, Cache::Namespaces, state, metrics, || {})
    };
    let probation = {
        let state = state_for_timer;
        async move {
            let mut tick = tokio::time::interval(PROBATION_REFRESH);
            loop {
                tick.tick().await;
                state.refresh_probation(k8s_openapi::jiff::Timestamp::now());
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = probation => {}
        _ = async { tokio::join!(policies, records, teams, agents, changes, namespaces) } => {}
    }
}

/// Follows one cluster-wide Custody resource into a store, rebuilding its part of the live
/// state from the whole store on every change.
fn follow<K>(
    client: &Client,
    cache: Cache,
    state: &Arc<LiveState>,
    metrics: &Metrics,
    rebuild: fn(&LiveState, Vec<Arc<K>>),
) -> impl std::future::Future<Output = ()> + use<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector(
        writer,
        watch(Api::<K>::all(client.clone()), watcher::Config::default()),
    );
    let rebuilt = state.clone();
    drive(stream, cache, state.clone(), metrics.clone(), move || {
        rebuild(&rebuilt, reader.state());
    })
}

/// Follows one watch: `changed` runs after the store has applied each change (and once the
/// initial list is complete), and the cache counts as synced from then on. A watch error is
/// logged and counted; the watcher re-lists with backoff, and the last good state keeps serving.
async fn drive<K, S>(
    stream: S,
    cache: Cache,
    state: Arc<LiveState>,
    metrics: Metrics,
    changed: impl Fn(),
) where
    K: Resource + Clone,
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
{
    let stream = stream.backoff(custody_runtime::watch_backoff());
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::InitDone) => {
                changed();
                state.set_synced(cache, true);
                tracing::info!(cache = cache.as_str(), "cache synced");
            }
            Ok(Event::Apply(_) | Event::Delete(_)) => changed(),
            Ok(Event::Init | Event::InitApply(_)) => {}
            Err(error) => match missing_crd(cache).filter(|_| is_not_found(&error)) {
                // An install from before the CRD existed: the cache is empty, and says so once.
                Some(consequence) if !state.is_cache_synced(cache) => {
                    tracing::warn!(
                        cache = cache.as_str(),
                        "the {} CRD is not installed; serving with {consequence} (upgrade the chart's CRDs)",
                        cache.kind()
                    );
                    state.set_synced(cache, true);
                }
                // Said once already; a missing CRD is not a watch error.
                Some(_) => {}
                None => {
                    metrics
                        .watch_errors
                        .get_or_create(&CacheLabels {
                            cache: cache.as_str(),
                        })
                        .inc();
                    tracing::warn!(cache = cache.as_str(), %error, "watch failed; retrying with backoff, serving the last known state");
                }
            },
        }
    }
}

/// For a resource added after the first release, what serving without its CRD means; `None`
/// for the resources the webhook cannot judge without.
fn missing_crd(cache: Cache) -> Option<&'static str> {
    match cache {
        // Only policies with `ownership: Registered` notice (they deny with "not registered").
        Cache::Teams => Some("no registered teams"),
        // Nothing is approved: an agent's change under `spec.agents.approval` is refused.
        Cache::Changes => {
            Some("no change requests (agents' changes that need approval are refused)")
        }
        Cache::Policies | Cache::Namespaces | Cache::Records | Cache::Agents => None,
    }
}

/// Whether the watch failed because the resource does not exist on the server.
fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// Keeps the type of a namespace store nameable for callers.
pub type NamespaceStore = Store<PartialObjectMeta<Namespace>>;
