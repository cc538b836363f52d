//! The controller's cache: every workload, revision and Pod it follows, reduced on arrival to the
//! few hundred bytes the decision reads ([`super::observe`]), and linked by owner UID so that
//! gathering one rollout costs what that rollout holds, not what the cluster holds.
//!
//! It is fed by watch events. A watch (re)starts with `Init`, lists everything as `InitApply`
//! and ends the list with `InitDone`: rows are kept through a relist and those the new list did
//! not mention are dropped at its end, so a reconnect neither empties the cache for a moment
//! nor keeps deleted objects. Each event answers which workloads it concerns, so the controller
//! can look at exactly those.
//!
//! Nodes are kept apart, by name, as whether each is up (a few bytes each): a rollout reads the
//! Nodes its Pods are bound to, and a Node going down or coming back concerns the workloads of
//! the Pods bound to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use custody_crds::Vocabulary;
use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

use super::compact::{AnnotationKeys, StoredPod, StoredRevision, StoredWorkload, Uid, uid};
use super::node::{self, NodeId, NodeState, NodeTable};
use super::observe::{self, Observed, Owner, Revision, WorkloadState};
use super::slim::{SlimControllerRevision, SlimNode, SlimPod, SlimReplicaSet};

/// One watch feeding the cache; each relists on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feed {
    /// apps/v1 Deployments.
    Deployments,
    /// apps/v1 StatefulSets.
    StatefulSets,
    /// apps/v1 DaemonSets.
    DaemonSets,
    /// apps/v1 ReplicaSets.
    ReplicaSets,
    /// apps/v1 ControllerRevisions.
    ControllerRevisions,
    /// v1 Pods.
    Pods,
    /// v1 Nodes.
    Nodes,
}

impl Feed {
    const COUNT: usize = 7;

    const fn index(self) -> usize {
        self as usize
    }
}

struct Row<V> {
    owner: Uid,
    feed: Feed,
    epoch: u32,
    value: V,
}

/// Rows by UID, and the UIDs of each owner's rows.
struct Table<V> {
    // Boxed: a hash table doubles its buckets as it grows, and an empty bucket of a box costs
    // 8 bytes where an empty bucket of a row costs the row.
    rows: HashMap<Uid, Box<Row<V>>>,
    by_owner: HashMap<Uid, Vec<Uid>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            by_owner: HashMap::new(),
        }
    }
}

impl<V> Table<V> {
    fn insert(&mut self, uid: Uid, row: Box<Row<V>>) {
        let owner = row.owner;
        match self.rows.insert(uid, row) {
            Some(old) if old.owner == owner => {}
            Some(old) => {
                self.unlink(uid, old.owner);
                self.by_owner.entry(owner).or_default().push(uid);
            }
            None => self.by_owner.entry(owner).or_default().push(uid),
        }
    }

    fn unlink(&mut self, uid: Uid, owner: Uid) {
        if let Some(uids) = self.by_owner.get_mut(&owner) {
            uids.retain(|u| *u != uid);
            if uids.is_empty() {
                self.by_owner.remove(&owner);
            }
        }
    }

    fn remove(&mut self, uid: Uid) -> Option<Box<Row<V>>> {
        let row = self.rows.remove(&uid)?;
        self.unlink(uid, row.owner);
        Some(row)
    }

    /// The rows of `feed` that the relist numbered `epoch` did not mention.
    fn stale(&self, feed: Feed, epoch: u32) -> Vec<Uid> {
        self.rows
            .iter()
            .filter(|(_, r)| r.feed == feed && r.epoch != epoch)
            .map(|(uid, _)| *uid)
            .collect()
    }

    fn owned(&self, owner: Uid) -> impl Iterator<Item = (Uid, &V)> {
        self.by_owner
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.rows.get(uid).map(|r| (*uid, &r.value)))
    }
}

#[derive(Default)]
struct Tables {
    workloads: Table<StoredWorkload>,
    revisions: Table<StoredRevision>,
    pods: Table<StoredPod>,
    nodes: NodeTable,
    /// The current relist of each feed.
    epochs: [u32; Feed::COUNT],
    /// Which feeds have finished a list.
    listed: [bool; Feed::COUNT],
}

