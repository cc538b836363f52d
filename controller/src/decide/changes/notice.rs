//! What people are told about a change request: the notice POSTed to the owning team's targets
//! (or the protecting policy's `notifyUrl`) for a proposal and a decision, and the notes of the
//! Events on the request and its workload. Pure: the team is looked up by the caller.

use std::collections::BTreeMap;
use std::sync::Arc;

use custody_crds::{
    AnnotationKey, Applied, CustodyChange, CustodyTeam, DiffLine, Lift, NoticeKind, Vocabulary,
    WorkloadKind,
};
use custody_engine::approvers;
use jiff::Timestamp;
use serde::Serialize;

use super::review::{Announcement, stamp};
use super::standing::{Judged, team};
use crate::decide::oncall;
use crate::decide::owning_team::{self, OwningTeam};

/// The owning team of a request and whom to page: its signed `owner` and `oncall`
/// annotations, as for a revision; `lookup` finds a CustodyTeam by name.
pub fn ownership(
    change: &CustodyChange,
    vocabulary: &Vocabulary,
    lookup: impl FnOnce(&str) -> Option<Arc<CustodyTeam>>,
) -> OwningTeam {
    let declared: BTreeMap<String, String> = [AnnotationKey::Owner, AnnotationKey::Oncall]
        .into_iter()
        .filter_map(|k| {
            let value = change.spec.provenance.get(k.as_str())?;
            Some((vocabulary.key(k).to_string(), value.clone()))
        })
        .collect();
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    owning_team::resolve(&declared, namespace, vocabulary, lookup)
}

/// A request, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeRef {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// The workload of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChangeTarget {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// The JSON a change notice POSTs.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// `ChangeProposed`, `ChangeApproved` or `ChangeRejected`, so a receiver of records and
    /// notices tells them apart.
    pub kind: &'static str,
    /// The request.
    pub change: ChangeRef,
    /// Its workload.
    pub workload: ChangeTarget,
    /// The agent that proposes the change.
    pub agent: String,
    /// Who created the request.
    pub proposer: String,
    /// Why the agent wants the change.
    pub reason: String,
    /// The change's digest: what the webhook admits once approved.
    pub digest: String,
    /// What changes, against what runs (proposals only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<DiffLine>,
    /// The diff was cut: the rest is in the source commit.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub diff_truncated: bool,
    /// The owning team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Whom to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oncall: Option<String>,
    /// The policy whose approval the request answers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Who may approve, in words (proposals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvers: Option<String>,
    /// How many people must approve (proposals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<u32>,
    /// The approvals, in order (approvals only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Lift>,
    /// The rejection (rejections only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Lift>,
    /// Until when the request takes approvals, or the approval admits the change (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The command that approves it (proposals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approve: Option<String>,
    /// The command that rejects it (proposals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject: Option<String>,
    /// When the controller sent it (RFC 3339).
    pub at: String,
}

/// The commands a reviewer runs.
pub fn commands(change: &CustodyChange) -> (String, String) {
    let (name, namespace) = names(change);
    let command =
        |verb: &str| format!("kubectl custody {verb} {name} -n {namespace} --reason \"<why>\"");
    (command("approve"), command("reject"))
}

fn names(change: &CustodyChange) -> (String, String) {
    (
        change.metadata.name.clone().unwrap_or_default(),
        change.metadata.namespace.clone().unwrap_or_default(),
    )
}

