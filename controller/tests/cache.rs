//! The controller's cache fed watch events by hand: owner links, the workloads each event
//! concerns, relists that drop what disappeared, StatefulSet and DaemonSet revisions, and the
//! Nodes whose going down concerns the workloads of the Pods bound to them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_controller::cache::compact::{Uid, uid};
use custody_controller::cache::index::{Cache, Feed};
use custody_controller::cache::node::{NodeId, NodeState};
use custody_controller::cache::slim::{
    SlimControllerRevision, SlimDaemonSet, SlimDeployment, SlimNode, SlimPod, SlimReplicaSet,
    SlimStatefulSet,
};
use custody_controller::cache::workload::Workload;
use custody_crds::{Vocabulary, WorkloadKind};
use kube::runtime::watcher::Event;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
}

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
}

fn deployment(name: &str, uid: &str, image: &str) -> SlimDeployment {
    object(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "generation": 1,
                     "annotations": {"custody.dev/actor": "agent", "custody.dev/owner": "team-web", "other": "x"}},
        "spec": {"replicas": 2, "template": template(image)},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    }))
}

fn replica_set(
    name: &str,
    uid: &str,
    deployment: (&str, &str),
    revision: u32,
    image: &str,
) -> SlimReplicaSet {
    object(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid,
                     "annotations": {"deployment.kubernetes.io/revision": revision.to_string(), "custody.dev/actor": "agent"},
                     "ownerReferences": owner("Deployment", deployment.0, deployment.1)},
        "spec": {"template": template(image)}
    }))
}

fn pod(name: &str, uid: &str, owner_ref: Value, labels: Value, ready: bool) -> SlimPod {
    object(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": labels, "ownerReferences": owner_ref},
        "status": {"startTime": "2027-01-15T08:00:00Z",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2027-01-15T08:00:00Z"}],
                   "containerStatuses": [{"name": "web", "restartCount": 0, "state": {"running": {}}}]}
    }))
}

/// The workload named `name` (the fixtures give each the UID `uid-<name>`).
fn key(name: &str) -> Uid {
    uid(&format!("uid-{name}"))
}

/// Lists `objects` as a watch's initial list does.
fn list<K>(apply: impl Fn(&Event<K>) -> Vec<Uid>, objects: Vec<K>) -> Vec<Uid> {
    let mut touched = apply(&Event::Init);
    for o in objects {
        touched.extend(apply(&Event::InitApply(o)));
    }
    touched.extend(apply(&Event::InitDone));
    touched
}

fn list_workloads<K: Workload>(cache: &Cache, objects: Vec<K>) {
    let apply = |e: &Event<K>| cache.apply_workload(K::FEED, e, K::reduce);
    list(apply, objects);
}

fn sync_empty(cache: &Cache, feeds: &[Feed]) {
    for feed in feeds {
        match feed {
            Feed::Deployments => list_workloads::<SlimDeployment>(cache, vec![]),
            Feed::StatefulSets => list_workloads::<SlimStatefulSet>(cache, vec![]),
            Feed::DaemonSets => list_workloads::<SlimDaemonSet>(cache, vec![]),
            Feed::ReplicaSets => {
                list(|e| cache.apply_replica_set(e), vec![]);
            }
            Feed::ControllerRevisions => {
                list(|e| cache.apply_controller_revision(e), vec![]);
            }
            Feed::Pods => {
                list(|e| cache.apply_pod(e), vec![]);
            }
            Feed::Nodes => {
                list(|e| cache.apply_node(e), vec![]);
            }
        }
    }
}

