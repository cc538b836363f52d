//! Probation: an agent whose revisions were reverted too often lately, in one scope, ships no
//! new revisions there for a while.
//!
//! Everything comes from RollbackRecords, which the cluster keeps: the count is the same in
//! every webhook replica, survives restarts, and needs no counter of Custody's own. Time is an
//! input, so the tests choose it.

use std::collections::HashMap;

use custody_crds::{Actor, AnnotationKey, Probation, ProbationScope, RecordAction, RollbackRecord};
use jiff::{SignedDuration, Span, SpanRelativeTo, Timestamp};

use crate::decision::{Violation, ViolationCode};
use crate::identity::identity_matches;
use crate::policy_ref::PolicyRef;
use crate::subject::Subject;

/// A policy's probation, with its window parsed.
#[derive(Clone, Debug)]
pub struct CompiledProbation {
    /// As written.
    pub spec: Probation,
    /// How far back reverts count.
    pub window: SignedDuration,
}

impl CompiledProbation {
    /// Checks and compiles `spec.agents.probation`.
    pub fn compile(spec: &Probation, problems: &mut Vec<String>) -> Option<Self> {
        if spec.reverts == 0 {
            problems.push("spec.agents.probation.reverts must be at least 1".to_string());
        }
        let window = parse_window("spec.agents.probation.window", &spec.window, problems);
        Some(Self {
            spec: spec.clone(),
            window: window?,
        })
        .filter(|_| spec.reverts > 0)
    }
}

/// Parses a guardrail's window (`1h`, `30m`, `1d`, ISO 8601), days as 24 hours; problems name
/// `field`.
pub(crate) fn parse_window(
    field: &str,
    value: &str,
    problems: &mut Vec<String>,
) -> Option<SignedDuration> {
    let window = value
        .trim()
        .parse::<Span>()
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.to_duration(SpanRelativeTo::days_are_24_hours())
                .map_err(|e| e.to_string())
        });
    match window {
        Ok(w) if w.is_positive() => Some(w),
        Ok(_) => {
            problems.push(format!("{field} {value:?} must be positive"));
            None
        }
        Err(error) => {
            problems.push(format!(
                "{field} {value:?} is not a duration such as 1h, 30m or 1d: {error}"
            ));
            None
        }
    }
}

/// One revert of an agent's revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revert {
    /// The record's name.
    pub record: String,
    /// Its namespace.
    pub namespace: String,
    /// The owning team it names.
    pub team: Option<String>,
    /// When the revert was made.
    pub at: Timestamp,
    /// A person lifted the agent's probation on this record.
    pub lifted: bool,
}

/// Agents' reverts, by agent, oldest first.
#[derive(Clone, Debug, Default)]
pub struct RevertIndex {
    by_agent: HashMap<String, Vec<Revert>>,
}

impl RevertIndex {
    /// The actual reverts of agent revisions among `records`.
    pub fn from_records<'r>(records: impl IntoIterator<Item = &'r RollbackRecord>) -> Self {
        let mut by_agent: HashMap<String, Vec<Revert>> = HashMap::new();
        for record in records {
            let from = &record.spec.from;
            if record.spec.action != RecordAction::Reverted || from.actor != Some(Actor::Agent) {
                continue;
            }
            let Some(agent) = from.agent.clone() else {
                continue;
            };
            by_agent.entry(agent).or_default().push(Revert {
                record: record.metadata.name.clone().unwrap_or_default(),
                namespace: record.metadata.namespace.clone().unwrap_or_default(),
                team: record.spec.team.clone(),
                at: record.spec.acted_at.0,
                lifted: record
                    .status
                    .as_ref()
                    .is_some_and(|s| s.probation_lifted.is_some()),
            });
        }
        for reverts in by_agent.values_mut() {
            reverts.sort_by(|a, b| a.at.cmp(&b.at).then(a.record.cmp(&b.record)));
        }
        Self { by_agent }
    }

    /// How many agents have reverts.
    pub fn agents(&self) -> usize {
        self.by_agent.len()
    }

    /// The reverts of `agent` that count at `now` in the scope of (`namespace`, `team`): within
    /// the window, and after the newest one a person lifted. Oldest first.
    pub fn counting(
        &self,
        agent: &str,
        scope: ProbationScope,
        namespace: &str,
        team: Option<&str>,
        window: SignedDuration,
        now: Timestamp,
    ) -> Vec<&Revert> {
        let Some(reverts) = self.by_agent.get(agent) else {
            return Vec::new();
        };
        let in_scope = |r: &&Revert| match scope {
            ProbationScope::Namespace => r.namespace == namespace,
            ProbationScope::Team => team.is_some() && r.team.as_deref() == team,
            ProbationScope::Cluster => true,
        };
        let since = now - window;
        let scoped: Vec<&Revert> = reverts.iter().filter(in_scope).collect();
        let after_lift = scoped.iter().rposition(|r| r.lifted).map_or(0, |i| i + 1);
        scoped[after_lift..]
            .iter()
            .copied()
            .filter(|r| r.at > since && r.at <= now)
            .collect()
    }
}

