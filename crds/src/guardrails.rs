//! `spec.agents` of a CustodyPolicy: guardrails that bind agents only. Probation: after
//! repeated reverts of one agent's revisions, its new revisions are refused for a while.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kind::WorkloadKind;
use crate::team::TeamMembers;

/// Guardrails for agents' revisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentGuardrails {
    /// Probation after repeated reverts; off when omitted, `{}` for the defaults (3 reverts in
    /// 1 hour, per namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<Probation>,
    /// Blast-radius budgets: how much one agent may have in flight, and ship, per scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<AgentLimit>,
    /// A guarded first step: an agent's new revision is held after its first batch of Pods
    /// until it has proven itself, then resumed or reverted; off when omitted, `{}` for the
    /// defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// A person's review: an agent's new revision of a workload in scope is admitted only once
    /// people approved a CustodyChange with its exact digest; off when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

impl AgentGuardrails {
    /// True when no guardrail is set.
    pub fn is_empty(&self) -> bool {
        self.probation.is_none()
            && self.limits.is_empty()
            && self.canary.is_none()
            && self.approval.is_none()
    }
}

/// Which agents' changes need a person's approval, to which of the policy's workloads, from
/// whom, and for how long an approval holds. Every given criterion must match; the policy's own
/// `match` still decides which workloads it judges at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The agent ids (`agent` annotation) whose changes need approval, as globs.
    #[serde(default = "all_agents")]
    pub agents: Vec<String>,
    /// Only these kinds; empty means every kind the policy judges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<WorkloadKind>,
    /// Only workloads whose `owner` annotation matches one of these globs; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<String>,
    /// Only workloads whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// Who may approve or reject, as globs. When empty, the members of the CustodyTeam the
    /// workload's `owner` names. Never the proposer, a service account, a `system:` user or an
    /// agent identity of any policy, whatever is listed here.
    #[serde(default, skip_serializing_if = "TeamMembers::is_empty")]
    pub approvers: TeamMembers,
    /// How many different people must approve: 1 or 2.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 2))]
    pub required: u32,
    /// How long a request takes approvals after it is proposed, and how long an approval then
    /// admits the change: `24h`, `30m`, `7d` or ISO 8601.
    #[serde(default = "default_valid_for")]
    pub valid_for: String,
}

impl Default for Approval {
    fn default() -> Self {
        Self {
            agents: all_agents(),
            kinds: Vec::new(),
            teams: Vec::new(),
            object_selector: None,
            approvers: TeamMembers::default(),
            required: one(),
            valid_for: default_valid_for(),
        }
    }
}

fn one() -> u32 {
    1
}

fn default_valid_for() -> String {
    "24h".to_string()
}

/// The guarded first step of an agent's rollout. The controller holds the rollout once the new
/// revision has its first Pods (a Deployment paused, a StatefulSet's partition kept at the last
/// ordinal), judges those Pods by the rollback settings and the metric analysis, then resumes
/// the rollout or reverts it. A held rollout says so on the workload (the `held` annotation, a
/// `CustodyHeld` condition on Deployments, an Event) and stays held if the controller is down;
/// `kubectl custody resume` releases it. People's rollouts are never held; DaemonSets are not
/// held (their rollout has no step to stop at).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// Seconds the first Pods must stay Ready, and the analysis (when the policy has one) keep
    /// passing, before the rollout resumes. With an analysis, the hold also lasts until every
    /// metric has had `failureLimit` conclusive checks: missing data never releases a rollout.
    #[serde(default = "default_hold_seconds")]
    #[schemars(range(min = 5, max = 86400))]
    pub hold_seconds: u32,
}

impl Default for Canary {
    fn default() -> Self {
        Self {
            hold_seconds: default_hold_seconds(),
        }
    }
}

fn default_hold_seconds() -> u32 {
    60
}

/// A budget for the agents it names, counted per agent id, in one scope. The counts come from
/// the controller's per-agent summaries (CustodyAgent objects), so they are cluster-wide and the
/// same in every webhook replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentLimit {
    /// The agent ids it applies to, as globs (`claude-code/*`); each agent has its own budget.
    #[serde(default = "all_agents")]
    pub agents: Vec<String>,
    /// Where the agent's rollouts and revisions count together.
    #[serde(default)]
    pub scope: ProbationScope,
    /// At most this many of the agent's rollouts unfinished at once (admitted, not yet marked
    /// healthy by the controller, not reverted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,
    /// At most this many new revisions of the agent per `window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_revisions: Option<u32>,
    /// The window of `maxRevisions`: `10m`, `1h`, `1d` or ISO 8601.
    #[serde(default = "default_window")]
    pub window: String,
}

/// The largest budget a policy may set: the controller lists at most this many rollouts in
/// flight, and revisions, per agent, which keeps a CustodyAgent far below etcd's object size
/// limit.
pub const MAX_BUDGET: u32 = 1_000;

fn all_agents() -> Vec<String> {
    vec!["*".to_string()]
}

/// After `reverts` reverts of one agent's revisions within `window`, in one scope, that agent's
/// new revisions in that scope are denied until the oldest of them leaves the window, or a
/// person lifts the probation on the newest record (`kubectl custody lift --probation`).
/// People and automation are never put on probation by an agent's records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Probation {
    /// How many reverts put an agent on probation.
    #[serde(default = "default_reverts")]
    #[schemars(range(min = 1))]
    pub reverts: u32,
    /// How far back reverts count: `1h`, `30m`, `1d` or ISO 8601 (`PT1H`).
    #[serde(default = "default_window")]
    pub window: String,
    /// Where reverts count together, and where the probation applies.
    #[serde(default)]
    pub scope: ProbationScope,
}

impl Default for Probation {
    fn default() -> Self {
        Self {
            reverts: default_reverts(),
            window: default_window(),
            scope: ProbationScope::default(),
        }
    }
}

fn default_reverts() -> u32 {
    3
}

fn default_window() -> String {
    "1h".to_string()
}

/// Where an agent's reverts count together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProbationScope {
    /// Reverts in one namespace put the agent on probation in that namespace.
    #[default]
    Namespace,
    /// Reverts of one owning team's workloads (the records' `team`) put the agent on probation
    /// for that team's workloads.
    Team,
    /// Reverts anywhere put the agent on probation everywhere the policy applies.
    Cluster,
}

impl ProbationScope {
    /// The scope as written in the policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProbationScope::Namespace => "Namespace",
            ProbationScope::Team => "Team",
            ProbationScope::Cluster => "Cluster",
        }
    }
}
