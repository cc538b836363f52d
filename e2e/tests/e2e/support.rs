//! What the scenarios share: the run's context, API handles and small waits.

use std::time::{Duration, Instant};

use custody_e2e::local::LocalInstall;
use custody_e2e::{Settings, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::Value;

/// Waits until a revision of `app` in `ns` (a ReplicaSet, or a StatefulSet's or DaemonSet's
/// ControllerRevision) carries the controller's healthy mark.
pub async fn wait_revision_healthy<K>(client: &Client, ns: &str, app: &str) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + for<'de> k8s_openapi::serde::Deserialize<'de>
        + std::fmt::Debug,
{
    let revisions: Api<K> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{app} marked healthy"),
        Duration::from_secs(240),
        || {
            let revisions = revisions.clone();
            async move {
                let list = revisions
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await?;
                Ok(list
                    .items
                    .iter()
                    .any(|r| {
                        r.meta()
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("custody.dev/healthy-since"))
                    })
                    .then_some(()))
            }
        },
    )
    .await
}

/// The run: cluster, settings, the test namespace and the local install (local mode).
pub struct Ctx {
    pub client: Client,
    pub settings: Settings,
    pub ns: String,
    pub local: Option<LocalInstall>,
}

impl Ctx {
    pub fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn records(&self) -> Api<DynamicObject> {
        records_api(&self.client, &self.ns)
    }

    /// The local install; scenarios that stop processes need one.
    pub fn local(&mut self) -> anyhow::Result<&mut LocalInstall> {
        self.local
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("this scenario needs CUSTODY_E2E_MODE=local"))
    }

    /// The RollbackRecords of `workload` with `action`.
    pub async fn records_of(&self, workload: &str, action: &str) -> anyhow::Result<Vec<String>> {
        Ok(self
            .records()
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|r| {
                r.data["spec"]["workload"]["name"] == workload && r.data["spec"]["action"] == action
            })
            .filter_map(|r| r.metadata.name)
            .collect())
    }

    /// Waits until `app`'s Deployment runs template version `version`.
    pub async fn wait_version(
        &self,
        app: &str,
        version: &str,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let api = self.deployments();
        wait_for(&format!("{app} at {version}"), deadline, || {
            let api = api.clone();
            async move { Ok((image_version(&api.get(app).await?) == version).then_some(())) }
        })
        .await
    }

    /// Waits until `count` pods labelled `app=<app>` exist (optionally Ready).
    pub async fn wait_pods(
        &self,
        app: &str,
        count: usize,
        ready: bool,
        deadline: Duration,
    ) -> anyhow::Result<()> {
        let api = self.pods();
        wait_for(&format!("{count} {app} pods"), deadline, || {
            let api = api.clone();
            async move {
                let pods = api
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await?
                    .items;
                let n = pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .filter(|p| !ready || pod_ready(p))
                    .count();
                Ok((n >= count).then_some(()))
            }
        })
        .await
    }

    /// What the cluster shows of `app`'s Pods, for a failure message: each Pod's Node, phase
    /// and its Ready and ContainersReady conditions (with reasons), and each Node's Ready.
    pub async fn pods_described(&self, app: &str) -> String {
        let pods = match self
            .pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
        {
            Ok(list) => list.items,
            Err(e) => return format!("(listing {app}'s pods failed: {e})"),
        };
        let condition = |p: &Pod, kind: &str| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
                .map(|c| format!("{kind}={}({})", c.status, c.reason.as_deref().unwrap_or("")))
                .unwrap_or_else(|| format!("{kind}=none"))
        };
        let mut out: Vec<String> = pods
            .iter()
            .map(|p| {
                format!(
                    "{} on {} {} {} {}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .unwrap_or("-"),
                    p.status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .unwrap_or("-"),
                    condition(p, "Ready"),
                    condition(p, "ContainersReady"),
                )
            })
            .collect();
        let nodes: Api<Node> = Api::all(self.client.clone());
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            out.extend(list.items.iter().map(|n| {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                    .map_or("none", |c| c.status.as_str());
                format!(
                    "node {} Ready={ready}",
                    n.metadata.name.as_deref().unwrap_or("?")
                )
            }));
        }
        out.join("; ")
    }

    /// Waits (10 s at most) for an Event with `reason` about the object named `about` in the
    /// test namespace. Events follow the writes they report, so a check right after the write
    /// would race them.
    pub async fn wait_event(&self, reason: &str, about: &str) -> anyhow::Result<()> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        wait_for(
            &format!("a {reason} Event about {about}"),
            Duration::from_secs(10),
            || {
                let events = events.clone();
                async move {
                    Ok(events
                        .list(&ListParams::default())
                        .await?
                        .items
                        .iter()
                        .any(|e| {
                            e.reason.as_deref() == Some(reason)
                                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                    == Some(about)
                        })
                        .then_some(()))
                }
            },
        )
        .await
    }

    /// Waits until one of `app`'s ReplicaSets is marked healthy by the controller.
    pub async fn wait_healthy_mark(&self, app: &str) -> anyhow::Result<()> {
        wait_revision_healthy::<ReplicaSet>(&self.client, &self.ns, app).await
    }
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Custody resource of `kind` (`plural`), read and written as dynamic objects.
fn custody_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "custody.dev".into(),
        version: "v1alpha1".into(),
        api_version: "custody.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn records_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &custody_resource("RollbackRecord", "rollbackrecords"),
    )
}

pub fn policies_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &custody_resource("CustodyPolicy", "custodypolicies"),
    )
}

pub fn teams_api(ctx: &Ctx) -> Api<DynamicObject> {
    Api::all_with(
        ctx.client.clone(),
        &custody_resource("CustodyTeam", "custodyteams"),
    )
}

pub fn api_error(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.message.clone())),
        _ => None,
    }
}

/// A refused request as the apiserver answered it: the code, the message, and the reasons of
/// `status.details.causes` (Custody's violation codes, which harnesses act on).
#[derive(Debug)]
pub struct Refusal {
    pub code: u16,
    pub message: String,
    pub reasons: Vec<String>,
}

impl Refusal {
    /// Whether one of the causes is `code`.
    pub fn has(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r == code)
    }
}

pub fn refusal(e: &kube::Error) -> Option<Refusal> {
    match e {
        kube::Error::Api(s) => Some(Refusal {
            code: s.code,
            message: s.message.clone(),
            reasons: s
                .details
                .iter()
                .flat_map(|d| d.causes.iter().map(|c| c.reason.clone()))
                .collect(),
        }),
        _ => None,
    }
}

pub async fn create(api: &Api<Deployment>, object: &Value) -> anyhow::Result<Deployment> {
    Ok(api
        .create(
            &PostParams::default(),
            &serde_json::from_value(object.clone())?,
        )
        .await?)
}

pub async fn apply(api: &Api<Deployment>, object: &Value) -> Result<Deployment, kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut conflicts = 0;
    loop {
        let result = api
            .patch(
                name,
                &PatchParams::apply("e2e-gitops").force(),
                &Patch::Apply(object),
            )
            .await;
        // The apiserver retries an apply that races other writers (the Deployment
        // controller's status, Custody's marks) only five times; a GitOps tool tries again.
        match result {
            Err(kube::Error::Api(status)) if status.code == 409 && conflicts < 5 => {
                conflicts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

pub fn image_version(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("e2e.custody.dev/version").cloned())
        .unwrap_or_default()
}

/// Seconds since `t`, for the timings every scenario prints.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}