#[test]
fn a_deployment_gathers_its_replica_sets_and_their_pods_only() {
    let cache = Cache::new(Vocabulary::default());
    list_workloads(
        &cache,
        vec![
            deployment("web", "uid-web", "web:2"),
            deployment("api", "uid-api", "api:1"),
        ],
    );
    let touched = list(
        |e| cache.apply_replica_set(e),
        vec![
            replica_set("web-1", "uid-rs1", ("web", "uid-web"), 1, "web:1"),
            replica_set("web-2", "uid-rs2", ("web", "uid-web"), 2, "web:2"),
            replica_set("api-1", "uid-rs3", ("api", "uid-api"), 1, "api:1"),
        ],
    );
    assert!(touched.contains(&key("web")));
    let touched = list(
        |e| cache.apply_pod(e),
        vec![
            pod(
                "web-2-a",
                "uid-p1",
                owner("ReplicaSet", "web-2", "uid-rs2"),
                json!({}),
                false,
            ),
            pod(
                "api-1-a",
                "uid-p2",
                owner("ReplicaSet", "api-1", "uid-rs3"),
                json!({}),
                true,
            ),
            pod(
                "job-x",
                "uid-p3",
                owner("Job", "job", "uid-job"),
                json!({}),
                true,
            ),
        ],
    );
    assert_eq!(
        touched,
        vec![key("web"), key("api")],
        "the Job's pod concerns no workload"
    );
    assert!(
        !cache.is_synced(),
        "StatefulSets, DaemonSets and ControllerRevisions not listed yet"
    );
    sync_empty(
        &cache,
        &[
            Feed::StatefulSets,
            Feed::DaemonSets,
            Feed::ControllerRevisions,
        ],
    );
    assert!(
        !cache.is_synced(),
        "Nodes not listed yet: deciding without them would blame revisions for dead Nodes"
    );
    sync_empty(&cache, &[Feed::Nodes]);
    assert!(cache.is_synced());
    assert_eq!(cache.sizes(), (2, 3, 2), "the Job's pod is not kept");

    let observed = cache.observe(uid("uid-web")).unwrap();
    assert_eq!(observed.workload.name, "web");
    let numbers: Vec<i64> = observed.revisions.iter().map(|r| r.number).collect();
    assert_eq!(numbers, vec![2, 1], "newest first");
    assert_eq!(observed.pods.len(), 1);
    assert_eq!(observed.pods[0].revision, "web-2");
    assert_eq!(
        observed.revisions[0].fingerprint,
        observed.workload.template_fingerprint
    );
    assert_eq!(observed.revisions[0].images, vec!["web:2"]);
    assert_eq!(
        observed.workload.annotations.keys().collect::<Vec<_>>(),
        vec!["custody.dev/actor", "custody.dev/owner"],
        "only the annotations the controller reads are kept (owner for the audit and signed provenance)"
    );
    assert!(observed.workload.any_annotations);
}

#[test]
fn a_pod_listed_before_its_replica_set_is_linked_once_the_replica_set_arrives() {
    let cache = Cache::new(Vocabulary::default());
    list_workloads(&cache, vec![deployment("web", "uid-web", "web:1")]);
    let touched = cache.apply_pod(&Event::Apply(pod(
        "web-1-a",
        "uid-p1",
        owner("ReplicaSet", "web-1", "uid-rs1"),
        json!({}),
        true,
    )));
    assert!(
        touched.is_empty(),
        "no ReplicaSet yet, so no known workload"
    );
    let touched = cache.apply_replica_set(&Event::Apply(replica_set(
        "web-1",
        "uid-rs1",
        ("web", "uid-web"),
        1,
        "web:1",
    )));
    assert_eq!(touched, vec![key("web")]);
    assert_eq!(cache.observe(uid("uid-web")).unwrap().pods.len(), 1);
}

#[test]
fn a_relist_drops_what_disappeared_and_reports_whom_it_concerned() {
    let cache = Cache::new(Vocabulary::default());
    list_workloads(&cache, vec![deployment("web", "uid-web", "web:1")]);
    list(
        |e| cache.apply_replica_set(e),
        vec![replica_set(
            "web-1",
            "uid-rs1",
            ("web", "uid-web"),
            1,
            "web:1",
        )],
    );
    let rs_owner = owner("ReplicaSet", "web-1", "uid-rs1");
    list(
        |e| cache.apply_pod(e),
        vec![
            pod("a", "uid-a", rs_owner.clone(), json!({}), true),
            pod("b", "uid-b", rs_owner.clone(), json!({}), true),
        ],
    );
    // The watch reconnects; pod b was deleted while it was away.
    let touched = list(
        |e| cache.apply_pod(e),
        vec![pod("a", "uid-a", rs_owner.clone(), json!({}), false)],
    );
    let pods = cache.observe(uid("uid-web")).unwrap().pods;
    assert_eq!(pods.len(), 1);
    assert!(!pods[0].ready, "the relisted state replaces the old one");
    assert!(touched.iter().all(|k| *k == key("web")));
    assert_eq!(touched.len(), 2, "pod a re-listed and pod b dropped");

    // A deletion, and a Pod that stops being followed (its owner is no workload's).
    cache.apply_pod(&Event::Delete(pod(
        "a",
        "uid-a",
        rs_owner,
        json!({}),
        false,
    )));
    assert!(cache.observe(uid("uid-web")).unwrap().pods.is_empty());
    let touched = cache.apply_workload(
        Feed::Deployments,
        &Event::Delete(deployment("web", "uid-web", "web:1")),
        SlimDeployment::reduce,
    );
    assert!(cache.observe(uid("uid-web")).is_none());
    assert_eq!(
        touched,
        [key("web")],
        "a deleted workload is looked at, to be forgotten"
    );

    // A relist that no longer has a workload answers it too.
    let apply = |e: &Event<SlimDeployment>| {
        cache.apply_workload(Feed::Deployments, e, SlimDeployment::reduce)
    };
    list(apply, vec![deployment("api", "uid-api", "api:1")]);
    let touched = list(apply, vec![]);
    assert_eq!(touched, [key("api")]);
    assert!(cache.observe(uid("uid-api")).is_none());
}

