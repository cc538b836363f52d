//! The I/O shell around the decision: read the rollout from the cache, decide, act.
//!
//! Writes are ordered so that a crash at any point converges to exactly one revert: the record
//! is created first (idempotent, deterministic name), so the webhook quarantines the template
//! before anything could re-apply it; the revert is a JSON patch conditioned on the
//! resourceVersion the decision saw (a conflict means deciding again on fresh state); the
//! revision is marked last. After a restart, a workload already moved off the bad revision has
//! nothing to revert, and one still on it is reverted by the same (idempotent) steps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{
    CustodyPolicy, CustodyTeam, RecordAction, RollbackRecord, RollbackSettings, Vocabulary,
    WorkloadKind, template_fingerprint,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;
use tokio::sync::watch;

use crate::agents;
use crate::agents_publish::AgentLedger;
use crate::announce;
use crate::attested;
use crate::attribution::{Excuse, Ledger};
use crate::breakglass;
use crate::compact;
use crate::decide::{self, Action, Verdict, marks};
use crate::envelopes;
use crate::index::Cache;
use crate::metrics::{ErrorLabels, Metrics, NotAttributedLabels, ReasonLabels};
use crate::notify::Notifier;
use crate::observe::{self, Observed, PROVENANCE, Revision, WorkloadState};
use crate::record;
use crate::revert;
use crate::slim::{SlimControllerRevision, SlimReplicaSet};
use crate::workload::Workload;

/// What reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Workloads, revisions and Pods, reduced.
    pub cache: Arc<Cache>,
    /// CustodyPolicies.
    pub policies: Store<CustodyPolicy>,
    /// Namespace metadata, for policies' namespace selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// CustodyTeams: owners' on-call and notification targets. Empty when the CRD is not
    /// installed.
    pub teams: Store<CustodyTeam>,
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
    /// The workloads whose failing revision is not blamed, and why, as last reported.
    pub not_attributed: Mutex<Ledger>,
    /// Each workload's part of the agents' summaries, for the webhook's budgets.
    pub agents: Arc<AgentLedger>,
}

