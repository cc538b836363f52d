//! Which running revisions came in through an approved change request: the results about such
//! a workload name the request (`custodyChange`) and the people who approved it (`approvedBy`)
//! among their properties, so a report says who let an agent's change in.
//!
//! The request's `status.applied` names the revision its approval admitted; the workload still
//! runs it when its current revision is that one: a Deployment's revision number (of the
//! ReplicaSet running its template), a StatefulSet's ControllerRevision, and for the other kinds
//! the generation, as [`crate::decide::changes::consume::revision`] wrote it.

use std::collections::{BTreeMap, HashMap};

use custody_crds::{CustodyChange, WorkloadKind};
use custody_engine::approvers;

use crate::cache::compact;
use crate::cache::index::Cache;
use crate::cache::observe::{Revision, WorkloadState};

use super::judge::Finding;

/// The property naming the request.
pub const CHANGE_PROPERTY: &str = "custodyChange";
/// The property naming who approved it.
pub const APPROVED_BY_PROPERTY: &str = "approvedBy";

/// An applied request, as the audit needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedChange {
    /// Its name.
    pub name: String,
    /// The revision its approval admitted.
    pub revision: String,
    /// The workload's generation that carried it.
    pub generation: Option<i64>,
    /// Who approved it, in order.
    pub approvers: Vec<String>,
}

/// The applied requests by workload (namespace, kind, name).
#[derive(Clone, Debug, Default)]
pub struct AppliedIndex {
    by_workload: HashMap<(String, WorkloadKind, String), Vec<AppliedChange>>,
}

impl AppliedIndex {
    /// The applied requests among `changes`.
    pub fn from_changes<'c>(changes: impl IntoIterator<Item = &'c CustodyChange>) -> Self {
        let mut by_workload: HashMap<_, Vec<AppliedChange>> = HashMap::new();
        for change in changes {
            let Some(status) = &change.status else {
                continue;
            };
            let Some(applied) = &status.applied else {
                continue;
            };
            let key = (
                change.metadata.namespace.clone().unwrap_or_default(),
                change.spec.workload.kind,
                change.spec.workload.name.clone(),
            );
            by_workload.entry(key).or_default().push(AppliedChange {
                name: change.metadata.name.clone().unwrap_or_default(),
                revision: applied.revision.clone(),
                generation: applied.generation,
                approvers: approvers(&change.spec.proposer, &status.approvals)
                    .into_iter()
                    .map(|a| a.by)
                    .collect(),
            });
        }
        Self { by_workload }
    }

    /// Whether no request was applied.
    pub fn is_empty(&self) -> bool {
        self.by_workload.is_empty()
    }

    /// The applied requests of one workload.
    pub fn of(&self, workload: &WorkloadState) -> &[AppliedChange] {
        if self.by_workload.is_empty() {
            return &[];
        }
        self.by_workload
            .get(&(
                workload.namespace.clone(),
                workload.kind,
                workload.name.clone(),
            ))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The request the workload's running revision came in through, if any. `current` is the
/// revision running its template (the newest carrying it).
pub fn came_in<'a>(
    workload: &WorkloadState,
    current: Option<&Revision>,
    applied: &'a [AppliedChange],
) -> Option<&'a AppliedChange> {
    let running = match workload.kind {
        WorkloadKind::Deployment => current.map(|r| r.number.to_string()),
        WorkloadKind::StatefulSet => current.map(|r| r.name.clone()),
        _ => Some(workload.generation.to_string()),
    }?;
    applied.iter().rev().find(|a| a.revision == running)
}

/// The properties of results about a workload that runs what `change` admitted.
pub fn properties(change: &AppliedChange) -> BTreeMap<String, String> {
    BTreeMap::from([
        (CHANGE_PROPERTY.to_string(), change.name.clone()),
        (
            APPROVED_BY_PROPERTY.to_string(),
            change.approvers.join(", "),
        ),
    ])
}

