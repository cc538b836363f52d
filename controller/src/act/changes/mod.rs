//! The change requests' writer, on the Lease holder only: each request's phase, deadline and
//! sentence as the policies judge it ([`crate::decide::changes`]); the revision an approved
//! request admitted, once its workload runs it; the Events the proposing agent waits on and the
//! notices its owning team reads.
//!
//! Once means once with two controllers too: every write is a merge patch of the status that
//! carries the resourceVersion the decision read, so of two writers one fails and decides again
//! on the fresh request, and nothing is announced but after a write that was accepted.
//!
//! A pass looks at every request: on every event of the requests' and policies' watches, at the
//! next deadline (a window or an approval ending), and every [`POLL`] while a request is
//! approved but not applied. That poll reads the few approved requests' workloads: whether one
//! runs the change shows on the workload (its template, its controller's observed generation
//! and revision), which the cache keeps only in part and only for three kinds; a watch of the
//! full objects of every workload kind, for the handful approved at a time, would cost far more
//! than a GET of each every few seconds for the minutes between an approval and its rollout.

use std::sync::Arc;
use std::time::Duration;

use custody_crds::{Applied, ChangePhase, CustodyChange};
use custody_engine::PolicySet;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::decide::changes::consume::{self, Consumption};
use crate::decide::changes::review::{self, Review, StatusPatch};
use crate::decide::changes::standing;
use crate::metrics::{ChangeStateLabels, Label};

use super::context::{Context, Error, is_conflict};

mod announce;

/// How often the workloads of approved, unapplied requests are read.
pub const POLL: Duration = Duration::from_secs(3);
/// The longest the leader goes without a pass: a net under a missed event.
const IDLE: Duration = Duration::from_secs(300);
/// How soon a failed write is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What the loop reads besides the [`Context`].
pub struct Inputs {
    /// The CustodyChanges of every namespace.
    pub store: Store<CustodyChange>,
    /// Notified on every event of the requests' and the policies' watches.
    pub wake: Arc<Notify>,
    /// True once the cache and the policy and namespace stores have synced.
    pub synced: watch::Receiver<bool>,
    /// The audit's wake-up: an applied request changes what the reports say of its workload,
    /// and the next period may be many minutes away.
    pub audit: Arc<Notify>,
}

/// Looks at the change requests while this replica holds the Lease, until `shutdown`.
pub async fn run(ctx: Arc<Context>, inputs: Inputs, shutdown: CancellationToken) {
    let Inputs {
        store,
        wake,
        mut synced,
        audit,
    } = inputs;
    // A request judged on half a list of policies would be told none protects it.
    tokio::select! {
        _ = shutdown.cancelled() => return,
        done = async { synced.wait_for(|s| *s).await.is_ok() } => if !done { return },
    }
    // Without the CRD this waits for good: the watch logs why, and nothing else waits on it.
    tokio::select! {
        _ = shutdown.cancelled() => return,
        ready = store.wait_until_ready() => if ready.is_err() { return },
    }
    let mut leader = ctx.leader.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            led = async { leader.wait_for(|l| *l).await.is_ok() } => if !led { return },
        }
        let next = pass(&ctx, &store, &audit).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(next) => {}
            lost = async { leader.wait_for(|l| !*l).await.is_ok() } => {
                if !lost { return }
                ctx.metrics.changes.clear();
            }
        }
    }
}

/// Looks at every request once; says when to look again at the latest.
async fn pass(ctx: &Context, store: &Store<CustodyChange>, audit: &Notify) -> Duration {
    let changes = store.state();
    let mut counts = [0_i64; ChangePhase::ALL.len()];
    let mut next = IDLE;
    if !changes.is_empty() {
        let (policies, _invalid) =
            PolicySet::compile(ctx.policies.state().iter().map(|p| (**p).clone()));
        for change in &changes {
            let looked = look(ctx, &policies, change).await;
            if looked.applied {
                audit.notify_one();
            }
            if let Some(i) = ChangePhase::ALL.iter().position(|p| *p == looked.phase) {
                counts[i] += 1;
            }
            next = next.min(looked.again);
        }
    }
    for (phase, count) in ChangePhase::ALL.iter().zip(counts) {
        ctx.metrics
            .changes
            .get_or_create(&ChangeStateLabels {
                state: Label(*phase),
            })
            .set(count);
    }
    next
}

/// What one look at a request did.
struct Looked {
    /// Its phase after the look.
    phase: ChangePhase,
    /// When to look again at the latest.
    again: Duration,
    /// Whether the look wrote the revision it admitted.
    applied: bool,
}