/// Why a reconcile failed. The variant names are the metric labels.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Someone changed the workload or its target revision between the decision and the write.
    #[error("the workload changed since the decision; deciding again")]
    Conflict,
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Api(#[source] kube::Error),
    /// A patch could not be built.
    #[error("cannot build the patch: {0}")]
    Encode(#[from] serde_json::Error),
    /// A signed revision's attestation, to be copied onto it with a mark, could not be read.
    #[error("cannot read the revision's attestation to keep it with the mark; retrying")]
    AttestationUnreadable,
}

impl Error {
    /// The metric label.
    pub const fn label(&self) -> &'static str {
        match self {
            Error::Conflict => "Conflict",
            Error::Api(_) => "Api",
            Error::Encode(_) => "Encode",
            Error::AttestationUnreadable => "AttestationUnreadable",
        }
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    // A failed `test` operation in a JSON patch is answered 422 by the apiserver, a stale
    // resourceVersion 409: both mean "decide again".
    matches!(error, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

/// The policy that governs a workload: the first selecting policy by name, so the choice is
/// stable; without one, the default settings and the built-in policy's name.
pub fn governing_policy(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> (String, RollbackSettings) {
    match governing(policies, workload, namespace_labels) {
        Some(p) => (p.name_any(), p.spec.rollback.clone()),
        None => (
            custody_crds::policy::BUILTIN_POLICY_NAME.to_string(),
            RollbackSettings::default(),
        ),
    }
}

/// The governing policy itself, if a policy selects the workload.
pub fn governing(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Option<Arc<CustodyPolicy>> {
    selecting(policies, workload, namespace_labels)
        .into_iter()
        .next()
}

/// The policies that select the workload, by name.
fn selecting(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Vec<Arc<CustodyPolicy>> {
    let fallback = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), workload.namespace.clone())]);
    let target = Target {
        kind: workload.kind,
        namespace: &workload.namespace,
        namespace_labels: namespace_labels.unwrap_or(&fallback),
        labels: &workload.labels,
    };
    let mut selecting: Vec<Arc<CustodyPolicy>> = policies
        .iter()
        .filter(|p| p.spec.selects(&target))
        .cloned()
        .collect();
    selecting.sort_by_key(|p| p.name_any());
    selecting
}

/// The policy whose `spec.signatures` judges the workload's attestation: among the selecting
/// policies with one, a `Required` one first, then by name. The webhook demanded a signature if
/// any selecting policy did, so the controller believes the actor on the same terms.
pub fn signing_policy(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Option<Arc<CustodyPolicy>> {
    let mut signing: Vec<Arc<CustodyPolicy>> = selecting(policies, workload, namespace_labels)
        .into_iter()
        .filter(|p| p.spec.signatures.is_some())
        .collect();
    // Stable: among equals, the order by name stays.
    signing.sort_by_key(|p| {
        p.spec
            .signatures
            .as_ref()
            .is_some_and(|s| s.mode != custody_crds::SignatureMode::Required)
    });
    signing.into_iter().next()
}

/// Decides about one workload of kind `K` and acts on the decision.
pub async fn reconcile<K: Workload>(
    object: Arc<PartialObjectMeta<K>>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    if !*ctx.leader.borrow() {
        // Followers keep their caches warm and look again soon, in case they take over.
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    if !ctx.cache.is_synced() {
        // A decision on half a list could mark a revision healthy whose failing pods are not
        // listed yet.
        return Ok(Requeue::requeue(Duration::from_secs(1)));
    }
    ctx.metrics
        .watched_workloads
        .set(i64::try_from(ctx.cache.workload_count()).unwrap_or(i64::MAX));
    let Some(uid) = object.uid() else {
        return Ok(Requeue::await_change());
    };
    let Some(observed) = ctx.cache.observe(&uid) else {
        ledger(&ctx).forget(compact::uid(&uid));
        ctx.agents.forget(compact::uid(&uid));
        return Ok(Requeue::await_change());
    };
    ctx.agents.note(
        compact::uid(&uid),
        &agents::contribution(
            &observed.workload,
            &observed.revisions,
            &ctx.vocabulary,
            Timestamp::now(),
        ),
    );
    act::<K>(&ctx, &observed).await
}

fn ledger(ctx: &Context) -> std::sync::MutexGuard<'_, Ledger> {
    // A note is one map write; a panic cannot leave it half done.
    ctx.not_attributed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Logs and counts the reasons a failing revision is not blamed that are new to its situation:
/// once when it begins, not at every look while it lasts.
fn report_not_attributed(
    ctx: &Context,
    w: &WorkloadState,
    revision: &Revision,
    reasons: &[Excuse],
    why: &str,
) {
    let new = ledger(ctx).note(compact::uid(&w.uid), &revision.name, reasons);
    for reason in new {
        ctx.metrics
            .not_attributed
            .get_or_create(&NotAttributedLabels {
                kind: w.kind.as_str(),
                reason: reason.as_str(),
            })
            .inc();
        tracing::info!(
            kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
            revision = revision.number, revision_name = %revision.name, reason = reason.as_str(),
            why, "regression not attributed to the revision"
        );
    }
}

async fn act<K: Workload>(ctx: &Context, observed: &Observed) -> Result<Requeue, Error> {
    let w = &observed.workload;
    let ns_meta = ctx.namespaces.get(&ObjectRef::new(&w.namespace));
    let labels = ns_meta.as_ref().and_then(|n| n.metadata.labels.as_ref());
    let all_policies = ctx.policies.state();
    let governing = governing(&all_policies, w, labels);
    let signing = signing_policy(&all_policies, w, labels);
    let (policy, settings) = match &governing {
        Some(p) => (p.name_any(), p.spec.rollback.clone()),
        None => (
            custody_crds::policy::BUILTIN_POLICY_NAME.to_string(),
            RollbackSettings::default(),
        ),
    };
    // Visibility first, and apart: a failure to announce never holds a decision back.
    let announce_again = match breakglass::pending(observed, &ctx.vocabulary) {
        Some(sighting) => announce::break_glass(ctx, w, &sighting, settings.notify_url.as_deref())
            .await
            .inspect_err(|error| {
                tracing::warn!(
                    kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
                    revision = %sighting.revision.name, %error,
                    "cannot mark the break-glass revision; announcing it later"
                );
            })
            .is_err(),
        None => false,
    };
    let requeue = respond::<K>(ctx, observed, signing.as_deref(), policy, &settings).await?;
    // A revision nothing else will look at again still gets announced.
    if announce_again && requeue == Requeue::await_change() {
        return Ok(Requeue::requeue(Duration::from_secs(10)));
    }
    Ok(requeue)
}

/// Decides about the workload and acts on the decision.
async fn respond<K: Workload>(
    ctx: &Context,
    observed: &Observed,
    signing: Option<&CustodyPolicy>,
    policy: String,
    settings: &RollbackSettings,
) -> Result<Requeue, Error> {
    let w = &observed.workload;
    let now = Timestamp::now();
    let mut action = decide::decide(observed, settings, &ctx.vocabulary, ctx.dry_run, now);
    // The current revision's attestation, once read: the marks that follow copy it.
    let mut read = None;
    // Under spec.signatures, act on the actor a trusted key vouched for. The actor is read only
    // once a regression is confirmed (a revert or an alert), so only then is the envelope read
    // and verified, and the decision taken again on what is believed.
    let current = observed
        .revisions
        .iter()
        .find(|r| r.fingerprint == w.template_fingerprint);
    if let (Some(signing), Some(current), Action::Revert(_) | Action::Alert(_)) =
        (signing, current, &action)
    {
        let attestation = envelopes::attestation_of(ctx, w, current).await;
        let vouch = attested::vouch(
            w,
            current,
            &attestation,
            Some(signing),
            &attested::keys_of(signing),
            &ctx.vocabulary,
            now,
        );
        if let attested::Vouch::Unverified {
            why,
            required: true,
        } = &vouch
        {
            tracing::debug!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, why, "current revision's provenance is not vouched for; its declared actor is not believed");
        }
        let believed = attested::as_believed(observed, &current.name, &vouch, &ctx.vocabulary);
        action = decide::decide(&believed, settings, &ctx.vocabulary, ctx.dry_run, now);
        if let Action::Revert(v) | Action::Alert(v) = &mut action {
            v.attested_by = vouch.key_id().map(str::to_string);
        }
        read = Some(attestation);
    }
    let (kind, ns, name) = (w.kind.as_str(), &w.namespace, &w.name);
    if !matches!(action, Action::NotAttributed { .. }) {
        ledger(ctx).forget(compact::uid(&w.uid));
    }
    match action {
        Action::NotAttributed {
            revision,
            reasons,
            after,
            why,
        } => {
            report_not_attributed(ctx, w, &revision, &reasons, &why);
            tracing::debug!(kind, namespace = %ns, name = %name, ?after, why, "waiting");
            Ok(Requeue::requeue(after))
        }
        Action::Nothing { why } => {
            tracing::trace!(kind, namespace = %ns, name = %name, why, "nothing to do");
            Ok(Requeue::await_change())
        }
        Action::Wait { after, why } => {
            tracing::debug!(kind, namespace = %ns, name = %name, ?after, why, "waiting");
            Ok(Requeue::requeue(after))
        }
        Action::MarkHealthy { revision } => {
            if let Some(r) = observed.revisions.iter().find(|r| r.name == revision) {
                mark(ctx, w, r, marks::HEALTHY_SINCE, &now.to_string(), None).await?;
                tracing::info!(kind, namespace = %ns, name = %name, revision = %revision, "revision marked healthy");
            }
            Ok(Requeue::await_change())
        }
        Action::Revert(verdict) => {
            revert_to::<K>(ctx, w, &verdict, &policy, settings, read).await?;
            Ok(Requeue::await_change())
        }
        Action::Alert(verdict) => {
            alert(ctx, w, &verdict, &policy, settings, read.as_ref()).await?;
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

/// Writes one of the controller's marks on a revision. A ControllerRevision also gets the
/// provenance of the workload that ran it: unlike a ReplicaSet it does not copy the workload's
/// annotations, and a later revert to it restores them from there. `read` is the revision's
/// attestation if it was already read; otherwise it is read here when needed.
pub(crate) async fn mark(
    ctx: &Context,
    workload: &WorkloadState,
    revision: &Revision,
    key: &str,
    value: &str,
    read: Option<&attested::Attestation>,
) -> Result<(), Error> {
    let mut annotations = BTreeMap::from([(decide::mark(&ctx.vocabulary, key), value.to_string())]);
    if workload.kind != WorkloadKind::Deployment {
        let signed = PROVENANCE
            .iter()
            .chain(attested::OWNERSHIP.iter())
            .map(|k| ctx.vocabulary.key(*k));
        for name in signed {
            if let Some(v) = revision.annotations.get(name) {
                annotations.insert(name.to_string(), v.clone());
            }
        }
        // The cache has only the attestation's digest: the envelope is read to be copied. A
        // revision marked without it could not be restored verifiable, so the mark waits.
        let attestation = match read {
            Some(a) => a.clone(),
            None => envelopes::attestation_of(ctx, workload, revision).await,
        };
        match attestation {
            attested::Attestation::Read(envelope) => {
                annotations.insert(ctx.vocabulary.attestation().to_string(), envelope);
            }
            attested::Attestation::Absent => {}
            attested::Attestation::Unreadable(_) => return Err(Error::AttestationUnreadable),
        }
    }
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    let params = PatchParams::default();
    let result = if workload.kind == WorkloadKind::Deployment {
        Api::<SlimReplicaSet>::namespaced(ctx.client.clone(), &workload.namespace)
            .patch(&revision.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    } else {
        Api::<SlimControllerRevision>::namespaced(ctx.client.clone(), &workload.namespace)
            .patch(&revision.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    };
    result.map_err(Error::Api)
}

/// The target revision's pod template and attestation, read fresh in one request: the cache
/// keeps only their fingerprint and digest. A revision gone (pruned) or changed since the
/// decision means deciding again. An attestation that changed is taken as read: it is what the
/// revision carries.
async fn target_template(
    ctx: &Context,
    workload: &WorkloadState,
    to: &Revision,
) -> Result<(Value, Option<String>), Error> {
    let key = ctx.vocabulary.attestation();
    let attestation = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.annotations.as_mut().and_then(|a| a.remove(key))
    };
    let fetched = if workload.kind == WorkloadKind::Deployment {
        Api::<SlimReplicaSet>::namespaced(ctx.client.clone(), &workload.namespace)
            .get(&to.name)
            .await
            .map(|mut rs| {
                let a = attestation(&mut rs.metadata);
                rs.spec.template.map(|t| (t, a))
            })
    } else {
        Api::<SlimControllerRevision>::namespaced(ctx.client.clone(), &workload.namespace)
            .get(&to.name)
            .await
            .map(|mut cr| {
                let a = attestation(&mut cr.metadata);
                cr.data
                    .as_ref()
                    .and_then(observe::controller_revision_template)
                    .map(|t| (t, a))
            })
    };
    let (template, attestation) = match fetched {
        Ok(Some(t)) => t,
        Ok(None) => return Err(Error::Conflict),
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(Error::Conflict),
        Err(e) => return Err(Error::Api(e)),
    };
    if template_fingerprint(&template).as_str() != to.fingerprint {
        return Err(Error::Conflict);
    }
    Ok((template, attestation))
}

async fn revert_to<K: Workload>(
    ctx: &Context,
    w: &WorkloadState,
    verdict: &Verdict,
    policy: &str,
    settings: &RollbackSettings,
    read: Option<attested::Attestation>,
) -> Result<(), Error> {
    let Some(to) = &verdict.to else {
        return alert(ctx, w, verdict, policy, settings, read.as_ref()).await;
    };
    // A StatefulSet's or DaemonSet's running revision has its attestation on the workload, which
    // the revert overwrites: read it first, for the mark that keeps it with the revision.
    let read = match read {
        None if w.kind != WorkloadKind::Deployment => {
            Some(envelopes::attestation_of(ctx, w, &verdict.from).await)
        }
        read => read,
    };
    let (template, attestation) = target_template(ctx, w, to).await?;
    let started = Timestamp::now();
    let ownership = announce::ownership_of(ctx, w, &verdict.from);
    let record = record::with_ownership(
        record::build(
            w,
            verdict,
            RecordAction::Reverted,
            policy,
            &ctx.vocabulary,
            verdict.from.created,
            started,
        ),
        &ownership,
    );
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    let patch: json_patch::Patch = serde_json::from_value(revert::patch(
        w,
        template,
        to,
        attestation.as_deref(),
        verdict,
        &record_name,
        &ctx.vocabulary,
    ))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &w.namespace);
    match api
        .patch(&w.name, &PatchParams::default(), &Patch::Json::<()>(patch))
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
        kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
        from = verdict.from.number, to = to.number, reason = verdict.reason.as_str(),
        record = %record_name, regression_to_revert_seconds = seconds, "reverted"
    );
    // The revert is written; what follows is bookkeeping, and a failure there must not undo it.
    if let Err(error) = mark(
        ctx,
        w,
        &verdict.from,
        marks::REVERTED,
        &record_name,
        read.as_ref(),
    )
    .await
    {
        tracing::warn!(%error, revision = %verdict.from.name, "cannot mark the reverted revision");
    }
    publish(ctx, w, "Reverted", "Revert", &verdict.explanation, &record).await;
    announce::record(ctx, settings, &ownership, record);
    Ok(())
}

async fn alert(
    ctx: &Context,
    w: &WorkloadState,
    verdict: &Verdict,
    policy: &str,
    settings: &RollbackSettings,
    read: Option<&attested::Attestation>,
) -> Result<(), Error> {
    let action = if verdict.dry_run {
        RecordAction::DryRun
    } else {
        RecordAction::Alerted
    };
    let ownership = announce::ownership_of(ctx, w, &verdict.from);
    let record = record::with_ownership(
        record::build(
            w,
            verdict,
            action,
            policy,
            &ctx.vocabulary,
            verdict.from.created,
            Timestamp::now(),
        ),
        &ownership,
    );
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    mark(ctx, w, &verdict.from, marks::ALERTED, &record_name, read).await?;
    ctx.metrics
        .alerts
        .get_or_create(&ReasonLabels {
            reason: verdict.reason.as_str(),
        })
        .inc();
    tracing::warn!(
        kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
        revision = verdict.from.number, reason = verdict.reason.as_str(), record = %record_name,
        explanation = %verdict.explanation, "regression reported"
    );
    let reason = if verdict.dry_run {
        "WouldRevert"
    } else {
        "Regressed"
    };
    publish(ctx, w, reason, "Alert", &verdict.explanation, &record).await;
    announce::record(ctx, settings, &ownership, record);
    Ok(())
}

/// The Event's regarding object: the workload, by UID so it is not confused with a namesake.
pub(crate) fn reference(w: &WorkloadState) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(w.kind.as_str().into()),
        name: Some(w.name.clone()),
        namespace: Some(w.namespace.clone()),
        uid: Some(w.uid.clone()),
        ..ObjectReference::default()
    }
}

async fn publish(
    ctx: &Context,
    w: &WorkloadState,
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
    if let Err(error) = ctx.recorder.publish(&event, &reference(w)).await {
        tracing::warn!(%error, "cannot publish the Event");
    }
}

/// What to do after a failed reconcile: decide again soon on a conflict, back off otherwise.
pub fn error_policy<K: Workload>(
    _object: Arc<PartialObjectMeta<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Requeue {
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
