//! The observed state of one workload's rollout, as plain data: the workload (a Deployment,
//! StatefulSet or DaemonSet), its revisions (ReplicaSets, or ControllerRevisions) and their
//! Pods, reduced to what the decision reads. Built from the Kubernetes objects by pure
//! conversion functions, so the decision never touches the API types' optional-everything
//! shape, and so the cache keeps a few hundred bytes per object instead of the objects. The
//! Nodes those Pods run on come along ([`super::node`]), so the decision can tell a
//! revision's failure from its Node's.

use std::collections::BTreeMap;

use custody_crds::{Vocabulary, WorkloadKind, template_fingerprint};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::keys::{MARKS, OWNERSHIP, PROVENANCE, VISIBILITY, mark, marks};

use super::digest::digest;
use super::node::{NodeId, NodeState};
use super::slim::{
    SlimControllerRevision, SlimDaemonSet, SlimDeployment, SlimPod, SlimReplicaSet, SlimStatefulSet,
};

/// The annotation the Deployment controller puts on each ReplicaSet: its revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The label StatefulSet and DaemonSet pods carry: which ControllerRevision made them (the
/// revision's name for a StatefulSet, its hash for a DaemonSet).
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// One workload's rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The workload.
    pub workload: WorkloadState,
    /// Its revisions, newest first.
    pub revisions: Vec<Revision>,
    /// The Pods of those revisions.
    pub pods: Vec<PodState>,
    /// The Nodes those Pods are bound to, as far as they exist: a Pod bound to a Node not
    /// here is on a Node that is gone.
    pub nodes: Vec<NodeState>,
}

/// What the decision reads of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadState {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// The version a revert is conditioned on.
    pub resource_version: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `spec.paused` (Deployments only).
    pub paused: bool,
    /// Desired replicas (a DaemonSet's desired number scheduled).
    pub replicas: i32,
    /// Replicas at the desired revision.
    pub updated_replicas: i32,
    /// Available replicas (all revisions).
    pub available_replicas: i32,
    /// Replicas of all revisions.
    pub total_replicas: i32,
    /// How many replicas the rollout strategy lets be unavailable, resolved against `replicas`.
    pub max_unavailable: i32,
    /// Replicas a StatefulSet's partition keeps at older revisions on purpose.
    pub partition: i32,
    /// Since when Progressing=False with reason ProgressDeadlineExceeded, if so.
    pub progress_deadline_exceeded_since: Option<Timestamp>,
    /// Since when Available=False, if so (Deployments only; the others have no such condition).
    pub unavailable_since: Option<Timestamp>,
    /// The fingerprint of its pod template (the template itself is not kept: a revert reads
    /// the target revision's from the API server).
    pub template_fingerprint: String,
    /// Its provenance annotations (the only ones the controller reads of a workload); its
    /// attestation as a [`digest`].
    pub annotations: BTreeMap<String, String>,
    /// Whether it has any annotation at all, so a revert knows whether the map exists.
    pub any_annotations: bool,
    /// Its labels, for policies' object selectors.
    pub labels: BTreeMap<String, String>,
    /// Its controlling owner as `Kind/name` (an operator's custom resource, say), empty when it
    /// has none: the background audit judges such a workload where its owner is admitted.
    pub managed_by: String,
}

#[cfg(test)]
impl WorkloadState {
    /// A settled one-replica Deployment `shop/web` running the template `fingerprint`, for the
    /// unit tests' tables to start from.
    pub(crate) fn sample(fingerprint: &str) -> Self {
        Self {
            kind: custody_crds::WorkloadKind::Deployment,
            name: "web".into(),
            namespace: "shop".into(),
            uid: "uid-web".into(),
            resource_version: "1".into(),
            generation: 1,
            observed_generation: 1,
            paused: false,
            replicas: 1,
            updated_replicas: 1,
            available_replicas: 1,
            total_replicas: 1,
            max_unavailable: 0,
            partition: 0,
            progress_deadline_exceeded_since: None,
            unavailable_since: None,
            template_fingerprint: fingerprint.to_string(),
            annotations: BTreeMap::new(),
            any_annotations: false,
            labels: BTreeMap::new(),
            managed_by: String::new(),
        }
    }
}

