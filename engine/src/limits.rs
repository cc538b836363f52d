//! Blast-radius budgets: how many rollouts one agent may have unfinished at once, and how many
//! new revisions it may ship per window, in one scope.
//!
//! The webhook counts nothing itself: the leader controller, which sees every revision and its
//! health, publishes one CustodyAgent per agent (its rollouts in flight and its recent
//! revisions), and every webhook replica enforces from the same snapshot of those. Dry runs and
//! refused requests create no revision, so they never count; a revert by Custody rolls back to
//! an existing revision, which was counted when it was new, so it never counts again.

use std::collections::HashMap;

use custody_crds::selection::glob_matches;
use custody_crds::{
    AgentLimit, AgentRevision, AnnotationKey, CustodyAgent, ProbationScope, WorkloadKind,
};
use jiff::{SignedDuration, Timestamp};

use crate::decision::{Violation, ViolationCode};
use crate::policy_ref::PolicyRef;
use crate::probation::{agent_of, parse_window};
use crate::subject::Subject;

/// A policy's budget, with its window parsed.
#[derive(Clone, Debug)]
pub struct CompiledLimit {
    /// As written.
    pub spec: AgentLimit,
    /// The window of `maxRevisions`.
    pub window: SignedDuration,
}

impl CompiledLimit {
    /// Checks and compiles `spec.agents.limits[index]`.
    pub fn compile(index: usize, spec: &AgentLimit, problems: &mut Vec<String>) -> Option<Self> {
        let at = format!("spec.agents.limits[{index}]");
        let before = problems.len();
        if spec.max_in_flight.is_none() && spec.max_revisions.is_none() {
            problems.push(format!(
                "{at} sets neither maxInFlight nor maxRevisions, so it limits nothing"
            ));
        }
        if spec.max_in_flight == Some(0) || spec.max_revisions == Some(0) {
            problems.push(format!(
                "{at}: a limit of 0 refuses every agent revision; remove the agent's identity instead"
            ));
        }
        let max = custody_crds::guardrails::MAX_BUDGET;
        if spec.max_in_flight.unwrap_or(0) > max || spec.max_revisions.unwrap_or(0) > max {
            problems.push(format!(
                "{at}: a budget above {max} cannot be counted (the controller lists at most {max} of an agent's rollouts and revisions)"
            ));
        }
        if spec.agents.is_empty() || spec.agents.iter().any(|g| g.trim().is_empty()) {
            problems.push(format!(
                "{at}.agents: name the agents as globs (\"*\" for every agent); an empty pattern matches nothing"
            ));
        }
        let window = parse_window(&format!("{at}.window"), &spec.window, problems);
        if problems.len() > before {
            return None;
        }
        Some(Self {
            spec: spec.clone(),
            window: window?,
        })
    }
}

/// The controller's summaries, by agent id.
#[derive(Clone, Debug, Default)]
pub struct AgentActivity {
    by_agent: HashMap<String, Summary>,
}

#[derive(Clone, Debug, Default)]
struct Summary {
    in_flight: Vec<AgentRevision>,
    revisions: Vec<AgentRevision>,
}

impl AgentActivity {
    /// Indexes the CustodyAgent objects.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a CustodyAgent>) -> Self {
        let mut by_agent: HashMap<String, Summary> = HashMap::new();
        for object in objects {
            let Some(status) = &object.status else {
                continue;
            };
            let summary = by_agent.entry(object.spec.agent.clone()).or_default();
            summary.in_flight.extend(status.in_flight.iter().cloned());
            summary.revisions.extend(status.revisions.iter().cloned());
        }
        Self { by_agent }
    }

    /// How many agents have a summary.
    pub fn len(&self) -> usize {
        self.by_agent.len()
    }

    /// True when no agent has a summary.
    pub fn is_empty(&self) -> bool {
        self.by_agent.is_empty()
    }
}

/// The workload a request is about.
pub(crate) struct Workload<'a> {
    pub namespace: &'a str,
    pub kind: WorkloadKind,
    pub name: &'a str,
}

