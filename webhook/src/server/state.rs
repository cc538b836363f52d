//! The live state the handlers read: compiled policies, registered teams, the quarantine index,
//! the agents' summaries, the change requests and namespace labels, each swapped or updated by
//! its watch and read lock-free per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use custody_crds::{CustodyAgent, CustodyChange, CustodyPolicy, CustodyTeam, RollbackRecord};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};

use super::metrics::Metrics;
use custody_engine::{AgentActivity, ChangeIndex, PolicySet, QuarantineIndex, TeamIndex};

/// What the webhook knows of the cluster.
pub struct LiveState {
    policies: ArcSwap<PolicySet>,
    quarantine: ArcSwap<QuarantineIndex>,
    teams: ArcSwap<TeamIndex>,
    activity: ArcSwap<AgentActivity>,
    changes: ArcSwap<ChangeIndex>,
    namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    synced: [AtomicBool; CACHES],
    metrics: Metrics,
}

/// The caches the webhook waits for before it judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// CustodyPolicies.
    Policies = 0,
    /// Namespace metadata.
    Namespaces = 1,
    /// RollbackRecords.
    Records = 2,
    /// CustodyTeams.
    Teams = 3,
    /// CustodyAgents, the controller's summaries.
    Agents = 4,
    /// CustodyChanges, the change requests people approve.
    Changes = 5,
}

/// How many caches there are.
const CACHES: usize = 6;

impl Cache {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Cache::Policies => "custodypolicies",
            Cache::Namespaces => "namespaces",
            Cache::Records => "rollbackrecords",
            Cache::Teams => "custodyteams",
            Cache::Agents => "custodyagents",
            Cache::Changes => "custodychanges",
        }
    }

    /// The kind the cache holds, for messages.
    pub const fn kind(self) -> &'static str {
        match self {
            Cache::Policies => "CustodyPolicy",
            Cache::Namespaces => "Namespace",
            Cache::Records => "RollbackRecord",
            Cache::Teams => "CustodyTeam",
            Cache::Agents => "CustodyAgent",
            Cache::Changes => "CustodyChange",
        }
    }
}

impl LiveState {
    /// Empty state, not synced: the watches fill it. Returns the namespace store's writer.
    pub fn watched(
        metrics: Metrics,
    ) -> (
        Arc<Self>,
        reflector::store::Writer<PartialObjectMeta<Namespace>>,
    ) {
        let (reader, writer) = reflector::store();
        let state = Self {
            policies: ArcSwap::from_pointee(PolicySet::default()),
            quarantine: ArcSwap::from_pointee(QuarantineIndex::default()),
            teams: ArcSwap::from_pointee(TeamIndex::default()),
            activity: ArcSwap::from_pointee(AgentActivity::default()),
            changes: ArcSwap::from_pointee(ChangeIndex::default()),
            namespaces: Some(reader),
            synced: Default::default(),
            metrics,
        };
        (Arc::new(state), writer)
    }

    /// Fixed state, already synced: for tests, benchmarks and running without a cluster.
    pub fn fixed(policies: PolicySet, quarantine: QuarantineIndex, metrics: Metrics) -> Arc<Self> {
        let state = Self {
            policies: ArcSwap::from_pointee(PolicySet::default()),
            quarantine: ArcSwap::from_pointee(QuarantineIndex::default()),
            teams: ArcSwap::from_pointee(TeamIndex::default()),
            activity: ArcSwap::from_pointee(AgentActivity::default()),
            changes: ArcSwap::from_pointee(ChangeIndex::default()),
            namespaces: None,
            synced: std::array::from_fn(|_| AtomicBool::new(true)),
            metrics,
        };
        state.set_policies(policies, 0);
        state.set_quarantine(quarantine);
        Arc::new(state)
    }

    /// The policies in force.
    pub fn policies(&self) -> arc_swap::Guard<Arc<PolicySet>> {
        self.policies.load()
    }

    /// The quarantine in force.
    pub fn quarantine(&self) -> arc_swap::Guard<Arc<QuarantineIndex>> {
        self.quarantine.load()
    }

    /// The registered teams.
    pub fn teams(&self) -> arc_swap::Guard<Arc<TeamIndex>> {
        self.teams.load()
    }

    /// The controller's summaries of agents.
    pub fn activity(&self) -> arc_swap::Guard<Arc<AgentActivity>> {
        self.activity.load()
    }

    /// The change requests, by workload.
    pub fn changes(&self) -> arc_swap::Guard<Arc<ChangeIndex>> {
        self.changes.load()
    }

