//! `kubectl custody changes` and `propose`: CustodyChanges as rows, where one stands as the
//! webhook sees it, and what proposing one found. Pure: the binary lists, gets and creates.

use std::collections::BTreeMap;

use custody_crds::change::claim_digest;
use custody_crds::{ChangePhase, CustodyChange, Vocabulary, WorkloadKind};
use custody_engine::attest::claim_from_value;
use custody_engine::{PolicySet, Standing};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;

use crate::propose::reference;

/// One CustodyChange in a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub workload: String,
    /// The agent.
    pub agent: String,
    /// Who proposed it.
    pub proposer: String,
    /// Its phase.
    pub phase: ChangePhase,
    /// Who approved it, in order.
    pub approvals: Vec<String>,
    /// When it was proposed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
    /// How long ago, e.g. `5m`.
    pub age: String,
}

/// A change's phase: the controller's, or what its status says before the controller wrote
/// one.
pub fn phase(change: &CustodyChange) -> ChangePhase {
    let status = change.status.clone().unwrap_or_default();
    match (status.phase, status.rejection, status.applied) {
        (Some(phase), _, _) => phase,
        (None, Some(_), _) => ChangePhase::Rejected,
        (None, None, Some(_)) => ChangePhase::Applied,
        (None, None, None) => ChangePhase::Pending,
    }
}

/// The rows of `changes`, newest first.
pub fn rows(changes: &[CustodyChange], now: Timestamp) -> Vec<ChangeRow> {
    let mut rows: Vec<ChangeRow> = changes.iter().map(|c| row(c, now)).collect();
    rows.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    rows
}

fn row(change: &CustodyChange, now: Timestamp) -> ChangeRow {
    let created = change.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ChangeRow {
        namespace: change.metadata.namespace.clone().unwrap_or_default(),
        name: change.metadata.name.clone().unwrap_or_default(),
        kind: change.spec.workload.kind,
        workload: change.spec.workload.name.clone(),
        agent: change.spec.agent.clone(),
        proposer: change.spec.proposer.clone(),
        phase: phase(change),
        approvals: change
            .status
            .iter()
            .flat_map(|s| s.approvals.iter().map(|a| a.by.clone()))
            .collect(),
        created,
        age: created.map_or_else(|| "-".to_string(), |c| age(c, now)),
    }
}

/// How long from `since` to `now`, as kubectl prints ages: `45s`, `12m`, `5h`, `3d`.
pub fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.duration_since(since).as_secs().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Where `change` stands at `now` under the strictest policy whose approval covers it, as the
/// controller phases it; `None` when none does (nothing requires approval for it any more).
pub fn standing_of(
    change: &CustodyChange,
    policies: &PolicySet,
    namespace_labels: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> Option<Standing> {
    custody_engine::judge_change(policies, change, namespace_labels, now).map(|j| j.standing)
}

/// A standing, in words.
pub fn standing_text(standing: &Standing) -> String {
    let stamp = |t: &Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    match standing {
        Standing::Admits { approvers, until } => format!(
            "approved by {}: admits its revision until {}",
            approvers.join(", "),
            stamp(until)
        ),
        Standing::Pending { have, need, until } => format!(
            "{have} of {need} approvals{}",
            until.map_or(String::new(), |u| format!(
                ", takes approvals until {}",
                stamp(&u)
            ))
        ),
        Standing::Rejected(r) => format!("rejected by {}: {}", r.by, r.reason),
        Standing::Applied(revision) => {
            format!("applied as revision {revision}: its approval is spent")
        }
        Standing::Expired(at) => format!("expired at {}", stamp(at)),
    }
}

/// One change request of a workload, as `why` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadChange {
    /// Its name.
    pub name: String,
    /// Its phase.
    pub phase: ChangePhase,
    /// Whether it is the change of the workload's current revision (same digest).
    pub current: bool,
    /// Its digest.
    pub digest: String,
    /// The agent.
    pub agent: String,
    /// Who proposed it.
    pub proposer: String,
    /// Why.
    pub reason: String,
    /// Who approved it, in order.
    pub approvals: Vec<String>,
    /// Where it stands as the webhook judges it now, in words.
    pub standing: String,
}

/// What [`for_workload`] reads.
#[derive(Clone, Copy, Debug)]
pub struct WorkloadInput<'a> {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: &'a str,
    /// The live object.
    pub object: &'a Value,
    /// The namespace's change requests.
    pub changes: &'a [CustodyChange],
    /// The policies in force.
    pub policies: &'a PolicySet,
    /// The namespace's labels, when known.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The annotation keys.
    pub vocabulary: &'a Vocabulary,
    /// The time to judge at.
    pub now: Timestamp,
}

