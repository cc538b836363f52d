//! The controller's metrics. A label is either one of a fixed set, typed as the enum it comes
//! from ([`Label`]), or an id whose field says why its count stays bounded.

use std::fmt::Write as _;

use std::sync::atomic::AtomicU64;

use custody_crds::analysis::CheckResult;
use custody_crds::report::ResultStatus;
use custody_crds::{ChangePhase, SignalReason, WorkloadKind};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decide::attribution::Excuse;

/// A value from a fixed set, as it goes on the wire.
pub trait Fixed: Clone + Copy + std::fmt::Debug + std::hash::Hash + Eq {
    /// The label value.
    fn label(self) -> &'static str;
}

impl Fixed for WorkloadKind {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for SignalReason {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for Excuse {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for ResultStatus {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for ChangePhase {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for CheckResult {
    fn label(self) -> &'static str {
        match self {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "fail",
            CheckResult::Inconclusive => "inconclusive",
        }
    }
}

/// Which revision a metric's value was measured on.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Series {
    /// The revision under analysis.
    New,
    /// The previous revision, its baseline.
    Baseline,
}

impl Fixed for Series {
    fn label(self) -> &'static str {
        match self {
            Series::New => "new",
            Series::Baseline => "baseline",
        }
    }
}

/// What became of a policy report write.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReportWrite {
    /// Created or replaced.
    Written,
    /// Already as it should be.
    Unchanged,
    /// No longer needed, deleted.
    Deleted,
    /// The API server refused or failed it.
    Failed,
}

impl Fixed for ReportWrite {
    fn label(self) -> &'static str {
        match self {
            ReportWrite::Written => "written",
            ReportWrite::Unchanged => "unchanged",
            ReportWrite::Deleted => "deleted",
            ReportWrite::Failed => "failed",
        }
    }
}

/// A label value typed as the enum it comes from, so only its variants can be counted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Label<T>(pub T);

impl<T: Fixed> EncodeLabelValue for Label<T> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.label())
    }
}

/// A signal reason label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The SignalReason.
    pub reason: Label<SignalReason>,
}

/// An agent and the scope a count is about. Both are ids, not a fixed set: the dashboards ask
/// which agent is near its budget, and where. They stay bounded: the family is cleared and
/// rebuilt at each publication with only the agents that have rollouts in flight, each with
/// the namespaces of those rollouts, at most [`MAX_LISTED`](crate::act::agent_activity::MAX_LISTED)
/// per agent; an agent with nothing in flight has no series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentScopeLabels {
    /// The agent id: one per agent with rollouts in flight.
    pub agent: String,
    /// `namespace/<name>`: a namespace where that agent has a rollout in flight.
    pub scope: String,
}

/// An error label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error variant.
    pub error: Label<ReconcileError>,
}

/// The variant of a reconcile error ([`crate::act::Error::label`]), as a label: the variant
/// names are the values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReconcileError {
    /// The workload changed since the decision.
    Conflict,
    /// The API server refused or failed a request.
    Api,
    /// A patch could not be built.
    Encode,
    /// A signed revision's attestation could not be read.
    AttestationUnreadable,
}

impl Fixed for ReconcileError {
    fn label(self) -> &'static str {
        match self {
            ReconcileError::Conflict => "Conflict",
            ReconcileError::Api => "Api",
            ReconcileError::Encode => "Encode",
            ReconcileError::AttestationUnreadable => "AttestationUnreadable",
        }
    }
}

/// A workload kind and why a regression was not attributed to its revision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotAttributedLabels {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: Label<WorkloadKind>,
    /// Why.
    pub reason: Label<Excuse>,
}

/// A workload kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: Label<WorkloadKind>,
}

/// A policy and a result of the background audit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditResultLabels {
    /// The CustodyPolicy's name: an id, since the dashboards ask which policy fails. Bounded by
    /// the CustodyPolicies installed (a handful to tens, written by administrators); a deleted
    /// policy's series goes at the next audit.
    pub policy: String,
    /// pass, fail, warn, error or skip.
    pub result: Label<ResultStatus>,
}

/// A namespace of workloads. Not `namespace`: Prometheus sets that label to the scraped pod's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// Its name: an id, since the dashboards ask where workloads fail. Bounded by the cluster's
    /// namespaces, and only those with a failing workload have a series (cleared at each audit).
    pub workload_namespace: String,
}

/// What became of a report.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReportWriteLabels {
    /// written, unchanged, deleted or failed.
    pub outcome: Label<ReportWrite>,
}

/// What became of one send to one target.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SendResult {
    /// The target accepted it.
    Sent,
    /// Every attempt failed, or the target could not be prepared (a missing Secret).
    Failed,
    /// Not tried: the target's circuit is open.
    CircuitOpen,
}

impl Fixed for SendResult {
    fn label(self) -> &'static str {
        match self {
            SendResult::Sent => "sent",
            SendResult::Failed => "failed",
            SendResult::CircuitOpen => "circuit_open",
        }
    }
}

