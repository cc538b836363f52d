//! The Events the controller publishes on a workload: about a RollbackRecord (reverted,
//! regressed, would revert) and, from [`super::announce`], a break-glass revision.

use custody_crds::RollbackRecord;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use crate::cache::observe::WorkloadState;

use super::context::Context;

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

pub(super) async fn publish(
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
