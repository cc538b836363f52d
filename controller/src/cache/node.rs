//! Nodes, as far as the decision cares: whether each is up. A Pod on a Node that is down (or
//! gone) fails through no fault of its revision. The cache keeps a few bytes per Node, keyed
//! by a number for its name, and answers which Nodes went down or came back so that the
//! workloads of the Pods bound to them are looked at again.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU64;

use super::slim::SlimNode;

/// A Node, by its name, as a number: a Pod keeps eight bytes for where it runs instead of a
/// name of forty, tens of thousands of times over. The decision only compares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(NonZeroU64);

impl NodeId {
    /// The Node named `name`. Two names of a cluster share a number with a chance of about
    /// one in 10^10 at a hundred thousand Nodes.
    pub fn of(name: &str) -> Self {
        let mut h = DefaultHasher::new();
        name.hash(&mut h);
        Self(NonZeroU64::new(h.finish()).unwrap_or(NonZeroU64::MIN))
    }
}

/// What the decision reads of a Node: whether its Pods' failures can be its fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// Which Node.
    pub id: NodeId,
    /// Whether its Ready condition is True (False and Unknown, the kubelet silent, are not).
    pub ready: bool,
    /// Whether it carries the `node.kubernetes.io/unreachable` or `node.kubernetes.io/not-ready`
    /// taint, which the node lifecycle controller sets before or besides the condition.
    pub tainted: bool,
}

impl NodeState {
    /// Whether it is up: Ready, and not tainted as unreachable or not ready.
    pub const fn up(&self) -> bool {
        self.ready && !self.tainted
    }
}

/// The taints the node lifecycle controller puts on a Node it has lost.
pub const NODE_DOWN_TAINTS: [&str; 2] = [
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/not-ready",
];

/// Reduces a Node; `None` without a name.
pub fn node_state(node: &SlimNode) -> Option<NodeState> {
    let name = node.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    let ready = node
        .status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let tainted = node
        .spec
        .taints
        .iter()
        .flatten()
        .any(|t| NODE_DOWN_TAINTS.contains(&t.key.as_str()));
    Some(NodeState {
        id: NodeId::of(name),
        ready,
        tainted,
    })
}

/// A Node as the cache keeps it: whether it is up, and the relist that last mentioned it.
#[derive(Clone, Copy)]
struct Row {
    ready: bool,
    tainted: bool,
    epoch: u32,
}

/// The Nodes the cache knows, and those whose being up changed during a relist not yet ended.
#[derive(Default)]
pub struct NodeTable {
    rows: HashMap<NodeId, Row>,
    changed: HashSet<NodeId>,
}

impl NodeTable {
    /// How many Nodes it holds.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The Node, if known.
    pub fn get(&self, id: NodeId) -> Option<NodeState> {
        self.rows.get(&id).map(|r| NodeState {
            id,
            ready: r.ready,
            tainted: r.tainted,
        })
    }

    /// Whether the Node is up; a Node not (or no longer) known is not.
    pub fn up(&self, id: NodeId) -> bool {
        self.get(id).is_some_and(|n| n.up())
    }

    /// Keeps `state`, as the list numbered `epoch` saw it; answers whether its being up
    /// changed.
    pub fn upsert(&mut self, state: NodeState, epoch: u32) -> bool {
        let was_up = self.up(state.id);
        let row = Row {
            ready: state.ready,
            tainted: state.tainted,
            epoch,
        };
        self.rows.insert(state.id, row);
        was_up != state.up()
    }

    /// Forgets the Node; answers whether it was up (and so is now down).
    pub fn remove(&mut self, id: NodeId) -> bool {
        let was_up = self.up(id);
        self.rows.remove(&id);
        was_up
    }

    /// Remembers that the Node's being up changed during the relist.
    pub fn changed_during_relist(&mut self, id: NodeId) {
        self.changed.insert(id);
    }

    /// A relist begins: what changed during an unfinished one is moot.
    pub fn relist(&mut self) {
        self.changed.clear();
    }

    /// The relist numbered `epoch` ended: drops the Nodes it did not mention and answers every
    /// Node whose being up changed during it.
    pub fn relisted(&mut self, epoch: u32) -> HashSet<NodeId> {
        let stale: Vec<NodeId> = self
            .rows
            .iter()
            .filter(|(_, r)| r.epoch != epoch)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if self.remove(id) {
                self.changed.insert(id);
            }
        }
        std::mem::take(&mut self.changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn slim<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_node_is_down_when_not_ready_or_tainted_as_lost() {
        let node = |conditions: Value, taints: Value| {
            node_state(&slim(json!({"metadata": {"name": "n1"},
                "spec": {"taints": taints}, "status": {"conditions": conditions}})))
            .unwrap()
        };
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        assert!(node(ready.clone(), json!([])).up());
        assert_eq!(node(ready.clone(), json!([])).id, NodeId::of("n1"));
        for status in ["False", "Unknown"] {
            assert!(
                !node(json!([{"type": "Ready", "status": status}]), json!([])).up(),
                "{status}"
            );
        }
        assert!(
            !node(json!([]), json!(null)).up(),
            "no Ready condition is no Ready"
        );
        for taint in NODE_DOWN_TAINTS {
            assert!(
                !node(
                    ready.clone(),
                    json!([{"key": taint, "effect": "NoExecute"}])
                )
                .up()
            );
        }
        assert!(node(ready, json!([{"key": "dedicated", "effect": "NoSchedule"}])).up());
        assert!(node_state(&slim(json!({"metadata": {}}))).is_none());
    }

    #[test]
    fn a_relist_answers_what_went_down_or_came_back_while_away() {
        let state = |name, ready| NodeState {
            id: NodeId::of(name),
            ready,
            tainted: false,
        };
        let mut table = NodeTable::default();
        assert!(table.upsert(state("a", true), 0), "unknown is down; now up");
        assert!(
            !table.upsert(state("b", false), 0),
            "unknown is down; still down"
        );
        assert!(table.upsert(state("c", true), 0));
        table.relist();
        for (name, ready) in [("a", true), ("b", true)] {
            if table.upsert(state(name, ready), 1) {
                table.changed_during_relist(NodeId::of(name));
            }
        }
        let changed = table.relisted(1);
        assert_eq!(changed, HashSet::from([NodeId::of("b"), NodeId::of("c")]));
        assert_eq!(table.len(), 2, "c is gone");
        assert!(!table.up(NodeId::of("c")));
    }
}
