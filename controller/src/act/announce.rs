//! What the controller tells people beyond the cluster's own records: a RollbackRecord's
//! notification to the owning team's targets or the policy's URL, then the record's
//! notification status; and a break-glass revision's announcement (mark, Event, metric,
//! notice). The decisions are pure ([`crate::decide::owning_team`], [`crate::decide::route`],
//! [`crate::decide::breakglass`]); this is the I/O around them.

use custody_crds::{RollbackRecord, RollbackSettings, WorkloadKind};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;

use crate::cache::observe::{Revision, WorkloadState};
use crate::decide::breakglass::{self, Sighting};
use crate::decide::owning_team::{self, OwningTeam};
use crate::decide::route;
use crate::keys::NOTICED;
use crate::metrics::{KindLabels, Label};
use crate::signed::fetch::Envelopes;

use super::context::{Context, Error};
use super::events::reference;
use super::marks::mark;

/// The team and on-call of a revision of `w`, its team looked up in the store.
pub fn owning_team_of(ctx: &Context, w: &WorkloadState, revision: &Revision) -> OwningTeam {
    owning_team::resolve(
        &revision.annotations,
        &w.namespace,
        &ctx.vocabulary,
        |name| ctx.teams.get(&ObjectRef::new(name)),
    )
}

/// Sends the record to the owning team's targets, or else to the policy's notification URL, in
/// the background; then writes how that went into the record's status.
pub fn record(
    ctx: &Context,
    settings: &RollbackSettings,
    owners: &OwningTeam,
    record: RollbackRecord,
) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let destinations =
        route::destinations(owners.registered.as_deref(), settings.notify_url.as_deref());
    if destinations.is_empty() {
        return;
    }
    let body = match serde_json::to_vec(&record) {
        Ok(body) => body,
        Err(error) => {
            tracing::warn!(%error, "cannot encode the record for its notification");
            return;
        }
    };
    let name = record.metadata.name.clone().unwrap_or_default();
    let namespace = record.metadata.namespace.clone().unwrap_or_default();
    let sent = notifier.spawn(
        format!("RollbackRecord {namespace}/{name}"),
        destinations,
        body.into(),
    );
    let api: Api<RollbackRecord> = Api::namespaced(ctx.client.clone(), &namespace);
    tokio::spawn(async move {
        let Ok(delivered) = sent.await else {
            return;
        };
        let patch = serde_json::json!({"status": delivered.status()});
        if let Err(error) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(record = %name, namespace = %namespace, %error, "cannot write the notification status");
        }
    });
}

/// Announces a break-glass revision: the mark first, so that nothing is announced twice, then
/// the Event, the metric and the notice to the owning team.
pub async fn break_glass(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    w: &WorkloadState,
    sighting: &Sighting,
    policy_url: Option<&str>,
) -> Result<(), Error> {
    let now = Timestamp::now();
    mark(
        ctx,
        envelopes,
        w,
        &sighting.revision,
        NOTICED,
        &now.to_string(),
    )
    .await?;
    ctx.metrics
        .break_glass
        .get_or_create(&KindLabels {
            kind: Label(w.kind),
        })
        .inc();
    let ownership = owning_team_of(ctx, w, &sighting.revision);
    tracing::warn!(
        kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
        revision = sighting.revision.number, revision_name = %sighting.revision.name,
        reason = %sighting.reason, actor = sighting.actor.as_deref().unwrap_or(""),
        team = ownership.team.as_deref().unwrap_or(""), "break-glass revision"
    );
    let revision_kind = if w.kind == WorkloadKind::Deployment {
        "ReplicaSet"
    } else {
        "ControllerRevision"
    };
    let event = Event {
        type_: EventType::Warning,
        reason: breakglass::REASON.into(),
        note: Some(breakglass::note(sighting)),
        action: "Observe".into(),
        secondary: Some(ObjectReference {
            api_version: Some("apps/v1".into()),
            kind: Some(revision_kind.into()),
            name: Some(sighting.revision.name.clone()),
            namespace: Some(w.namespace.clone()),
            ..ObjectReference::default()
        }),
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference(w)).await {
        tracing::warn!(%error, "cannot publish the break-glass Event");
    }
    let destinations = route::destinations(ownership.registered.as_deref(), policy_url);
    if let Some(notifier) = &ctx.notifier
        && !destinations.is_empty()
    {
        let notice = breakglass::notice(w, sighting, &ownership, now);
        match serde_json::to_vec(&notice) {
            Ok(body) => {
                let subject = format!(
                    "break-glass {} {}/{} revision {}",
                    w.kind.as_str(),
                    w.namespace,
                    w.name,
                    sighting.revision.number
                );
                drop(notifier.spawn(subject, destinations, body.into()));
            }
            Err(error) => tracing::warn!(%error, "cannot encode the break-glass notice"),
        }
    }
    Ok(())
}