/// Adds the request's properties to the findings about each of `workloads` whose running
/// revision came in through one, the current revision read from the cache. Only workloads with
/// an applied request are looked up.
pub fn annotate(
    findings: &mut [Finding],
    workloads: &[WorkloadState],
    index: &AppliedIndex,
    cache: &Cache,
) {
    if index.is_empty() {
        return;
    }
    let mut by_uid: HashMap<&str, BTreeMap<String, String>> = HashMap::new();
    for w in workloads {
        let applied = index.of(w);
        if applied.is_empty() {
            continue;
        }
        let current = current_revision(cache, w);
        if let Some(change) = came_in(w, current.as_ref(), applied) {
            by_uid.insert(w.uid.as_str(), properties(change));
        }
    }
    for f in findings {
        if let Some(extra) = by_uid.get(f.workload.uid.as_str()) {
            f.properties
                .extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
}

/// The newest revision carrying the workload's template, from the cache.
fn current_revision(cache: &Cache, w: &WorkloadState) -> Option<Revision> {
    if !matches!(w.kind, WorkloadKind::Deployment | WorkloadKind::StatefulSet) {
        return None;
    }
    let (state, revisions) = cache.revisions_of(compact::uid(&w.uid))?;
    revisions
        .into_iter()
        .filter(|r| r.fingerprint == state.template_fingerprint)
        .max_by_key(|r| r.number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(name: &str, revision: &str, generation: i64) -> AppliedChange {
        AppliedChange {
            name: name.into(),
            revision: revision.into(),
            generation: Some(generation),
            approvers: vec!["alice".into(), "bob".into()],
        }
    }

    fn revision(name: &str, number: i64) -> Revision {
        Revision::new(
            name.into(),
            number,
            &serde_json::json!({}),
            BTreeMap::new(),
            None,
        )
    }

    #[test]
    fn came_in_by_situation() {
        let history = [applied("web-aaa", "2", 2), applied("web-bbb", "3", 5)];
        let mut set = WorkloadState::sample("");
        set.kind = WorkloadKind::StatefulSet;
        let set_applied = [applied("db-ccc", "db-6b7f9c", 3)];
        let mut daemons = WorkloadState::sample("");
        daemons.kind = WorkloadKind::DaemonSet;
        daemons.generation = 4;
        let daemon_applied = [applied("agent-ddd", "4", 4)];
        // (situation, workload, current revision, applied requests, expected request)
        type Case<'a> = (
            &'a str,
            WorkloadState,
            Option<Revision>,
            &'a [AppliedChange],
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a Deployment runs the revision the last request admitted",
                WorkloadState::sample(""),
                Some(revision("web-7d9", 3)),
                &history,
                Some("web-bbb"),
            ),
            (
                "a Deployment rolled on since (a person's change, a revert)",
                WorkloadState::sample(""),
                Some(revision("web-8e1", 4)),
                &history,
                None,
            ),
            (
                "the cache has no current revision yet",
                WorkloadState::sample(""),
                None,
                &history,
                None,
            ),
            (
                "a StatefulSet runs the ControllerRevision admitted",
                set.clone(),
                Some(revision("db-6b7f9c", 2)),
                &set_applied,
                Some("db-ccc"),
            ),
            (
                "a StatefulSet on another ControllerRevision",
                set,
                Some(revision("db-5a5a5a", 3)),
                &set_applied,
                None,
            ),
            (
                "a DaemonSet at the generation admitted",
                daemons.clone(),
                None,
                &daemon_applied,
                Some("agent-ddd"),
            ),
            (
                "a DaemonSet changed since",
                WorkloadState {
                    generation: 5,
                    ..daemons
                },
                None,
                &daemon_applied,
                None,
            ),
        ];
        for (situation, w, current, applied, want) in cases {
            let got = came_in(&w, current.as_ref(), applied).map(|a| a.name.as_str());
            assert_eq!(got, want, "{situation}");
        }
    }

    #[test]
    fn the_properties_name_the_request_and_its_approvers() {
        let p = properties(&applied("web-bbb", "3", 5));
        assert_eq!(p[CHANGE_PROPERTY], "web-bbb");
        assert_eq!(p[APPROVED_BY_PROPERTY], "alice, bob");
    }
}
