//! The background audit: what is already running that the policies would refuse.
//!
//! The workloads come from the controller's own cache (no second watch, no full objects): each
//! is judged by each policy with the webhook's engine ([`judge`]), at start, when a policy
//! changes and on a period. The findings go to metrics, and, when the report CRD is served, to
//! one report per namespace ([`report`]) written by the Lease holder ([`publish`]).
//!
//! Write rate: a report is written only when its results changed (its digest leaves out
//! timestamps), so a quiet cluster writes nothing; a policy change rewrites at most one report
//! per namespace it concerns, paced at `writes_per_second`.

pub mod judge;
pub mod publish;
pub mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_crds::report::{ReportFormat, ResultStatus, ResultTimestamp};
use custody_crds::{CustodyPolicy, Vocabulary};
use custody_webhook::engine::PolicySet;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::index::Cache;
use crate::metrics::{AuditResultLabels, Metrics, NamespaceLabels};
use judge::Finding;
use publish::{Availability, Publisher};

/// How the audit runs.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Time between audits when nothing changes.
    pub period: Duration,
    /// The report API written, or `None` for metrics only.
    pub format: Option<ReportFormat>,
    /// Results per report part.
    pub max_results: usize,
    /// Report writes per second, at most.
    pub writes_per_second: u32,
}

/// Quiet time after a policy change before auditing, so a `kubectl apply -f policies/` of
/// several policies costs one audit.
const SETTLE: Duration = Duration::from_secs(2);

/// What the audit reads.
pub struct AuditInputs {
    /// The controller's cache.
    pub cache: Arc<Cache>,
    /// The policies.
    pub policies: Store<CustodyPolicy>,
    /// The namespaces' labels.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Notified when a policy changes.
    pub policy_changed: Arc<Notify>,
    /// True once the cache and both stores have synced.
    pub synced: watch::Receiver<bool>,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
}

/// Audits while this replica holds the Lease, until `shutdown`.
pub async fn run(
    client: Client,
    inputs: AuditInputs,
    config: AuditConfig,
    metrics: Metrics,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let digest_annotation = format!("{}audit-digest", inputs.vocabulary.prefix());
    let mut publisher = config.format.map(|format| {
        Publisher::new(
            client,
            format,
            digest_annotation.clone(),
            config.writes_per_second,
        )
    });
    // Not the stores' own wait_until_ready: it wakes one waiter only, and the readiness task
    // already waits on it.
    let mut synced = inputs.synced.clone();
    tokio::select! {
        _ = shutdown.cancelled() => return,
        done = async { synced.wait_for(|s| *s).await.is_ok() } => if !done { return },
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            led = async { leader.wait_for(|l| *l).await.is_ok() } => if !led { return },
        }
        let findings = audit_once(&inputs, &metrics).await;
        if let (Some(publisher), Some(format)) = (publisher.as_mut(), config.format) {
            write(
                publisher,
                format,
                &findings,
                &digest_annotation,
                &config,
                &metrics,
            )
            .await;
        }
        drop(findings);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(config.period) => {}
            _ = inputs.policy_changed.notified() => {
                tokio::time::sleep(SETTLE).await;
            }
            lost = async { leader.wait_for(|l| !*l).await.is_ok() } => {
                if !lost { return }
                clear(&metrics);
                if let Some(p) = publisher.as_mut() { p.forget() }
            }
        }
    }
}

async fn audit_once(inputs: &AuditInputs, metrics: &Metrics) -> Vec<Finding> {
    let started = Instant::now();
    let (policies, errors) =
        PolicySet::compile(inputs.policies.state().iter().map(|p| (**p).clone()));
    for e in &errors {
        tracing::debug!(policy = %e.policy, "invalid policy left out of the audit");
    }
    let namespaces: HashMap<String, BTreeMap<String, String>> = inputs
        .namespaces
        .state()
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n.metadata.labels.clone()?)))
        .collect();
    let workloads = inputs.cache.workloads();
    let vocabulary = inputs.vocabulary.clone();
    // Judging ten thousand workloads takes tens of milliseconds: off the reconcile thread.
    let judged = tokio::task::spawn_blocking(move || {
        judge::audit(&policies, &vocabulary, &namespaces, &workloads)
    })
    .await;
    let findings = match judged {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(%error, "the audit failed");
            return Vec::new();
        }
    };
    let elapsed = started.elapsed();
    record(&findings, metrics);
    metrics.audit_runs.inc();
    metrics
        .audit_duration_ms
        .set(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
    let failing = findings
        .iter()
        .filter(|f| f.result == ResultStatus::Fail)
        .count();
    tracing::info!(
        results = findings.len(),
        failing,
        elapsed_ms = elapsed.as_millis() as u64,
        "audit done"
    );
    findings
}

/// Sets the audit gauges to `findings`, dropping label sets that no longer occur.
fn record(findings: &[Finding], metrics: &Metrics) {
    clear(metrics);
    let mut failing: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for f in findings {
        metrics
            .audit_results
            .get_or_create(&AuditResultLabels {
                policy: f.policy.clone(),
                result: f.result.as_str(),
            })
            .inc();
        if f.result == ResultStatus::Fail {
            failing
                .entry(f.workload.namespace.as_str())
                .or_default()
                .insert(f.workload.uid.as_str());
        }
    }
    for (namespace, workloads) in failing {
        metrics
            .audit_failing_workloads
            .get_or_create(&NamespaceLabels {
                workload_namespace: namespace.to_string(),
            })
            .set(i64::try_from(workloads.len()).unwrap_or(i64::MAX));
    }
}

fn clear(metrics: &Metrics) {
    metrics.audit_results.clear();
    metrics.audit_failing_workloads.clear();
}

async fn write(
    publisher: &mut Publisher,
    format: ReportFormat,
    findings: &[Finding],
    digest_annotation: &str,
    config: &AuditConfig,
    metrics: &Metrics,
) {
    match publisher.check().await {
        Ok(Availability::Served) => {}
        Ok(Availability::Missing) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot reach the report API; retrying at the next audit");
            return;
        }
    }
    let now = jiff::Timestamp::now();
    let at = ResultTimestamp {
        seconds: now.as_second(),
        nanos: now.subsec_nanosecond(),
    };
    let reports: Vec<_> = report::by_namespace(findings)
        .into_iter()
        .flat_map(|(namespace, found)| {
            report::namespace_reports(
                format,
                namespace,
                &found,
                digest_annotation,
                at,
                config.max_results,
            )
        })
        .collect();
    if let Err(error) = publisher.publish(&reports, metrics).await {
        tracing::warn!(%error, "cannot write policy reports; retrying at the next audit");
    }
}
