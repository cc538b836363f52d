//! The I/O shell around the decision: gather the rollout from the caches, decide, act.
//!
//! Writes are ordered so that a crash at any point converges to exactly one revert: the record
//! is created first (idempotent, deterministic name), so the webhook quarantines the template
//! before anything could re-apply it; the revert is a JSON patch conditioned on the
//! resourceVersion the decision saw (a conflict means deciding again on fresh state); the
//! ReplicaSet is marked last. After a restart, a Deployment already moved off the bad revision
//! has nothing to revert, and one still on it is reverted by the same (idempotent) steps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{
    CustodyPolicy, RecordAction, RollbackRecord, RollbackSettings, Vocabulary, WorkloadKind,
};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::decide::{self, Action, Verdict, marks};
use crate::index;
use crate::metrics::{ErrorLabels, Metrics, ReasonLabels};
use crate::notify::Notifier;
use crate::observe::{Observed, observe};
use crate::record;
use crate::revert;

/// What reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// ReplicaSets.
    pub replica_sets: Store<ReplicaSet>,
    /// Pods (trimmed).
    pub pods: Store<Pod>,
    /// CustodyPolicies.
    pub policies: Store<CustodyPolicy>,
    /// Namespace metadata, for policies' namespace selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Metrics,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Record and alert instead of reverting, whatever the policies say.
    pub dry_run: bool,
    /// Whether this replica holds the Lease.
    pub leader: watch::Receiver<bool>,
    /// Where notifications go.
    pub notifier: Option<Notifier>,
}

/// Why a reconcile failed. The variant names are the metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Someone changed the Deployment between the decision and the write.
    #[error("the Deployment changed since the decision; deciding again")]
    Conflict,
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Api(#[source] kube::Error),
    /// A patch could not be built.
    #[error("cannot build the patch: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Error {
    /// The metric label.
    pub const fn label(&self) -> &'static str {
        match self {
            Error::Conflict => "Conflict",
            Error::Api(_) => "Api",
            Error::Encode(_) => "Encode",
        }
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    // A failed `test` operation in a JSON patch is answered 422 by the apiserver, a stale
    // resourceVersion 409: both mean "decide again".
    matches!(error, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

/// The policy that governs a Deployment: the first selecting policy by name, so the choice is
/// stable; without one, the default settings and the built-in policy's name.
pub fn governing_policy(
    policies: &[Arc<CustodyPolicy>],
    deployment: &Deployment,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (String, RollbackSettings) {
    let ns = deployment.namespace().unwrap_or_default();
    let fallback = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), ns.clone())]);
    let no_labels = BTreeMap::new();
    let target = Target {
        kind: WorkloadKind::Deployment,
        namespace: &ns,
        namespace_labels: namespace_labels.unwrap_or(&fallback),
        labels: deployment.metadata.labels.as_ref().unwrap_or(&no_labels),
    };
    let mut selecting: Vec<&Arc<CustodyPolicy>> = policies
        .iter()
        .filter(|p| p.spec.selects(&target))
        .collect();
    selecting.sort_by_key(|p| p.name_any());
    match selecting.first() {
        Some(p) => (p.name_any(), p.spec.rollback.clone()),
        None => (
            custody_crds::policy::BUILTIN_POLICY_NAME.to_string(),
            RollbackSettings::default(),
        ),
    }
}

/// Gathers one Deployment's rollout from the caches.
pub fn gather(deployment: &Deployment, ctx: &Context) -> Observed {
    let ns = deployment.namespace();
    let uid = deployment.uid();
    let replica_sets: Vec<Arc<ReplicaSet>> = ctx
        .replica_sets
        .state()
        .into_iter()
        .filter(|rs| {
            rs.namespace() == ns
                && rs
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    let names: Vec<String> = replica_sets.iter().map(|rs| rs.name_any()).collect();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace() == ns
                && p.owner_references()
                    .iter()
                    .any(|o| o.kind == "ReplicaSet" && names.contains(&o.name))
        })
        .collect();
    observe(
        deployment,
        replica_sets.iter().map(AsRef::as_ref),
        pods.iter().map(AsRef::as_ref),
    )
}