/// The notice of `announcement` (a proposal or a decision; `None` for the others).
pub fn notice(
    change: &CustodyChange,
    announcement: Announcement,
    judged: Option<&Judged<'_>>,
    ownership: &OwningTeam,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Notice> {
    if !announcement.notifies() {
        return None;
    }
    let spec = &change.spec;
    let status = change.status.clone().unwrap_or_default();
    let (name, namespace) = names(change);
    let (approve, reject) = commands(change);
    let mut notice = Notice {
        kind: announcement.reason(),
        change: ChangeRef {
            name,
            namespace: namespace.clone(),
        },
        workload: ChangeTarget {
            kind: spec.workload.kind,
            namespace,
            name: spec.workload.name.clone(),
        },
        agent: spec.agent.clone(),
        proposer: spec.proposer.clone(),
        reason: spec.reason.clone(),
        digest: spec.digest.clone(),
        diff: Vec::new(),
        diff_truncated: false,
        team: ownership.team.clone(),
        oncall: ownership.oncall.clone(),
        policy: judged.map(|j| j.policy.name.clone()),
        approvers: None,
        required: None,
        approvals: Vec::new(),
        rejection: None,
        expires_at: expires_at.map(|t| t.to_string()),
        approve: None,
        reject: None,
        at: now.to_string(),
    };
    match announcement {
        Announcement::Proposed => {
            notice.diff = spec.diff.clone();
            notice.diff_truncated = spec.diff_truncated;
            notice.approvers = judged.map(|j| j.approval.approvers_text(team(change)));
            notice.required = judged.map(|j| j.approval.spec.required);
            notice.approve = Some(approve);
            notice.reject = Some(reject);
        }
        Announcement::Approved => {
            notice.approvals = approvers(&spec.proposer, &status.approvals);
        }
        _ => notice.rejection = status.rejection,
    }
    Some(notice)
}

/// The on-call notice of `announcement` about `change`, whose `json` body is `json`: a
/// proposal stays open until `deadline` (or its decision resolves it), a decision is a moment.
pub fn oncall_notice(
    change: &CustodyChange,
    announcement: Announcement,
    ownership: &OwningTeam,
    json: &Notice,
    deadline: Option<Timestamp>,
    now: Timestamp,
) -> Option<oncall::Notice> {
    let kind = match announcement {
        Announcement::Proposed => NoticeKind::ChangeProposed,
        Announcement::Approved => NoticeKind::ChangeApproved,
        Announcement::Rejected => NoticeKind::ChangeRejected,
        Announcement::Applied | Announcement::Expired => return None,
    };
    let mut notice = base(change, kind, ownership, now);
    let spec = &change.spec;
    let (approve, reject) = commands(change);
    let w = format!("{} {}", spec.workload.kind, spec.workload.name);
    match announcement {
        Announcement::Proposed => {
            notice.state = oncall::State::Firing { ends_at: deadline };
            notice.summary = format!(
                "agent {} proposes a change to {w} in {}: it waits for a person's approval",
                spec.agent, notice.namespace
            );
            notice.evidence = spec
                .diff
                .iter()
                .map(|d| {
                    format!(
                        "{}: {} -> {}",
                        d.field,
                        d.before.as_deref().unwrap_or("(none)"),
                        d.after.as_deref().unwrap_or("(none)")
                    )
                })
                .collect();
            notice.commands.push(oncall::Command {
                label: "Approve".into(),
                command: approve,
            });
            notice.commands.push(oncall::Command {
                label: "Reject".into(),
                command: reject,
            });
        }
        _ => {
            let by: Vec<String> = json.approvals.iter().map(|a| a.by.clone()).collect();
            let by = json
                .rejection
                .as_ref()
                .map_or(by.join(", "), |r| r.by.clone());
            notice.summary = format!(
                "{by} {} agent {}'s change to {w} in {}",
                if kind == NoticeKind::ChangeApproved {
                    "approved"
                } else {
                    "rejected"
                },
                spec.agent,
                notice.namespace
            );
        }
    }
    notice.data = serde_json::to_value(json).unwrap_or_default();
    Some(notice)
}

/// The proposal's notice, resolved at `now`: sent to targets that keep situations open when
/// the request is decided or expires.
pub fn proposal_resolved(
    change: &CustodyChange,
    ownership: &OwningTeam,
    now: Timestamp,
) -> oncall::Notice {
    let mut notice = base(change, NoticeKind::ChangeProposed, ownership, now);
    notice.summary = format!(
        "the change request {} is no longer waiting",
        names(change).0
    );
    notice.resolved(now)
}

/// What every notice of a request says: the labels a resolution must repeat.
fn base(
    change: &CustodyChange,
    kind: NoticeKind,
    ownership: &OwningTeam,
    now: Timestamp,
) -> oncall::Notice {
    let spec = &change.spec;
    let (name, namespace) = names(change);
    let workload = format!("{}/{}", spec.workload.kind.as_str(), spec.workload.name);
    let created = change
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0);
    let started_at = if kind == NoticeKind::ChangeProposed {
        created
    } else {
        now
    };
    oncall::Notice {
        kind,
        severity: kind.severity(),
        situation: format!("custody/{namespace}/CustodyChange/{name}/{kind}"),
        id: format!(
            "{}/{kind}",
            change
                .metadata
                .uid
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}"))
        ),
        state: oncall::State::Firing {
            ends_at: Some(now + oncall::MOMENT),
        },
        started_at,
        namespace: namespace.clone(),
        workload: Some(workload.clone()),
        team: ownership.team.clone(),
        agent: Some(spec.agent.clone()),
        reason: match kind {
            NoticeKind::ChangeProposed => "AwaitingApproval",
            NoticeKind::ChangeApproved => "Approved",
            _ => "Rejected",
        }
        .into(),
        summary: String::new(),
        explanation: format!(
            "agent {} (as {}): {}",
            spec.agent,
            spec.proposer,
            spec.reason.trim()
        ),
        revision: None,
        shipped_by: Some(format!("agent {}", spec.agent)),
        evidence: Vec::new(),
        commands: vec![oncall::why(&namespace, &workload)],
        source: format!("/apis/custody.dev/v1alpha1/namespaces/{namespace}/custodychanges/{name}"),
        subject: workload,
        data: serde_json::Value::Null,
    }
}

