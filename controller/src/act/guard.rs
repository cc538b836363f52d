//! Carrying out the guarded first step ([`crate::decide::canary`]): holding an agent's rollout
//! (a Deployment paused, a StatefulSet's partition at its last ordinal) and resuming it. Each
//! write names the held revision on the workload (the `held` mark), so the hold says what it
//! is to anyone reading the workload, survives a controller restart, and is told apart from a
//! person's pause; a Deployment also gets a `CustodyHeld` condition, and each step an Event.
//!
//! Unlike the revert, these writes are not conditioned on the resourceVersion the decision saw:
//! during a rollout the workload's controller rewrites its status every few milliseconds, and a
//! hold that waited for a quiet moment would land after the rollout it is meant to stop. Neither
//! touches the template, and a hold naming a revision the workload has left is released (or
//! moved) by the next look.

use custody_crds::WorkloadKind;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::{Value, json};

use crate::cache::observe::WorkloadState;
use crate::decide::canary::{Step, held_partition};
use crate::keys::marks::HELD_CONDITION;
use crate::keys::{mark, marks};
use crate::metrics::{KindLabels, Label};
use crate::schedule::Next;

use super::context::{Context, Error, is_conflict};
use super::events::reference;

/// Carries out `step` on `w`.
pub async fn carry_out(ctx: &Context, w: &WorkloadState, step: Step) -> Result<Next, Error> {
    match step {
        Step::Holding { after, why } => {
            tracing::debug!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, ?after, why, "rollout held");
            Ok(Next::requeue(after))
        }
        Step::Hold {
            revision,
            number,
            partition,
        } => {
            let why = format!(
                "revision {number} ({revision}) is an agent's: its rollout is held after its first step until that step proves healthy; `kubectl custody resume {}/{} -n {}` releases it",
                w.kind.as_str().to_lowercase(),
                w.name,
                w.namespace
            );
            if let Err(refused) = write(ctx, w, hold_patch(ctx, w, &revision, partition)).await? {
                return not_held(ctx, w, &revision, &refused).await;
            }
            ctx.metrics
                .rollouts_held
                .get_or_create(&KindLabels {
                    kind: Label(w.kind),
                })
                .inc();
            tracing::info!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, %revision, "rollout held after its first step");
            condition(ctx, w, true, "HeldAfterFirstStep", &why).await;
            event(ctx, w, EventType::Normal, "RolloutHeld", "Hold", &why).await;
            Ok(Next::requeue(std::time::Duration::from_secs(1)))
        }
        Step::Release { revision, why } => {
            if let Err(refused) = write(ctx, w, release_patch(ctx, w, &revision)).await? {
                tracing::warn!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, error = %refused, "cannot resume the held rollout");
                return Ok(Next::await_change());
            }
            ctx.metrics
                .rollouts_resumed
                .get_or_create(&KindLabels {
                    kind: Label(w.kind),
                })
                .inc();
            tracing::info!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, %revision, why, "held rollout resumed");
            let note = format!("resumed the rollout of {revision}: {why}");
            condition(ctx, w, false, "Released", &note).await;
            event(ctx, w, EventType::Normal, "RolloutResumed", "Resume", &note).await;
            Ok(Next::await_change())
        }
    }
}

/// The merge patch that holds `w` at `revision`: conditioned on the version decided on.
fn hold_patch(ctx: &Context, w: &WorkloadState, revision: &str, partition: i32) -> Value {
    let held = mark(&ctx.vocabulary, marks::HELD);
    let mut annotations = json!({ held: revision });
    let spec = match w.kind {
        WorkloadKind::StatefulSet => {
            // A hold moved to a newer revision keeps the partition it restores.
            let key = mark(&ctx.vocabulary, marks::HELD_PARTITION);
            if !w.annotations.contains_key(&key) {
                annotations[key] = json!(w.partition.to_string());
            }
            json!({"updateStrategy": {"rollingUpdate": {"partition": partition.max(w.partition)}}})
        }
        _ => json!({"paused": true}),
    };
    json!({
        "metadata": {"annotations": annotations},
        "spec": spec,
    })
}

/// The merge patch that releases `w`'s hold on `revision`.
fn release_patch(ctx: &Context, w: &WorkloadState, revision: &str) -> Value {
    let mut annotations = json!({
        mark(&ctx.vocabulary, marks::HELD): null,
        mark(&ctx.vocabulary, marks::RELEASED): revision,
    });
    let spec = match w.kind {
        WorkloadKind::StatefulSet => {
            let key = mark(&ctx.vocabulary, marks::HELD_PARTITION);
            annotations[key.as_str()] = Value::Null;
            let partition = held_partition(w, &ctx.vocabulary);
            json!({"updateStrategy": {"rollingUpdate": {"partition": partition}}})
        }
        _ => json!({"paused": false}),
    };
    json!({
        "metadata": {"annotations": annotations},
        "spec": spec,
    })
}

/// A rollout the API server refuses to hold (a StatefulSet updated `OnDelete` has no partition
/// to set): marked released, so it is not tried again, and said in a Warning Event.
async fn not_held(
    ctx: &Context,
    w: &WorkloadState,
    revision: &str,
    refused: &str,
) -> Result<Next, Error> {
    let note = format!("cannot hold the rollout of {revision} after its first step: {refused}");
    tracing::warn!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, note, "rollout not held");
    let patch = json!({"metadata": {
        "annotations": {mark(&ctx.vocabulary, marks::RELEASED): revision},
    }});
    if let Err(refused) = write(ctx, w, patch).await? {
        tracing::warn!(error = %refused, "cannot mark the rollout as not held");
    }
    event(ctx, w, EventType::Warning, "RolloutNotHeld", "Hold", &note).await;
    Ok(Next::await_change())
}

/// Writes `patch`; the API server's message when it refuses it as invalid.
async fn write(
    ctx: &Context,
    w: &WorkloadState,
    patch: Value,
) -> Result<Result<(), String>, Error> {
    let params = PatchParams::default();
    let result = match w.kind {
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(ctx.client.clone(), &w.namespace)
                .patch(&w.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
        _ => Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
            .patch(&w.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(Ok(())),
        Err(kube::Error::Api(s)) if s.code == 422 => Ok(Err(s.message)),
        Err(e) if is_conflict(&e) => Err(Error::Conflict),
        Err(e) => Err(Error::Api(e)),
    }
}

/// Sets a Deployment's `CustodyHeld` condition (the Deployment controller keeps conditions it
/// does not own). A StatefulSet's controller rewrites its status, so it has the mark and the
/// Events only.
pub(super) async fn condition(
    ctx: &Context,
    w: &WorkloadState,
    held: bool,
    reason: &str,
    message: &str,
) {
    if w.kind != WorkloadKind::Deployment {
        return;
    }
    let now = Timestamp::now().to_string();
    let patch = json!({"status": {"conditions": [{
        "type": HELD_CONDITION,
        "status": if held { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }]}});
    let result = Api::<Deployment>::namespaced(ctx.client.clone(), &w.namespace)
        .patch_status(&w.name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await;
    if let Err(error) = result {
        tracing::warn!(%error, namespace = %w.namespace, name = %w.name, "cannot set the CustodyHeld condition");
    }
}

/// Publishes an Event about the workload.
pub async fn event(
    ctx: &Context,
    w: &WorkloadState,
    type_: EventType,
    reason: &str,
    action: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    let regarding: ObjectReference = reference(w);
    if let Err(error) = ctx.recorder.publish(&event, &regarding).await {
        tracing::warn!(%error, "cannot publish the Event");
    }
}
