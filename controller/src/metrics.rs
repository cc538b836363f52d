//! The controller's metrics; labels are fixed strings.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A signal reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The SignalReason.
    pub reason: &'static str,
}

/// An error label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error variant.
    pub error: &'static str,
}

/// A workload kind and why a regression was not attributed to its revision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotAttributedLabels {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: &'static str,
    /// The [`Excuse`](crate::attribution::Excuse) label.
    pub reason: &'static str,
}

/// Every metric the controller exports.
#[derive(Clone)]
pub struct Metrics {
    /// Reverts written, by reason.
    pub reverts: Family<ReasonLabels, Counter>,
    /// Alerts raised (including dry-run reverts), by reason.
    pub alerts: Family<ReasonLabels, Counter>,
    /// Readiness failures held against no revision, by kind and why, once per situation.
    pub not_attributed: Family<NotAttributedLabels, Counter>,
    /// Seconds from the confirmed regression to the revert written.
    pub regression_to_revert: Histogram,
    /// Deployments in the cache.
    pub watched_workloads: Gauge,
    /// Reconcile errors by variant.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Notifications that failed after every retry.
    pub notification_failures: Counter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reverts: Family::default(),
            alerts: Family::default(),
            not_attributed: Family::default(),
            // 10 ms to ~80 s.
            regression_to_revert: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 14),
            ),
            watched_workloads: Gauge::default(),
            reconcile_errors: Family::default(),
            leader: Gauge::default(),
            notification_failures: Counter::default(),
        };
        registry.register("reverts", "Reverts written, by reason", m.reverts.clone());
        registry.register(
            "alerts",
            "Regressions reported without a revert, by reason",
            m.alerts.clone(),
        );
        registry.register(
            "regressions_not_attributed",
            "Readiness failures not attributed to the revision (a Node down, an eviction, a deletion, or the previous revision failing alike), by kind and reason, once per situation",
            m.not_attributed.clone(),
        );
        registry.register(
            "regression_to_revert_seconds",
            "Seconds from the confirmed regression to the revert written",
            m.regression_to_revert.clone(),
        );
        registry.register(
            "watched_workloads",
            "Deployments watched",
            m.watched_workloads.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors, by error",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            m.leader.clone(),
        );
        registry.register(
            "notification_failures",
            "Notifications that failed after every retry",
            m.notification_failures.clone(),
        );
        m
    }
}