impl RevertIndex {
    /// Every agent on probation under `probation` at `now`, with the scope it is on probation
    /// in (`namespace/<name>`, `team/<name>` or `cluster`), sorted.
    pub fn on_probation(
        &self,
        probation: &CompiledProbation,
        now: Timestamp,
    ) -> std::collections::BTreeSet<(String, String)> {
        let mut out = std::collections::BTreeSet::new();
        let scope = probation.spec.scope;
        let n = probation.spec.reverts as usize;
        for (agent, reverts) in &self.by_agent {
            let mut places: Vec<(&str, Option<&str>, String)> = Vec::new();
            for r in reverts {
                let place = match scope {
                    ProbationScope::Namespace => (
                        r.namespace.as_str(),
                        None,
                        format!("namespace/{}", r.namespace),
                    ),
                    ProbationScope::Team => match &r.team {
                        Some(team) => ("", Some(team.as_str()), format!("team/{team}")),
                        None => continue,
                    },
                    ProbationScope::Cluster => ("", None, "cluster".to_string()),
                };
                if !places.iter().any(|p| p.2 == place.2) {
                    places.push(place);
                }
            }
            for (namespace, team, label) in places {
                let counting = self.counting(agent, scope, namespace, team, probation.window, now);
                if counting.len() >= n {
                    out.insert((agent.clone(), label));
                }
            }
        }
        out
    }
}

/// The agent a revision is attributed to, if it is an agent's: declared `actor: agent`, or sent
/// by one of the policy's agent identities; the id is its `agent` annotation.
pub(crate) fn agent_of<'s>(policy: PolicyRef<'_>, subject: &'s Subject<'_, '_>) -> Option<&'s str> {
    let ids = &policy.spec.identities;
    let agent_identity = identity_matches(&ids.agents, subject.username, subject.groups)
        && !identity_matches(&ids.delivery, subject.username, subject.groups);
    if subject.actor() != Some(Actor::Agent) && !agent_identity {
        return None;
    }
    subject
        .annotations
        .get(AnnotationKey::Agent)
        .map(str::trim)
        .filter(|a| !a.is_empty())
}

/// Whether the policy's `probation` puts the revision's agent on probation at `now`.
pub(crate) fn judge(
    policy: PolicyRef<'_>,
    probation: &CompiledProbation,
    subject: &Subject<'_, '_>,
    namespace: &str,
    reverts: &RevertIndex,
    now: Timestamp,
) -> Option<Violation> {
    let agent = agent_of(policy, subject)?;
    let team = subject.annotations.get(AnnotationKey::Owner).map(str::trim);
    let scope = probation.spec.scope;
    let counting = reverts.counting(agent, scope, namespace, team, probation.window, now);
    let n = probation.spec.reverts as usize;
    if counting.len() < n {
        return None;
    }
    // Probation holds while n reverts remain in the window: until the oldest of the newest n
    // leaves it.
    let ends = counting[counting.len() - n].at + probation.window;
    let records: Vec<&str> = counting.iter().map(|r| r.record.as_str()).collect();
    let newest = counting
        .last()
        .map(|r| r.record.as_str())
        .unwrap_or_default();
    let newest_ns = counting
        .last()
        .map(|r| r.namespace.as_str())
        .unwrap_or(namespace);
    let place = match scope {
        ProbationScope::Namespace => format!("namespace {namespace:?}"),
        ProbationScope::Team => format!("team {:?}'s workloads", team.unwrap_or_default()),
        ProbationScope::Cluster => "the cluster".to_string(),
    };
    Some(Violation {
        code: ViolationCode::OnProbation,
        key: Some(AnnotationKey::Agent),
        field: subject.field(AnnotationKey::Agent),
        value: Some(agent.to_string()),
        policy: policy.name.to_string(),
        mode: policy.spec.mode,
        message: format!(
            "agent {agent:?} is on probation in {place} (policy {:?}): {} of its revisions were reverted within {:#} (RollbackRecords {}), so its new revisions are refused until {}. Fix: hand this change to a person; after a review, a person may lift the probation: kubectl custody lift {newest} -n {newest_ns} --probation --reason \"<what was checked>\"",
            policy.name,
            counting.len(),
            probation.window,
            records.join(", "),
            ends.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
        fix: "hand over to a person".to_string(),
    })
}
