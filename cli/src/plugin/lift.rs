//! `kubectl custody lift`: what lifting a record's quarantine (or, with `--probation`, its
//! agent's probation) writes, decided before anything is sent. The webhook judges the write again (a person, under their own name, with a reason);
//! deciding here too gives the on-call engineer the reason without a round trip, and makes a
//! second run harmless.

use custody_crds::{Lift, RecordAction, RollbackRecord, WorkloadKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use serde_json::{Value, json};

use custody_engine::MIN_REASON_CHARS;

/// Why a record cannot be lifted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LiftError {
    /// The record is an alert or a dry run: nothing is quarantined.
    #[error(
        "RollbackRecord {record} is {action:?}, not Reverted: it quarantines nothing (list the reverts with `kubectl custody records`)"
    )]
    NothingToLift {
        /// The record.
        record: String,
        /// Its action.
        action: RecordAction,
    },
    /// The reason says too little.
    #[error(
        "--reason must say why, in at least {MIN_REASON_CHARS} characters (e.g. \"root cause fixed in ConfigMap web-config\", or for a probation \"reviewed the agent's last changes with its owner\")"
    )]
    ReasonTooShort,
}

/// What a lift ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum LiftKind {
    /// The quarantine of the record's reverted template (`status.lifted`).
    #[default]
    Quarantine,
    /// The probation of the record's agent (`status.probationLifted`): this revert and the
    /// agent's earlier ones in the policy's scope stop counting.
    Probation,
}

impl LiftKind {
    /// The status field written.
    pub const fn field(self) -> &'static str {
        match self {
            LiftKind::Quarantine => "lifted",
            LiftKind::Probation => "probationLifted",
        }
    }

    /// The Event's reason.
    pub const fn event_reason(self) -> &'static str {
        match self {
            LiftKind::Quarantine => "QuarantineLifted",
            LiftKind::Probation => "ProbationLifted",
        }
    }
}

/// What `lift` reports, for text and JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiftReport {
    /// The record.
    pub record: String,
    /// Its namespace.
    pub namespace: String,
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub workload: String,
    /// The reverted revision.
    pub revision: String,
    /// The template that may now be applied again.
    pub template_fingerprint: String,
    /// What was lifted.
    pub kind_of_lift: LiftKind,
    /// The agent whose probation was lifted (a probation lift only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The lift, as written (or as found, when it was already lifted).
    pub lifted: Lift,
    /// Whether the record was already lifted (nothing was written).
    pub already_lifted: bool,
    /// What became of the Event: `created`, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// What to do about one record.
#[derive(Clone, Debug, PartialEq)]
pub enum LiftPlan {
    /// Write this merge patch to the record's status, then report.
    Write {
        /// The status patch.
        patch: Value,
        /// The report once written.
        report: LiftReport,
    },
    /// Already lifted: report the lift found.
    AlreadyLifted(LiftReport),
}

/// Plans the lift of `record` by `user` for `reason` at `now`.
pub fn plan(
    record: &RollbackRecord,
    user: &str,
    reason: &str,
    now: Time,
    what: LiftKind,
) -> Result<LiftPlan, LiftError> {
    let name = record.metadata.name.clone().unwrap_or_default();
    let report = |lifted: Lift, already_lifted: bool| LiftReport {
        record: name.clone(),
        namespace: record.metadata.namespace.clone().unwrap_or_default(),
        kind: record.spec.workload.kind,
        workload: record.spec.workload.name.clone(),
        revision: record.spec.from.revision.clone(),
        template_fingerprint: record.spec.from.template_fingerprint.clone(),
        kind_of_lift: what,
        agent: match what {
            LiftKind::Quarantine => None,
            LiftKind::Probation => record.spec.from.agent.clone(),
        },
        lifted,
        already_lifted,
        event: None,
    };
    let existing = record.status.as_ref().and_then(|s| match what {
        LiftKind::Quarantine => s.lifted.clone(),
        LiftKind::Probation => s.probation_lifted.clone(),
    });
    if let Some(existing) = existing {
        return Ok(LiftPlan::AlreadyLifted(report(existing, true)));
    }
    if !record.spec.action.quarantines() {
        return Err(LiftError::NothingToLift {
            record: name,
            action: record.spec.action,
        });
    }
    let reason = reason.trim();
    if reason.chars().count() < MIN_REASON_CHARS {
        return Err(LiftError::ReasonTooShort);
    }
    let lift = Lift {
        by: user.to_string(),
        reason: reason.to_string(),
        at: now,
    };
    Ok(LiftPlan::Write {
        patch: json!({"status": {what.field(): lift}}),
        report: report(lift, false),
    })
}