fn controller_revision(
    owner_kind: &str,
    name: &str,
    uid: &str,
    hash: &str,
    n: i64,
    image: &str,
    annotations: Value,
) -> SlimControllerRevision {
    let mut t = template(image);
    t["$patch"] = json!("replace");
    object(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "labels": {"controller-revision-hash": hash},
                     "annotations": annotations, "ownerReferences": owner(owner_kind, "db", "uid-db")},
        "revision": n,
        "data": {"spec": {"template": t}}
    }))
}

#[test]
fn stateful_and_daemon_sets_gather_controller_revisions_and_carry_provenance_onto_the_running_one()
{
    for kind in ["StatefulSet", "DaemonSet"] {
        let cache = Cache::new(Vocabulary::default());
        let workload = json!({
            "metadata": {"name": "db", "namespace": "shop", "uid": "uid-db", "generation": 3,
                         "annotations": {"custody.dev/actor": "agent", "custody.dev/source-commit": "bbbbbbb"}},
            "spec": {"replicas": 3, "template": template("db:2"),
                     "updateStrategy": {"rollingUpdate": {"partition": 1}}},
            "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3,
                       "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "updatedNumberScheduled": 2, "numberAvailable": 3}
        });
        if kind == "StatefulSet" {
            list_workloads::<SlimStatefulSet>(&cache, vec![object(workload)]);
        } else {
            list_workloads::<SlimDaemonSet>(&cache, vec![object(workload)]);
        }
        let touched = list(
            |e| cache.apply_controller_revision(e),
            vec![
                controller_revision(
                    kind,
                    "db-h1",
                    "uid-cr1",
                    "h1",
                    1,
                    "db:1",
                    json!({"custody.dev/actor": "human", "custody.dev/healthy-since": "2027-01-01T00:00:00Z"}),
                ),
                controller_revision(kind, "db-h2", "uid-cr2", "h2", 2, "db:2", json!({})),
            ],
        );
        let k = if kind == "StatefulSet" {
            WorkloadKind::StatefulSet
        } else {
            WorkloadKind::DaemonSet
        };
        assert!(touched.contains(&key("db")), "{kind}");
        let pod_label = |n: u32| {
            if kind == "StatefulSet" {
                format!("db-h{n}")
            } else {
                format!("h{n}")
            }
        };
        let db = owner(kind, "db", "uid-db");
        list(
            |e| cache.apply_pod(e),
            vec![
                pod(
                    "db-0",
                    "uid-p0",
                    db.clone(),
                    json!({"controller-revision-hash": pod_label(1)}),
                    true,
                ),
                pod(
                    "db-1",
                    "uid-p1",
                    db.clone(),
                    json!({"controller-revision-hash": pod_label(2)}),
                    false,
                ),
            ],
        );
        let observed = cache.observe(uid("uid-db")).unwrap();
        assert_eq!(observed.workload.kind, k);
        if kind == "StatefulSet" {
            assert_eq!(observed.workload.partition, 1, "the partition is read");
        }
        let current = &observed.revisions[0];
        assert_eq!(current.number, 2);
        assert_eq!(
            current.fingerprint, observed.workload.template_fingerprint,
            "{kind}: $patch is not part of the template"
        );
        assert_eq!(
            current.annotations["custody.dev/actor"], "agent",
            "{kind}: the workload's provenance"
        );
        assert_eq!(current.annotations["custody.dev/source-commit"], "bbbbbbb");
        assert_eq!(
            observed.revisions[1].annotations["custody.dev/actor"], "human",
            "{kind}: stamped provenance kept"
        );
        let of = |p: &str| {
            observed
                .pods
                .iter()
                .find(|x| x.name == p)
                .unwrap()
                .revision
                .clone()
        };
        assert_eq!(
            of("db-1"),
            current.pod_key,
            "{kind}: pods are matched to their revision"
        );
        assert_eq!(of("db-0"), observed.revisions[1].pod_key);
    }
}

