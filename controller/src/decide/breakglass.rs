//! Break-glass visibility: a revision shipped with the break-glass annotation (a person
//! overriding a change freeze, with a reason) is made visible once, by a Warning Event on the
//! workload, a counter, and a notice to the owning team. Pure: which revision is due, and what
//! the notice says; [`crate::act::announce`] acts.
//!
//! Once means once per revision, across restarts and leader changes: the revision is marked
//! ([`NOTICED`]) before anything is announced, so a failed write never announces twice.

use custody_crds::{AnnotationKey, Vocabulary, WorkloadKind};
use jiff::Timestamp;
use serde::Serialize;

use crate::cache::observe::{Observed, Revision, WorkloadState};
use crate::keys::{NOTICED, mark};

use super::owning_team::OwningTeam;

/// The Event reason.
pub const REASON: &str = "BreakGlass";

/// A break-glass revision not announced yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    /// The revision.
    pub revision: Revision,
    /// The declared reason (blank when the annotation is, which is itself worth seeing).
    pub reason: String,
    /// The declared actor, as written.
    pub actor: Option<String>,
}

/// The workload's current revision, if it carries the break-glass annotation and is not marked
/// yet. Only the current revision counts: the newest, once it carries the workload's template.
/// Older revisions were current once, and were announced then (or predate the controller).
pub fn pending(observed: &Observed, vocabulary: &Vocabulary) -> Option<Sighting> {
    let current = observed
        .revisions
        .first()
        .filter(|r| r.fingerprint == observed.workload.template_fingerprint)?;
    let reason = current
        .annotations
        .get(vocabulary.key(AnnotationKey::BreakGlass))?;
    if current.annotations.contains_key(&mark(vocabulary, NOTICED)) {
        return None;
    }
    Some(Sighting {
        revision: current.clone(),
        reason: reason.trim().to_string(),
        actor: current
            .annotations
            .get(vocabulary.key(AnnotationKey::Actor))
            .cloned(),
    })
}

/// The workload of a notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoticeWorkload {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// The JSON a break-glass notice POSTs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// Always `BreakGlass`, so a receiver of records and notices tells them apart.
    pub kind: &'static str,
    /// The workload.
    pub workload: NoticeWorkload,
    /// The revision number.
    pub revision: String,
    /// The ReplicaSet or ControllerRevision.
    pub revision_object: String,
    /// Why the glass was broken, as declared.
    pub reason: String,
    /// The declared actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The owning team.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Whom to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oncall: Option<String>,
    /// When the controller saw it (RFC 3339).
    pub at: String,
}

/// The notice of `sighting`.
pub fn notice(
    workload: &WorkloadState,
    sighting: &Sighting,
    ownership: &OwningTeam,
    now: Timestamp,
) -> Notice {
    Notice {
        kind: REASON,
        workload: NoticeWorkload {
            kind: workload.kind,
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            uid: workload.uid.clone(),
        },
        revision: sighting.revision.number.to_string(),
        revision_object: sighting.revision.name.clone(),
        reason: sighting.reason.clone(),
        actor: sighting.actor.clone(),
        team: ownership.team.clone(),
        oncall: ownership.oncall.clone(),
        at: now.to_string(),
    }
}

/// The on-call notice of `sighting`, whose `json` body is `json`.
pub fn oncall_notice(
    workload: &WorkloadState,
    sighting: &Sighting,
    ownership: &OwningTeam,
    json: Notice,
    now: Timestamp,
) -> super::oncall::Notice {
    let actor = sighting.actor.as_deref().unwrap_or("an undeclared actor");
    let reason = if sighting.reason.is_empty() {
        "(no reason given)"
    } else {
        &sighting.reason
    };
    super::oncall::moment::notice(super::oncall::moment::Moment {
        kind: custody_crds::NoticeKind::BreakGlass,
        workload_kind: workload.kind,
        namespace: workload.namespace.clone(),
        name: workload.name.clone(),
        revision: Some((sighting.revision.number, sighting.revision.name.clone())),
        team: ownership.team.clone(),
        agent: None,
        shipped_by: Some(actor.to_string()),
        reason: REASON.into(),
        summary: format!(
            "{} {}/{} revision {} was shipped with break-glass: {reason}",
            workload.kind.as_str(),
            workload.namespace,
            workload.name,
            sighting.revision.number
        ),
        explanation: format!(
            "{actor} shipped revision {} ({}) with the break-glass annotation, overriding a change freeze: {reason}. Review the change and the incident it names.",
            sighting.revision.number, sighting.revision.name
        ),
        evidence: Vec::new(),
        at: now,
        data: serde_json::to_value(json).unwrap_or_default(),
    })
}

/// The Event's note: the reason, the actor and the revision, within the 1 kB an Event allows.
pub fn note(sighting: &Sighting) -> String {
    let reason = if sighting.reason.is_empty() {
        "(no reason given)"
    } else {
        &sighting.reason
    };
    format!(
        "break-glass revision {} ({}) by {}: {reason}",
        sighting.revision.number,
        sighting.revision.name,
        sighting.actor.as_deref().unwrap_or("an undeclared actor"),
    )
    .chars()
    .take(1000)
    .collect()
}

#[cfg(test)]
mod tests {

    use super::*;
    use serde_json::json;

