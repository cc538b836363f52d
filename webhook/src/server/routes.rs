//! The admission endpoints: decode, judge, encode. Nothing here blocks or awaits once the body
//! is in: evaluation is pure and reads lock-free snapshots of the live state.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custody_crds::{FailurePolicy, Vocabulary, WorkloadKind};

use super::metrics::Metrics;
use super::state::LiveState;
use crate::review::{self, AdmissionRequest};
use custody_engine::{
    ChangeReview, Context, Decision, ViolationCode, evaluate, validate_change, validate_policy,
    validate_record,
};

/// What the handlers share.
pub struct AppState {
    /// The cluster's policies, quarantine and namespaces.
    pub live: Arc<LiveState>,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Metrics.
    pub metrics: Metrics,
    /// What to answer before the caches have synced.
    pub failure_before_sync: FailurePolicy,
    /// The largest body accepted, for the 413 message.
    pub max_body_bytes: usize,
    /// Attestations already verified, by envelope digest.
    pub attestations: custody_engine::attest::AttestationCache,
    /// Custody's controller's user names: the only writers of a CustodyChange's phase and
    /// `applied` (`--controller-user`).
    pub controller_users: Vec<String>,
}

/// `POST /validate`: workloads.
pub async fn validate(
    State(app): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&app, body, |request| judge_workload(&app, request))
}

/// `POST /validate-policy`: CustodyPolicy and CustodyTeam objects.
pub async fn validate_policy_route(
    State(app): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&app, body, |request| (validate_policy(request), "policy"))
}

/// `POST /validate-record`: lifts of RollbackRecords (their status), by a person only.
pub async fn validate_record_route(
    State(app): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&app, body, |request| {
        if !app.live.is_synced() {
            // Whether the requester is an agent identity depends on the policies.
            return (
                Decision::unavailable(
                    FailurePolicy::Fail,
                    "Custody's policy caches have not synced yet",
                ),
                "record",
            );
        }
        (validate_record(request, &app.live.policies()), "record")
    })
}

/// `POST /validate-change`: CustodyChanges: proposals, and approvals and rejections (their
/// status) by people.
pub async fn validate_change_route(
    State(app): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    answer(&app, body, |request| {
        (judge_change(&app, request), "change")
    })
}

fn judge_change(app: &AppState, request: &AdmissionRequest<'_>) -> Decision {
    let live = &app.live;
    if !live.is_synced() {
        // Which policy protects the change, and who may approve it, depend on the caches.
        return Decision::unavailable(
            FailurePolicy::Fail,
            "Custody's policy caches have not synced yet",
        );
    }
    let policies = live.policies();
    let teams = live.teams();
    let namespace = request
        .namespace
        .as_deref()
        .and_then(|ns| live.namespace(ns));
    let review = ChangeReview {
        policies: &policies,
        teams: &teams,
        namespace_labels: namespace.as_ref().and_then(|n| n.metadata.labels.as_ref()),
        now: k8s_openapi::jiff::Timestamp::now(),
        controller: &app.controller_users,
    };
    let decision = validate_change(request, &review);
    log_change_decision(request, &decision);
    decision
}

/// An approval or a rejection that was admitted, for the log (denials are logged with the rest).
fn log_change_decision(request: &AdmissionRequest<'_>, decision: &Decision) {
    let found = [
        ("change-approved", "approved"),
        ("change-rejected", "rejected"),
    ]
    .into_iter()
    .find_map(|(key, verdict)| Some((verdict, decision.audit_annotations.get(key)?)));
    let Some((verdict, detail)) = found else {
        return;
    };
    tracing::info!(
        uid = %request.uid,
        user = %request.user_info.username,
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = request.name.as_deref().unwrap_or_default(),
        dry_run = request.dry_run,
        verdict,
        detail = %detail,
        "change request decided"
    );
}