impl Tables {
    /// The workload a row owned by `owner` concerns: `owner` itself, or the owner of the
    /// revision `owner` (a Pod's ReplicaSet).
    fn workload_of(&self, owner: Uid) -> Option<Uid> {
        let workload = self
            .revisions
            .rows
            .get(&owner)
            .map_or(owner, |revision| revision.owner);
        self.workloads
            .rows
            .contains_key(&workload)
            .then_some(workload)
    }

    /// The workload a removed row owned by `owner` concerns: the workload itself when the row
    /// was one, else the one it belonged to, if still cached.
    fn removal_concerns<V: Stored>(&self, owner: Uid) -> Option<Uid> {
        if V::IS_WORKLOAD {
            Some(owner)
        } else {
            self.workload_of(owner)
        }
    }

    /// The workloads with a Pod bound to one of `nodes`, each once. A walk over every Pod: it
    /// runs when a Node goes down or comes back, which is rare, where an index from Node to
    /// Pods would cost memory for every Pod all the time.
    fn workloads_on(&self, nodes: &HashSet<NodeId>) -> Vec<Uid> {
        if nodes.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for row in self.pods.rows.values() {
            if row.value.node().is_some_and(|n| nodes.contains(&n))
                && let Some(key) = self.workload_of(row.owner)
                && seen.insert(key)
            {
                out.push(key);
            }
        }
        out
    }

    /// Notes that `feed` finished a list; the cache is synced once every feed has.
    fn finish_list(&mut self, feed: Feed, synced: &watch::Sender<bool>) {
        self.listed[feed.index()] = true;
        if self.listed.iter().all(|l| *l) {
            synced.send_replace(true);
        }
    }
}

/// Where each kind of row lives.
trait Stored: Sized {
    /// Whether a row is a workload itself (its owner is its own UID), so that removing it
    /// concerns that workload: the decision forgets what it noted about it.
    const IS_WORKLOAD: bool = false;
    fn table(t: &mut Tables) -> &mut Table<Self>;
}

impl Stored for StoredWorkload {
    const IS_WORKLOAD: bool = true;
    fn table(t: &mut Tables) -> &mut Table<Self> {
        &mut t.workloads
    }
}

impl Stored for StoredRevision {
    fn table(t: &mut Tables) -> &mut Table<Self> {
        &mut t.revisions
    }
}

impl Stored for StoredPod {
    fn table(t: &mut Tables) -> &mut Table<Self> {
        &mut t.pods
    }
}

/// The cache. Cheap to lock: no I/O happens under the lock, and reading copies out one rollout.
pub struct Cache {
    tables: Mutex<Tables>,
    vocabulary: Vocabulary,
    keys: AnnotationKeys,
    synced: watch::Sender<bool>,
}

