//! `kubectl custody approve` and `reject`: what a person's decision on a CustodyChange writes,
//! decided before anything is sent. The webhook judges the write again (a person, under their
//! own name, allowed to approve, never the proposer, with a reason); deciding the plain cases
//! here gives the reviewer the reason without a round trip, and makes a second run harmless.
//!
//! The write is a merge patch of the status conditioned on the resourceVersion read, so an
//! approval written meanwhile by someone else is never overwritten: the apiserver answers 409,
//! and the binary reads and plans again.

use custody_crds::{ChangePhase, CustodyChange, Lift};
use custody_engine::MIN_REASON_CHARS;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use serde_json::{Value, json};

use super::changes::{phase, workload_of};

/// Approve or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Append an approval to `status.approvals`.
    Approve,
    /// Set `status.rejection`.
    Reject,
}

impl Verdict {
    /// The command, for messages.
    pub const fn command(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

/// Why a decision is refused before it is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// The reason says too little.
    #[error(
        "--reason must say what you reviewed, in at least {MIN_REASON_CHARS} characters (e.g. \"checked the image bump and the new memory limit\")"
    )]
    ReasonTooShort,
    /// The proposer never decides their own change.
    #[error("you ({user}) proposed CustodyChange {name}; another person must {command} it")]
    OwnProposal {
        /// The user.
        user: String,
        /// The change.
        name: String,
        /// `approve` or `reject`.
        command: &'static str,
    },
    /// The change was decided for good.
    #[error("CustodyChange {name} {why}; nothing to {command}")]
    Settled {
        /// The change.
        name: String,
        /// What happened to it, in words.
        why: String,
        /// `approve` or `reject`.
        command: &'static str,
    },
}

/// What `approve` and `reject` report, for text and JSON.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecideReport {
    /// The change's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `deployment/web`.
    pub workload: String,
    /// What was decided.
    pub verdict: Verdict,
    /// The decision, as written (or as found, when it was already made).
    pub decision: Lift,
    /// Whether the same person had decided it already (nothing was written).
    pub already: bool,
    /// Who approved it, in order, after this write.
    pub approvals: Vec<String>,
}

/// What to do about one change.
#[derive(Clone, Debug)]
pub enum DecidePlan {
    /// Write this merge patch to the change's status, then report.
    Write {
        /// The status patch, conditioned on the resourceVersion read.
        patch: Value,
        /// The report once written.
        report: DecideReport,
    },
    /// Already decided so by the same person: report it.
    Already(DecideReport),
}

/// Checks a reason as the webhook will, before anything is read.
pub fn check_reason(reason: &str) -> Result<(), DecideError> {
    if reason.trim().chars().count() < MIN_REASON_CHARS {
        return Err(DecideError::ReasonTooShort);
    }
    Ok(())
}

/// Plans `user`'s `verdict` on `change` for `reason` at `now`.
pub fn plan(
    change: &CustodyChange,
    user: &str,
    reason: &str,
    now: Time,
    verdict: Verdict,
) -> Result<DecidePlan, DecideError> {
    check_reason(reason)?;
    let reason = reason.trim();
    let name = change.metadata.name.clone().unwrap_or_default();
    let status = change.status.clone().unwrap_or_default();
    let approvals: Vec<String> = status.approvals.iter().map(|a| a.by.clone()).collect();
    let report = |decision: Lift, already: bool, approvals: Vec<String>| DecideReport {
        name: name.clone(),
        namespace: change.metadata.namespace.clone().unwrap_or_default(),
        workload: workload_of(change),
        verdict,
        decision,
        already,
        approvals,
    };
    let mine = match verdict {
        Verdict::Approve => status.approvals.iter().find(|a| a.by == user).cloned(),
        Verdict::Reject => status.rejection.clone().filter(|r| r.by == user),
    };
    if let Some(mine) = mine {
        return Ok(DecidePlan::Already(report(mine, true, approvals)));
    }
    settled(change, &name, verdict)?;
    if change.spec.proposer == user {
        return Err(DecideError::OwnProposal {
            user: user.to_string(),
            name,
            command: verdict.command(),
        });
    }
    let decision = Lift {
        by: user.to_string(),
        reason: reason.to_string(),
        at: now,
    };
    let resource_version = change.metadata.resource_version.clone();
    let (status_patch, approvals) = match verdict {
        Verdict::Approve => {
            let mut all = status.approvals.clone();
            all.push(decision.clone());
            let by = all.iter().map(|a| a.by.clone()).collect();
            (json!({ "approvals": all }), by)
        }
        Verdict::Reject => (json!({ "rejection": decision }), approvals),
    };
    Ok(DecidePlan::Write {
        patch: json!({
            "metadata": {"resourceVersion": resource_version},
            "status": status_patch,
        }),
        report: report(decision, false, approvals),
    })
}

