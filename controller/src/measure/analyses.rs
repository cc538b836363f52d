//! The analyses in progress: one task per revision under analysis, checking its metrics every
//! `intervalSeconds` and asking the work queue to look at its workload after each check. The
//! checks run apart from the reconciles, so a slow or absent Prometheus never delays a decision
//! or a revert: a reconcile reads where an analysis stands ([`Analyses::follow`]) and never
//! waits for a query.
//!
//! Each check reads the rollout fresh from the cache, so `{{pods}}` names the revision's Pods as
//! they are (and every Pod it has had, so a Pod gone still counts for the window it served in).
//! The previous revision is measured over the same window when its Pods still serve beside the
//! new ones (a held first step, a rolling update); once they are gone, over the window that
//! ended when the new revision was created, when the previous one served alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custody_crds::Vocabulary;
use custody_crds::WorkloadKind;
use custody_crds::analysis::{
    AnalysisPhase, AnalysisReport, AnalysisSpec, CheckResult, MetricSpec, NoData, placeholders,
};
use futures::future::join_all;
use jiff::Timestamp;
use kube::{Api, Client};
use tokio::sync::{Semaphore, watch};
use tokio::task::AbortHandle;

use crate::cache::compact::Uid;
use crate::cache::feed::Triggers;
use crate::cache::index::Cache;
use crate::cache::observe::{Observed, Revision};
use crate::cache::slim::{SlimControllerRevision, SlimReplicaSet};
use crate::decide::analysis::{Check, Observation, Progress, judge};
use crate::decide::assess;
use crate::keys::{mark, marks};
use crate::metrics::{AnalysisValueLabels, CheckLabels, Label, Metrics, Series};

use super::prometheus::MetricSource;
use super::query::{Subject, render};
use super::sources::Sources;

/// What the analyses share.
struct Shared {
    client: Client,
    /// Reads of earlier marks in flight, at most.
    reads: Semaphore,
    cache: Arc<Cache>,
    triggers: Triggers,
    sources: Sources,
    leader: watch::Receiver<bool>,
    vocabulary: Vocabulary,
    metrics: Metrics,
}

/// One analysis in progress.
struct Run {
    revision: String,
    spec: AnalysisSpec,
    progress: Arc<Mutex<Progress>>,
    task: AbortHandle,
    /// What the revision's mark last showed.
    shown: Shown,
    /// Whether the long inconclusive stretch was reported.
    warned: bool,
    /// The dry-run metrics whose would-be failure was reported.
    reported: BTreeSet<String>,
    /// The series it set, removed when it ends.
    series: Vec<AnalysisValueLabels>,
}

/// Where one analysis stands, and what is new since the last look.
#[derive(Clone, Debug)]
pub struct Followed {
    /// Its checks so far.
    pub progress: Progress,
    /// Its standing changed since it was last shown on the revision (or its values have not
    /// been shown for a while).
    pub unshown: bool,
    /// Every metric's checks have been inconclusive for long: say so, once.
    pub warn_inconclusive: Option<String>,
    /// Dry-run metrics that would have confirmed a regression, not reported yet.
    pub would_fail: Vec<String>,
}

/// The analyses in progress, by workload.
pub struct Analyses {
    runs: Mutex<HashMap<Uid, Run>>,
    shared: Arc<Shared>,
}

/// Reads of the revisions' marks at once, when analyses start.
const RESUME_READS: usize = 4;

/// Checks inconclusive in a row before the stretch is reported (and at least a minute).
const INCONCLUSIVE_CHECKS_REPORTED: u32 = 5;

