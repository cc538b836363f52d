//! Publishing the agents' summaries: each workload's contribution is kept as the leader last
//! reconciled it, and a task writes the per-agent sums as CustodyAgent objects (server-side
//! apply of the status) when they change, and deletes those of agents with nothing left.
//! The webhook enforces `spec.agents.limits` from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use custody_crds::{CustodyAgent, CustodyAgentSpec, CustodyAgentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::agents::{Contribution, Summary, object_name, summarize};
use crate::metrics::{AgentScopeLabels, Metrics};

/// How often the sums are written when something changed: the lag a burst of agent rollouts
/// can overshoot a budget by, on top of the watches'.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(500);

const MANAGER: &str = "custody-controller";

/// Every workload's contribution, by workload uid.
#[derive(Default)]
pub struct AgentLedger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_workload: HashMap<String, Contribution>,
    dirty: bool,
}

impl AgentLedger {
    /// Records a workload's contribution (an empty one removes it).
    pub fn set(&self, uid: &str, contribution: Contribution) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = if contribution.is_empty() {
            inner.by_workload.remove(uid).is_some()
        } else if inner.by_workload.get(uid) != Some(&contribution) {
            inner.by_workload.insert(uid.to_string(), contribution);
            true
        } else {
            false
        };
        inner.dirty |= changed;
    }

    /// Forgets a workload that is gone.
    pub fn forget(&self, uid: &str) {
        self.set(uid, Contribution::default());
    }

    /// The sums, if anything changed since the last call.
    fn take_changed(&self) -> Option<BTreeMap<String, Summary>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.dirty {
            return None;
        }
        inner.dirty = false;
        Some(summarize(inner.by_workload.values()))
    }

    fn mark_dirty(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dirty = true;
    }
}

/// Writes the summaries while this replica leads, until `shutdown`.
pub async fn run(
    client: Client,
    ledger: std::sync::Arc<AgentLedger>,
    metrics: Metrics,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<CustodyAgent> = Api::all(client);
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
        let Some(sums) = ledger.take_changed() else {
            continue;
        };
        // First write as leader: everything, and away with agents another leader left behind.
        let (before, stale) = match published.take() {
            Some(before) => (before, Vec::new()),
            None => match existing(&api).await {
                Ok(agents) => (BTreeMap::new(), agents),
                Err(error) => {
                    tracing::warn!(%error, "cannot list CustodyAgents (is the CRD installed?); agent budgets are not published");
                    ledger.mark_dirty();
                    continue;
                }
            },
        };
        match publish(&api, &before, &sums, &stale).await {
            Ok(()) => {
                set_gauge(&metrics, &sums);
                published = Some(sums);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write the agents' summaries; retrying");
                ledger.mark_dirty();
            }
        }
    }
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