/// A change rejected, applied or expired takes no decision.
fn settled(change: &CustodyChange, name: &str, verdict: Verdict) -> Result<(), DecideError> {
    let status = change.status.clone().unwrap_or_default();
    let why = if let Some(r) = &status.rejection {
        Some(format!("was rejected by {} ({})", r.by, r.reason))
    } else if let Some(applied) = &status.applied {
        Some(format!(
            "was applied as revision {}: its approval is spent",
            applied.revision
        ))
    } else if phase(change) == ChangePhase::Expired {
        Some(match &status.expires_at {
            Some(at) => format!("expired at {}; the agent must propose it again", at.0),
            None => "expired; the agent must propose it again".to_string(),
        })
    } else {
        None
    };
    match why {
        Some(why) => Err(DecideError::Settled {
            name: name.to_string(),
            why,
            command: verdict.command(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{
        Applied, ChangeWorkload, CustodyChangeSpec, CustodyChangeStatus, WorkloadKind,
    };

    const REASON: &str = "checked the image bump and its limits";

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap_or_default())
    }

    fn lift(by: &str) -> Lift {
        Lift {
            by: by.into(),
            reason: REASON.into(),
            at: at(5),
        }
    }

    fn change(status: Option<CustodyChangeStatus>) -> CustodyChange {
        let mut c = CustodyChange::new(
            "web-1a2b3c4d5e",
            CustodyChangeSpec {
                workload: ChangeWorkload {
                    kind: WorkloadKind::Deployment,
                    name: "web".into(),
                },
                digest: "sha256:1a2b3c4d5e".into(),
                template_digest: "sha256:00".into(),
                provenance: Default::default(),
                labels: Default::default(),
                agent: "claude-code/1.0".into(),
                proposer: "system:serviceaccount:agents:claude".into(),
                reason: "bump web to 1.28".into(),
                diff: vec![],
                diff_truncated: false,
                running_template_digest: None,
            },
        );
        c.metadata.namespace = Some("shop".into());
        c.metadata.resource_version = Some("42".into());
        c.status = status;
        c
    }

    fn write(plan: Result<DecidePlan, DecideError>) -> (Value, DecideReport) {
        match plan {
            Ok(DecidePlan::Write { patch, report }) => (patch, report),
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn an_approval_is_appended_under_the_version_read() {
        let (patch, report) = write(plan(&change(None), "ann", REASON, at(10), Verdict::Approve));
        assert_eq!(
            patch,
            json!({"metadata": {"resourceVersion": "42"}, "status": {"approvals": [
                {"by": "ann", "reason": REASON, "at": "1970-01-01T00:00:10Z"}
            ]}})
        );
        assert_eq!(report.approvals, ["ann"]);
        assert_eq!(report.workload, "deployment/web");
        assert!(!report.already);

        let bob_first = change(Some(CustodyChangeStatus {
            approvals: vec![lift("bob")],
            ..CustodyChangeStatus::default()
        }));
        let (patch, report) = write(plan(&bob_first, "ann", REASON, at(10), Verdict::Approve));
        let by: Vec<&str> = patch["status"]["approvals"]
            .as_array()
            .map(|a| a.iter().filter_map(|l| l["by"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(by, ["bob", "ann"], "bob's approval stays first");
        assert_eq!(report.approvals, ["bob", "ann"]);
    }

    #[test]
    fn a_rejection_sets_the_rejection_only() {
        let (patch, report) = write(plan(&change(None), "ann", REASON, at(10), Verdict::Reject));
        assert_eq!(patch["status"]["rejection"]["by"], "ann");
        assert!(patch["status"].get("approvals").is_none(), "{patch}");
        assert_eq!(report.verdict, Verdict::Reject);
    }

    #[test]
    fn refusals_and_second_runs() {
        let proposer = "system:serviceaccount:agents:claude";
        let cases: [(&str, CustodyChange, &str, &str, Verdict, &str); 5] = [
            (
                "a short reason",
                change(None),
                "ann",
                "  looks ok  ",
                Verdict::Approve,
                "--reason must say what you reviewed, in at least 10 characters (e.g. \"checked the image bump and the new memory limit\")",
            ),
            (
                "the proposer",
                change(None),
                proposer,
                REASON,
                Verdict::Approve,
                "you (system:serviceaccount:agents:claude) proposed CustodyChange web-1a2b3c4d5e; another person must approve it",
            ),
            (
                "a rejected change",
                change(Some(CustodyChangeStatus {
                    rejection: Some(lift("bob")),
                    ..CustodyChangeStatus::default()
                })),
                "ann",
                REASON,
                Verdict::Approve,
                "CustodyChange web-1a2b3c4d5e was rejected by bob (checked the image bump and its limits); nothing to approve",
            ),
            (
                "an applied change",
                change(Some(CustodyChangeStatus {
                    applied: Some(Applied {
                        revision: "7".into(),
                        generation: Some(3),
                        at: at(8),
                    }),
                    ..CustodyChangeStatus::default()
                })),
                "ann",
                REASON,
                Verdict::Reject,
                "CustodyChange web-1a2b3c4d5e was applied as revision 7: its approval is spent; nothing to reject",
            ),
            (
                "an expired change",
                change(Some(CustodyChangeStatus {
                    phase: Some(ChangePhase::Expired),
                    expires_at: Some(at(9)),
                    ..CustodyChangeStatus::default()
                })),
                "ann",
                REASON,
                Verdict::Approve,
                "CustodyChange web-1a2b3c4d5e expired at 1970-01-01T00:00:09Z; the agent must propose it again; nothing to approve",
            ),
        ];
        for (name, change, user, reason, verdict, want) in cases {
            let got = plan(&change, user, reason, at(10), verdict)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), Some(want), "{name}");
        }
        let approved = change(Some(CustodyChangeStatus {
            approvals: vec![lift("ann")],
            ..CustodyChangeStatus::default()
        }));
        match plan(
            &approved,
            "ann",
            "another good reason",
            at(10),
            Verdict::Approve,
        ) {
            Ok(DecidePlan::Already(report)) => {
                assert!(report.already);
                assert_eq!(
                    report.decision.at,
                    at(5),
                    "the approval found, not a new one"
                );
            }
            other => panic!("expected already approved, got {other:?}"),
        }
    }
}
