//! Agents on probation, as the webhook counts them from RollbackRecords, and the notice of
//! each. Pure: the records and policies are passed in, and the clock.
//!
//! A probation's notice is kept on its newest counting record (the one that put the agent on
//! probation, or kept it there), so that it is sent once per target across restarts; it
//! resolves when the agent is no longer on probation in that place: the window passed, or a
//! person lifted it.

use std::collections::BTreeMap;
use std::sync::Arc;

use custody_crds::{CustodyPolicy, NoticeKind, ProbationScope, RollbackRecord};
use custody_engine::{CompiledProbation, RevertIndex};
use jiff::Timestamp;

use super::record::shipped_by;
use super::why;
use super::{Command, Notice, State};

/// An agent on probation in one place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnProbation {
    /// The agent.
    pub agent: String,
    /// Where: `namespace/<name>`, `team/<name>` or `cluster`.
    pub place: String,
    /// The policy whose probation it is.
    pub policy: String,
    /// The newest counting record, as (namespace, name): where the notice is kept.
    pub newest: (String, String),
    /// The counting records' names.
    pub records: Vec<String>,
    /// When it ends unless more reverts come.
    pub ends: Timestamp,
}

/// Every agent on probation at `now` under the policies' `agents.probation`, by (agent, place);
/// the first policy (by name) that puts an agent on probation in a place speaks for it.
pub fn on_probation(
    records: &[Arc<RollbackRecord>],
    policies: &[Arc<CustodyPolicy>],
    now: Timestamp,
) -> BTreeMap<(String, String), OnProbation> {
    let index = RevertIndex::from_records(records.iter().map(|r| r.as_ref()));
    let mut out = BTreeMap::new();
    let mut policies: Vec<&Arc<CustodyPolicy>> = policies.iter().collect();
    policies.sort_by_key(|p| p.metadata.name.clone());
    for policy in policies {
        let Some(spec) = policy.spec.agents.probation.as_ref() else {
            continue;
        };
        let Some(compiled) = CompiledProbation::compile(spec, &mut Vec::new()) else {
            continue;
        };
        let name = policy.metadata.name.clone().unwrap_or_default();
        for (agent, place) in index.on_probation(&compiled, now) {
            if out.contains_key(&(agent.clone(), place.clone())) {
                continue;
            }
            if let Some(p) = standing(&index, &compiled, &name, &agent, &place, now) {
                out.insert((agent, place), p);
            }
        }
    }
    out
}

fn standing(
    index: &RevertIndex,
    compiled: &CompiledProbation,
    policy: &str,
    agent: &str,
    place: &str,
    now: Timestamp,
) -> Option<OnProbation> {
    let scope = compiled.spec.scope;
    let (namespace, team) = match scope {
        ProbationScope::Namespace => (place.strip_prefix("namespace/")?, None),
        ProbationScope::Team => ("", Some(place.strip_prefix("team/")?)),
        ProbationScope::Cluster => ("", None),
    };
    let counting = index.counting(agent, scope, namespace, team, compiled.window, now);
    let n = compiled.spec.reverts as usize;
    let newest = counting.last()?;
    let oldest_of_n = counting.len().checked_sub(n).map(|i| counting[i])?;
    Some(OnProbation {
        agent: agent.to_string(),
        place: place.to_string(),
        policy: policy.to_string(),
        newest: (newest.namespace.clone(), newest.record.clone()),
        records: counting.iter().map(|r| r.record.clone()).collect(),
        ends: oldest_of_n.at + compiled.window,
    })
}

/// The situation of an agent's probation in a place.
pub fn situation(agent: &str, place: &str) -> String {
    format!("custody/probation/{agent}/{place}")
}

/// The notice of `p`, kept on its newest record `record`.
pub fn notice(p: &OnProbation, record: &RollbackRecord) -> Notice {
    let (namespace, name) = &p.newest;
    let workload = format!(
        "{}/{}",
        record.spec.workload.kind.as_str(),
        record.spec.workload.name
    );
    let scope_namespace = p.place.strip_prefix("namespace/").unwrap_or_default();
    Notice {
        kind: NoticeKind::Probation,
        severity: NoticeKind::Probation.severity(),
        situation: situation(&p.agent, &p.place),
        id: format!(
            "{}/probation",
            record
                .metadata
                .uid
                .clone()
                .unwrap_or_else(|| format!("{namespace}/{name}"))
        ),
        state: State::Firing {
            ends_at: Some(p.ends),
        },
        started_at: record.spec.acted_at.0,
        namespace: scope_namespace.to_string(),
        workload: Some(workload.clone()),
        team: record.spec.team.clone(),
        agent: Some(p.agent.clone()),
        reason: "Probation".into(),
        summary: format!(
            "agent {} is on probation in {} until {}: {} of its revisions were reverted",
            p.agent,
            p.place,
            p.ends,
            p.records.len()
        ),
        explanation: format!(
            "Under policy {:?}, agent {} had {} revisions reverted within the window in {} (RollbackRecords {}). Its new revisions there are refused until {}, unless a person lifts the probation after a review.",
            p.policy,
            p.agent,
            p.records.len(),
            p.place,
            p.records.join(", "),
            p.ends
        ),
        revision: Some(record.spec.from.revision.clone()),
        shipped_by: shipped_by(&record.spec.from),
        evidence: p
            .records
            .iter()
            .map(|r| format!("RollbackRecord {r}"))
            .collect(),
        commands: vec![
            why(namespace, &workload),
            Command {
                label: "Lift the probation (after a review)".into(),
                command: format!(
                    "kubectl custody lift {name} -n {namespace} --probation --reason \"<what was checked>\""
                ),
            },
        ],
        source: format!("/apis/custody.dev/v1alpha1/namespaces/{namespace}/rollbackrecords/{name}"),
        subject: format!("agents/{}", p.agent),
        data: serde_json::json!({
            "kind": "Probation",
            "agent": p.agent,
            "place": p.place,
            "policy": p.policy,
            "records": p.records,
            "endsAt": p.ends.to_string(),
            "lift": format!("kubectl custody lift {name} -n {namespace} --probation --reason \"<what was checked>\""),
        }),
    }
}