    /// Swaps in the change requests (all of them: the index is rebuilt, like the quarantine).
    pub fn set_changes<'c>(&self, changes: impl IntoIterator<Item = &'c CustodyChange>) {
        let mut loaded = 0usize;
        let index = ChangeIndex::from_changes(changes.into_iter().inspect(|_| loaded += 1));
        self.metrics.change_requests_loaded.set(to_i64(loaded));
        self.changes.store(Arc::new(index));
    }

    /// Rebuilds the change requests from a snapshot of the cache.
    pub fn rebuild_changes(&self, snapshot: Vec<Arc<CustodyChange>>) {
        self.set_changes(snapshot.iter().map(|c| &**c));
    }

    /// Rebuilds the agents' summaries from a snapshot of the cache.
    pub fn rebuild_activity(&self, snapshot: Vec<Arc<CustodyAgent>>) {
        self.activity.store(Arc::new(AgentActivity::from_objects(
            snapshot.iter().map(|a| &**a),
        )));
    }

    /// Swaps in registered teams.
    pub fn set_teams(&self, teams: TeamIndex) {
        self.metrics.teams_loaded.set(to_i64(teams.len()));
        self.teams.store(Arc::new(teams));
    }

    /// Rebuilds the team index from a snapshot of the cache, logging the invalid ones.
    pub fn rebuild_teams(&self, snapshot: Vec<Arc<CustodyTeam>>) {
        let (index, errors) = TeamIndex::compile(snapshot.iter().map(|t| &**t));
        for error in &errors {
            tracing::warn!(team = %error.team, problems = ?error.problems, "CustodyTeam is invalid; workloads naming it are told it is not registered");
        }
        tracing::info!(
            teams = index.len(),
            invalid = errors.len(),
            "teams reloaded"
        );
        self.set_teams(index);
    }

    /// The cached metadata of a namespace, if known.
    pub fn namespace(&self, name: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        self.namespaces.as_ref()?.get(&ObjectRef::new(name))
    }

    /// Whether every cache has synced.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Whether one cache has synced.
    pub fn is_cache_synced(&self, cache: Cache) -> bool {
        self.synced[cache as usize].load(Ordering::Acquire)
    }

    /// Marks a cache as synced (or not, while it re-lists after an error).
    pub fn set_synced(&self, cache: Cache, synced: bool) {
        self.synced[cache as usize].store(synced, Ordering::Release);
        self.metrics
            .cache_synced
            .get_or_create(&super::metrics::CacheLabels {
                cache: cache.as_str(),
            })
            .set(i64::from(synced));
    }

    /// Swaps in compiled policies.
    pub fn set_policies(&self, policies: PolicySet, invalid: usize) {
        self.metrics.policies_loaded.set(to_i64(policies.len()));
        self.metrics.policies_invalid.set(to_i64(invalid));
        self.policies.store(Arc::new(policies));
        self.refresh_probation(k8s_openapi::jiff::Timestamp::now());
    }

    /// Rebuilds the policies from a snapshot of the cache, logging the invalid ones.
    pub fn rebuild_policies(&self, snapshot: Vec<Arc<CustodyPolicy>>) {
        let (set, errors) = PolicySet::compile(snapshot.iter().map(|p| (**p).clone()));
        for error in &errors {
            tracing::warn!(policy = %error.policy, problems = ?error.problems, "CustodyPolicy is invalid and is not enforced");
        }
        tracing::info!(
            policies = set.len(),
            invalid = errors.len(),
            "policies reloaded"
        );
        self.set_policies(set, errors.len());
    }

    /// Swaps in a quarantine index.
    pub fn set_quarantine(&self, quarantine: QuarantineIndex) {
        self.metrics
            .quarantined_workloads
            .set(to_i64(quarantine.len()));
        self.quarantine.store(Arc::new(quarantine));
        self.refresh_probation(k8s_openapi::jiff::Timestamp::now());
    }

    /// Sets `custody_agent_probation` to the agents on probation at `now` under any policy.
    /// Probation ends with time as well as with records, so this also runs on a timer.
    pub fn refresh_probation(&self, now: k8s_openapi::jiff::Timestamp) {
        let policies = self.policies();
        let quarantine = self.quarantine();
        let family = &self.metrics.agent_probation;
        family.clear();
        for probation in policies.iter().filter_map(|p| p.probation.as_ref()) {
            for (agent, scope) in quarantine.reverts().on_probation(probation, now) {
                family
                    .get_or_create(&super::metrics::ProbationLabels { agent, scope })
                    .set(1);
            }
        }
    }

    /// Rebuilds the quarantine from a snapshot of the RollbackRecord cache.
    pub fn rebuild_quarantine(&self, snapshot: Vec<Arc<RollbackRecord>>) {
        self.set_quarantine(QuarantineIndex::from_records(snapshot.iter().map(|r| &**r)));
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