/// The note of the Event of `announcement` on the request, within the 1 kB an Event allows.
pub fn note(
    change: &CustodyChange,
    announcement: Announcement,
    message: &str,
    applied: Option<&Applied>,
) -> String {
    let spec = &change.spec;
    let w = format!("{} {}", spec.workload.kind, spec.workload.name);
    let status = change.status.clone().unwrap_or_default();
    let text = match announcement {
        Announcement::Proposed => format!(
            "agent {:?} ({}) proposes a change to {w}: {}; to approve: {}",
            spec.agent,
            spec.proposer,
            spec.reason.trim(),
            commands(change).0
        ),
        Announcement::Approved => {
            let by: Vec<String> = approvers(&spec.proposer, &status.approvals)
                .into_iter()
                .map(|a| a.by)
                .collect();
            format!("approved by {}: {message}", by.join(", "))
        }
        Announcement::Applied => match applied {
            Some(a) => format!(
                "{w} runs the approved change as revision {} (generation {}); the approval is spent",
                a.revision,
                a.generation
                    .map_or("unknown".to_string(), |g| g.to_string())
            ),
            None => message.to_string(),
        },
        Announcement::Rejected | Announcement::Expired => message.to_string(),
    };
    text.chars().take(1000).collect()
}

/// The note of the Event on the workload whose revision came in through the request.
pub fn workload_note(change: &CustodyChange, applied: &Applied) -> String {
    let spec = &change.spec;
    let status = change.status.clone().unwrap_or_default();
    let by: Vec<String> = approvers(&spec.proposer, &status.approvals)
        .into_iter()
        .map(|a| a.by)
        .collect();
    format!(
        "revision {} came in through CustodyChange {} by agent {:?}, approved by {} (at {})",
        applied.revision,
        change.metadata.name.as_deref().unwrap_or_default(),
        spec.agent,
        if by.is_empty() {
            "nobody".to_string()
        } else {
            by.join(", ")
        },
        stamp(applied.at.0)
    )
    .chars()
    .take(1000)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::changes::standing::judge;
    use crate::decide::changes::tests::{approved, change, policies, rejected, t};
    use custody_crds::CustodyTeamSpec;
    use serde_json::json;

    fn team_web() -> Arc<CustodyTeam> {
        Arc::new(CustodyTeam::new(
            "team-web",
            CustodyTeamSpec {
                namespaces: vec!["shop".into()],
                oncall: vec!["@web-oncall".into()],
                ..CustodyTeamSpec::default()
            },
        ))
    }

    #[test]
    fn a_proposal_notice_carries_what_a_reviewer_needs() {
        let set = policies(&[("reviewed", "required: 2\nvalidFor: 1h")]);
        let c = change("web");
        let judged = judge(&set, &c, None, t(60));
        let owners = ownership(&c, &Vocabulary::default(), |_| Some(team_web()));
        let n = notice(
            &c,
            Announcement::Proposed,
            judged.as_ref(),
            &owners,
            Some(t(3600)),
            t(60),
        )
        .unwrap();
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(
            json,
            json!({
                "kind": "ChangeProposed",
                "change": {"name": "web-0123456789", "namespace": "shop"},
                "workload": {"kind": "Deployment", "namespace": "shop", "name": "web"},
                "agent": "claude-code",
                "proposer": "system:serviceaccount:agents:claude",
                "reason": "bump the image to fix CVE-2026-1234",
                "digest": c.spec.digest,
                "diff": [{"field": "containers[web].image", "before": "web:1", "after": "web:2"}],
                "team": "team-web",
                "oncall": "@web-oncall",
                "policy": "reviewed",
                "approvers": "a member of CustodyTeam \"team-web\"",
                "required": 2,
                "expiresAt": "2027-01-15T09:00:00Z",
                "approve": "kubectl custody approve web-0123456789 -n shop --reason \"<why>\"",
                "reject": "kubectl custody reject web-0123456789 -n shop --reason \"<why>\"",
                "at": "2027-01-15T08:01:00Z"
            })
        );
    }

    #[test]
    fn decision_notices_name_who_decided() {
        let set = policies(&[("reviewed", "required: 2\nvalidFor: 1h")]);
        let owners = OwningTeam::default();
        let c = approved(change("web"), &["alice", "bob"]);
        let judged = judge(&set, &c, None, t(200));
        let n = notice(
            &c,
            Announcement::Approved,
            judged.as_ref(),
            &owners,
            None,
            t(200),
        )
        .unwrap();
        let by: Vec<&str> = n.approvals.iter().map(|a| a.by.as_str()).collect();
        assert_eq!(by, ["alice", "bob"]);
        assert!(n.diff.is_empty() && n.approve.is_none());
        let c = rejected(change("web"), "carol");
        let n = notice(&c, Announcement::Rejected, None, &owners, None, t(200)).unwrap();
        assert_eq!(n.kind, "ChangeRejected");
        assert_eq!(n.rejection.map(|r| r.by), Some("carol".to_string()));
        assert!(
            notice(&c, Announcement::Expired, None, &owners, None, t(200)).is_none(),
            "an expiry is an Event only"
        );
    }

    #[test]
    fn event_notes() {
        let c = approved(change("web"), &["alice", "bob"]);
        assert_eq!(
            note(&c, Announcement::Proposed, "", None),
            "agent \"claude-code\" (system:serviceaccount:agents:claude) proposes a change to Deployment web: bump the image to fix CVE-2026-1234; to approve: kubectl custody approve web-0123456789 -n shop --reason \"<why>\""
        );
        assert_eq!(
            note(&c, Announcement::Approved, "admitted until then", None),
            "approved by alice, bob: admitted until then"
        );
        let applied = Applied {
            revision: "3".into(),
            generation: Some(4),
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(300)),
        };
        assert_eq!(
            note(&c, Announcement::Applied, "", Some(&applied)),
            "Deployment web runs the approved change as revision 3 (generation 4); the approval is spent"
        );
        assert_eq!(
            workload_note(&c, &applied),
            "revision 3 came in through CustodyChange web-0123456789 by agent \"claude-code\", approved by alice, bob (at 2027-01-15T08:05:00Z)"
        );
    }
}