impl Analyses {
    /// No analysis yet. Checks run only while `leader` holds, and each asks `triggers` to look
    /// at its workload; `client` reads back where an earlier leader left an analysis.
    pub fn new(
        client: Client,
        cache: Arc<Cache>,
        triggers: Triggers,
        sources: Sources,
        leader: watch::Receiver<bool>,
        vocabulary: Vocabulary,
        metrics: Metrics,
    ) -> Self {
        Self {
            runs: Mutex::default(),
            shared: Arc::new(Shared {
                client,
                reads: Semaphore::new(RESUME_READS),
                cache,
                triggers,
                sources,
                leader,
                vocabulary,
                metrics,
            }),
        }
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<Uid, Run>> {
        // Every change under the lock is a map write or a field store.
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The analysis of `revision` of the workload `uid` (`namespace/name`) under `spec`,
    /// started now if it is not running (an analysis of another revision, or under another
    /// spec, ends).
    pub fn follow(
        &self,
        uid: Uid,
        (namespace, name): (&str, &str),
        revision: &str,
        spec: &AnalysisSpec,
    ) -> Followed {
        let mut runs = self.runs();
        let same = runs
            .get(&uid)
            .is_some_and(|r| r.revision == revision && r.spec == *spec);
        if !same {
            if let Some(old) = runs.remove(&uid) {
                self.end(old);
            }
            let mut run = self.start(uid, revision, spec);
            run.series = spec
                .metrics
                .iter()
                .flat_map(|m| {
                    [Series::New, Series::Baseline].map(|series| AnalysisValueLabels {
                        workload_namespace: namespace.to_string(),
                        workload: name.to_string(),
                        metric: m.name.clone(),
                        series: Label(series),
                    })
                })
                .collect();
            runs.insert(uid, run);
            self.shared.metrics.analyses_running.inc();
        }
        let Some(run) = runs.get_mut(&uid) else {
            return Followed {
                progress: Progress::new(revision, spec),
                unshown: false,
                warn_inconclusive: None,
                would_fail: Vec::new(),
            };
        };
        let progress = run
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        news(run, progress)
    }

    /// Notes that `progress` is what the revision's mark shows.
    pub fn shown(&self, uid: Uid, progress: &Progress) {
        if let Some(run) = self.runs().get_mut(&uid)
            && progress.checks >= run.shown.checks
        {
            run.shown = Shown::of(progress);
        }
    }

    /// Ends the workload `uid`'s analysis, if it has one.
    pub fn forget(&self, uid: Uid) {
        let run = self.runs().remove(&uid);
        if let Some(run) = run {
            self.end(run);
        }
    }

    /// Analyses in progress.
    pub fn len(&self) -> usize {
        self.runs().len()
    }

    /// Whether none is in progress.
    pub fn is_empty(&self) -> bool {
        self.runs().is_empty()
    }

    fn start(&self, uid: Uid, revision: &str, spec: &AnalysisSpec) -> Run {
        let progress = Arc::new(Mutex::new(Progress::new(revision, spec)));
        let task = tokio::spawn(run(
            self.shared.clone(),
            uid,
            revision.to_string(),
            spec.clone(),
            progress.clone(),
        ))
        .abort_handle();
        Run {
            revision: revision.to_string(),
            spec: spec.clone(),
            progress,
            task,
            shown: Shown::default(),
            warned: false,
            reported: BTreeSet::new(),
            series: Vec::new(),
        }
    }

    fn end(&self, run: Run) {
        run.task.abort();
        self.shared.metrics.analyses_running.dec();
        for labels in &run.series {
            self.shared.metrics.analysis_values.remove(labels);
        }
    }
}

impl Drop for Analyses {
    fn drop(&mut self) {
        for (_, run) in self.runs().drain() {
            run.task.abort();
        }
    }
}

/// What a revision's mark showed: enough to tell whether it is worth writing again. Each write
/// is a write to etcd and an event to every ReplicaSet watcher, so the mark is rewritten when
/// the standing changes (the phase, a metric's result or run of failures), and otherwise only
/// once a minute for the values.
#[derive(Default)]
struct Shown {
    checks: u32,
    standing: Vec<(CheckResult, u32)>,
    phase: Option<AnalysisPhase>,
}

/// Seconds between two writes of a mark whose standing did not change.
const SHOW_VALUES_EVERY: u32 = 60;

impl Shown {
    fn of(progress: &Progress) -> Self {
        Self {
            checks: progress.checks,
            standing: progress
                .metrics
                .iter()
                .map(|m| {
                    let result = m
                        .last
                        .as_ref()
                        .map_or(CheckResult::Inconclusive, |l| l.check.result());
                    (result, m.standing.failing_in_a_row)
                })
                .collect(),
            phase: Some(progress.phase()),
        }
    }

    fn behind(&self, progress: &Progress, interval_seconds: u32) -> bool {
        if progress.checks <= self.checks {
            return false;
        }
        let now = Self::of(progress);
        let stale = (progress.checks - self.checks).saturating_mul(interval_seconds.max(1))
            >= SHOW_VALUES_EVERY;
        stale || now.phase != self.phase || now.standing != self.standing
    }
}

/// What is new in `run` since the last look, noted as seen.
fn news(run: &mut Run, progress: Progress) -> Followed {
    let every = run.spec.interval_seconds;
    let long = i64::from(every.saturating_mul(INCONCLUSIVE_CHECKS_REPORTED).max(60));
    let inconclusive_for = progress
        .inconclusive_since
        .zip(progress.updated)
        .map(|(since, last)| last.duration_since(since).as_secs());
    let warn_inconclusive = match inconclusive_for {
        Some(secs) if secs >= long && !run.warned => {
            run.warned = true;
            Some(format!(
                "every metric of revision {}'s analysis has been inconclusive for {secs}s: {}",
                run.revision,
                progress
                    .metrics
                    .iter()
                    .filter_map(|m| m.last.as_ref().map(|l| (m, l)))
                    .map(|(m, l)| match &l.check {
                        Check::Inconclusive(why) => format!("{}: {why}", m.name),
                        _ => m.name.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        }
        None => {
            run.warned = false;
            None
        }
        Some(_) => None,
    };
    let would_fail = progress
        .would_fail()
        .filter(|m| run.reported.insert(m.name.clone()))
        .map(|m| m.name.clone())
        .collect();
    Followed {
        unshown: run.shown.behind(&progress, run.spec.interval_seconds),
        progress,
        warn_inconclusive,
        would_fail,
    }
}

/// Checks the analysis every interval until it is ended (aborted).
async fn run(
    shared: Arc<Shared>,
    uid: Uid,
    revision: String,
    spec: AnalysisSpec,
    progress: Arc<Mutex<Progress>>,
) {
    let every = Duration::from_secs(u64::from(spec.interval_seconds.max(1)));
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + first_check(uid, every), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The previous revision's Pods are noted now, while they still serve: a rollout may be
    // over before the first check.
    let mut seen = SeenPods::default();
    if let Some(observed) = shared.cache.observe(uid) {
        seen.note(&observed);
        if let Some(report) = earlier(&shared, &observed, &revision).await {
            *progress.lock().unwrap_or_else(PoisonError::into_inner) =
                Progress::resume(&revision, &spec, &report);
            shared.triggers.send(uid);
        }
    }
    loop {
        tick.tick().await;
        if !*shared.leader.borrow() {
            continue;
        }
        let Some(observed) = shared.cache.observe(uid) else {
            return;
        };
        let Some(current) = observed.revisions.iter().find(|r| r.name == revision) else {
            return;
        };
        seen.note(&observed);
        let now = Timestamp::now();
        let observations = check(&shared, &spec, &observed, current, &seen, now).await;
        count(&shared.metrics, &observed, &spec, &observations);
        progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(observations, now);
        shared.triggers.send(uid);
    }
}

/// When the first check comes: after half an interval to one, by the workload, so analyses
/// started together (a controller starting, a release of many rollouts) spread their queries,
/// reconciles and writes over the interval instead of all at its start; and not sooner, as the
/// window needs data of the new Pods.
fn first_check(uid: Uid, every: Duration) -> Duration {
    let half = every / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    let offset = u64::try_from(uid % u128::from(spread)).unwrap_or(0);
    half + Duration::from_millis(offset)
}

/// Where an earlier leader (or this controller before a restart) left the analysis of
/// `revision`: its `analysis` mark. A mark that cannot be read is no standing: the analysis
/// starts over. A few reads at once at most: a thousand analyses starting together would
/// otherwise open as many connections to the API server, and keep them.
async fn earlier(shared: &Shared, observed: &Observed, revision: &str) -> Option<AnalysisReport> {
    let _permit = shared.reads.acquire().await.ok()?;
    let w = &observed.workload;
    let meta = match w.kind {
        WorkloadKind::Deployment => {
            Api::<SlimReplicaSet>::namespaced(shared.client.clone(), &w.namespace)
                .get(revision)
                .await
                .map(|o| o.metadata)
        }
        _ => Api::<SlimControllerRevision>::namespaced(shared.client.clone(), &w.namespace)
            .get(revision)
            .await
            .map(|o| o.metadata),
    };
    let key = mark(&shared.vocabulary, marks::ANALYSIS);
    let text = meta.ok()?.annotations?.remove(&key)?;
    serde_json::from_str(&text)
        .inspect_err(|error| {
            tracing::debug!(%error, revision, "the revision's analysis mark is unreadable; starting over");
        })
        .ok()
}

/// Every Pod name each revision has had while analysed, by its Pods' revision key.
#[derive(Default)]
struct SeenPods(HashMap<String, BTreeSet<String>>);

impl SeenPods {
    fn note(&mut self, observed: &Observed) {
        for pod in &observed.pods {
            self.0
                .entry(pod.revision.clone())
                .or_default()
                .insert(pod.name.clone());
        }
    }

    fn of(&self, revision: &Revision) -> Vec<String> {
        self.0
            .get(&revision.pod_key)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The value of `{{revision}}`: what the revision's Pods carry as their pod-template-hash (a
/// Deployment's ReplicaSet is named after it) or controller-revision-hash.
pub fn revision_label<'a>(observed: &Observed, revision: &'a Revision) -> &'a str {
    let w = &observed.workload;
    match w.kind {
        WorkloadKind::Deployment => revision
            .pod_key
            .strip_prefix(w.name.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .unwrap_or(&revision.pod_key),
        _ => &revision.pod_key,
    }
}

/// One measurement of a revision: what fills its queries in, and when they are evaluated.
struct Measured<'a> {
    subject: Subject<'a>,
    at: Timestamp,
}

/// One check of every metric.
async fn check(
    shared: &Shared,
    spec: &AnalysisSpec,
    observed: &Observed,
    current: &Revision,
    seen: &SeenPods,
    now: Timestamp,
) -> Vec<Observation> {
    let w = &observed.workload;
    let subject = |revision: &'_ Revision, pods: &'_ [String]| {
        let label = revision_label(observed, revision);
        (label.to_string(), pods.to_vec())
    };
    let (new_label, new_pods) = subject(current, &seen.of(current));
    let base = assess::target(observed, &shared.vocabulary);
    let base_owned = base.map(|b| subject(b, &seen.of(b)));
    // Beside the new Pods, the previous revision is measured over the same window; alone,
    // over the last window before the new revision was created.
    let concurrent = base.is_some_and(|b| {
        observed
            .pods
            .iter()
            .any(|p| p.revision == b.pod_key && p.ready && !p.terminating)
    });
    let base_at = if concurrent {
        now
    } else {
        current.created.filter(|c| *c < now).unwrap_or(now)
    };
    let new = Measured {
        subject: Subject {
            namespace: &w.namespace,
            name: &w.name,
            kind: w.kind.as_str(),
            revision: &new_label,
            pods: &new_pods,
            window_seconds: spec.window_seconds,
        },
        at: now,
    };
    let baseline = base_owned.as_ref().map(|(label, pods)| Measured {
        subject: Subject {
            namespace: &w.namespace,
            name: &w.name,
            kind: w.kind.as_str(),
            revision: label,
            pods,
            window_seconds: spec.window_seconds,
        },
        at: base_at,
    });
    let source = match shared.sources.get(&spec.provider.prometheus).await {
        Ok(source) => source,
        Err(why) => {
            return spec
                .metrics
                .iter()
                .map(|_| unmeasured(format!("the provider cannot be used: {why}")))
                .collect();
        }
    };
    join_all(spec.metrics.iter().map(|metric| {
        measure(
            source.as_ref(),
            metric,
            &new,
            baseline.as_ref(),
            concurrent,
            spec.no_data,
        )
    }))
    .await
}

fn unmeasured(why: String) -> Observation {
    Observation {
        check: Check::Inconclusive(why),
        new: None,
        baseline: None,
        query: String::new(),
        baseline_query: None,
    }
}

/// One check of one metric: its query for the new revision and, when the condition needs it or
/// the previous revision serves beside it, for the previous one.
async fn measure(
    source: &dyn MetricSource,
    metric: &MetricSpec,
    new: &Measured<'_>,
    baseline: Option<&Measured<'_>>,
    concurrent: bool,
    no_data: NoData,
) -> Observation {
    let query = match render(&metric.query, &new.subject) {
        Ok(q) => q,
        Err(why) => return unmeasured(format!("the query cannot be filled in: {why}")),
    };
    // A query that selects no revision (a Service's, an ingress's) measures both at once: its
    // baseline would be itself, and a failure "shared with the previous revision" always.
    let selects_revision = placeholders(&metric.query)
        .is_ok_and(|used| used.iter().any(|p| *p == "revision" || *p == "pods"));
    let concurrent = concurrent && selects_revision;
    let wants_baseline = selects_revision && (metric.condition.baseline.is_some() || concurrent);
    let baseline_query = baseline
        .filter(|_| wants_baseline)
        .and_then(|b| render(&metric.query, &b.subject).ok().map(|q| (q, b.at)));
    let (new_value, base_value) = futures::join!(source.value(&query, new.at), async {
        match &baseline_query {
            Some((q, at)) => Some(source.value(q, *at).await),
            None => None,
        }
    });
    let baseline_query = baseline_query.map(|(q, _)| q);
    let new_value = match new_value {
        Ok(v) => v,
        Err(error) => {
            return Observation {
                query,
                baseline_query,
                ..unmeasured(format!("the query failed: {error}"))
            };
        }
    };
    let base_value = match base_value {
        Some(Ok(v)) => v,
        Some(Err(error)) if metric.condition.baseline.is_some() => {
            return Observation {
                new: new_value,
                query,
                baseline_query,
                ..unmeasured(format!("the previous revision's query failed: {error}"))
            };
        }
        _ => None,
    };
    Observation {
        check: judge(
            &metric.condition,
            new_value,
            base_value,
            concurrent,
            no_data,
        ),
        new: new_value,
        baseline: base_value,
        query,
        baseline_query,
    }
}

/// Counts the checks by result and sets the values' gauges.
fn count(
    metrics: &Metrics,
    observed: &Observed,
    spec: &AnalysisSpec,
    observations: &[Observation],
) {
    for (metric, seen) in spec.metrics.iter().zip(observations) {
        let result = seen.check.result();
        metrics
            .analysis_checks
            .get_or_create(&CheckLabels {
                result: Label(result),
            })
            .inc();
        for (series, value) in [(Series::New, seen.new), (Series::Baseline, seen.baseline)] {
            if let Some(value) = value {
                metrics
                    .analysis_values
                    .get_or_create(&value_labels(observed, &metric.name, series))
                    .set(value);
            }
        }
    }
}

fn value_labels(observed: &Observed, metric: &str, series: Series) -> AnalysisValueLabels {
    AnalysisValueLabels {
        workload_namespace: observed.workload.namespace.clone(),
        workload: observed.workload.name.clone(),
        metric: metric.to_string(),
        series: Label(series),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use custody_crds::analysis::{Condition, MetricSpec};
    use futures::future::BoxFuture;

    use super::*;
    use crate::measure::prometheus::QueryError;

    /// Answers 0.3 to every query, and remembers them.
    #[derive(Default)]
    struct Everywhere(Mutex<Vec<String>>);

    impl MetricSource for Everywhere {
        fn value<'a>(
            &'a self,
            query: &'a str,
            _at: Timestamp,
        ) -> BoxFuture<'a, Result<crate::decide::analysis::Value, QueryError>> {
            self.0.lock().unwrap().push(query.to_string());
            Box::pin(async { Ok(Some(0.3)) })
        }
    }

    fn measured<'a>(revision: &'a str, pods: &'a [String]) -> Measured<'a> {
        Measured {
            subject: Subject {
                namespace: "shop",
                name: "web",
                kind: "Deployment",
                revision,
                pods,
                window_seconds: 60,
            },
            at: Timestamp::UNIX_EPOCH,
        }
    }

    fn above(query: &str) -> MetricSpec {
        MetricSpec {
            name: "errors".into(),
            query: query.into(),
            condition: Condition {
                above: Some(0.05),
                ..Condition::default()
            },
            dry_run: false,
        }
    }

    #[test]
    fn analyses_started_together_spread_their_first_checks() {
        let every = Duration::from_secs(10);
        let firsts: BTreeSet<Duration> = (0..1000u128)
            .map(|uid| first_check(uid * 7_919 + 13, every))
            .collect();
        assert!(firsts.iter().all(|d| *d >= every / 2 && *d < every));
        assert!(firsts.len() > 900, "spread, not bunched: {}", firsts.len());
    }

    fn progress(checks: &[Check]) -> Progress {
        let spec = AnalysisSpec {
            interval_seconds: 10,
            window_seconds: 60,
            failure_limit: 3,
            no_data: NoData::Inconclusive,
            provider: custody_crds::analysis::ProviderSpec {
                prometheus: custody_crds::analysis::PrometheusSpec {
                    address: "http://p:9090".into(),
                    ca_from: None,
                    headers_from: None,
                    timeout_seconds: 5,
                },
            },
            metrics: vec![above("{{pods}}")],
        };
        let mut p = Progress::new("web-2", &spec);
        for (i, c) in checks.iter().enumerate() {
            let seen = Observation {
                check: c.clone(),
                new: Some(0.01 * f64::from(u32::try_from(i).unwrap())),
                baseline: None,
                query: "q".into(),
                baseline_query: None,
            };
            p.record(
                vec![seen],
                Timestamp::from_second(i64::try_from(i).unwrap() * 10).unwrap(),
            );
        }
        p
    }

    #[test]
    fn the_mark_is_rewritten_when_the_standing_changes_or_a_minute_passed() {
        let fail = Check::Fail("x".into());
        let shown = Shown::of(&progress(&[Check::Pass]));
        assert!(!shown.behind(&progress(&[Check::Pass]), 10), "no new check");
        assert!(
            !shown.behind(&progress(&[Check::Pass, Check::Pass]), 10),
            "values only"
        );
        assert!(
            shown.behind(&progress(&[Check::Pass, fail.clone()]), 10),
            "a failure"
        );
        let gap = Check::Inconclusive("away".into());
        assert!(
            shown.behind(&progress(&[Check::Pass, gap]), 10),
            "inconclusive"
        );
        let seven = vec![Check::Pass; 7];
        assert!(shown.behind(&progress(&seven), 10), "a minute of values");
        let run = Shown::of(&progress(std::slice::from_ref(&fail)));
        assert!(
            run.behind(&progress(&[fail.clone(), fail]), 10),
            "the run grows"
        );
    }

    #[tokio::test]
    async fn a_service_wide_query_is_judged_on_its_own() {
        let (new_pods, old_pods) = (vec!["web-h2-a".to_string()], vec!["web-h1-a".to_string()]);
        let (new, old) = (measured("h2", &new_pods), measured("h1", &old_pods));
        // An ingress's error ratio selects no revision: both would read the same 0.3, and the
        // previous revision "crossing it too" would excuse every failure during a rollout.
        let source = Everywhere::default();
        let service = above(r#"sum(rate(ingress_errors{namespace="{{namespace}}"}[{{window}}]))"#);
        let seen = measure(
            &source,
            &service,
            &new,
            Some(&old),
            true,
            NoData::Inconclusive,
        )
        .await;
        assert!(matches!(seen.check, Check::Fail(_)), "{seen:?}");
        assert_eq!(seen.baseline_query, None);
        assert_eq!(source.0.lock().unwrap().len(), 1, "no baseline query sent");
        // The same threshold on a per-revision query is excused when both revisions cross it.
        let source = Everywhere::default();
        let per_revision = above(r#"sum(rate(errors{revision="{{revision}}"}[{{window}}]))"#);
        let seen = measure(
            &source,
            &per_revision,
            &new,
            Some(&old),
            true,
            NoData::Inconclusive,
        )
        .await;
        assert!(matches!(seen.check, Check::Inconclusive(_)), "{seen:?}");
        assert_eq!(
            *source.0.lock().unwrap(),
            [
                r#"sum(rate(errors{revision="h2"}[60s]))"#,
                r#"sum(rate(errors{revision="h1"}[60s]))"#
            ]
        );
    }
}