/// The Event's note: who lifted what, and why.
pub fn event_note(report: &LiftReport) -> String {
    match report.kind_of_lift {
        LiftKind::Quarantine => format!(
            "{} lifted the quarantine of revision {} (RollbackRecord {}): {}",
            report.lifted.by, report.revision, report.record, report.lifted.reason
        ),
        LiftKind::Probation => format!(
            "{} lifted the probation of agent {} (RollbackRecord {}): {}",
            report.lifted.by,
            report.agent.as_deref().unwrap_or("<unknown>"),
            report.record,
            report.lifted.reason
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{RevisionSnapshot, RollbackRecordSpec, RollbackRecordStatus, SignalReason};

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn record(action: RecordAction) -> RollbackRecord {
        let mut r = RollbackRecord::new(
            "web-r2",
            RollbackRecordSpec {
                workload: custody_crds::WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                    uid: None,
                },
                action,
                reason: SignalReason::CrashLoop,
                from: RevisionSnapshot {
                    revision: "2".into(),
                    template_fingerprint: "sha256:abc".into(),
                    actor: Some(custody_crds::Actor::Agent),
                    agent: Some("claude-code/1.0".into()),
                    ..RevisionSnapshot::default()
                },
                to: None,
                signals: vec![],
                policy: "default".into(),
                explanation: String::new(),
                revision_seen_at: None,
                regression_detected_at: at(1),
                acted_at: at(2),
                team: None,
                oncall: None,
                analysis: None,
            },
        );
        r.metadata.namespace = Some("shop".into());
        r
    }

    const REASON: &str = "root cause fixed in ConfigMap web-config";

    #[test]
    fn a_revert_is_lifted_by_a_status_patch_naming_the_person() {
        let plan = plan(
            &record(RecordAction::Reverted),
            "ann@acme.dev",
            REASON,
            at(10),
            LiftKind::Quarantine,
        )
        .unwrap();
        let LiftPlan::Write { patch, report } = plan else {
            panic!("expected a write, got {plan:?}");
        };
        assert_eq!(
            patch,
            json!({"status": {"lifted": {"by": "ann@acme.dev", "reason": REASON, "at": "1970-01-01T00:00:10Z"}}})
        );
        assert_eq!(report.workload, "web");
        assert_eq!(report.revision, "2");
        assert!(!report.already_lifted);
        assert_eq!(
            event_note(&report),
            format!(
                "ann@acme.dev lifted the quarantine of revision 2 (RollbackRecord web-r2): {REASON}"
            )
        );
    }

    #[test]
    fn alerts_short_reasons_and_second_runs() {
        assert_eq!(
            plan(
                &record(RecordAction::Alerted),
                "ann",
                REASON,
                at(10),
                LiftKind::Quarantine
            ),
            Err(LiftError::NothingToLift {
                record: "web-r2".into(),
                action: RecordAction::Alerted
            })
        );
        assert_eq!(
            plan(
                &record(RecordAction::Reverted),
                "ann",
                "  fixed   ",
                at(10),
                LiftKind::Quarantine
            ),
            Err(LiftError::ReasonTooShort)
        );
        let mut lifted = record(RecordAction::Reverted);
        lifted.status = Some(RollbackRecordStatus {
            lifted: Some(Lift {
                by: "bob".into(),
                reason: REASON.into(),
                at: at(5),
            }),
            ..RollbackRecordStatus::default()
        });
        match plan(
            &lifted,
            "ann",
            "another good reason",
            at(10),
            LiftKind::Quarantine,
        )
        .unwrap()
        {
            LiftPlan::AlreadyLifted(r) => {
                assert!(r.already_lifted);
                assert_eq!(r.lifted.by, "bob");
            }
            other => panic!("expected already lifted, got {other:?}"),
        }
        // A lifted quarantine leaves the probation to lift, and the other way round.
        let LiftPlan::Write { patch, report } = plan(
            &lifted,
            "ann",
            "reviewed the agent's changes",
            at(10),
            LiftKind::Probation,
        )
        .unwrap() else {
            panic!("expected a probation lift");
        };
        assert_eq!(patch["status"]["probationLifted"]["by"], "ann", "{patch}");
        assert!(patch["status"].get("lifted").is_none());
        assert_eq!(report.agent.as_deref(), Some("claude-code/1.0"));
        assert_eq!(
            event_note(&report),
            "ann lifted the probation of agent claude-code/1.0 (RollbackRecord web-r2): reviewed the agent's changes"
        );
    }
}