/// Decides about one request, writes what differs and announces what is due.
async fn look(ctx: &Context, policies: &PolicySet, change: &CustodyChange) -> Looked {
    let now = Timestamp::now();
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    let name = change.metadata.name.as_deref().unwrap_or_default();
    let labels = ctx
        .namespaces
        .get(&ObjectRef::new(namespace))
        .and_then(|n| n.metadata.labels.clone());
    let judged = standing::judge(policies, change, labels.as_ref(), now);
    let mut review = review::review(change, judged.as_ref());
    let mut workload = None;
    if review.consume
        && let Some((applied, reference)) = running(ctx, change, now).await
    {
        review = review.applied(change, applied);
        workload = Some(reference);
    }
    let mut looked = Looked {
        phase: review.phase,
        again: wait(&review, now),
        applied: false,
    };
    if review.patch.is_empty() {
        return looked;
    }
    match write(ctx, change, &review.patch).await {
        Ok(()) => {
            looked.applied = review.patch.applied.is_some();
            tracing::info!(
                namespace,
                change = name,
                phase = review.phase.as_str(),
                message = review.patch.message.as_deref().unwrap_or(""),
                "change request updated"
            );
            announce::after_write(
                ctx,
                change,
                &review,
                judged.as_ref(),
                workload.as_ref(),
                now,
            )
            .await;
        }
        Err(Error::Conflict) => {
            tracing::debug!(
                namespace,
                change = name,
                "the request changed since the look; looking again"
            );
        }
        Err(error) => {
            tracing::warn!(namespace, change = name, %error, "cannot write the request's status; retrying");
            looked.again = looked.again.min(RETRY);
        }
    }
    looked
}

/// What the approved request admitted, and its workload's reference, if the workload runs it.
async fn running(
    ctx: &Context,
    change: &CustodyChange,
    now: Timestamp,
) -> Option<(Applied, ObjectReference)> {
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    let name = change.metadata.name.as_deref().unwrap_or_default();
    let (object, reference) = match read_workload(ctx, change).await {
        Ok(found) => found?,
        Err(error) => {
            tracing::warn!(namespace, change = name, %error, "cannot read the workload of the approved change");
            return None;
        }
    };
    let spec = &change.spec;
    match consume::consumption(
        &spec.digest,
        spec.workload.kind,
        namespace,
        &object,
        &ctx.vocabulary,
        now,
    ) {
        Consumption::Applied(applied) => Some((applied, reference)),
        Consumption::Rolling => {
            tracing::debug!(
                namespace,
                change = name,
                "the approved change is rolling out"
            );
            None
        }
        Consumption::Absent => None,
    }
}

/// When to look at the request again at the latest: soon while it is approved and not yet
/// applied, at its deadline otherwise.
fn wait(review: &Review, now: Timestamp) -> Duration {
    let poll = if review.consume { POLL } else { IDLE };
    let deadline = review.deadline.map_or(IDLE, |d| {
        let left = d.duration_since(now).as_secs_f64().max(0.0);
        // A second past it, so the standing has changed when the pass comes.
        Duration::from_secs_f64(left) + Duration::from_secs(1)
    });
    poll.min(deadline)
}

/// The request's workload as the API server has it, and its reference for an Event; `None`
/// when it does not exist (yet).
async fn read_workload(
    ctx: &Context,
    change: &CustodyChange,
) -> Result<Option<(Value, ObjectReference)>, Error> {
    let kind = change.spec.workload.kind;
    let group = kind.group();
    let resource = ApiResource {
        group: group.to_string(),
        version: "v1".to_string(),
        api_version: if group.is_empty() {
            "v1".to_string()
        } else {
            format!("{group}/v1")
        },
        kind: kind.as_str().to_string(),
        plural: kind.plural().to_string(),
    };
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let Some(object) = api
        .get_opt(&change.spec.workload.name)
        .await
        .map_err(Error::Api)?
    else {
        return Ok(None);
    };
    let reference = object.object_ref(&resource);
    Ok(Some((serde_json::to_value(&object)?, reference)))
}

/// Writes the patch, conditioned on the resourceVersion the look read.
async fn write(ctx: &Context, change: &CustodyChange, patch: &StatusPatch) -> Result<(), Error> {
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    let name = change.metadata.name.as_deref().unwrap_or_default();
    let body = json!({
        "metadata": {"resourceVersion": change.metadata.resource_version},
        "status": patch.status(),
    });
    let api: Api<CustodyChange> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if is_conflict(&error) => Err(Error::Conflict),
        Err(error) => Err(Error::Api(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(consume: bool, deadline: Option<Timestamp>) -> Review {
        Review {
            phase: ChangePhase::Pending,
            patch: StatusPatch::default(),
            announce: Vec::new(),
            consume,
            deadline,
            approval_seconds: None,
        }
    }

    #[test]
    fn the_next_look_by_situation() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let later = |s: i64| now + jiff::SignedDuration::from_secs(s);
        // (situation, review, expected wait)
        let cases = [
            ("nothing pending: the net", review(false, None), IDLE),
            (
                "a window ends in a minute: just past it",
                review(false, Some(later(60))),
                Duration::from_secs(61),
            ),
            (
                "approved and not applied: the poll",
                review(true, Some(later(3600))),
                POLL,
            ),
            (
                "a deadline already passed: a second",
                review(false, Some(later(-10))),
                Duration::from_secs(1),
            ),
        ];
        for (situation, r, want) in cases {
            assert_eq!(wait(&r, now), want, "{situation}");
        }
    }
}