impl Cache {
    /// An empty cache that keeps the annotations of `vocabulary` the controller reads.
    pub fn new(vocabulary: Vocabulary) -> Self {
        Self {
            tables: Mutex::new(Tables::default()),
            keys: AnnotationKeys::new(&vocabulary),
            vocabulary,
            synced: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every write leaves the tables consistent before it can panic, so a poisoned lock is
        // still usable.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether every feed has listed once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Resolves once every feed has listed once.
    pub async fn synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// How many workloads the cache follows.
    pub fn workload_count(&self) -> usize {
        self.lock().workloads.rows.len()
    }

    /// How many Nodes the cache holds.
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    /// How many workloads, revisions and Pods the cache holds.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let t = self.lock();
        (
            t.workloads.rows.len(),
            t.revisions.rows.len(),
            t.pods.rows.len(),
        )
    }

    /// Every workload the cache follows.
    pub fn workload_uids(&self) -> Vec<Uid> {
        self.lock().workloads.rows.keys().copied().collect()
    }

    /// The workloads by namespace, as UIDs: the background audit reads the cache a namespace
    /// at a time, so it never holds a copy of every workload at once.
    pub fn workloads_by_namespace(&self) -> BTreeMap<String, Vec<Uid>> {
        let t = self.lock();
        let mut out: BTreeMap<String, Vec<Uid>> = BTreeMap::new();
        for (uid, row) in &t.workloads.rows {
            let (_, namespace, _) = row.value.identity();
            match out.get_mut(namespace) {
                Some(uids) => uids.push(*uid),
                None => {
                    out.insert(namespace.to_string(), vec![*uid]);
                }
            }
        }
        out
    }

    /// The states of the workloads with these UIDs that are still cached.
    pub fn workload_states(&self, uids: &[Uid]) -> Vec<WorkloadState> {
        let t = self.lock();
        uids.iter()
            .filter_map(|uid| t.workloads.rows.get(uid))
            .map(|row| row.value.state(&self.keys))
            .collect()
    }

    /// A workload and its revisions (no Pods), by UID: what the agents' summaries read.
    pub fn revisions_of(&self, uid: Uid) -> Option<(WorkloadState, Vec<Revision>)> {
        let t = self.lock();
        let workload = t.workloads.rows.get(&uid)?.value.state(&self.keys);
        let revisions = t
            .revisions
            .owned(uid)
            .map(|(_, r)| r.revision(&self.keys))
            .collect();
        Some((workload, revisions))
    }

    /// The rollout of the workload whose UID is `uid`, if the cache has it.
    pub fn observe(&self, uid: Uid) -> Option<Observed> {
        let t = self.lock();
        let workload = t.workloads.rows.get(&uid)?.value.state(&self.keys);
        let mut revisions = Vec::new();
        let mut pods = Vec::new();
        for (revision_uid, revision) in t.revisions.owned(uid) {
            revisions.push(revision.revision(&self.keys));
            let owner_key = Some(revision.pod_key());
            pods.extend(t.pods.owned(revision_uid).map(|(_, p)| p.pod(owner_key)));
        }
        pods.extend(t.pods.owned(uid).map(|(_, p)| p.pod(None)));
        let mut nodes: Vec<NodeState> = Vec::new();
        for id in pods.iter().filter_map(|p| p.node) {
            if !nodes.iter().any(|n| n.id == id)
                && let Some(state) = t.nodes.get(id)
            {
                nodes.push(state);
            }
        }
        drop(t);
        Some(Observed::assemble(
            workload,
            revisions,
            pods,
            nodes,
            &self.vocabulary,
        ))
    }

    /// Applies one event of a workload feed; answers the workload, also when it was deleted or
    /// a relist dropped it (so the decision forgets it).
    pub fn apply_workload<K: Resource>(
        &self,
        feed: Feed,
        event: &Event<K>,
        reduce: impl Fn(&K, &Vocabulary) -> WorkloadState,
    ) -> Vec<Uid> {
        self.apply(feed, event, |object: &K| {
            let id = uid(object.meta().uid.as_deref()?);
            Some((
                id,
                id,
                StoredWorkload::new(reduce(object, &self.vocabulary), &self.keys),
            ))
        })
    }

    /// Applies one ReplicaSet event; answers the Deployment it concerns.
    pub fn apply_replica_set(&self, event: &Event<SlimReplicaSet>) -> Vec<Uid> {
        self.apply(Feed::ReplicaSets, event, |rs: &SlimReplicaSet| {
            self.revision_row(rs, observe::replica_set_revision(rs, &self.vocabulary)?)
        })
    }

    /// Applies one ControllerRevision event; answers the workload it concerns.
    pub fn apply_controller_revision(&self, event: &Event<SlimControllerRevision>) -> Vec<Uid> {
        self.apply(
            Feed::ControllerRevisions,
            event,
            |cr: &SlimControllerRevision| {
                self.revision_row(cr, observe::controller_revision(cr, &self.vocabulary)?)
            },
        )
    }

    fn revision_row<K: Resource>(
        &self,
        object: &K,
        (owner, revision): (Owner, Revision),
    ) -> Option<(Uid, Uid, StoredRevision)> {
        Some((
            uid(object.meta().uid.as_deref()?),
            uid(&owner.uid),
            StoredRevision::new(revision, &self.keys),
        ))
    }

    /// Applies one Pod event; answers the workload it concerns.
    pub fn apply_pod(&self, event: &Event<SlimPod>) -> Vec<Uid> {
        self.apply(Feed::Pods, event, |pod: &SlimPod| {
            let (owner, state) = observe::pod_state(pod)?;
            let id = uid(pod.metadata.uid.as_deref()?);
            let by_owner_name = owner.kind == "ReplicaSet";
            Some((id, uid(&owner.uid), StoredPod::new(state, by_owner_name)))
        })
    }

    /// Applies one Node event; answers the workloads with Pods bound to it when it went down or
    /// came back (a Node not known counts as down: its Pods' failures are its own). During a
    /// relist the answer waits for its end, so that listing a thousand Nodes walks the Pods
    /// once.
    pub fn apply_node(&self, event: &Event<SlimNode>) -> Vec<Uid> {
        let mut t = self.lock();
        let feed = Feed::Nodes;
        let epoch = t.epochs[feed.index()];
        match event {
            Event::Apply(object) | Event::InitApply(object) => {
                let Some(state) = node::node_state(object) else {
                    return Vec::new();
                };
                if !t.nodes.upsert(state, epoch) {
                    Vec::new()
                } else if matches!(event, Event::InitApply(_)) {
                    t.nodes.changed_during_relist(state.id);
                    Vec::new()
                } else {
                    t.workloads_on(&HashSet::from([state.id]))
                }
            }
            Event::Delete(object) => {
                let Some(name) = object.metadata.name.as_deref() else {
                    return Vec::new();
                };
                let id = NodeId::of(name);
                if t.nodes.remove(id) {
                    t.workloads_on(&HashSet::from([id]))
                } else {
                    Vec::new()
                }
            }
            Event::Init => {
                t.epochs[feed.index()] = epoch.wrapping_add(1);
                t.nodes.relist();
                Vec::new()
            }
            Event::InitDone => {
                let changed = t.nodes.relisted(epoch);
                let touched = t.workloads_on(&changed);
                t.finish_list(feed, &self.synced);
                touched
            }
        }
    }

    /// The bookkeeping every feed shares. `reduce` answers the object's UID, its owner's UID
    /// and what to store, or `None` for an object the cache does not follow (removed, in case
    /// it used to be followed). Answers the workloads the event concerns.
    fn apply<K: Resource, V: Stored>(
        &self,
        feed: Feed,
        event: &Event<K>,
        reduce: impl Fn(&K) -> Option<(Uid, Uid, V)>,
    ) -> Vec<Uid> {
        let mut t = self.lock();
        let epoch = t.epochs[feed.index()];
        match event {
            Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) => {
                let kept = match event {
                    Event::Delete(_) => None,
                    _ => reduce(object),
                };
                let touched = match kept {
                    Some((id, owner, value)) => {
                        let row = Box::new(Row {
                            owner,
                            feed,
                            epoch,
                            value,
                        });
                        V::table(&mut t).insert(id, row);
                        t.workload_of(owner)
                    }
                    None => object
                        .meta()
                        .uid
                        .as_deref()
                        .and_then(|u| V::table(&mut t).remove(uid(u)))
                        .and_then(|row| t.removal_concerns::<V>(row.owner)),
                };
                touched.into_iter().collect()
            }
            Event::Init => {
                t.epochs[feed.index()] = epoch.wrapping_add(1);
                Vec::new()
            }
            Event::InitDone => {
                let stale = V::table(&mut t).stale(feed, epoch);
                let removed: Vec<Box<Row<V>>> = stale
                    .into_iter()
                    .filter_map(|id| V::table(&mut t).remove(id))
                    .collect();
                let touched = removed
                    .iter()
                    .filter_map(|row| t.removal_concerns::<V>(row.owner))
                    .collect();
                t.finish_list(feed, &self.synced);
                touched
            }
        }
    }
}