/// One revision: a ReplicaSet of a Deployment, or a ControllerRevision of a StatefulSet or
/// DaemonSet.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// The ReplicaSet's or ControllerRevision's name.
    pub name: String,
    /// The revision number.
    pub number: i64,
    /// What its pods' [`PodState::revision`] reads: the ReplicaSet's name, a StatefulSet
    /// revision's name, or a DaemonSet revision's hash.
    pub pod_key: String,
    /// The template's fingerprint (which ignores `pod-template-hash`).
    pub fingerprint: String,
    /// A restarted template's fingerprint without its restart annotation
    /// (`kubectl rollout restart`): the code it runs, and what a signature vouches for. `None`
    /// for a template never restarted, whose fingerprint is both.
    pub restart_free: Option<String>,
    /// The template's images, for the record.
    pub images: Vec<String>,
    /// Its provenance annotations and the controller's marks; its attestation, if signed, as
    /// a [`digest`], never the envelope.
    pub annotations: BTreeMap<String, String>,
    /// When it was created.
    pub created: Option<Timestamp>,
}

impl Revision {
    /// The fingerprint of the code it runs: two revisions that differ only by a restart have
    /// the same one.
    pub fn code(&self) -> &str {
        self.restart_free.as_deref().unwrap_or(&self.fingerprint)
    }

    /// Whether it carries the controller's mark `name`.
    pub fn marked(&self, vocabulary: &Vocabulary, name: &str) -> bool {
        self.annotations.contains_key(&mark(vocabulary, name))
    }

    /// Whether the controller has concluded about it: marked healthy, reverted or reported.
    pub fn judged(&self, vocabulary: &Vocabulary) -> bool {
        [marks::HEALTHY_SINCE, marks::REVERTED, marks::ALERTED]
            .iter()
            .any(|m| self.marked(vocabulary, m))
    }

    /// A ReplicaSet-style revision (its pods are known by its name) from its template.
    pub fn new(
        name: String,
        number: i64,
        template: &Value,
        annotations: BTreeMap<String, String>,
        created: Option<Timestamp>,
    ) -> Self {
        Self {
            pod_key: name.clone(),
            name,
            number,
            fingerprint: template_fingerprint(template).to_string(),
            restart_free: custody_crds::fingerprint::restart_free_fingerprint(template)
                .map(|f| f.to_string()),
            images: images(template),
            annotations,
            created,
        }
    }

    /// The same revision, its pods known by `pod_key`.
    #[must_use]
    pub fn with_pod_key(mut self, pod_key: impl Into<String>) -> Self {
        self.pod_key = pod_key.into();
        self
    }
}

/// What the decision reads of a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    /// Name.
    pub name: String,
    /// Which revision made it (see [`Revision::pod_key`]).
    pub revision: String,
    /// When the kubelet started it.
    pub started: Option<Timestamp>,
    /// Whether it is Ready.
    pub ready: bool,
    /// When the Ready condition last changed.
    pub ready_changed: Option<Timestamp>,
    /// Whether it is being deleted.
    pub terminating: bool,
    /// Whether it is being evicted or preempted: a DisruptionTarget condition, or a
    /// `status.reason` of Evicted, Preempting or Terminated.
    pub disrupted: bool,
    /// Whether the node lifecycle controller took its readiness away when its Node stopped
    /// reporting, and no kubelet has reported it since (see [`readiness_withdrawn`]).
    pub readiness_withdrawn: bool,
    /// The Node it is bound to, once scheduled.
    pub node: Option<NodeId>,
    /// Its containers.
    pub containers: Vec<ContainerState>,
}

/// The `status.reason`s of a Pod the cluster is taking away: the kubelet's eviction, the
/// scheduler's preemption, the kubelet's graceful node shutdown.
pub const DISRUPTION_REASONS: [&str; 3] = ["Evicted", "Preempting", "Terminated"];

/// What the decision reads of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerState {
    /// Name.
    pub name: String,
    /// Restarts so far.
    pub restarts: i32,
    /// Why it is waiting, if it is (CrashLoopBackOff, ImagePullBackOff, ...).
    pub waiting: Option<String>,
}

