//! The controller's wiring: one watch per resource feeds the [`Cache`]
//! ([`crate::cache::feed`]); the work queue ([`crate::schedule`]) looks at each workload its
//! own events, those of the revisions and Pods the cache links to it, and the Nodes those Pods
//! are bound to going down or up trigger. Policies, teams, change requests and namespaces are
//! kept in stores; the change requests have their own loop ([`crate::act::changes`]).

use std::sync::Arc;

use custody_crds::{CustodyChange, CustodyPolicy, CustodyTeam, RollbackRecord, Vocabulary};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::act::agent_status::{self, AgentLedger, Publisher};
use crate::act::changes;
use crate::act::notify::Notifier;
use crate::act::notify::dispatch::{self, Oncall};
use crate::act::{Context, error_policy, reconcile};
use crate::audit::{self, AuditConfig, AuditInputs};
use crate::cache::feed::{Triggered, Triggers, feed_cache};
use crate::cache::index::Cache;
use crate::measure::analyses::Analyses;
use crate::measure::sources::Sources;
use crate::metrics::Metrics;
use crate::schedule;

/// Runtime settings of the controller loop.
pub struct RunConfig {
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Global dry run.
    pub dry_run: bool,
    /// This replica's identity, for Events.
    pub identity: String,
    /// Where notifications go.
    pub notifier: Option<Notifier>,
    /// The background audit, when on.
    pub audit: Option<AuditConfig>,
    /// Where metric analyses' queries go: the providers the policies name, built with the
    /// Secrets of the controller's own namespace.
    pub sources: Sources,
}

/// Reconciles of one kind running at once. A reconcile is a few microseconds of decision and,
/// rarely, a few writes; more in flight would only hold more futures in memory after a resync.
const RECONCILE_CONCURRENCY: usize = 16;

