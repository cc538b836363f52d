//! What `kubectl-custody` reads from and writes to the cluster besides each command's own
//! write: the workload and its revisions, the Custody resources, the namespace's labels, who the
//! caller is, and Events.

use std::collections::BTreeMap;

use anyhow::Context as _;
use custody_cli::plugin::ObjectRef;
use custody_crds::WorkloadKind;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::events::{Event, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::Value;

/// The workloads of `kind` in `namespace`.
pub(crate) fn workload_api(
    client: &Client,
    namespace: &str,
    kind: WorkloadKind,
) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(kind.group(), "v1", kind.as_str()),
        kind.plural(),
    );
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// GETs `target`, as JSON; a missing object is an error that says so.
pub(crate) async fn read_workload(
    api: &Api<DynamicObject>,
    target: &ObjectRef,
    namespace: &str,
) -> anyhow::Result<Value> {
    let object = api
        .get_opt(&target.name)
        .await
        .with_context(|| format!("cannot read {target} in namespace {namespace}"))?
        .with_context(|| format!("{target} not found in namespace {namespace}"))?;
    serde_json::to_value(&object).context("cannot re-encode the object")
}

/// The authenticated user name, as the apiserver sees this kubeconfig (SelfSubjectReview, GA in
/// Kubernetes 1.28).
pub(crate) async fn whoami(client: &Client) -> anyhow::Result<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .context(
            "cannot ask the apiserver who you are (SelfSubjectReview, authentication.k8s.io/v1)",
        )?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .filter(|u| !u.is_empty())
        .context("the apiserver did not say who you are")
}

/// Publishes `event` about `regarding` as `kubectl-custody` (the instance naming the person,
/// when known); says what became of it: `created`, or why not.
pub(crate) async fn publish(
    client: &Client,
    user: Option<&str>,
    event: &Event,
    regarding: &ObjectReference,
) -> String {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "kubectl-custody".into(),
            instance: user.map(|u| u.chars().take(100).collect()),
        },
    );
    match recorder.publish(event, regarding).await {
        Ok(()) => "created".into(),
        Err(kube::Error::Api(status)) => status.message,
        Err(e) => e.to_string(),
    }
}

/// Lists a Custody resource, turning "the apiserver has no such resource" into the fix.
pub(crate) async fn list_custom<K>(api: Api<K>) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let plural = K::plural(&());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => anyhow::bail!(
            "the {plural}.{} CRD is not installed in this cluster (install Custody, or `custody crds | kubectl apply --server-side -f -`)",
            custody_crds::GROUP
        ),
        Err(e) => Err(e).with_context(|| format!("cannot list {plural}.{}", custody_crds::GROUP)),
    }
}

/// The namespace's labels; `None` when they cannot be read (RBAC may allow workloads but not
/// namespaces), and the report says policies were matched on the name alone.
pub(crate) async fn namespace_labels(
    client: &Client,
    namespace: &str,
) -> Option<BTreeMap<String, String>> {
    let api: Api<Namespace> = Api::all(client.clone());
    match api.get_metadata_opt(namespace).await {
        Ok(Some(meta)) => Some(meta.metadata.labels.unwrap_or_default()),
        _ => None,
    }
}

/// The revisions the workload's selector matches: a Deployment's ReplicaSets, a StatefulSet's
/// or DaemonSet's ControllerRevisions (ownership is checked by uid later); none for other kinds.
pub(crate) async fn revisions(
    client: &Client,
    namespace: &str,
    kind: WorkloadKind,
    workload: &Value,
) -> anyhow::Result<Vec<Value>> {
    let (revision_kind, plural) = match kind {
        WorkloadKind::Deployment => ("ReplicaSet", "replicasets"),
        WorkloadKind::StatefulSet | WorkloadKind::DaemonSet => {
            ("ControllerRevision", "controllerrevisions")
        }
        _ => return Ok(Vec::new()),
    };
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apps", "v1", revision_kind),
        plural,
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let selector = workload
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .with_context(|| format!("cannot list the {}'s {plural}", kind.as_str()))?;
    list.items
        .iter()
        .map(|rs| {
            serde_json::to_value(rs).with_context(|| format!("cannot re-encode a {revision_kind}"))
        })
        .collect()
}
