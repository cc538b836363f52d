//! The observed state of one Deployment's rollout, as plain data: the Deployment, its
//! ReplicaSets (revisions) and their Pods, reduced to what the decision reads. Built from the
//! Kubernetes objects by pure conversion functions, so the decision never touches the API types'
//! optional-everything shape.

use std::collections::BTreeMap;

use std::sync::Arc;

use custody_crds::template_fingerprint;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The annotation the Deployment controller puts on each ReplicaSet: its revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// One Deployment's rollout.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The Deployment.
    pub deployment: DeploymentState,
    /// Its ReplicaSets, newest revision first.
    pub revisions: Vec<Revision>,
    /// The Pods of those ReplicaSets.
    pub pods: Vec<PodState>,
}

/// What the decision reads of a Deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct DeploymentState {
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
    /// `spec.paused`.
    pub paused: bool,
    /// Desired replicas.
    pub replicas: i32,
    /// Replicas at the desired revision.
    pub updated_replicas: i32,
    /// Available replicas (all revisions).
    pub available_replicas: i32,
    /// Replicas of all revisions.
    pub total_replicas: i32,
    /// The rolling update's maxUnavailable, resolved against `replicas`.
    pub max_unavailable: i32,
    /// Since when Progressing=False with reason ProgressDeadlineExceeded, if so.
    pub progress_deadline_exceeded_since: Option<Timestamp>,
    /// Since when Available=False, if so.
    pub unavailable_since: Option<Timestamp>,
    /// The fingerprint of its pod template (the template itself is not kept: a revert takes
    /// the target ReplicaSet's).
    pub template_fingerprint: String,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// One revision: a ReplicaSet.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// The ReplicaSet's name.
    pub name: String,
    /// The revision number.
    pub number: i64,
    /// Its pod template as JSON text, `pod-template-hash` label included. Kept as text (a few
    /// hundred bytes) rather than a tree: it is read only to revert or record.
    pub template: Arc<str>,
    /// The template's fingerprint (which ignores `pod-template-hash`).
    pub fingerprint: String,
    /// Its annotations: the Deployment controller copies the Deployment's onto it, so these are
    /// the provenance of this revision.
    pub annotations: BTreeMap<String, String>,
    /// When it was created.
    pub created: Option<Timestamp>,
}

impl Revision {
    /// A revision from its parts.
    pub fn new(
        name: String,
        number: i64,
        template: &Value,
        annotations: BTreeMap<String, String>,
        created: Option<Timestamp>,
    ) -> Self {
        Self {
            name,
            number,
            template: Arc::from(template.to_string()),
            fingerprint: template_fingerprint(template).to_string(),
            annotations,
            created,
        }
    }

    /// The pod template as JSON.
    pub fn template_value(&self) -> Value {
        serde_json::from_str(&self.template).unwrap_or(Value::Null)
    }
}

/// What the decision reads of a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodState {
    /// Name.
    pub name: String,
    /// The ReplicaSet that owns it.
    pub replica_set: String,
    /// When the kubelet started it.
    pub started: Option<Timestamp>,
    /// Whether it is Ready.
    pub ready: bool,
    /// When the Ready condition last changed.
    pub ready_changed: Option<Timestamp>,
    /// Whether it is being deleted.
    pub terminating: bool,
    /// Its containers.
    pub containers: Vec<ContainerState>,
}

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

fn ts(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// Resolves maxUnavailable (an int or a percentage, rounded down as the Deployment controller
/// does) against the desired replicas.
pub fn resolve_max_unavailable(value: Option<&IntOrString>, replicas: i32) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| {
                i32::try_from(i64::from(replicas) * p / 100).unwrap_or(0)
            }),
        // Kubernetes' default is 25%.
        None => replicas / 4,
    }
}

/// Reduces a Deployment.
pub fn deployment_state(d: &Deployment) -> DeploymentState {
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let conditions = status.and_then(|s| s.conditions.as_ref());
    let condition = |type_: &str| conditions.and_then(|c| c.iter().find(|c| c.type_ == type_));
    let progress_deadline_exceeded_since = condition("Progressing")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        .and_then(|c| ts(&c.last_transition_time));
    let unavailable_since = condition("Available")
        .filter(|c| c.status == "False")
        .and_then(|c| ts(&c.last_transition_time));
    let max_unavailable = resolve_max_unavailable(
        spec.and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref()),
        replicas,
    );
    DeploymentState {
        name: d.metadata.name.clone().unwrap_or_default(),
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        resource_version: d.metadata.resource_version.clone().unwrap_or_default(),
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
        paused: spec.and_then(|s| s.paused).unwrap_or(false),
        replicas,
        updated_replicas: status.and_then(|s| s.updated_replicas).unwrap_or(0),
        available_replicas: status.and_then(|s| s.available_replicas).unwrap_or(0),
        total_replicas: status.and_then(|s| s.replicas).unwrap_or(0),
        max_unavailable,
        progress_deadline_exceeded_since,
        unavailable_since,
        template_fingerprint: template_fingerprint(
            &spec
                .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
                .unwrap_or(Value::Null),
        )
        .to_string(),
        annotations: d.metadata.annotations.clone().unwrap_or_default(),
    }
}

/// Reduces a ReplicaSet; `None` when it has no revision number (not made by a Deployment).
pub fn revision(rs: &ReplicaSet) -> Option<Revision> {
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    let number = annotations.get(REVISION_ANNOTATION)?.parse().ok()?;
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    Some(Revision::new(
        rs.metadata.name.clone().unwrap_or_default(),
        number,
        &template,
        annotations,
        ts(&rs.metadata.creation_timestamp),
    ))
}

/// Reduces a Pod; `None` when no ReplicaSet controls it.
pub fn pod_state(pod: &Pod) -> Option<PodState> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
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
    Some(PodState {
        name: pod.metadata.name.clone().unwrap_or_default(),
        replica_set: owner.name.clone(),
        started: status.and_then(|s| ts(&s.start_time)),
        ready: ready.is_some_and(|c| c.status == "True"),
        ready_changed: ready.and_then(|c| ts(&c.last_transition_time)),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        containers,
    })
}

/// Builds the observed rollout from the objects; ReplicaSets and Pods not owned by the
/// Deployment are left out.
pub fn observe<'a>(
    deployment: &Deployment,
    replica_sets: impl IntoIterator<Item = &'a ReplicaSet>,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Observed {
    let uid = deployment.metadata.uid.as_deref();
    let owned_by =
        |refs: &Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
         uid: Option<&str>| {
            refs.iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        };
    let owned: Vec<&ReplicaSet> = replica_sets
        .into_iter()
        .filter(|rs| owned_by(&rs.metadata.owner_references, uid))
        .collect();
    let mut revisions: Vec<Revision> = owned.iter().filter_map(|rs| revision(rs)).collect();
    revisions.sort_by_key(|r| std::cmp::Reverse(r.number));
    let rs_uids: Vec<&str> = owned
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    let pods = pods
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && rs_uids.contains(&o.uid.as_str()))
        })
        .filter_map(pod_state)
        .collect();
    Observed {
        deployment: deployment_state(deployment),
        revisions,
        pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_resolution() {
        assert_eq!(resolve_max_unavailable(None, 4), 1);
        assert_eq!(resolve_max_unavailable(Some(&IntOrString::Int(2)), 4), 2);
        assert_eq!(
            resolve_max_unavailable(Some(&IntOrString::String("50%".into())), 5),
            2
        );
        assert_eq!(
            resolve_max_unavailable(Some(&IntOrString::String("bogus".into())), 5),
            0
        );
    }
}