impl Fixed for custody_crds::NotifyFormat {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

impl Fixed for custody_crds::NoticeKind {
    fn label(self) -> &'static str {
        self.as_str()
    }
}

/// One send to one notification target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The target: whose it is and a digest of where (`team/web/3f9a1c2e`), bounded by the
    /// targets teams and policies list.
    pub target: String,
    /// Its format.
    pub format: Label<custody_crds::NotifyFormat>,
    /// The notice's kind.
    pub kind: Label<custody_crds::NoticeKind>,
    /// sent, failed or circuit_open.
    pub result: Label<SendResult>,
}

/// One notification target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// The target, as in [`NotificationLabels`].
    pub target: String,
    /// Its format.
    pub format: Label<custody_crds::NotifyFormat>,
}

/// Where change requests stand.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChangeStateLabels {
    /// Pending, Approved, Rejected, Applied or Expired.
    pub state: Label<ChangePhase>,
}

/// A check's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    /// pass, fail or inconclusive.
    pub result: Label<CheckResult>,
}

/// One metric of one analysis in progress.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisValueLabels {
    /// The workload's namespace: an id, bounded by the analyses in progress (each series goes
    /// when its analysis ends).
    pub workload_namespace: String,
    /// The workload's name, likewise bounded.
    pub workload: String,
    /// The metric's name in the policy.
    pub metric: String,
    /// new or baseline.
    pub series: Label<Series>,
}