impl Observed {
    /// Puts a rollout together: revisions sorted newest first and, for StatefulSets and
    /// DaemonSets, the workload's provenance carried onto the revision it runs. Their
    /// ControllerRevisions do not copy the workload's annotations as a Deployment's ReplicaSets
    /// do, so the workload is the only place the running revision's author is written.
    pub fn assemble(
        workload: WorkloadState,
        mut revisions: Vec<Revision>,
        pods: Vec<PodState>,
        nodes: Vec<NodeState>,
        vocabulary: &Vocabulary,
    ) -> Self {
        revisions.sort_by_key(|r| std::cmp::Reverse(r.number));
        if workload.kind != WorkloadKind::Deployment
            && let Some(current) = revisions
                .iter_mut()
                .find(|r| r.fingerprint == workload.template_fingerprint)
        {
            let signed = PROVENANCE
                .iter()
                .chain(OWNERSHIP.iter())
                .chain(VISIBILITY.iter())
                .map(|k| vocabulary.key(*k))
                .chain([vocabulary.attestation()]);
            for name in signed {
                match workload.annotations.get(name) {
                    Some(value) => current.annotations.insert(name.to_string(), value.clone()),
                    None => current.annotations.remove(name),
                };
            }
        }
        Self {
            workload,
            revisions,
            pods,
            nodes,
        }
    }
}

/// The controlling owner of an object, as the cache links it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
}

/// The controlling owner reference of an object.
pub fn controller_of(meta: &ObjectMeta) -> Option<Owner> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o: &&OwnerReference| o.controller == Some(true))
        .map(|o| Owner {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        })
}

/// The images of a pod template.
pub fn images(template: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| template["spec"][k].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str().map(str::to_string))
        .collect()
}

fn ts(t: Option<&Time>) -> Option<Timestamp> {
    t.map(|t| t.0)
}

/// Resolves maxUnavailable (an int or a percentage) against the desired replicas. Deployments
/// round a percentage down, DaemonSets and StatefulSets up; `default` applies when unset.
pub fn resolve_max_unavailable(
    value: Option<&IntOrString>,
    replicas: i32,
    round_up: bool,
    default: i32,
) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                let scaled = i64::from(replicas) * p;
                let value = if round_up {
                    (scaled + 99) / 100
                } else {
                    scaled / 100
                };
                i32::try_from(value).unwrap_or(0)
            }),
        None => default,
    }
}

/// The annotations the controller reads: provenance, ownership and its own marks, and the
/// attestation as its [`digest`] only (the envelope is read from the
/// API server when a decision needs it).
fn read_annotations(meta: &ObjectMeta, vocabulary: &Vocabulary) -> BTreeMap<String, String> {
    let read = |key: &str| {
        vocabulary.parse_key(key).is_some_and(|k| {
            PROVENANCE.contains(&k) || OWNERSHIP.contains(&k) || VISIBILITY.contains(&k)
        }) || key == vocabulary.attestation()
            || key
                .strip_prefix(vocabulary.prefix())
                .is_some_and(|mark| MARKS.contains(&mark))
    };
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| read(k))
        .map(|(k, v)| {
            let value = if k == vocabulary.attestation() {
                digest(v)
            } else {
                v.clone()
            };
            (k.clone(), value)
        })
        .collect()
}

/// The fields every workload kind shares, from its metadata and pod template.
fn base(
    kind: WorkloadKind,
    meta: &ObjectMeta,
    template: Option<&Value>,
    vocabulary: &Vocabulary,
) -> WorkloadState {
    WorkloadState {
        kind,
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        observed_generation: 0,
        paused: false,
        replicas: 0,
        updated_replicas: 0,
        available_replicas: 0,
        total_replicas: 0,
        max_unavailable: 0,
        partition: 0,
        progress_deadline_exceeded_since: None,
        unavailable_since: None,
        template_fingerprint: template_fingerprint(template.unwrap_or(&Value::Null)).to_string(),
        annotations: read_annotations(meta, vocabulary),
        any_annotations: meta.annotations.as_ref().is_some_and(|a| !a.is_empty()),
        labels: meta.labels.clone().unwrap_or_default(),
        managed_by: controller_of(meta)
            .map(|o| format!("{}/{}", o.kind, o.name))
            .unwrap_or_default(),
    }
}

