//! Answering a regression: the RollbackRecord first (idempotent, deterministic name), so the
//! webhook quarantines the bad template before anything could re-apply it; then, for a revert,
//! the JSON patch conditioned on the resourceVersion the decision saw (a conflict means deciding
//! again on fresh state); the revision is marked last, then the Event and the notification.

use custody_crds::{RecordAction, RollbackRecord, WorkloadKind, template_fingerprint};
use jiff::Timestamp;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::cache::observe::{self, Revision, WorkloadState};
use crate::cache::slim::{SlimControllerRevision, SlimReplicaSet};
use crate::decide::Verdict;
use crate::decide::owning_team::OwningTeam;
use crate::decide::policy::Governing;
use crate::keys::marks;
use crate::metrics::{Label, ReasonLabels};
use crate::signed::fetch::Envelopes;

use super::announce;
use super::context::{Context, Error, is_conflict};
use super::events::publish;
use super::guard;
use super::marks::mark;
use super::record;
use super::revert;

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

/// Reverts the workload to the verdict's target: the record first, then the guarded patch, then
/// the mark, the Event and the notification.
pub(super) async fn revert(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    w: &WorkloadState,
    verdict: &Verdict,
    policy: &Governing,
) -> Result<(), Error> {
    let Some(to) = &verdict.to else {
        return alert(ctx, envelopes, w, verdict, policy).await;
    };
    // A StatefulSet's or DaemonSet's running revision has its attestation on the workload, which
    // the revert overwrites: read it first (unless this decision already did), for the mark
    // that keeps it with the revision.
    if w.kind != WorkloadKind::Deployment {
        envelopes.attestation_of(w, &verdict.from).await;
    }
    let (template, attestation) = target_template(ctx, w, to).await?;
    let owners = announce::owning_team_of(ctx, w, &verdict.from);
    let record = revert_record(ctx, w, verdict, &policy.name, &owners);
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    patch_workload(ctx, w, verdict, to, template, attestation, &record_name).await?;
    // The revert is written; what follows is bookkeeping, and a failure there must not undo it.
    if w.annotations
        .contains_key(&crate::keys::mark(&ctx.vocabulary, marks::HELD))
    {
        let why = format!(
            "revision {} regressed while held after its first step; reverted ({record_name})",
            verdict.from.number
        );
        guard::condition(ctx, w, false, "Reverted", &why).await;
    }
    if let Err(error) = mark(
        ctx,
        envelopes,
        w,
        &verdict.from,
        marks::REVERTED,
        &record_name,
    )
    .await
    {
        tracing::warn!(%error, revision = %verdict.from.name, "cannot mark the reverted revision");
    }
    publish(ctx, w, "Reverted", "Revert", &verdict.explanation, &record).await;
    announce::record(ctx, record);
    Ok(())
}

/// The RollbackRecord of a revert, with the regressed revision's owning team.
fn revert_record(
    ctx: &Context,
    w: &WorkloadState,
    verdict: &Verdict,
    policy: &str,
    owners: &OwningTeam,
) -> RollbackRecord {
    let started = Timestamp::now();
    record::with_ownership(
        record::build(
            w,
            verdict,
            RecordAction::Reverted,
            policy,
            &ctx.vocabulary,
            verdict.from.created,
            started,
        ),
        owners,
    )
}

/// The revert itself: a JSON patch tested against the resourceVersion the decision saw, then
/// counted and logged.
async fn patch_workload(
    ctx: &Context,
    w: &WorkloadState,
    verdict: &Verdict,
    to: &Revision,
    template: Value,
    attestation: Option<String>,
    record_name: &str,
) -> Result<(), Error> {
    let patch: json_patch::Patch = serde_json::from_value(revert::patch(
        w,
        template,
        to,
        attestation.as_deref(),
        verdict,
        record_name,
        &ctx.vocabulary,
    ))?;
    // The workload's own kind, from the cache's row: apps/v1 Deployments, StatefulSets and
    // DaemonSets. Read back as a dynamic object, since nothing of the answer is used.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", w.kind.as_str()));
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &w.namespace, &resource);
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
            reason: Label(verdict.reason),
        })
        .inc();
    ctx.metrics.regression_to_revert.observe(seconds);
    tracing::warn!(
        kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
        from = verdict.from.number, to = to.number, reason = verdict.reason.as_str(),
        record = %record_name, regression_to_revert_seconds = seconds, "reverted"
    );
    Ok(())
}

/// Reports the regression without touching the spec: the record, the mark, the Event and the
/// notification.
pub(super) async fn alert(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    w: &WorkloadState,
    verdict: &Verdict,
    policy: &Governing,
) -> Result<(), Error> {
    let action = if verdict.dry_run {
        RecordAction::DryRun
    } else {
        RecordAction::Alerted
    };
    let owners = announce::owning_team_of(ctx, w, &verdict.from);
    let record = record::with_ownership(
        record::build(
            w,
            verdict,
            action,
            &policy.name,
            &ctx.vocabulary,
            verdict.from.created,
            Timestamp::now(),
        ),
        &owners,
    );
    let record_name = record.metadata.name.clone().unwrap_or_default();
    create_record(ctx, &record).await?;
    mark(
        ctx,
        envelopes,
        w,
        &verdict.from,
        marks::ALERTED,
        &record_name,
    )
    .await?;
    ctx.metrics
        .alerts
        .get_or_create(&ReasonLabels {
            reason: Label(verdict.reason),
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
    announce::record(ctx, record);
    Ok(())
}
