//! The writers, and the reconcile that drives them: read the rollout from the cache, decide
//! ([`crate::decide`]), act. This is the only module that carries out decisions, and it writes
//! only while this replica holds the Lease: the RollbackRecord ([`record`]), the guarded revert
//! ([`revert`], [`regression`]), the marks ([`marks`]), the Events ([`events`]), the
//! notifications ([`announce`], [`notify`]), the agents' summaries ([`agent_activity`],
//! [`agent_status`]) and the change requests' status, Events and notices ([`changes`], a loop
//! of its own beside the workloads' reconciles). What all of them need is the [`Context`]. (The policy reports and the
//! webhook's certificate are [`crate::audit`]'s and [`crate::certs`]'s to write.)
//!
//! Writes are ordered so that a crash at any point converges to exactly one revert: the record
//! is created first (idempotent, deterministic name), so the webhook quarantines the template
//! before anything could re-apply it; the revert is a JSON patch conditioned on the
//! resourceVersion the decision saw (a conflict means deciding again on fresh state); the
//! revision is marked last. After a restart, a workload already moved off the bad revision has
//! nothing to revert, and one still on it is reverted by the same (idempotent) steps.

pub mod agent_activity;
pub mod agent_status;
pub mod analysis;
pub mod announce;
pub mod changes;
pub mod context;
pub mod events;
pub mod guard;
pub mod marks;
pub mod notify;
pub mod record;
pub mod regression;
pub mod revert;

pub use context::{Context, Error};

use std::sync::PoisonError;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use crate::cache::compact::{self, Uid};
use crate::cache::observe::{Observed, Revision, WorkloadState};
use crate::decide::Action;
use crate::decide::analysis::{self as analysis_rules, Progress};
use crate::decide::assess::{Assessment, assess};
use crate::decide::attribution::{Excuse, Ledger};
use crate::decide::breakglass;
use crate::decide::canary::{self, Guard};
use crate::decide::choose::{Declared, choose};
use crate::decide::policy::{self, Governing};
use crate::keys::marks as mark_names;
use crate::measure::analyses::Followed;
use crate::metrics::{ErrorLabels, Label, NotAttributedLabels};
use crate::schedule::Next as Requeue;
use crate::signed::fetch::Envelopes;
use crate::signed::vouch;
use crate::signed::vouch::Attestation;

/// Decides about the workload `uid` and acts on the decision.
pub async fn reconcile(uid: Uid, ctx: &Context) -> Result<Requeue, Error> {
    // Followers keep their caches warm without polling, and a decision on half a list could
    // mark a revision healthy whose failing pods are not listed yet: both wait, and every
    // workload is looked at again once this replica is synced and leads
    // (`crate::run::look_again_when_deciding`).
    if !*ctx.leader.borrow() || !ctx.cache.is_synced() {
        return Ok(Requeue::await_change());
    }
    ctx.metrics
        .watched_workloads
        .set(i64::try_from(ctx.cache.workload_count()).unwrap_or(i64::MAX));
    let Some(observed) = ctx.cache.observe(uid) else {
        ledger(ctx).forget(uid);
        ctx.agents.forget(uid);
        ctx.analyses.forget(uid);
        return Ok(Requeue::await_change());
    };
    ctx.agents.note(
        uid,
        &agent_activity::contribution(
            &observed.workload,
            &observed.revisions,
            &ctx.vocabulary,
            Timestamp::now(),
        ),
    );
    act(ctx, &observed).await
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
                kind: Label(w.kind),
                reason: Label(reason),
            })
            .inc();
        tracing::info!(
            kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name,
            revision = revision.number, revision_name = %revision.name, reason = reason.as_str(),
            why, "regression not attributed to the revision"
        );
    }
}