/// The workload's change requests worth showing, newest first: the one whose digest is the
/// current revision's, and those still open (pending or approved); and how many others there
/// are.
pub fn for_workload(input: &WorkloadInput<'_>) -> (Vec<WorkloadChange>, usize) {
    let name = input
        .object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let annotations: BTreeMap<String, String> = input
        .object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let claim = claim_from_value(
        input.kind,
        input.namespace,
        input.object,
        &annotations,
        input.vocabulary,
    );
    let current = claim_digest(&claim);
    let mut mine: Vec<&CustodyChange> = input
        .changes
        .iter()
        .filter(|c| {
            c.spec.workload.kind == input.kind
                && c.spec.workload.name == name
                && c.metadata.namespace.as_deref() == Some(input.namespace)
        })
        .collect();
    mine.sort_by_key(|c| std::cmp::Reverse(c.metadata.creation_timestamp.as_ref().map(|t| t.0)));
    let total = mine.len();
    let shown: Vec<WorkloadChange> = mine
        .into_iter()
        .filter(|c| {
            c.spec.digest == current
                || matches!(phase(c), ChangePhase::Pending | ChangePhase::Approved)
        })
        .map(|c| WorkloadChange {
            name: c.metadata.name.clone().unwrap_or_default(),
            phase: phase(c),
            current: c.spec.digest == current,
            digest: c.spec.digest.clone(),
            agent: c.spec.agent.clone(),
            proposer: c.spec.proposer.clone(),
            reason: c.spec.reason.clone(),
            approvals: c
                .status
                .iter()
                .flat_map(|s| s.approvals.iter().map(|a| a.by.clone()))
                .collect(),
            standing: standing_of(c, input.policies, input.namespace_labels, input.now)
                .map_or_else(
                    || "no policy requires approval for it now".to_string(),
                    |s| standing_text(&s),
                ),
        })
        .collect();
    let closed = total - shown.len();
    (shown, closed)
}

/// What `kubectl custody propose` did for one workload.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProposeReport {
    /// The request, as created (or as found, when it existed).
    pub change: CustodyChange,
    /// `workload/name`.
    pub workload: String,
    /// Whether this run created it; false when the same change was proposed before.
    pub created: bool,
    /// Its phase, when it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<ChangePhase>,
    /// What the proposer should know.
    pub notes: Vec<String>,
    /// How to follow it.
    pub follow: Vec<String>,
}

/// What a request found under the name a proposal wanted means for it.
#[derive(Clone, Debug)]
pub enum Taken {
    /// The same change, still open (pending or approved): that request is the proposal.
    Open(Box<CustodyChange>),
    /// Another change, or the same one spent, rejected or expired (kept as the record): the
    /// proposal takes the next free name ([`next_change_name`]).
    ///
    /// [`next_change_name`]: custody_crds::change::next_change_name
    Next,
}

/// What `existing`, found under the name `proposed` wanted, means for it.
pub fn taken(existing: CustodyChange, proposed: &CustodyChange) -> Taken {
    let open = matches!(
        phase(&existing),
        ChangePhase::Pending | ChangePhase::Approved
    );
    if open && existing.spec.digest == proposed.spec.digest {
        Taken::Open(Box::new(existing))
    } else {
        Taken::Next
    }
}

/// The workload a change is for, as kubectl names it.
pub fn workload_of(change: &CustodyChange) -> String {
    reference(change.spec.workload.kind, &change.spec.workload.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_request_for_the_same_change_is_the_proposal_and_a_closed_one_is_not() {
        use custody_crds::{ChangeWorkload, CustodyChangeSpec, CustodyChangeStatus, Lift};
        let change = |digest: &str, status: Option<CustodyChangeStatus>| {
            let mut c = CustodyChange::new(
                "web-1a2b3c4d5e",
                CustodyChangeSpec {
                    workload: ChangeWorkload {
                        kind: WorkloadKind::Deployment,
                        name: "web".into(),
                    },
                    digest: digest.into(),
                    template_digest: String::new(),
                    provenance: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    agent: "claude-code/1.0".into(),
                    proposer: "agent".into(),
                    reason: "bump web to 1.28".into(),
                    diff: vec![],
                    diff_truncated: false,
                    running_template_digest: None,
                },
            );
            c.status = status;
            c
        };
        let proposed = change("sha256:1a", None);
        let status = |phase: Option<ChangePhase>, rejected: bool| {
            Some(CustodyChangeStatus {
                phase,
                rejection: rejected.then(|| Lift {
                    by: "bob".into(),
                    reason: "not this one".into(),
                    at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
                }),
                ..CustodyChangeStatus::default()
            })
        };
        let cases = [
            ("pending, same digest", change("sha256:1a", None), true),
            (
                "approved, same digest",
                change("sha256:1a", status(Some(ChangePhase::Approved), false)),
                true,
            ),
            (
                "rejected, same digest",
                change("sha256:1a", status(None, true)),
                false,
            ),
            (
                "applied",
                change("sha256:1a", status(Some(ChangePhase::Applied), false)),
                false,
            ),
            (
                "expired",
                change("sha256:1a", status(Some(ChangePhase::Expired), false)),
                false,
            ),
            ("another change", change("sha256:1b", None), false),
        ];
        for (name, existing, open) in cases {
            assert_eq!(
                matches!(taken(existing, &proposed), Taken::Open(_)),
                open,
                "{name}"
            );
        }
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now: Timestamp = "2026-12-05T10:00:00Z".parse().unwrap_or_default();
        let at = |s: &str| s.parse::<Timestamp>().unwrap_or_default();
        let cases = [
            ("2026-12-05T09:59:15Z", "45s"),
            ("2026-12-05T09:48:00Z", "12m"),
            ("2026-12-05T05:00:00Z", "5h"),
            ("2026-12-02T10:00:00Z", "3d"),
            ("2026-12-05T10:00:30Z", "0s"),
        ];
        for (since, want) in cases {
            assert_eq!(age(at(since), now), want, "{since}");
        }
    }
}
