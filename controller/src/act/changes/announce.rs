//! What an accepted write on a change request marked, told: the Events on the request (and,
//! once applied, on its workload), the metrics, and the notices of a proposal or a decision to
//! the owning team's targets or else the protecting policy's `notifyUrl`.

use custody_crds::CustodyChange;
use custody_engine::Standing;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;

use crate::act::context::Context;
use crate::decide::changes::notice;
use crate::decide::changes::review::{Announcement, Review};
use crate::decide::changes::standing::Judged;
use crate::decide::route::{self, PolicyTargets};

/// Publishes the Events, counts, and sends the notices of what the accepted write marked.
pub(super) async fn after_write(
    ctx: &Context,
    change: &CustodyChange,
    review: &Review,
    judged: Option<&Judged<'_>>,
    workload: Option<&ObjectReference>,
    now: Timestamp,
) {
    let status = change.status.clone().unwrap_or_default();
    let message = review
        .patch
        .message
        .clone()
        .or(status.message)
        .unwrap_or_default();
    let applied = review.patch.applied.as_ref();
    let reference = change.object_ref(&());
    for announcement in &review.announce {
        let note = notice::note(change, *announcement, &message, applied);
        publish(ctx, *announcement, note, &reference, None).await;
        match announcement {
            Announcement::Approved => {
                if let Some(seconds) = review.approval_seconds {
                    ctx.metrics.change_approval_seconds.observe(seconds);
                }
            }
            Announcement::Applied => {
                ctx.metrics.changes_applied.inc();
                if let (Some(workload), Some(applied)) = (workload, applied) {
                    let note = notice::workload_note(change, applied);
                    publish(ctx, *announcement, note, workload, Some(reference.clone())).await;
                }
            }
            _ => {}
        }
        send(ctx, change, *announcement, judged, now);
    }
}

/// One Event: on the request, or on its workload with the request as the related object.
async fn publish(
    ctx: &Context,
    announcement: Announcement,
    note: String,
    regarding: &ObjectReference,
    related: Option<ObjectReference>,
) {
    let (type_, action) = match announcement {
        Announcement::Proposed => (EventType::Normal, "Propose"),
        Announcement::Approved => (EventType::Normal, "Approve"),
        Announcement::Rejected => (EventType::Warning, "Reject"),
        Announcement::Applied => (EventType::Normal, "Apply"),
        Announcement::Expired => (EventType::Warning, "Expire"),
    };
    let event = Event {
        type_,
        reason: announcement.reason().into(),
        note: Some(note),
        action: action.into(),
        secondary: related,
    };
    if let Err(error) = ctx.recorder.publish(&event, regarding).await {
        tracing::warn!(%error, reason = announcement.reason(), "cannot publish the Event");
    }
}

/// Queues the notice of a proposal or a decision for the owning team's targets, or else the
/// protecting policy's; a decision or an expiry also resolves the proposal's open alert or
/// incident.
fn send(
    ctx: &Context,
    change: &CustodyChange,
    announcement: Announcement,
    judged: Option<&Judged<'_>>,
    now: Timestamp,
) {
    let Some(oncall) = ctx.oncall.as_ref() else {
        return;
    };
    let owners = notice::ownership(change, &ctx.vocabulary, |name| {
        ctx.teams.get(&ObjectRef::new(name))
    });
    let policy = judged.map(|j| PolicyTargets {
        name: &j.policy.name,
        settings: &j.policy.spec.rollback,
    });
    let destinations = route::destinations(owners.registered.as_deref(), policy);
    if destinations.is_empty() {
        return;
    }
    if matches!(
        announcement,
        Announcement::Approved | Announcement::Rejected | Announcement::Expired
    ) {
        let resolving: Vec<_> = destinations
            .iter()
            .filter(|d| d.target.format.resolves())
            .cloned()
            .collect();
        oncall.once(notice::proposal_resolved(change, &owners, now), &resolving);
    }
    let deadline = judged.and_then(|j| match &j.standing {
        Standing::Admits { until, .. } => Some(*until),
        Standing::Pending { until, .. } => *until,
        _ => None,
    });
    let Some(json) = notice::notice(change, announcement, judged, &owners, deadline, now) else {
        return;
    };
    if let Some(n) = notice::oncall_notice(change, announcement, &owners, &json, deadline, now) {
        oncall.once(n, &destinations);
    }
}