/// Keeps the store of a Custody resource the controller can do without: CustodyTeams (an
/// install from before teams), CustodyChanges (from before approvals). Objects are kept less
/// their managed fields and last-applied copy. Without the CRD the failure is logged once (and
/// again only after a success), the store stays empty, and neither readiness nor any decision
/// waits for it. `changed` is notified on every event.
async fn watch_optional<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    what: &'static str,
    changed: Option<Arc<tokio::sync::Notify>>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let mut failing = false;
    watcher(api, config)
        .backoff(custody_runtime::watch_backoff())
        .modify(|object| {
            object.managed_fields_mut().clear();
            object
                .annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(writer)
        .for_each(move |event| {
            if let (Ok(_), Some(changed)) = (&event, &changed) {
                changed.notify_one();
            }
            match event {
                Ok(_) if failing => {
                    failing = false;
                    tracing::info!(resource = what, "watching again");
                }
                Ok(_) => {}
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, resource = what, "cannot watch (is the CRD installed?); ignored until it can be");
                }
                Err(error) => tracing::debug!(%error, resource = what, "watch still failing"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Looks at the workloads `triggered` names, [`RECONCILE_CONCURRENCY`] at a time, until
/// `shutdown`.
async fn reconcile_all(triggered: Triggered, ctx: Arc<Context>, shutdown: CancellationToken) {
    schedule::run(
        triggered,
        RECONCILE_CONCURRENCY,
        |uid| {
            let ctx = ctx.clone();
            async move {
                match reconcile(uid, &ctx).await {
                    Ok(next) => next,
                    Err(error) => error_policy(&error, &ctx),
                }
            }
        },
        shutdown,
    )
    .await;
}

/// The stores reconciles read besides the cache.
struct Stores {
    policies: Store<CustodyPolicy>,
    /// Notified when a policy changes (and after a relist) or a change request is applied,
    /// for the audit.
    policy_changed: Arc<tokio::sync::Notify>,
    teams: Store<CustodyTeam>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// CustodyChanges; empty when the CRD is not installed.
    changes: Store<CustodyChange>,
    /// RollbackRecords, for the notification loop.
    records: Store<RollbackRecord>,
    /// Notified on every event of the changes' and the policies' watches, for
    /// [`crate::act::changes`].
    changes_wake: Arc<tokio::sync::Notify>,
}

/// Watches workloads, their revisions and Pods, policies and namespaces, and reconciles until
/// `shutdown`.
pub async fn run(
    client: Client,
    config: RunConfig,
    metrics: Metrics,
    leader: watch::Receiver<bool>,
    ready: custody_runtime::ReadyHandle,
    shutdown: CancellationToken,
) {
    let cfg = watcher::Config::default();
    let cache = Arc::new(Cache::new(config.vocabulary.clone()));
    let mut background = JoinSet::new();
    let stores = watch_stores(&mut background, &client, &cfg);
    let (triggered, triggers) = feed_cache(&mut background, &client, &cfg, &cache);
    background.spawn(look_again_when_deciding(
        cache.clone(),
        triggers.clone(),
        leader.clone(),
    ));
    let (synced_tx, synced) = watch::channel(false);
    let RunConfig {
        vocabulary,
        dry_run,
        identity,
        notifier,
        audit: audit_config,
        sources,
    } = config;
    let analyses = Arc::new(Analyses::new(
        client.clone(),
        cache.clone(),
        triggers,
        sources,
        leader.clone(),
        vocabulary.clone(),
        metrics.clone(),
    ));
    if let Some(audit_config) = audit_config {
        background.spawn(audit::run(
            client.clone(),
            AuditInputs {
                cache: cache.clone(),
                policies: stores.policies.clone(),
                namespaces: stores.namespaces.clone(),
                teams: stores.teams.clone(),
                policy_changed: stores.policy_changed.clone(),
                changes: stores.changes.clone(),
                synced: synced.clone(),
                vocabulary: vocabulary.clone(),
            },
            audit_config,
            metrics.clone(),
            leader.clone(),
            shutdown.clone(),
        ));
    }
    let agent_ledger = Arc::new(AgentLedger::default());
    let oncall = notifier.map(|notifier| dispatch::Inputs {
        client: client.clone(),
        notifier,
        records: stores.records.clone(),
        teams: stores.teams.clone(),
        policies: stores.policies.clone(),
        cache: cache.clone(),
        vocabulary: vocabulary.clone(),
        leader: leader.clone(),
    });
    let oncall = oncall.map(|inputs| start_oncall(&mut background, inputs, &shutdown));
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "custody-controller".into(),
                instance: Some(identity),
            },
        ),
        client: client.clone(),
        cache: cache.clone(),
        policies: stores.policies.clone(),
        namespaces: stores.namespaces.clone(),
        teams: stores.teams,
        metrics,
        vocabulary,
        dry_run,
        leader,
        oncall,
        not_attributed: std::sync::Mutex::default(),
        agents: agent_ledger.clone(),
        analyses,
    });
    background.spawn(agent_status::run(
        Publisher {
            client: client.clone(),
            cache: cache.clone(),
            ledger: agent_ledger,
            vocabulary: ctx.vocabulary.clone(),
            metrics: ctx.metrics.clone(),
        },
        ctx.leader.clone(),
        shutdown.clone(),
    ));
    background.spawn(changes::run(
        ctx.clone(),
        changes::Inputs {
            store: stores.changes,
            wake: stores.changes_wake,
            synced,
            audit: stores.policy_changed.clone(),
        },
        shutdown.clone(),
    ));
    background.spawn(report_ready(
        cache.clone(),
        stores.policies,
        stores.namespaces,
        ready,
        synced_tx,
    ));
    reconcile_all(triggered, ctx, shutdown).await;
    background.shutdown().await;
}

/// Starts the notification loop; writers hand notices to the queue it returns.
fn start_oncall(
    background: &mut JoinSet<()>,
    inputs: dispatch::Inputs,
    shutdown: &CancellationToken,
) -> Oncall {
    let (oncall, messages) = Oncall::channel();
    background.spawn(dispatch::run(inputs, messages, shutdown.clone()));
    oncall
}