fn node(name: &str, ready: &str, taints: Value) -> SlimNode {
    object(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": ready}]}
    }))
}

fn pod_on(name: &str, uid: &str, rs: (&str, &str), node_name: &str) -> SlimPod {
    object(json!({
        "metadata": {"name": name, "namespace": "shop", "uid": uid, "ownerReferences": owner("ReplicaSet", rs.0, rs.1)},
        "spec": {"nodeName": node_name},
        "status": {"startTime": "2027-01-15T08:00:00Z",
                   "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2027-01-15T08:00:00Z"}]}
    }))
}

#[test]
fn a_node_going_down_or_coming_back_concerns_the_workloads_of_its_pods_only() {
    let cache = Cache::new(Vocabulary::default());
    list_workloads(
        &cache,
        vec![
            deployment("web", "uid-web", "web:1"),
            deployment("api", "uid-api", "api:1"),
        ],
    );
    list(
        |e| cache.apply_replica_set(e),
        vec![
            replica_set("web-1", "uid-rs1", ("web", "uid-web"), 1, "web:1"),
            replica_set("api-1", "uid-rs2", ("api", "uid-api"), 1, "api:1"),
        ],
    );
    list(
        |e| cache.apply_pod(e),
        vec![
            pod_on("web-1-a", "uid-p1", ("web-1", "uid-rs1"), "n1"),
            pod_on("web-1-b", "uid-p2", ("web-1", "uid-rs1"), "n1"),
            pod_on("api-1-a", "uid-p3", ("api-1", "uid-rs2"), "n2"),
        ],
    );
    let web = key("web");
    let api = key("api");
    let ready = |name| node(name, "True", json!([]));

    // The first list: every Node known for the first time, the Pods walked once at its end.
    let mut touched = list(
        |e| cache.apply_node(e),
        vec![ready("n1"), ready("n2"), ready("n3")],
    );
    touched.sort();
    let mut both = vec![api, web];
    both.sort();
    assert_eq!(touched, both, "each workload once");
    assert_eq!(cache.node_count(), 3);
    let observed = cache.observe(uid("uid-web")).unwrap();
    assert_eq!(observed.pods[0].node, Some(NodeId::of("n1")));
    assert_eq!(
        observed.nodes,
        vec![NodeState {
            id: NodeId::of("n1"),
            ready: true,
            tainted: false
        }],
        "only the Nodes its Pods are bound to"
    );

    let apply = |n: SlimNode| cache.apply_node(&Event::Apply(n));
    assert!(
        apply(ready("n1")).is_empty(),
        "a status update that changes nothing"
    );
    assert_eq!(apply(node("n1", "Unknown", json!([]))), vec![web]);
    assert!(!cache.observe(uid("uid-web")).unwrap().nodes[0].up());
    assert!(
        apply(node(
            "n1",
            "Unknown",
            json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
        ))
        .is_empty(),
        "already down"
    );
    assert_eq!(apply(ready("n1")), vec![web], "back up");
    assert_eq!(
        apply(node(
            "n1",
            "True",
            json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])
        )),
        vec![web],
        "tainted not-ready with the condition still True"
    );
    assert!(
        apply(node("n3", "False", json!([]))).is_empty(),
        "no Pod of a followed workload on it"
    );

    assert_eq!(cache.apply_node(&Event::Delete(ready("n2"))), vec![api]);
    assert!(
        cache.observe(uid("uid-api")).unwrap().nodes.is_empty(),
        "a Node gone is not there to be up"
    );

    // A relist after a reconnect: n2 is back, n1 recovered while the watch was away, n3 is
    // gone (dropped at the end of the list, down already so concerning no one anew).
    let mut touched = list(|e| cache.apply_node(e), vec![ready("n1"), ready("n2")]);
    touched.sort();
    assert_eq!(touched, both);
    assert_eq!(cache.node_count(), 2);
}