/// The policy's budgets the revision's agent would exceed, at `now`.
pub(crate) fn judge(
    policy: PolicyRef<'_>,
    limits: &[CompiledLimit],
    subject: &Subject<'_, '_>,
    workload: &Workload<'_>,
    activity: &AgentActivity,
    now: Timestamp,
) -> Vec<Violation> {
    let mut found = Vec::new();
    if limits.is_empty() {
        return found;
    }
    let Some(agent) = agent_of(policy, subject) else {
        return found;
    };
    let team = subject.annotations.get(AnnotationKey::Owner).map(str::trim);
    let summary = activity.by_agent.get(agent);
    for limit in limits {
        if !limit.spec.agents.iter().any(|g| glob_matches(g, agent)) {
            continue;
        }
        let scope = limit.spec.scope;
        let in_scope = |r: &&AgentRevision| match scope {
            ProbationScope::Namespace => r.namespace == workload.namespace,
            ProbationScope::Team => team.is_some() && r.team.as_deref() == team,
            ProbationScope::Cluster => true,
        };
        let place = match scope {
            ProbationScope::Namespace => format!("namespace {:?}", workload.namespace),
            ProbationScope::Team => format!("team {:?}'s workloads", team.unwrap_or_default()),
            ProbationScope::Cluster => "the cluster".to_string(),
        };
        if let Some(max) = limit.spec.max_in_flight {
            // A new revision of a workload already in flight replaces that rollout.
            let others: Vec<&AgentRevision> = summary
                .map(|s| s.in_flight.iter())
                .into_iter()
                .flatten()
                .filter(in_scope)
                .filter(|r| {
                    !(r.namespace == workload.namespace
                        && r.kind == workload.kind
                        && r.name == workload.name)
                })
                .collect();
            if others.len() >= max as usize {
                let names: Vec<String> = others
                    .iter()
                    .map(|r| format!("{} {}/{}", r.kind, r.namespace, r.name))
                    .collect();
                found.push(violation(
                    policy,
                    subject,
                    agent,
                    ViolationCode::RolloutLimit,
                    format!(
                        "agent {agent:?} already has {} rollouts in flight in {place}, its limit is {max} (policy {:?}): {}. Room frees as soon as one of them is marked healthy or reverted. Fix: wait for one to finish, then re-apply",
                        others.len(),
                        policy.name,
                        names.join(", ")
                    ),
                ));
            }
        }
        if let Some(max) = limit.spec.max_revisions {
            let since = now - limit.window;
            let mut recent: Vec<&AgentRevision> = summary
                .map(|s| s.revisions.iter())
                .into_iter()
                .flatten()
                .filter(in_scope)
                .filter(|r| r.at.0 > since && r.at.0 <= now)
                .collect();
            recent.sort_by_key(|r| r.at.0);
            if recent.len() >= max as usize {
                // Room frees when the oldest that keeps the count at the limit leaves the window.
                let frees = recent[recent.len() - max as usize].at.0 + limit.window;
                found.push(violation(
                    policy,
                    subject,
                    agent,
                    ViolationCode::RevisionLimit,
                    format!(
                        "agent {agent:?} shipped {} new revisions in {place} within {:#}, its limit is {max} (policy {:?}); the next one fits at {}. Fix: wait until then, or hand the change to a person",
                        recent.len(),
                        limit.window,
                        policy.name,
                        frees.strftime("%Y-%m-%dT%H:%M:%SZ")
                    ),
                ));
            }
        }
    }
    found
}

fn violation(
    policy: PolicyRef<'_>,
    subject: &Subject<'_, '_>,
    agent: &str,
    code: ViolationCode,
    message: String,
) -> Violation {
    Violation {
        code,
        key: Some(AnnotationKey::Agent),
        field: subject.field(AnnotationKey::Agent),
        value: Some(agent.to_string()),
        policy: policy.name.to_string(),
        mode: policy.spec.mode,
        message,
        fix: "wait, then re-apply".to_string(),
    }
}