/// Decides about one Deployment and acts on the decision.
pub async fn reconcile(deployment: Arc<Deployment>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    if !*ctx.leader.borrow() {
        // Followers keep their caches warm and look again soon, in case they take over.
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let observed = gather(&deployment, &ctx);
    let ns_meta = ctx
        .namespaces
        .get(&ObjectRef::new(&deployment.namespace().unwrap_or_default()));
    let (policy, settings) = governing_policy(
        &ctx.policies.state(),
        &deployment,
        ns_meta.as_ref().and_then(|n| n.metadata.labels.as_ref()),
    );
    let now = Timestamp::now();
    let action = decide::decide(&observed, &settings, &ctx.vocabulary, ctx.dry_run, now);
    let (ns, name) = (&observed.deployment.namespace, &observed.deployment.name);
    match action {
        Action::Nothing { why } => {
            tracing::trace!(namespace = %ns, name = %name, why, "nothing to do");
            Ok(Requeue::await_change())
        }
        Action::Wait { after, why } => {
            tracing::debug!(namespace = %ns, name = %name, ?after, why, "waiting");
            Ok(Requeue::requeue(after))
        }
        Action::MarkHealthy { revision } => {
            mark(&ctx, ns, &revision, marks::HEALTHY_SINCE, &now.to_string()).await?;
            tracing::info!(namespace = %ns, name = %name, replicaset = %revision, "revision marked healthy");
            Ok(Requeue::await_change())
        }
        Action::Revert(verdict) => {
            revert_to(&ctx, &deployment, &observed, &verdict, &policy, &settings).await?;
            Ok(Requeue::await_change())
        }
        Action::Alert(verdict) => {
            alert(&ctx, &deployment, &observed, &verdict, &policy, &settings).await?;
            Ok(Requeue::await_change())
        }
    }
}

async fn create_record(ctx: &Context, record: &RollbackRecord) -> Result<(), Error> {
    let ns = record.metadata.namespace.clone().unwrap_or_default();
    let api: Api<RollbackRecord> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), record).await {
        Ok(_) => Ok(()),
        // The deterministic name makes a second create after a restart a no-op.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Api(e)),
    }
}

async fn mark(
    ctx: &Context,
    ns: &str,
    replica_set: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({"metadata": {"annotations": {decide::mark(&ctx.vocabulary, key): value}}});
    api.patch(replica_set, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::Api)?;
    Ok(())
}

async fn revert_to(
    ctx: &Context,
    deployment: &Deployment,
    observed: &Observed,
    verdict: &Verdict,
    policy: &str,
    settings: &RollbackSettings,
) -> Result<(), Error> {
    let d = &observed.deployment;
    let Some(to) = &verdict.to else {
        return alert(ctx, deployment, observed, verdict, policy, settings).await;
    };
    let started = Timestamp::now();
    let record = record::build(
        d,
        verdict,
        RecordAction::Reverted,
        policy,
        &ctx.vocabulary,
        verdict.from.created,
        started,
    );
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    let patch: json_patch::Patch =
        serde_json::from_value(revert::patch(d, to, verdict, &record_name, &ctx.vocabulary))?;
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &d.namespace);
    match api
        .patch(&d.name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => return Err(Error::Conflict),
        Err(e) => return Err(Error::Api(e)),
    }
    let acted = Timestamp::now();
    let seconds = acted
        .duration_since(verdict.detected_at)
        .as_secs_f64()
        .max(0.0);
    ctx.metrics
        .reverts
        .get_or_create(&ReasonLabels {
            reason: verdict.reason.as_str(),
        })
        .inc();
    ctx.metrics.regression_to_revert.observe(seconds);
    tracing::warn!(
        namespace = %d.namespace, name = %d.name, from = verdict.from.number, to = to.number,
        reason = verdict.reason.as_str(), record = %record_name, regression_to_revert_seconds = seconds,
        "reverted"
    );
    // The revert is written; what follows is bookkeeping, and a failure there must not undo it.
    if let Err(error) = mark(
        ctx,
        &d.namespace,
        &verdict.from.name,
        marks::REVERTED,
        &record_name,
    )
    .await
    {
        tracing::warn!(%error, replicaset = %verdict.from.name, "cannot mark the reverted ReplicaSet");
    }
    publish(
        ctx,
        deployment,
        "Reverted",
        "Revert",
        &verdict.explanation,
        &record,
    )
    .await;
    notify(ctx, settings, record);
    Ok(())
}

async fn alert(
    ctx: &Context,
    deployment: &Deployment,
    observed: &Observed,
    verdict: &Verdict,
    policy: &str,
    settings: &RollbackSettings,
) -> Result<(), Error> {
    let d = &observed.deployment;
    let action = if verdict.dry_run {
        RecordAction::DryRun
    } else {
        RecordAction::Alerted
    };
    let record = record::build(
        d,
        verdict,
        action,
        policy,
        &ctx.vocabulary,
        verdict.from.created,
        Timestamp::now(),
    );
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    mark(
        ctx,
        &d.namespace,
        &verdict.from.name,
        marks::ALERTED,
        &record_name,
    )
    .await?;
    ctx.metrics
        .alerts
        .get_or_create(&ReasonLabels {
            reason: verdict.reason.as_str(),
        })
        .inc();
    tracing::warn!(
        namespace = %d.namespace, name = %d.name, revision = verdict.from.number,
        reason = verdict.reason.as_str(), record = %record_name, explanation = %verdict.explanation,
        "regression reported"
    );
    let reason = if verdict.dry_run {
        "WouldRevert"
    } else {
        "Regressed"
    };
    publish(
        ctx,
        deployment,
        reason,
        "Alert",
        &verdict.explanation,
        &record,
    )
    .await;
    notify(ctx, settings, record);
    Ok(())
}