/// Announces a due break-glass revision, then decides about the workload and acts. One
/// [`Envelopes`] serves both, so an attestation is read at most once.
async fn act(ctx: &Context, observed: &Observed) -> Result<Requeue, Error> {
    let w = &observed.workload;
    let ns_meta = ctx.namespaces.get(&ObjectRef::new(&w.namespace));
    let labels = ns_meta.as_ref().and_then(|n| n.metadata.labels.as_ref());
    let governing = policy::governing(&ctx.policies.state(), w, labels);
    let mut envelopes = Envelopes::new(&ctx.client, &ctx.vocabulary, &ctx.metrics);
    // Visibility first, and apart: a failure to announce never holds a decision back.
    let announce_again = match breakglass::pending(observed, &ctx.vocabulary) {
        Some(sighting) => announce::break_glass(
            ctx,
            &mut envelopes,
            w,
            &sighting,
            Some(crate::decide::route::PolicyTargets {
                name: &governing.name,
                settings: &governing.settings,
            }),
        )
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
    // The announcement is apart from the decision: an envelope it could not read is read
    // again, not taken as unreadable by the decision.
    envelopes.retry_unreadable();
    let now = Timestamp::now();
    let followed = follow_analysis(ctx, observed, &governing);
    let progress = followed.as_ref().map(|f| &f.progress);
    let action = decision(ctx, &mut envelopes, observed, &governing, progress, now).await;
    let step = match &action {
        Action::Revert(_) | Action::Alert(_) => None,
        _ => canary::step(
            observed,
            Guard {
                canary: governing.canary.as_ref(),
                analysis: governing.settings.analysis.as_ref(),
                progress,
                dry_run: ctx.dry_run || governing.settings.dry_run,
            },
            observed
                .revisions
                .first()
                .and_then(|r| Declared::of(r, &ctx.vocabulary).actor),
            &ctx.vocabulary,
            now,
        ),
    };
    let mut requeue = carry_out(ctx, &mut envelopes, observed, action, &governing, now).await?;
    if let Some(step) = step {
        requeue = requeue.sooner(guard::carry_out(ctx, w, step).await?);
    }
    // Last: a revert or a hold must not wait for a write only people read.
    if let Some(followed) = &followed {
        analysis::show(ctx, observed, &governing, followed).await;
    }
    // A revision nothing else will look at again still gets announced.
    if announce_again && requeue == Requeue::await_change() {
        return Ok(Requeue::requeue(Duration::from_secs(10)));
    }
    Ok(requeue)
}

/// Follows the current revision's metric analysis when the governing policy has one and the
/// revision is due for it; ends the workload's analysis otherwise.
fn follow_analysis(ctx: &Context, observed: &Observed, governing: &Governing) -> Option<Followed> {
    let w = &observed.workload;
    let uid = compact::uid(&w.uid);
    let spec = governing.settings.analysis.as_ref();
    match (spec, analysis_rules::wanted(observed, &ctx.vocabulary)) {
        (Some(spec), Some(revision)) => {
            Some(
                ctx.analyses
                    .follow(uid, (&w.namespace, &w.name), &revision.name, spec),
            )
        }
        _ => {
            ctx.analyses.forget(uid);
            None
        }
    }
}

/// The decision about the workload: its health assessed once from the cache; on a regression,
/// revert or alert chosen once, under `spec.signatures` on the actor a trusted key vouched for.
/// The actor matters only then, so only then is the attestation read and verified.
async fn decision(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    observed: &Observed,
    governing: &Governing,
    analysis: Option<&Progress>,
    now: Timestamp,
) -> Action {
    let settings = &governing.settings;
    let regression = match assess(observed, settings, &ctx.vocabulary, analysis, now) {
        Assessment::Settled(action) => return action,
        Assessment::Regressed(regression) => regression,
    };
    let mut declared = Declared::of(regression.current, &ctx.vocabulary);
    let Some(signing) = governing.signing.as_deref() else {
        return choose(&regression, declared, settings, ctx.dry_run);
    };
    let w = &observed.workload;
    let attestation = envelopes.attestation_of(w, regression.current).await;
    let vouch = vouch::vouch(
        w,
        regression.current,
        &attestation,
        Some(signing),
        &vouch::keys_of(signing),
        &ctx.vocabulary,
        now,
    );
    if let vouch::Vouch::Unverified {
        why,
        required: true,
    } = &vouch
    {
        if let Attestation::Unreadable(error) = &attestation {
            announce::moment(
                ctx,
                observed,
                regression.current,
                governing,
                unreadable(w, regression.current, error),
            );
        }
        tracing::debug!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, why, "current revision's provenance is not vouched for; its declared actor is not believed");
    }
    declared.actor = vouch::believed(declared.actor, &vouch);
    let mut action = choose(&regression, declared, settings, ctx.dry_run);
    if let Action::Revert(v) | Action::Alert(v) = &mut action {
        v.attested_by = vouch.key_id().map(str::to_string);
    }
    action
}

/// What the notice of an unreadable attestation says.
fn unreadable(w: &WorkloadState, revision: &Revision, error: &str) -> announce::MomentText {
    announce::MomentText {
        kind: custody_crds::NoticeKind::AttestationUnreadable,
        reason: "AttestationUnreadable",
        summary: format!(
            "{} {}/{} revision {} is signed, but its attestation cannot be read: its provenance is not believed",
            w.kind.as_str(),
            w.namespace,
            w.name,
            revision.number
        ),
        explanation: format!(
            "The revision regressed, and its signed attestation could not be read ({error}). Its declared actor is not believed: it is treated as a person's revision, reported rather than reverted. Check the attestation annotation and the signing pipeline."
        ),
        evidence: vec![error.to_string()],
    }
}

/// Acts on the decision.
async fn carry_out(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    observed: &Observed,
    action: Action,
    governing: &Governing,
    now: Timestamp,
) -> Result<Requeue, Error> {
    let w = &observed.workload;
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
                let since = now.to_string();
                marks::mark(ctx, envelopes, w, r, mark_names::HEALTHY_SINCE, &since).await?;
                tracing::info!(kind, namespace = %ns, name = %name, revision = %revision, "revision marked healthy");
            }
            Ok(Requeue::await_change())
        }
        Action::Revert(verdict) => {
            regression::revert(ctx, envelopes, w, &verdict, governing).await?;
            Ok(Requeue::await_change())
        }
        Action::Alert(verdict) => {
            regression::alert(ctx, envelopes, w, &verdict, governing).await?;
            Ok(Requeue::await_change())
        }
    }
}

/// What to do after a failed reconcile: decide again soon on a conflict, back off otherwise.
pub fn error_policy(error: &Error, ctx: &Context) -> Requeue {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            error: Label(error.label()),
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
