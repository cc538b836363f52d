//! Showing where a revision's metric analysis stands: the `analysis` mark on the revision (its
//! report as JSON, for `kubectl custody why` and anyone reading the ReplicaSet or
//! ControllerRevision), an Event when every metric has been inconclusive for long (the provider
//! is away: never evidence, but someone should know), and an Event for a dry-run metric that
//! would have confirmed a regression; the inconclusive stretch is also an on-call notice
//! (`analysisInconclusive`). All best effort: a failure here never holds a decision.

use custody_crds::{NoticeKind, WorkloadKind};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;

use crate::cache::compact;
use crate::cache::observe::{Observed, WorkloadState};
use crate::cache::slim::{SlimControllerRevision, SlimReplicaSet};
use crate::decide::policy::Governing;
use crate::keys::{mark, marks};
use crate::measure::analyses::Followed;

use super::announce::MomentText;
use super::context::Context;
use super::guard::event;

/// Shows what is new in the analysis `followed` of `w`'s revision.
pub async fn show(ctx: &Context, observed: &Observed, governing: &Governing, followed: &Followed) {
    let w = &observed.workload;
    let progress = &followed.progress;
    if followed.unshown {
        match annotate(ctx, w, &progress.revision, &progress.report()).await {
            Ok(()) => ctx.analyses.shown(compact::uid(&w.uid), progress),
            Err(error) => {
                tracing::warn!(%error, revision = %progress.revision, "cannot show the analysis on the revision");
            }
        }
    }
    if let Some(why) = &followed.warn_inconclusive {
        if let Some(revision) = observed
            .revisions
            .iter()
            .find(|r| r.name == progress.revision)
        {
            let text = MomentText {
                kind: NoticeKind::AnalysisInconclusive,
                reason: "AnalysisInconclusive",
                summary: format!(
                    "{} {}/{} revision {}: the metric analysis has been inconclusive for long; nothing is being checked",
                    w.kind.as_str(),
                    w.namespace,
                    w.name,
                    revision.number
                ),
                explanation: why.clone(),
                evidence: Vec::new(),
            };
            super::announce::moment(ctx, observed, revision, governing, text);
        }
        tracing::warn!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, why, "metric analysis inconclusive");
        event(
            ctx,
            w,
            EventType::Warning,
            "AnalysisInconclusive",
            "Analyze",
            why,
        )
        .await;
    }
    for name in &followed.would_fail {
        ctx.metrics.analysis_dry_run_failures.inc();
        let evidence = progress
            .metrics
            .iter()
            .find(|m| &m.name == name)
            .and_then(|m| m.failing.last())
            .map_or(String::new(), |f| format!(": {}", f.why));
        let note = format!(
            "dry run: metric {name} of revision {} would have confirmed a regression{evidence}",
            progress.revision
        );
        tracing::info!(kind = w.kind.as_str(), namespace = %w.namespace, name = %w.name, note, "dry-run metric failed");
        event(
            ctx,
            w,
            EventType::Warning,
            "AnalysisWouldFail",
            "Analyze",
            &note,
        )
        .await;
    }
}

async fn annotate(
    ctx: &Context,
    w: &WorkloadState,
    revision: &str,
    report: &custody_crds::analysis::AnalysisReport,
) -> Result<(), kube::Error> {
    let value = serde_json::to_string(report).map_err(kube::Error::SerdeError)?;
    let patch = serde_json::json!({"metadata": {"annotations": {
        mark(&ctx.vocabulary, marks::ANALYSIS): value,
    }}});
    let params = PatchParams::default();
    if w.kind == WorkloadKind::Deployment {
        Api::<SlimReplicaSet>::namespaced(ctx.client.clone(), &w.namespace)
            .patch(revision, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    } else {
        Api::<SlimControllerRevision>::namespaced(ctx.client.clone(), &w.namespace)
            .patch(revision, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}