/// Sends the record to the policy's notification URL, in the background.
fn notify(ctx: &Context, settings: &RollbackSettings, record: RollbackRecord) {
    if let Some(url) = &settings.notify_url
        && let Some(notifier) = &ctx.notifier
    {
        notifier.spawn(url.clone(), record);
    }
}

async fn publish(
    ctx: &Context,
    deployment: &Deployment,
    reason: &str,
    action: &str,
    note: &str,
    record: &RollbackRecord,
) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.into(),
        // Event notes are limited to 1 kB.
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: Some(record.object_ref(&())),
    };
    if let Err(error) = ctx
        .recorder
        .publish(&event, &deployment.object_ref(&()))
        .await
    {
        tracing::warn!(%error, "cannot publish the Event");
    }
}

/// What to do after a failed reconcile: decide again soon on a conflict, back off otherwise.
pub fn error_policy(_deployment: Arc<Deployment>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: error.label(),
        })
        .inc();
    match error {
        Error::Conflict => Requeue::requeue(Duration::from_millis(100)),
        other => {
            tracing::warn!(error = %other, "reconcile failed; retrying");
            Requeue::requeue(Duration::from_secs(2))
        }
    }
}

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
}

/// Watches Deployments, their ReplicaSets and Pods, policies and namespaces, and reconciles
/// until `shutdown`.
pub async fn run(
    client: Client,
    config: RunConfig,
    metrics: Metrics,
    leader: watch::Receiver<bool>,
    ready: custody_runtime::ReadyHandle,
    shutdown: CancellationToken,
) {
    let cfg = watcher::Config::default();
    let (deploy_reader, deploy_writer) = reflector::store::<Deployment>();
    let deployments = watcher(Api::<Deployment>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(index::trim_deployment)
        .reflect(deploy_writer)
        .touched_objects();

    let (rs_reader, rs_writer) = reflector::store::<ReplicaSet>();
    let rs_triggers = watcher(Api::<ReplicaSet>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(index::trim_replica_set)
        .reflect(rs_writer)
        .touched_objects()
        .filter_map(
            |rs| async move { rs.ok().and_then(|rs| index::deployment_of_replica_set(&rs)) },
        );

    let (pod_reader, pod_writer) = reflector::store::<Pod>();
    let rs_for_pods = rs_reader.clone();
    let pod_triggers = watcher(Api::<Pod>::all(client.clone()), cfg.clone())
        .default_backoff()
        .modify(index::trim_pod)
        .reflect(pod_writer)
        .touched_objects()
        .filter_map(move |pod| {
            let rs = rs_for_pods.clone();
            async move { pod.ok().and_then(|p| index::deployment_of_pod(&p, &rs)) }
        });

    let (policy_reader, policy_writer) = reflector::store::<CustodyPolicy>();
    let policies = watcher(Api::<CustodyPolicy>::all(client.clone()), cfg.clone())
        .default_backoff()
        .reflect(policy_writer)
        .for_each(|_| futures::future::ready(()));
    let (ns_reader, ns_writer) = reflector::store::<PartialObjectMeta<Namespace>>();
    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        cfg,
    )
    .default_backoff()
    .reflect(ns_writer)
    .for_each(|_| futures::future::ready(()));
    tokio::spawn(policies);
    tokio::spawn(namespaces);

    let watched = metrics.watched_workloads.clone();
    let counting = deploy_reader.clone();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "custody-controller".into(),
                instance: Some(config.identity.clone()),
            },
        ),
        client,
        replica_sets: rs_reader.clone(),
        pods: pod_reader.clone(),
        policies: policy_reader.clone(),
        namespaces: ns_reader,
        metrics,
        vocabulary: config.vocabulary,
        dry_run: config.dry_run,
        leader,
        notifier: config.notifier,
    });
    let readers = (deploy_reader.clone(), rs_reader, pod_reader, policy_reader);
    tokio::spawn(async move {
        let (d, r, p, c) = readers;
        let synced = async {
            let _ = tokio::join!(
                d.wait_until_ready(),
                r.wait_until_ready(),
                p.wait_until_ready(),
                c.wait_until_ready()
            );
        };
        synced.await;
        ready.set(true);
        tracing::info!("caches synced");
    });
    let shutdown_signal = shutdown.clone();
    Controller::for_stream(deployments, deploy_reader)
        .reconcile_on(futures::stream::select(rs_triggers, pod_triggers))
        .graceful_shutdown_on(async move { shutdown_signal.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            watched.set(i64::try_from(counting.state().len()).unwrap_or(i64::MAX));
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile trigger failed");
            }
            futures::future::ready(())
        })
        .await;
}