/// Starts the watches of policies, teams, change requests and namespaces into their stores.
fn watch_stores(background: &mut JoinSet<()>, client: &Client, cfg: &watcher::Config) -> Stores {
    let (policy_reader, policy_writer) = reflector::store::<CustodyPolicy>();
    let policy_changed = Arc::new(tokio::sync::Notify::new());
    let changes_wake = Arc::new(tokio::sync::Notify::new());
    background.spawn({
        let changed = policy_changed.clone();
        let changes_wake = changes_wake.clone();
        let mut listed = false;
        watcher(Api::<CustodyPolicy>::all(client.clone()), cfg.clone())
            .backoff(custody_runtime::watch_backoff())
            .reflect(policy_writer)
            .for_each(move |event| {
                // A relist's InitApply events are followed by InitDone: one audit for all. The
                // first list is the audit at start.
                let relisted =
                    matches!(event, Ok(Event::InitDone)) && std::mem::replace(&mut listed, true);
                if relisted || matches!(event, Ok(Event::Apply(_) | Event::Delete(_))) {
                    changed.notify_one();
                    changes_wake.notify_one();
                }
                futures::future::ready(())
            })
    });
    let (team_reader, team_writer) = reflector::store::<CustodyTeam>();
    background.spawn(watch_optional(
        Api::<CustodyTeam>::all(client.clone()),
        cfg.clone(),
        team_writer,
        "CustodyTeams",
        None,
    ));
    let (change_reader, change_writer) = reflector::store::<CustodyChange>();
    background.spawn(watch_optional(
        Api::<CustodyChange>::all(client.clone()),
        cfg.clone(),
        change_writer,
        "CustodyChanges",
        Some(changes_wake.clone()),
    ));
    let (record_reader, record_writer) = reflector::store::<RollbackRecord>();
    background.spawn(watch_optional(
        Api::<RollbackRecord>::all(client.clone()),
        cfg.clone(),
        record_writer,
        "RollbackRecords",
        None,
    ));
    let (ns_reader, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    background.spawn(
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            cfg.clone(),
        )
        .backoff(custody_runtime::watch_backoff())
        .reflect(ns_writer)
        .for_each(|_| futures::future::ready(())),
    );
    Stores {
        policies: policy_reader,
        policy_changed,
        teams: team_reader,
        namespaces: ns_reader,
        records: record_reader,
        changes: change_reader,
        changes_wake,
    }
}

/// Looks at every workload once the cache has synced and whenever this replica takes the
/// Lease. Until then reconciles wait instead of polling (`act::reconcile`): a follower does not
/// keep 10,000 workloads scheduled every few seconds, and a starting replica does not requeue
/// each one every second until its lists are in.
async fn look_again_when_deciding(
    cache: Arc<Cache>,
    triggers: Triggers,
    mut leader: watch::Receiver<bool>,
) {
    /// Triggers sent between two yields, so the work queue takes them in as they arrive
    /// rather than holding every workload in the channel at once.
    const BATCH: usize = 256;
    cache.synced().await;
    loop {
        if leader.wait_for(|leads| *leads).await.is_err() {
            return;
        }
        let uids = cache.workload_uids();
        tracing::debug!(workloads = uids.len(), "looking at every workload");
        for (n, uid) in uids.into_iter().enumerate() {
            triggers.send(uid);
            if n % BATCH == BATCH - 1 {
                tokio::task::yield_now().await;
            }
        }
        if leader.wait_for(|leads| !*leads).await.is_err() {
            return;
        }
    }
}

/// Reports ready, and tells the audit, once the cache and the stores decisions read are synced.
async fn report_ready(
    cache: Arc<Cache>,
    policies: Store<CustodyPolicy>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    ready: custody_runtime::ReadyHandle,
    synced: watch::Sender<bool>,
) {
    let _ = tokio::join!(
        cache.synced(),
        policies.wait_until_ready(),
        namespaces.wait_until_ready()
    );
    ready.set(true);
    let _ = synced.send(true);
    let (workloads, revisions, pods) = cache.sizes();
    let nodes = cache.node_count();
    tracing::info!(workloads, revisions, pods, nodes, "caches synced");
}