/// The place `record` counts in under `scope`, as [`OnProbation::place`] names it.
pub fn place_of(record: &RollbackRecord, scope: ProbationScope) -> Option<String> {
    match scope {
        ProbationScope::Namespace => Some(format!(
            "namespace/{}",
            record.metadata.namespace.as_deref().unwrap_or_default()
        )),
        ProbationScope::Team => record.spec.team.as_ref().map(|t| format!("team/{t}")),
        ProbationScope::Cluster => Some("cluster".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(name: &str, at: &str, lifted: bool) -> Arc<RollbackRecord> {
        let mut value = json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
            "metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}")},
            "spec": {
                "workload": {"kind": "Deployment", "name": "web"},
                "action": "Reverted", "reason": "CrashLoop",
                "from": {"revision": "2", "templateFingerprint": "f", "actor": "agent", "agent": "bot"},
                "policy": "p", "explanation": "x",
                "regressionDetectedAt": at, "actedAt": at
            }
        });
        if lifted {
            value["status"] =
                json!({"probationLifted": {"by": "alice", "reason": "reviewed it", "at": at}});
        }
        Arc::new(serde_json::from_value(value).expect("a record"))
    }

    fn policy() -> Arc<CustodyPolicy> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
                "metadata": {"name": "p"},
                "spec": {"agents": {"probation": {"reverts": 2, "window": "1h"}}}
            }))
            .expect("a policy"),
        )
    }

    #[test]
    fn an_agent_is_on_probation_until_the_window_passes_or_a_lift() {
        let now: Timestamp = "2026-12-05T10:30:00Z".parse().expect("a time");
        let one = vec![record("r1", "2026-12-05T10:00:00Z", false)];
        assert!(
            on_probation(&one, &[policy()], now).is_empty(),
            "one revert is not enough"
        );
        let two = vec![
            record("r1", "2026-12-05T10:00:00Z", false),
            record("r2", "2026-12-05T10:20:00Z", false),
        ];
        let found = on_probation(&two, &[policy()], now);
        let p = &found[&("bot".to_string(), "namespace/shop".to_string())];
        assert_eq!(p.newest, ("shop".to_string(), "r2".to_string()));
        assert_eq!(
            p.ends,
            "2026-12-05T11:00:00Z".parse::<Timestamp>().expect("a time")
        );
        let later: Timestamp = "2026-12-05T11:00:01Z".parse().expect("a time");
        assert!(
            on_probation(&two, &[policy()], later).is_empty(),
            "the window passed"
        );
        let lifted = vec![
            record("r1", "2026-12-05T10:00:00Z", false),
            record("r2", "2026-12-05T10:20:00Z", true),
        ];
        assert!(
            on_probation(&lifted, &[policy()], now).is_empty(),
            "a person lifted it"
        );
    }

    #[test]
    fn the_notice_names_the_agent_the_place_and_the_lift() {
        let two = vec![
            record("r1", "2026-12-05T10:00:00Z", false),
            record("r2", "2026-12-05T10:20:00Z", false),
        ];
        let now: Timestamp = "2026-12-05T10:30:00Z".parse().expect("a time");
        let found = on_probation(&two, &[policy()], now);
        let p = found.values().next().expect("on probation");
        let n = notice(p, &two[1]);
        assert_eq!(n.kind, NoticeKind::Probation);
        assert_eq!(n.situation, "custody/probation/bot/namespace/shop");
        assert_eq!(n.namespace, "shop");
        assert_eq!(
            n.state,
            State::Firing {
                ends_at: Some(p.ends)
            }
        );
        assert!(
            n.commands[1]
                .command
                .contains("lift r2 -n shop --probation")
        );
        assert_eq!(
            place_of(&two[0], ProbationScope::Namespace).as_deref(),
            Some("namespace/shop")
        );
        assert_eq!(place_of(&two[0], ProbationScope::Team), None);
    }
}
