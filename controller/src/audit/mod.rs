//! The background audit: what is already running that the policies would refuse.
//!
//! The workloads come from the controller's own cache (no second watch, no full objects): each
//! is judged by each policy with the admission engine ([`judge`]), at start, when a policy
//! changes and on a period. The findings go to metrics, and, when the report CRD is served, to
//! one report per namespace ([`report`]) written by the Lease holder ([`publish`]). A result
//! about a workload whose running revision came in through an approved change request names the
//! request and its approvers ([`approved`]).
//!
//! Write rate: a report is written only when its results changed (its digest leaves out
//! timestamps), so a quiet cluster writes nothing; a policy change rewrites at most one report
//! per namespace it concerns, paced at `writes_per_second`.

pub mod approved;
pub mod judge;
pub mod publish;
pub mod report;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_crds::report::{ReportFormat, ResultStatus, ResultTimestamp};
use custody_crds::{CustodyChange, CustodyPolicy, CustodyTeam, Vocabulary};
use custody_engine::{PolicySet, TeamIndex};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::index::Cache;
use crate::metrics::{AuditResultLabels, Label, Metrics, NamespaceLabels};
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

/// Workloads judged between yields: about 5 ms of the controller's one thread.
const JUDGE_CHUNK: usize = 256;

/// What the audit reads.
pub struct AuditInputs {
    /// The controller's cache.
    pub cache: Arc<Cache>,
    /// The policies.
    pub policies: Store<CustodyPolicy>,
    /// The namespaces' labels.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// The registered teams, for policies with `ownership: Registered`.
    pub teams: Store<CustodyTeam>,
    /// Notified when a policy changes.
    pub policy_changed: Arc<Notify>,
    /// The change requests, for the revisions they admitted. Empty without the CRD.
    pub changes: Store<CustodyChange>,
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
        audit_once(
            &inputs,
            &config,
            publisher.as_mut(),
            &digest_annotation,
            &metrics,
        )
        .await;
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

/// One audit: a namespace at a time, on this thread (a second thread would get glibc a second
/// malloc arena, and the controller's memory budget counts every page), yielding every
/// [`JUDGE_CHUNK`] workloads so reconciles are not held up. Only one namespace's workloads,
/// findings and reports are in memory at once.
async fn audit_once(
    inputs: &AuditInputs,
    config: &AuditConfig,
    mut publisher: Option<&mut Publisher>,
    digest_annotation: &str,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let (policies, errors) =
        PolicySet::compile(inputs.policies.state().iter().map(|p| (**p).clone()));
    for e in &errors {
        tracing::debug!(policy = %e.policy, "invalid policy left out of the audit");
    }
    let namespace_labels: HashMap<String, BTreeMap<String, String>> = inputs
        .namespaces
        .state()
        .iter()
        .filter_map(|n| Some((n.metadata.name.clone()?, n.metadata.labels.clone()?)))
        .collect();
    let (teams, _invalid) = TeamIndex::compile(inputs.teams.state().iter().map(|t| &**t));
    let applied = approved::AppliedIndex::from_changes(inputs.changes.state().iter().map(|c| &**c));
    let format = config.format;
    let writing = match (publisher.as_deref_mut(), format) {
        (Some(p), Some(_)) => match p.check().await {
            Ok(Availability::Served) => match p.begin().await {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "cannot list policy reports; retrying at the next audit");
                    false
                }
            },
            Ok(Availability::Missing) => false,
            Err(error) => {
                tracing::warn!(%error, "cannot reach the report API; retrying at the next audit");
                false
            }
        },
        _ => false,
    };
    let now = jiff::Timestamp::now();
    let at = ResultTimestamp {
        seconds: now.as_second(),
        nanos: now.subsec_nanosecond(),
    };
    let mut tally = Tally::default();
    let mut wanted = BTreeSet::new();
    let mut judging = Duration::ZERO;
    for (namespace, uids) in inputs.cache.workloads_by_namespace() {
        let mut findings = Vec::new();
        for chunk in uids.chunks(JUDGE_CHUNK) {
            let t = Instant::now();
            let workloads = inputs.cache.workload_states(chunk);
            let mut found = judge::audit(
                &policies,
                &inputs.vocabulary,
                &namespace_labels,
                &workloads,
                &teams,
                now,
            );
            approved::annotate(&mut found, &workloads, &applied, &inputs.cache);
            findings.extend(found);
            judging += t.elapsed();
            tokio::task::yield_now().await;
        }
        tally.add(&findings);
        if writing && let (Some(p), Some(format)) = (publisher.as_deref_mut(), format) {
            let refs: Vec<&Finding> = findings.iter().collect();
            let reports = report::namespace_reports(
                format,
                &namespace,
                &refs,
                digest_annotation,
                at,
                config.max_results,
            );
            for r in &reports {
                wanted.insert((r.namespace.clone(), r.name.clone()));
                p.write(r, metrics).await;
            }
        }
    }
    if writing && let Some(p) = publisher {
        p.finish(&wanted, metrics).await;
    }
    tally.record(metrics);
    metrics.audit_runs.inc();
    metrics
        .audit_duration_ms
        .set(i64::try_from(judging.as_millis()).unwrap_or(i64::MAX));
    tracing::info!(
        results = tally.results,
        failing_workloads = tally.failing.values().map(HashSet::len).sum::<usize>(),
        judging_ms = judging.as_millis() as u64,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "audit done"
    );
}

/// What one audit found, counted for metrics.
#[derive(Default)]
struct Tally {
    results: usize,
    by_policy: BTreeMap<(String, ResultStatus), i64>,
    failing: BTreeMap<String, HashSet<String>>,
}

impl Tally {
    fn add(&mut self, findings: &[Finding]) {
        for f in findings {
            self.results += 1;
            *self
                .by_policy
                .entry((f.policy.clone(), f.result))
                .or_default() += 1;
            if f.result == ResultStatus::Fail {
                self.failing
                    .entry(f.workload.namespace.clone())
                    .or_default()
                    .insert(f.workload.uid.clone());
            }
        }
    }

    /// Sets the audit gauges, dropping label sets that no longer occur.
    fn record(&self, metrics: &Metrics) {
        clear(metrics);
        for ((policy, result), n) in &self.by_policy {
            metrics
                .audit_results
                .get_or_create(&AuditResultLabels {
                    policy: policy.clone(),
                    result: Label(*result),
                })
                .set(*n);
        }
        for (namespace, workloads) in &self.failing {
            metrics
                .audit_failing_workloads
                .get_or_create(&NamespaceLabels {
                    workload_namespace: namespace.clone(),
                })
                .set(i64::try_from(workloads.len()).unwrap_or(i64::MAX));
        }
    }
}

fn clear(metrics: &Metrics) {
    metrics.audit_results.clear();
    metrics.audit_failing_workloads.clear();
}