/// Every metric the controller exports.
#[derive(Clone)]
pub struct Metrics {
    /// Agents' rollouts in flight, by agent and scope (`namespace/<name>`), as last published.
    pub agent_rollouts_in_flight: Family<AgentScopeLabels, Gauge>,
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
    /// Sends to notification targets (a notice, a resolution or a refresh), by target, format,
    /// kind and result.
    pub notifications: Family<NotificationLabels, Counter>,
    /// 1 while a target's circuit is open (its sends skipped), by target and format.
    pub notification_circuit_open: Family<TargetLabels, Gauge>,
    /// Break-glass revisions announced, by kind.
    pub break_glass: Family<KindLabels, Counter>,
    /// Results of the last background audit, by policy and result.
    pub audit_results: Family<AuditResultLabels, Gauge>,
    /// Workloads failing an Enforce or Audit policy in the last audit, by namespace (namespaces
    /// with none are absent).
    pub audit_failing_workloads: Family<NamespaceLabels, Gauge>,
    /// Background audits run.
    pub audit_runs: Counter,
    /// Milliseconds the last audit took to judge (writes not included).
    pub audit_duration_ms: Gauge,
    /// Report writes, by outcome.
    pub audit_report_writes: Family<ReportWriteLabels, Counter>,
    /// Signed revisions whose attestation could not be read when a decision needed it, by
    /// kind (the revision's actor is then not believed).
    pub attestation_read_failures: Family<KindLabels, Counter>,
    /// Metric checks run, by result.
    pub analysis_checks: Family<CheckLabels, Counter>,
    /// Analyses in progress.
    pub analyses_running: Gauge,
    /// The last value of each metric of each analysis in progress.
    pub analysis_values: Family<AnalysisValueLabels, Gauge<f64, AtomicU64>>,
    /// Dry-run metrics whose failures would have confirmed a regression.
    pub analysis_dry_run_failures: Counter,
    /// Agents' rollouts held after their first step, by kind.
    pub rollouts_held: Family<KindLabels, Counter>,
    /// Held rollouts the controller resumed, by kind.
    pub rollouts_resumed: Family<KindLabels, Counter>,
    /// Change requests by phase, as the leader last looked at them.
    pub changes: Family<ChangeStateLabels, Gauge>,
    /// Seconds from a change request's proposal to the approval that made its quorum.
    pub change_approval_seconds: Histogram,
    /// Approved changes seen running (their approval spent).
    pub changes_applied: Counter,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            agent_rollouts_in_flight: Family::default(),
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
            notifications: Family::default(),
            notification_circuit_open: Family::default(),
            break_glass: Family::default(),
            audit_results: Family::default(),
            audit_failing_workloads: Family::default(),
            audit_runs: Counter::default(),
            audit_duration_ms: Gauge::default(),
            audit_report_writes: Family::default(),
            attestation_read_failures: Family::default(),
            analysis_checks: Family::default(),
            analyses_running: Gauge::default(),
            analysis_values: Family::default(),
            analysis_dry_run_failures: Counter::default(),
            rollouts_held: Family::default(),
            rollouts_resumed: Family::default(),
            changes: Family::default(),
            // 30 s to ~11 days: people answer in minutes to days.
            change_approval_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(30.0, 2.0, 16),
            ),
            changes_applied: Counter::default(),
        };
        registry.register("reverts", "Reverts written, by reason", m.reverts.clone());
        registry.register(
            "agent_rollouts_in_flight",
            "Agents' rollouts admitted and not yet marked healthy nor reverted, by agent and scope, as the leader last published them",
            m.agent_rollouts_in_flight.clone(),
        );
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
            "notifications",
            "Sends to notification targets (notices, resolutions, Alertmanager refreshes), by target, format, kind and result (sent, failed after every retry, or circuit_open)",
            m.notifications.clone(),
        );
        registry.register(
            "notification_circuit_open",
            "1 while a notification target's circuit is open: after repeated failures its sends wait, by target and format",
            m.notification_circuit_open.clone(),
        );
        registry.register(
            "break_glass",
            "Break-glass revisions (shipped with the break-glass annotation) announced, by kind",
            m.break_glass.clone(),
        );
        registry.register(
            "audit_results",
            "Results of the last background audit, by policy and result (pass, fail, warn, skip)",
            m.audit_results.clone(),
        );
        registry.register(
            "audit_failing_workloads",
            "Workloads that fail a policy in the last background audit, by namespace",
            m.audit_failing_workloads.clone(),
        );
        registry.register("audit_runs", "Background audits run", m.audit_runs.clone());
        registry.register(
            "audit_duration_milliseconds",
            "Milliseconds the last background audit took to judge every workload",
            m.audit_duration_ms.clone(),
        );
        registry.register(
            "audit_report_writes",
            "Policy report writes, by outcome (written, unchanged, deleted, failed)",
            m.audit_report_writes.clone(),
        );
        registry.register(
            "attestation_read_failures",
            "Signed revisions whose attestation could not be read from the API server when a decision needed it (their actor is then not believed), by kind",
            m.attestation_read_failures.clone(),
        );
        m.register_analysis(registry);
        m.register_changes(registry);
        m
    }

    /// Registers the change requests' metrics.
    fn register_changes(&self, registry: &mut Registry) {
        registry.register(
            "changes",
            "CustodyChange requests by phase (Pending, Approved, Rejected, Applied, Expired), as the leader last looked at them",
            self.changes.clone(),
        );
        registry.register(
            "change_approval_seconds",
            "Seconds from a CustodyChange's proposal to the approval that completed its quorum, once per request",
            self.change_approval_seconds.clone(),
        );
        registry.register(
            "changes_applied",
            "Approved CustodyChanges seen running, their approval spent",
            self.changes_applied.clone(),
        );
    }

    /// Registers the metric analysis's and the guarded first step's metrics.
    fn register_analysis(&self, registry: &mut Registry) {
        registry.register(
            "analysis_checks",
            "Metric analysis checks run, by result (pass, fail, inconclusive: no data or the provider could not answer)",
            self.analysis_checks.clone(),
        );
        registry.register(
            "analyses_running",
            "Revisions under metric analysis",
            self.analyses_running.clone(),
        );
        registry.register(
            "analysis_value",
            "The last value of each metric of each analysis in progress, for the new revision and its baseline",
            self.analysis_values.clone(),
        );
        registry.register(
            "analysis_dry_run_failures",
            "Dry-run metrics whose consecutive failures would have confirmed a regression",
            self.analysis_dry_run_failures.clone(),
        );
        registry.register(
            "rollouts_held",
            "Agents' rollouts held after their first step (spec.agents.canary), by kind",
            self.rollouts_held.clone(),
        );
        registry.register(
            "rollouts_resumed",
            "Held rollouts the controller resumed after their first step passed, by kind",
            self.rollouts_resumed.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn typed_labels_go_on_the_wire_as_the_dashboards_read_them() {
        let mut registry = Registry::with_prefix("custody");
        let m = Metrics::register(&mut registry);
        m.reverts
            .get_or_create(&ReasonLabels {
                reason: Label(SignalReason::NotReady),
            })
            .inc();
        m.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: Label(ReconcileError::AttestationUnreadable),
            })
            .inc();
        m.not_attributed
            .get_or_create(&NotAttributedLabels {
                kind: Label(WorkloadKind::StatefulSet),
                reason: Label(Excuse::SharedWithPreviousRevision),
            })
            .inc();
        m.break_glass
            .get_or_create(&KindLabels {
                kind: Label(WorkloadKind::DaemonSet),
            })
            .inc();
        m.changes
            .get_or_create(&ChangeStateLabels {
                state: Label(ChangePhase::Approved),
            })
            .set(2);
        m.changes_applied.inc();
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        for line in [
            r#"custody_changes{state="Approved"} 2"#,
            "custody_changes_applied_total 1",
            r#"custody_reverts_total{reason="NotReady"} 1"#,
            r#"custody_reconcile_errors_total{error="AttestationUnreadable"} 1"#,
            r#"custody_regressions_not_attributed_total{kind="StatefulSet",reason="shared_with_previous_revision"} 1"#,
            r#"custody_break_glass_total{kind="DaemonSet"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
