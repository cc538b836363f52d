//! The webhook's metrics. Labels are fixed strings (kind, operation, decision, mode), never
//! object names, so their cardinality is bounded; the two agent labels are ids, and their
//! comments say what bounds them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use custody_engine::Decision;

/// Labels of one admission request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `policy`, `record` or `change` for those endpoints, else the workload kind or `other`.
    pub kind: &'static str,
    /// CREATE, UPDATE, DELETE, CONNECT, or `unknown` for an undecodable body.
    pub operation: &'static str,
    /// The outcome label.
    pub decision: &'static str,
    /// The strictest mode of the selecting policies, or `none`.
    pub mode: &'static str,
}

/// Labels of one violation found: its stable code and the mode of the policy that found it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    /// The violation code (`MissingAnnotation`, `Quarantined`, ...).
    pub code: &'static str,
    /// The policy's mode: `Enforce` denies, `Warn` warns, `Audit` records.
    pub mode: &'static str,
}

/// Labels of one cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `custodypolicies`, `namespaces`, `rollbackrecords`, `custodyteams`, `custodyagents` or
    /// `custodychanges`.
    pub cache: &'static str,
}

/// Labels of an agent on probation.
///
/// Both are ids, not fixed strings, and still bounded: the family is cleared and rebuilt from
/// the RollbackRecords on every refresh, so it holds only the agents that have reverts recorded
/// inside a policy's probation window, one series per agent and scope at most.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbationLabels {
    /// The agent id.
    pub agent: String,
    /// `namespace/<name>`, `team/<name>` or `cluster`.
    pub scope: String,
}

/// Labels of a budget denial.
///
/// `agent` is an id taken from the denied request; it is bounded because a budget only denies an
/// agent that already has rollouts in flight or revisions recorded under that name (from the
/// controller's published summaries and the records), so a name nobody has deployed with never
/// gets a series. Dry runs are not counted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The agent id.
    pub agent: String,
    /// `inFlight` or `revisions`.
    pub limit: &'static str,
}

/// Labels of an admission counted by workload kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The workload kind (`Deployment`, ...), or `other`.
    pub kind: &'static str,
}

/// Every metric the webhook exports.
#[derive(Clone)]
pub struct Metrics {
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Violations found in answered requests, by code and mode.
    pub violations: Family<ViolationLabels, Counter>,
    /// Seconds from body received to answer encoded.
    pub latency: Histogram,
    /// Bodies rejected before decoding (too large, unreadable, malformed).
    pub rejected: Family<RejectLabels, Counter>,
    /// Handler panics turned into 500s.
    pub panics: Counter,
    /// Valid policies in force.
    pub policies_loaded: Gauge,
    /// Policies left out because they are invalid.
    pub policies_invalid: Gauge,
    /// Valid CustodyTeams registered.
    pub teams_loaded: Gauge,
    /// 1 for each agent on probation, by scope.
    pub agent_probation: Family<ProbationLabels, Gauge>,
    /// Requests denied by an agent budget (not dry runs), by agent and budget.
    pub agent_limit_denials: Family<LimitLabels, Counter>,
    /// Agents' new revisions admitted by an approved change request (not dry runs), by kind.
    pub approved_changes_admitted: Family<KindLabels, Counter>,
    /// Agents' new revisions denied for want of an approved change request (not dry runs), by
    /// kind. The agent is not a label: any agent name can be denied, so it would be unbounded.
    pub approval_required_denials: Family<KindLabels, Counter>,
    /// CustodyChanges in the cache.
    pub change_requests_loaded: Gauge,
    /// Workloads with quarantined templates.
    pub quarantined_workloads: Gauge,
    /// 1 once a cache has synced.
    pub cache_synced: Family<CacheLabels, Gauge>,
    /// Watch errors by cache.
    pub watch_errors: Family<CacheLabels, Counter>,
    /// Seconds until the serving certificate expires.
    pub certificate_expiry_seconds: Gauge,
    /// Certificate reloads that failed (the previous certificate stays in use).
    pub certificate_reload_errors: Counter,
}

