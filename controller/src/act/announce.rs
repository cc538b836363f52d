//! What the controller tells people beyond the cluster's own records: a RollbackRecord's
//! notification to the owning team's targets or the policy's URL, then the record's
//! notification status; and a break-glass revision's announcement (mark, Event, metric,
//! notice). The decisions are pure ([`crate::decide::owning_team`], [`crate::decide::route`],
//! [`crate::decide::breakglass`]); this is the I/O around them.

use custody_crds::{NoticeKind, RollbackRecord, WorkloadKind};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;

use crate::cache::observe::{Observed, Revision, WorkloadState};
use crate::decide::breakglass::{self, Sighting};
use crate::decide::oncall::moment::{self, Moment};
use crate::decide::owning_team::{self, OwningTeam};
use crate::decide::policy::Governing;
use crate::decide::route::{self, PolicyTargets};
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

/// Hands the record to the notification loop, which sends it to the owning team's targets,
/// or else the policy's, and keeps what each was sent in the record's status.
pub fn record(ctx: &Context, record: RollbackRecord) {
    if let Some(oncall) = &ctx.oncall {
        oncall.record(record);
    }
}

/// What a moment's notice says, besides the workload.
pub struct MomentText {
    /// Its kind.
    pub kind: NoticeKind,
    /// Why, as one word.
    pub reason: &'static str,
    /// One line.
    pub summary: String,
    /// In prose.
    pub explanation: String,
    /// The evidence, one line each.
    pub evidence: Vec<String>,
}

/// Queues the notice of a moment in the life of `observed`'s `revision` (an unreadable
/// attestation, an analysis inconclusive for long) for the owning team's targets, or else the
/// governing policy's; once per revision and kind while this process runs.
pub fn moment(
    ctx: &Context,
    observed: &Observed,
    revision: &Revision,
    governing: &Governing,
    text: MomentText,
) {
    let Some(oncall) = &ctx.oncall else {
        return;
    };
    let w = &observed.workload;
    let ownership = owning_team_of(ctx, w, revision);
    let destinations = route::destinations(
        ownership.registered.as_deref(),
        Some(PolicyTargets {
            name: &governing.name,
            settings: &governing.settings,
        }),
    );
    let declared = crate::decide::choose::Declared::of(revision, &ctx.vocabulary);
    let agent = revision
        .annotations
        .get(ctx.vocabulary.key(custody_crds::AnnotationKey::Agent))
        .cloned();
    let now = Timestamp::now();
    let data = serde_json::json!({
        "kind": text.reason,
        "workload": {"kind": w.kind, "namespace": w.namespace, "name": w.name, "uid": w.uid},
        "revision": revision.number.to_string(),
        "revisionObject": revision.name,
        "team": ownership.team,
        "oncall": ownership.oncall,
        "summary": text.summary,
        "explanation": text.explanation,
        "evidence": text.evidence,
        "at": now.to_string(),
    });
    let notice = moment::notice(Moment {
        kind: text.kind,
        workload_kind: w.kind,
        namespace: w.namespace.clone(),
        name: w.name.clone(),
        revision: Some((revision.number, revision.name.clone())),
        team: ownership.team.clone(),
        shipped_by: agent
            .as_ref()
            .map(|a| format!("agent {a}"))
            .or_else(|| declared.actor.map(|a| a.as_str().to_string())),
        agent,
        reason: text.reason.into(),
        summary: text.summary,
        explanation: text.explanation,
        evidence: text.evidence,
        at: now,
        data,
    });
    oncall.once_per_situation(notice, &destinations);
}

/// Announces a break-glass revision: the mark first, so that nothing is announced twice, then
/// the Event, the metric and the notice to the owning team.
pub async fn break_glass(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    w: &WorkloadState,
    sighting: &Sighting,
    policy: Option<PolicyTargets<'_>>,
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
    if let Some(oncall) = &ctx.oncall {
        let destinations = route::destinations(ownership.registered.as_deref(), policy);
        let json = breakglass::notice(w, sighting, &ownership, now);
        oncall.once(
            breakglass::oncall_notice(w, sighting, &ownership, json, now),
            &destinations,
        );
    }
    Ok(())
}