    fn revision(n: i64, image: &str, annotations: &[(&str, &str)]) -> Revision {
        Revision::new(
            format!("web-{n}"),
            n,
            &json!({"spec": {"containers": [{"name": "web", "image": image}]}}),
            annotations
                .iter()
                .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
                .collect(),
            None,
        )
    }

    fn observed(current_image: &str, revisions: Vec<Revision>) -> Observed {
        let fingerprint = custody_crds::template_fingerprint(
            &json!({"spec": {"containers": [{"name": "web", "image": current_image}]}}),
        )
        .to_string();
        Observed {
            workload: WorkloadState::sample(&fingerprint),
            revisions,
            pods: Vec::new(),
            nodes: Vec::new(),
        }
    }

    const GLASS: (&str, &str) = ("break-glass", " INC-4711: restoring checkout ");
    const HUMAN: (&str, &str) = ("actor", "human");

    #[test]
    fn pending_by_situation() {
        let noticed = ("break-glass-noticed", "2027-01-01T00:00:00Z");
        // (situation, workload's image, revisions newest first, expected revision)
        let cases: Vec<(&str, &str, Vec<Revision>, Option<i64>)> = vec![
            (
                "a new revision without the annotation",
                "web:2",
                vec![revision(2, "web:2", &[HUMAN]), revision(1, "web:1", &[])],
                None,
            ),
            (
                "a new break-glass revision is due",
                "web:2",
                vec![
                    revision(2, "web:2", &[GLASS, HUMAN]),
                    revision(1, "web:1", &[]),
                ],
                Some(2),
            ),
            (
                "once marked, never again",
                "web:2",
                vec![
                    revision(2, "web:2", &[GLASS, HUMAN, noticed]),
                    revision(1, "web:1", &[]),
                ],
                None,
            ),
            (
                "an older break-glass revision is history",
                "web:2",
                vec![
                    revision(2, "web:2", &[HUMAN]),
                    revision(1, "web:1", &[GLASS]),
                ],
                None,
            ),
            (
                "the newest revision does not carry the template yet",
                "web:3",
                vec![revision(2, "web:2", &[GLASS]), revision(1, "web:1", &[])],
                None,
            ),
            ("no revision yet", "web:1", vec![], None),
            (
                "a blank reason is still a break-glass",
                "web:2",
                vec![revision(2, "web:2", &[("break-glass", " ")])],
                Some(2),
            ),
        ];
        for (situation, image, revisions, want) in cases {
            let got = pending(&observed(image, revisions), &Vocabulary::default());
            assert_eq!(got.map(|s| s.revision.number), want, "{situation}");
        }
    }

    #[test]
    fn a_stateful_set_revision_takes_break_glass_from_its_workload() {
        // A ControllerRevision does not copy the workload's annotations: the rollout puts them
        // on the revision the workload runs.
        let mut o = observed("db:2", vec![]);
        o.workload.kind = WorkloadKind::StatefulSet;
        o.workload.annotations = [GLASS, HUMAN]
            .iter()
            .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
            .collect();
        let assembled = Observed::assemble(
            o.workload,
            vec![revision(1, "db:1", &[]), revision(2, "db:2", &[])],
            vec![],
            vec![],
            &Vocabulary::default(),
        );
        let s = pending(&assembled, &Vocabulary::default()).unwrap();
        assert_eq!(s.revision.number, 2);
        assert_eq!(s.actor.as_deref(), Some("human"));
    }

    #[test]
    fn the_sighting_names_reason_and_actor() {
        let o = observed("web:2", vec![revision(2, "web:2", &[GLASS, HUMAN])]);
        let s = pending(&o, &Vocabulary::default()).unwrap();
        assert_eq!(s.reason, "INC-4711: restoring checkout");
        assert_eq!(s.actor.as_deref(), Some("human"));
        assert_eq!(
            note(&s),
            "break-glass revision 2 (web-2) by human: INC-4711: restoring checkout"
        );
    }

    #[test]
    fn another_prefix_uses_its_own_key_and_mark() {
        let acme = Vocabulary::with_prefix("acme.io");
        let mut r = revision(2, "web:2", &[]);
        r.annotations
            .insert("acme.io/break-glass".into(), "INC-1".into());
        let o = observed("web:2", vec![r.clone()]);
        assert!(pending(&o, &Vocabulary::default()).is_none());
        assert!(pending(&o, &acme).is_some());
        r.annotations
            .insert("acme.io/break-glass-noticed".into(), "t".into());
        assert!(pending(&observed("web:2", vec![r]), &acme).is_none());
    }

    #[test]
    fn the_notice_serializes_as_documented() {
        let o = observed("web:2", vec![revision(2, "web:2", &[GLASS, HUMAN])]);
        let s = pending(&o, &Vocabulary::default()).unwrap();
        let ownership = OwningTeam {
            team: Some("team-web".into()),
            oncall: Some("@web".into()),
            registered: None,
        };
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let json = serde_json::to_value(notice(&o.workload, &s, &ownership, at)).unwrap();
        assert_eq!(
            json,
            json!({
                "kind": "BreakGlass",
                "workload": {"kind": "Deployment", "namespace": "shop", "name": "web", "uid": "uid-web"},
                "revision": "2", "revisionObject": "web-2",
                "reason": "INC-4711: restoring checkout", "actor": "human",
                "team": "team-web", "oncall": "@web", "at": "2027-01-15T08:00:00Z"
            })
        );
    }
}