/// Why a body was rejected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `too_large`, `unreadable` or `malformed`.
    pub reason: &'static str,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            violations: Family::default(),
            // 50 µs to ~1.6 s: evaluation is microseconds; the tail shows scheduling and I/O.
            latency: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.000_05, 2.0, 16,
            )),
            rejected: Family::default(),
            panics: Counter::default(),
            policies_loaded: Gauge::default(),
            policies_invalid: Gauge::default(),
            teams_loaded: Gauge::default(),
            agent_probation: Family::default(),
            agent_limit_denials: Family::default(),
            approved_changes_admitted: Family::default(),
            approval_required_denials: Family::default(),
            change_requests_loaded: Gauge::default(),
            quarantined_workloads: Gauge::default(),
            cache_synced: Family::default(),
            watch_errors: Family::default(),
            certificate_expiry_seconds: Gauge::default(),
            certificate_reload_errors: Counter::default(),
        };
        registry.register(
            "admission_requests",
            "Admission requests answered, by kind, operation, decision and mode",
            m.requests.clone(),
        );
        registry.register(
            "admission_violations",
            "Violations found in answered admission requests, by code and the finding policy's mode",
            m.violations.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to decode, evaluate and encode one admission request",
            m.latency.clone(),
        );
        registry.register(
            "admission_rejected_bodies",
            "Request bodies rejected before evaluation, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "admission_panics",
            "Handler panics answered with a 500",
            m.panics.clone(),
        );
        registry.register(
            "policies_loaded",
            "Valid CustodyPolicies in force",
            m.policies_loaded.clone(),
        );
        registry.register(
            "policies_invalid",
            "CustodyPolicies left out because they are invalid",
            m.policies_invalid.clone(),
        );
        registry.register(
            "agent_limit_denials",
            "Requests denied by an agent's blast-radius budget (dry runs not counted)",
            m.agent_limit_denials.clone(),
        );
        registry.register(
            "agent_probation",
            "1 for each agent on probation after repeated reverts, by scope",
            m.agent_probation.clone(),
        );
        registry.register(
            "teams_loaded",
            "Valid CustodyTeams registered",
            m.teams_loaded.clone(),
        );
        registry.register(
            "approved_changes_admitted",
            "Agents' new revisions admitted by an approved CustodyChange, by kind (dry runs not counted)",
            m.approved_changes_admitted.clone(),
        );
        registry.register(
            "approval_required_denials",
            "Agents' new revisions denied for want of an approved CustodyChange, by kind (dry runs not counted)",
            m.approval_required_denials.clone(),
        );
        registry.register(
            "change_requests_loaded",
            "CustodyChanges (change requests) the webhook knows",
            m.change_requests_loaded.clone(),
        );
        registry.register(
            "quarantined_workloads",
            "Workloads with a quarantined pod template",
            m.quarantined_workloads.clone(),
        );
        registry.register(
            "cache_synced",
            "1 once the cache has completed its initial list",
            m.cache_synced.clone(),
        );
        registry.register(
            "watch_errors",
            "Watch errors, by cache (the watch retries with backoff)",
            m.watch_errors.clone(),
        );
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until the serving certificate expires",
            m.certificate_expiry_seconds.clone(),
        );
        registry.register(
            "certificate_reload_errors",
            "Certificate reloads that failed; the previous certificate stays in use",
            m.certificate_reload_errors.clone(),
        );
        m
    }

    /// Records one answered request.
    pub fn observe(
        &self,
        kind: &'static str,
        operation: &'static str,
        decision: &Decision,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                kind,
                operation,
                decision: decision.outcome.as_str(),
                mode: decision.mode.map_or("none", |m| m.as_str()),
            })
            .inc();
        for v in &decision.violations {
            self.violations
                .get_or_create(&ViolationLabels {
                    code: v.code.as_str(),
                    mode: v.mode.as_str(),
                })
                .inc();
        }
        self.latency.observe(seconds);
    }

    /// Records a rejected body.
    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&RejectLabels { reason }).inc();
    }
}
