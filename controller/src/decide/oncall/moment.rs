//! Notices about a moment in a workload's life rather than a situation that stays open: a
//! break-glass revision, an attestation that cannot be read, an analysis inconclusive for
//! long. In Alertmanager they stay open for an hour ([`super::MOMENT`]), then end by
//! themselves; PagerDuty is sent no resolution for them.

use custody_crds::{NoticeKind, WorkloadKind};
use jiff::Timestamp;
use serde_json::Value;

use super::{MOMENT, Notice, State};
use super::{situation, why};

/// A workload's moment.
#[derive(Clone, Debug)]
pub struct Moment {
    /// What it is.
    pub kind: NoticeKind,
    /// The workload's kind.
    pub workload_kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The revision, as (number, object name).
    pub revision: Option<(i64, String)>,
    /// The owning team.
    pub team: Option<String>,
    /// The agent, if an agent's revision.
    pub agent: Option<String>,
    /// Who shipped the revision, in words.
    pub shipped_by: Option<String>,
    /// Why, as one word (`BreakGlass`).
    pub reason: String,
    /// One line.
    pub summary: String,
    /// In prose.
    pub explanation: String,
    /// The evidence, one line each.
    pub evidence: Vec<String>,
    /// When it happened.
    pub at: Timestamp,
    /// The `json` format's body.
    pub data: Value,
}

/// The notice of `m`: one per workload, kind and revision.
pub fn notice(m: Moment) -> Notice {
    let workload = format!("{}/{}", m.workload_kind.as_str(), m.name);
    let mut situation = situation(&m.namespace, &workload, m.kind);
    if let Some((number, _)) = &m.revision {
        situation.push_str(&format!("/{number}"));
    }
    let plural = format!("{}s", m.workload_kind.as_str().to_ascii_lowercase());
    Notice {
        kind: m.kind,
        severity: m.kind.severity(),
        id: format!("{situation}/{}", m.at.as_millisecond()),
        situation,
        state: State::Firing {
            ends_at: Some(m.at + MOMENT),
        },
        started_at: m.at,
        commands: vec![why(&m.namespace, &workload)],
        source: format!(
            "/apis/apps/v1/namespaces/{}/{plural}/{}",
            m.namespace, m.name
        ),
        subject: workload.clone(),
        workload: Some(workload),
        namespace: m.namespace,
        team: m.team,
        agent: m.agent,
        reason: m.reason,
        summary: m.summary,
        explanation: m.explanation,
        revision: m.revision.map(|(n, object)| format!("{n} ({object})")),
        shipped_by: m.shipped_by,
        evidence: m.evidence,
        data: m.data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_ends_by_itself_after_an_hour() {
        let at: Timestamp = "2026-12-05T10:00:00Z".parse().expect("a time");
        let n = notice(Moment {
            kind: NoticeKind::BreakGlass,
            workload_kind: WorkloadKind::StatefulSet,
            namespace: "shop".into(),
            name: "db".into(),
            revision: Some((3, "db-5f7".into())),
            team: Some("web".into()),
            agent: None,
            shipped_by: Some("a person".into()),
            reason: "BreakGlass".into(),
            summary: "s".into(),
            explanation: "e".into(),
            evidence: vec![],
            at,
            data: Value::Null,
        });
        assert_eq!(n.situation, "custody/shop/StatefulSet/db/breakGlass/3");
        assert_eq!(
            n.state,
            State::Firing {
                ends_at: Some("2026-12-05T11:00:00Z".parse().expect("a time"))
            }
        );
        assert_eq!(n.source, "/apis/apps/v1/namespaces/shop/statefulsets/db");
        assert_eq!(n.revision.as_deref(), Some("3 (db-5f7)"));
        assert_eq!(
            n.why_command(),
            Some("kubectl custody why statefulset/db -n shop")
        );
    }
}