fn judge_workload(app: &AppState, request: &AdmissionRequest<'_>) -> (Decision, &'static str) {
    let kind = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind)
        .map_or("other", WorkloadKind::as_str);
    let live = &app.live;
    let policies = live.policies();
    let quarantine = live.quarantine();
    let teams = live.teams();
    let activity = live.activity();
    let changes = live.changes();
    let namespace = request
        .namespace
        .as_deref()
        .and_then(|ns| live.namespace(ns));
    let ctx = Context {
        vocabulary: &app.vocabulary,
        namespace_labels: namespace.as_ref().and_then(|n| n.metadata.labels.as_ref()),
        quarantine: &quarantine,
        now: k8s_openapi::jiff::Timestamp::now(),
        attestations: &app.attestations,
        teams: &teams,
        background: false,
        activity: &activity,
        changes: &changes,
    };
    if !live.is_synced() {
        // Policies may not be known yet; the flag says what the operator wants meanwhile.
        return (
            Decision::unavailable(
                app.failure_before_sync,
                "Custody's policy caches have not synced yet",
            ),
            kind,
        );
    }
    let decision = evaluate(&policies, request, &ctx);
    if !request.dry_run {
        count_limit_denials(app, &decision);
        count_approvals(app, &decision, kind);
    }
    (decision, kind)
}

/// Revisions admitted by an approved change (the engine's `approved-change` audit annotation),
/// and revisions denied for want of one.
fn count_approvals(app: &AppState, decision: &Decision, kind: &'static str) {
    let labels = super::metrics::KindLabels { kind };
    if decision.allowed && decision.audit_annotations.contains_key(APPROVED_CHANGE) {
        app.metrics
            .approved_changes_admitted
            .get_or_create(&labels)
            .inc();
    }
    let required = decision
        .violations
        .iter()
        .any(|v| v.blocks() && v.code == ViolationCode::ApprovalRequired);
    if !decision.allowed && required {
        app.metrics
            .approval_required_denials
            .get_or_create(&labels)
            .inc();
    }
}

/// The audit annotation the engine sets on a revision an approved change admitted.
const APPROVED_CHANGE: &str = "approved-change";

fn count_limit_denials(app: &AppState, decision: &Decision) {
    for v in decision.violations.iter().filter(|v| v.blocks()) {
        let limit = match v.code {
            ViolationCode::RolloutLimit => "inFlight",
            ViolationCode::RevisionLimit => "revisions",
            _ => continue,
        };
        app.metrics
            .agent_limit_denials
            .get_or_create(&super::metrics::LimitLabels {
                agent: v.value.clone().unwrap_or_default(),
                limit,
            })
            .inc();
    }
}

fn answer(
    app: &AppState,
    body: Result<Bytes, BytesRejection>,
    judge: impl FnOnce(&AdmissionRequest<'_>) -> (Decision, &'static str),
) -> Response {
    let started = Instant::now();
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_rejected(app, &rejection),
    };
    let request = match review::decode(&body) {
        Ok(request) => request,
        Err(error) => {
            app.metrics.reject("malformed");
            tracing::warn!(%error, "malformed AdmissionReview");
            return plain(StatusCode::BAD_REQUEST, format!("{error}\n"));
        }
    };
    let (decision, kind) = judge(&request);
    let encoded = review::encode(&request.uid, &decision);
    app.metrics.observe(
        kind,
        request.operation.as_str(),
        &decision,
        started.elapsed().as_secs_f64(),
    );
    log_decision(&request, &decision);
    ([(header::CONTENT_TYPE, "application/json")], encoded).into_response()
}

fn log_decision(request: &AdmissionRequest<'_>, decision: &Decision) {
    if decision.allowed && decision.warnings.is_empty() {
        return;
    }
    let codes: Vec<&str> = decision
        .violations
        .iter()
        .map(|v| v.code.as_str())
        .collect();
    let fields: Vec<&str> = decision
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    let object = request
        .object
        .as_ref()
        .map(|o| o.display_name())
        .or_else(|| request.name.clone())
        .unwrap_or_default();
    if decision.allowed {
        tracing::info!(
            uid = %request.uid,
            user = %request.user_info.username,
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = %object,
            outcome = decision.outcome.as_str(),
            violations = ?codes,
            fields = ?fields,
            "admitted with warnings"
        );
    } else {
        tracing::info!(
            uid = %request.uid,
            user = %request.user_info.username,
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or_default(),
            name = %object,
            dry_run = request.dry_run,
            outcome = decision.outcome.as_str(),
            violations = ?codes,
            fields = ?fields,
            "denied"
        );
    }
}

fn body_rejected(app: &AppState, rejection: &BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        app.metrics.reject("too_large");
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the AdmissionReview is larger than the webhook accepts ({} bytes, --max-body-bytes)\n",
                app.max_body_bytes
            ),
        );
    }
    app.metrics.reject("unreadable");
    plain(
        rejection.status(),
        format!("cannot read the request body: {rejection}\n"),
    )
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
