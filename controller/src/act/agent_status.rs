//! Publishing the agents' summaries. Reconciles note which workloads' contributions changed (a
//! hash per workload, not the contributions: the cache already holds what they are made of);
//! when one did, a task on the leader sums every workload's contribution from the cache, a
//! namespace at a time, and writes the sums as CustodyAgent objects (server-side apply of the
//! status) where they changed, deleting those of agents with nothing left. The webhook enforces
//! `spec.agents.limits` from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custody_crds::{CustodyAgent, CustodyAgentSpec, CustodyAgentStatus, Vocabulary};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cache::compact::Uid;
use crate::cache::index::Cache;
use crate::metrics::{AgentScopeLabels, Metrics};

use super::agent_activity::{Contribution, Summary, Sums, contribution, digest, object_name};

/// How often the sums are rebuilt and written when something changed: most of the lag a burst
/// of agent rollouts can overshoot a budget by.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Workloads summed between two yields, so reconciles are not held up.
const CHUNK: usize = 256;

const MANAGER: &str = "custody-controller";

/// Which workloads' contributions changed since the last publication.
#[derive(Default)]
pub struct AgentLedger {
    digests: Mutex<HashMap<Uid, u64>>,
    dirty: AtomicBool,
}

impl AgentLedger {
    /// Notes a workload's contribution as its reconcile sees it.
    pub fn note(&self, uid: Uid, c: &Contribution) {
        let mut digests = self.digests.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if c.is_empty() {
            digests.remove(&uid).is_some()
        } else {
            digests.insert(uid, digest(c)) != Some(digest(c))
        };
        if changed {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Forgets a workload that is gone.
    pub fn forget(&self, uid: Uid) {
        self.note(uid, &Contribution::default());
    }

    fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }

    fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }
}

/// What the publisher reads and writes with.
pub struct Publisher {
    /// The API client.
    pub client: Client,
    /// The controller's cache.
    pub cache: Arc<Cache>,
    /// The change notes.
    pub ledger: Arc<AgentLedger>,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Metrics.
    pub metrics: Metrics,
}

/// Writes the summaries while this replica leads, until `shutdown`.
pub async fn run(p: Publisher, mut leader: watch::Receiver<bool>, shutdown: CancellationToken) {
    let api: Api<CustodyAgent> = Api::all(p.client.clone());
    // What this replica wrote, so unchanged agents are not written again; forgotten when the
    // lease is lost, since another replica may have written since.
    let mut published: Option<BTreeMap<String, Summary>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
        }
        if !*leader.borrow_and_update() {
            published = None;
            continue;
        }
        if !p.cache.is_synced() || (published.is_some() && !p.ledger.take_dirty()) {
            continue;
        }
        let sums = sum(&p).await;
        // First write as leader: everything, and away with agents another leader left behind.
        let (before, stale) = match published.take() {
            Some(before) => (before, Vec::new()),
            None => match existing(&api).await {
                Ok(agents) => (BTreeMap::new(), agents),
                Err(error) => {
                    tracing::warn!(%error, "cannot list CustodyAgents (is the CRD installed?); agent budgets are not published");
                    continue;
                }
            },
        };
        match publish(&api, &before, &sums, &stale).await {
            Ok(()) => {
                set_gauge(&p.metrics, &sums);
                published = Some(sums);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write the agents' summaries; retrying");
                p.ledger.mark_dirty();
                published = Some(before);
            }
        }
    }
}

/// Sums every cached workload's contribution, a namespace at a time.
async fn sum(p: &Publisher) -> BTreeMap<String, Summary> {
    let now = jiff::Timestamp::now();
    let mut sums = Sums::default();
    for (_, uids) in p.cache.workloads_by_namespace() {
        for chunk in uids.chunks(CHUNK) {
            for uid in chunk {
                if let Some((w, revisions)) = p.cache.revisions_of(*uid) {
                    sums.add(contribution(&w, &revisions, &p.vocabulary, now));
                }
            }
            tokio::task::yield_now().await;
        }
    }
    sums.finish()
}

/// The agents whose objects exist.
async fn existing(api: &Api<CustodyAgent>) -> Result<Vec<String>, kube::Error> {
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|a| a.spec.agent)
        .collect())
}

/// Writes what changed between `before` and `after`, and deletes agents no longer there (and
/// the `stale` ones found at the start).
async fn publish(
    api: &Api<CustodyAgent>,
    before: &BTreeMap<String, Summary>,
    after: &BTreeMap<String, Summary>,
    stale: &[String],
) -> Result<(), kube::Error> {
    let apply = PatchParams::apply(MANAGER).force();
    for (agent, summary) in after {
        if before.get(agent) == Some(summary) {
            continue;
        }
        let name = object_name(agent);
        let mut object = CustodyAgent::new(
            &name,
            CustodyAgentSpec {
                agent: agent.clone(),
            },
        );
        api.patch(&name, &apply, &Patch::Apply(&object)).await?;
        object.status = Some(CustodyAgentStatus {
            in_flight: summary.in_flight.clone(),
            revisions: summary.revisions.clone(),
            updated_at: Some(Time(jiff::Timestamp::now())),
        });
        api.patch_status(&name, &apply, &Patch::Apply(&object))
            .await?;
    }
    let gone = before
        .keys()
        .chain(stale)
        .filter(|a| !after.contains_key(*a));
    for agent in gone {
        match api
            .delete(&object_name(agent), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn set_gauge(metrics: &Metrics, sums: &BTreeMap<String, Summary>) {
    let family = &metrics.agent_rollouts_in_flight;
    family.clear();
    for (agent, summary) in sums {
        let mut by_namespace: BTreeMap<&str, i64> = BTreeMap::new();
        for r in &summary.in_flight {
            *by_namespace.entry(&r.namespace).or_default() += 1;
        }
        for (namespace, n) in by_namespace {
            family
                .get_or_create(&AgentScopeLabels {
                    agent: agent.clone(),
                    scope: format!("namespace/{namespace}"),
                })
                .set(n);
        }
    }
}