/// Reduces a Deployment.
pub fn deployment_state(d: &SlimDeployment, vocabulary: &Vocabulary) -> WorkloadState {
    let (spec, status) = (&d.spec, &d.status);
    let replicas = spec.replicas.unwrap_or(1);
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
    };
    let rolling = spec.rolling_update();
    WorkloadState {
        observed_generation: status.observed_generation.unwrap_or(0),
        paused: spec.paused.unwrap_or(false),
        replicas,
        updated_replicas: status.updated_replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        total_replicas: status.replicas.unwrap_or(0),
        // Kubernetes' default is 25%, rounded down.
        max_unavailable: resolve_max_unavailable(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
            false,
            replicas / 4,
        ),
        progress_deadline_exceeded_since: condition("Progressing")
            .filter(|c| {
                c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .and_then(|c| ts(c.last_transition_time.as_ref())),
        unavailable_since: condition("Available")
            .filter(|c| c.status == "False")
            .and_then(|c| ts(c.last_transition_time.as_ref())),
        ..base(
            WorkloadKind::Deployment,
            &d.metadata,
            spec.template.as_ref(),
            vocabulary,
        )
    }
}

/// Reduces a StatefulSet. It rolls one pod at a time unless maxUnavailable says otherwise, and
/// a partition keeps the lower ordinals at the older revision on purpose.
pub fn stateful_set_state(s: &SlimStatefulSet, vocabulary: &Vocabulary) -> WorkloadState {
    let (spec, status) = (&s.spec, &s.status);
    let replicas = spec.replicas.unwrap_or(1);
    let rolling = spec.rolling_update();
    WorkloadState {
        observed_generation: status.observed_generation.unwrap_or(0),
        replicas,
        updated_replicas: status.updated_replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        total_replicas: status.replicas.unwrap_or(0),
        max_unavailable: resolve_max_unavailable(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            replicas,
            true,
            1,
        )
        .max(1),
        partition: rolling
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .clamp(0, replicas),
        ..base(
            WorkloadKind::StatefulSet,
            &s.metadata,
            spec.template.as_ref(),
            vocabulary,
        )
    }
}

/// Reduces a DaemonSet: its "replicas" are the nodes it should run on.
pub fn daemon_set_state(d: &SlimDaemonSet, vocabulary: &Vocabulary) -> WorkloadState {
    let (spec, status) = (&d.spec, &d.status);
    let desired = status.desired_number_scheduled.unwrap_or(0);
    let rolling = spec.rolling_update();
    WorkloadState {
        observed_generation: status.observed_generation.unwrap_or(0),
        replicas: desired,
        updated_replicas: status.updated_number_scheduled.unwrap_or(0),
        available_replicas: status.number_available.unwrap_or(0),
        total_replicas: status.current_number_scheduled.unwrap_or(0),
        max_unavailable: resolve_max_unavailable(
            rolling.and_then(|r| r.max_unavailable.as_ref()),
            desired,
            true,
            1,
        ),
        ..base(
            WorkloadKind::DaemonSet,
            &d.metadata,
            spec.template.as_ref(),
            vocabulary,
        )
    }
}

/// Reduces a ReplicaSet a Deployment controls; `None` for any other (no revision number, or
/// not a Deployment's).
pub fn replica_set_revision(
    rs: &SlimReplicaSet,
    vocabulary: &Vocabulary,
) -> Option<(Owner, Revision)> {
    let owner = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    let number = rs
        .metadata
        .annotations
        .as_ref()?
        .get(REVISION_ANNOTATION)?
        .parse()
        .ok()?;
    let template = rs.spec.template.as_ref().unwrap_or(&Value::Null);
    let revision = Revision::new(
        rs.metadata.name.clone().unwrap_or_default(),
        number,
        template,
        read_annotations(&rs.metadata, vocabulary),
        ts(rs.metadata.creation_timestamp.as_ref()),
    );
    Some((owner, revision))
}

/// The pod template a ControllerRevision holds: the StatefulSet and DaemonSet controllers store
/// `{"spec": {"template": {..., "$patch": "replace"}}}`.
pub fn controller_revision_template(data: &Value) -> Option<Value> {
    let mut template = data.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

/// Reduces a ControllerRevision a StatefulSet or DaemonSet controls; `None` for any other.
pub fn controller_revision(
    cr: &SlimControllerRevision,
    vocabulary: &Vocabulary,
) -> Option<(Owner, Revision)> {
    let owner =
        controller_of(&cr.metadata).filter(|o| o.kind == "StatefulSet" || o.kind == "DaemonSet")?;
    let template = controller_revision_template(cr.data.as_ref()?)?;
    let name = cr.metadata.name.clone().unwrap_or_default();
    // A StatefulSet's pods name the revision; a DaemonSet's carry its hash.
    let pod_key = if owner.kind == "DaemonSet" {
        cr.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
            .or_else(|| {
                name.strip_prefix(&format!("{}-", owner.name))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    } else {
        name.clone()
    };
    let revision = Revision::new(
        name,
        cr.revision,
        &template,
        read_annotations(&cr.metadata, vocabulary),
        ts(cr.metadata.creation_timestamp.as_ref()),
    )
    .with_pod_key(pod_key);
    Some((owner, revision))
}

fn ready_condition(pod: &SlimPod) -> Option<&super::slim::Condition> {
    pod.status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the cluster is taking the Pod away: the eviction API, taint manager, preemption and
/// graceful node shutdown set DisruptionTarget; a kubelet eviction leaves only the reason.
fn disrupted(pod: &SlimPod) -> bool {
    let status = &pod.status;
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        || status
            .reason
            .as_deref()
            .is_some_and(|r| DISRUPTION_REASONS.contains(&r))
}

/// Whether Ready is False while ContainersReady stays True and Ready gives no reason: what the
/// node lifecycle controller leaves when its Node's heartbeats stop (it flips Ready alone and
/// keeps the condition's reason, empty on a ready Pod). A kubelet never writes that: it says
/// ContainersNotReady, ReadinessGatesNotReady or PodCompleted. Once the Node is back, its
/// kubelet restores Ready at the next status sync, so until then the Pod's own containers were
/// last reported ready and its unreadiness says nothing about its revision.
fn readiness_withdrawn(pod: &SlimPod) -> bool {
    let conditions = pod.status.conditions.iter().flatten();
    let containers_ready = conditions
        .clone()
        .any(|c| c.type_ == "ContainersReady" && c.status == "True");
    containers_ready
        && ready_condition(pod)
            .is_some_and(|c| c.status == "False" && c.reason.as_deref().unwrap_or("").is_empty())
}

/// Reduces a Pod a ReplicaSet, StatefulSet or DaemonSet controls; `None` for any other.
pub fn pod_state(pod: &SlimPod) -> Option<(Owner, PodState)> {
    let owner = controller_of(&pod.metadata)?;
    let revision = match owner.kind.as_str() {
        "ReplicaSet" => owner.name.clone(),
        "StatefulSet" | "DaemonSet" => pod
            .metadata
            .labels
            .as_ref()?
            .get(CONTROLLER_REVISION_HASH_LABEL)?
            .clone(),
        _ => return None,
    };
    let status = &pod.status;
    let ready = ready_condition(pod);
    let containers = status
        .container_statuses
        .as_ref()
        .map(|cs| {
            cs.iter()
                .map(|c| ContainerState {
                    name: c.name.clone(),
                    restarts: c.restart_count,
                    waiting: c
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.clone()),
                })
                .collect()
        })
        .unwrap_or_default();
    let state = PodState {
        name: pod.metadata.name.clone().unwrap_or_default(),
        revision,
        started: ts(status.start_time.as_ref()),
        ready: ready.is_some_and(|c| c.status == "True"),
        ready_changed: ready.and_then(|c| ts(c.last_transition_time.as_ref())),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        disrupted: disrupted(pod),
        readiness_withdrawn: readiness_withdrawn(pod),
        node: pod
            .spec
            .node_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(NodeId::of),
        containers,
    };
    Some((owner, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn max_unavailable_resolution() {
        assert_eq!(resolve_max_unavailable(None, 4, false, 1), 1);
        assert_eq!(
            resolve_max_unavailable(Some(&IntOrString::Int(2)), 4, false, 1),
            2
        );
        let half = IntOrString::String("50%".into());
        assert_eq!(resolve_max_unavailable(Some(&half), 5, false, 1), 2);
        assert_eq!(resolve_max_unavailable(Some(&half), 5, true, 1), 3);
        let bogus = IntOrString::String("bogus".into());
        assert_eq!(resolve_max_unavailable(Some(&bogus), 5, false, 1), 0);
    }

    fn slim<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_pod_is_disrupted_by_the_condition_or_the_reason() {
        let pod = |status: Value| {
            let p: SlimPod = slim(json!({"metadata": {"name": "p",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]},
                "spec": {"nodeName": "n1"}, "status": status}));
            pod_state(&p).unwrap().1
        };
        let target = pod(
            json!({"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]}),
        );
        assert!(target.disrupted);
        assert_eq!(target.node, Some(NodeId::of("n1")));
        assert!(
            !pod(json!({"conditions": [{"type": "DisruptionTarget", "status": "False"}]}))
                .disrupted
        );
        for reason in DISRUPTION_REASONS {
            assert!(
                pod(json!({"phase": "Failed", "reason": reason})).disrupted,
                "{reason}"
            );
        }
        assert!(!pod(json!({"phase": "Failed", "reason": "OOMKilled"})).disrupted);
    }

    #[test]
    fn readiness_the_node_controller_withdrew_is_told_from_a_kubelets_verdict() {
        let pod = |ready: Value| {
            let p: SlimPod = slim(json!({"metadata": {"name": "p",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]},
                "status": {"conditions": [ready, {"type": "ContainersReady", "status": "True"}]}}));
            pod_state(&p).unwrap().1
        };
        // What MarkPodsNotReady leaves on a Pod that was Ready.
        let withdrawn = pod(json!({"type": "Ready", "status": "False"}));
        assert!(withdrawn.readiness_withdrawn && !withdrawn.ready);
        assert!(pod(json!({"type": "Ready", "status": "False", "reason": ""})).readiness_withdrawn);
        // The kubelet's verdicts, and a ready Pod.
        for reason in [
            "ContainersNotReady",
            "ReadinessGatesNotReady",
            "PodCompleted",
        ] {
            let p = pod(json!({"type": "Ready", "status": "False", "reason": reason}));
            assert!(!p.readiness_withdrawn, "{reason}");
        }
        assert!(!pod(json!({"type": "Ready", "status": "True"})).readiness_withdrawn);
        let p: SlimPod = slim(json!({"metadata": {"name": "p",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}]}}));
        assert!(!pod_state(&p).unwrap().1.readiness_withdrawn);
    }

    #[test]
    fn a_revision_keeps_the_digest_of_its_attestation_not_the_envelope() {
        let envelope = format!("{{\"payload\":\"{}\"}}", "x".repeat(2000));
        let rs: SlimReplicaSet = slim(json!({"metadata": {"name": "web-2",
            "annotations": {REVISION_ANNOTATION: "2", "custody.dev/actor": "agent",
                "custody.dev/attestation": envelope},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}]},
            "spec": {"template": {}}}));
        let (_, revision) = replica_set_revision(&rs, &Vocabulary::default()).unwrap();
        assert_eq!(
            revision.annotations.get("custody.dev/attestation"),
            Some(&crate::cache::digest::digest(&envelope))
        );
        assert_eq!(revision.annotations["custody.dev/actor"], "agent");
    }

    #[test]
    fn controller_revision_template_drops_the_patch_directive() {
        let data = json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "db"}}}}});
        assert_eq!(
            controller_revision_template(&data),
            Some(json!({"metadata": {"labels": {"app": "db"}}}))
        );
        assert_eq!(controller_revision_template(&json!({"spec": {}})), None);
    }
}
