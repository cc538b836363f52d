//! What the metric-analysis scenarios share: the rig (a real Prometheus scraping the suite's
//! exporter), and each scenario's scene: a namespace the chart's default policy leaves out, a
//! CustodyPolicy of its own with the analysis, the workload's v1 marked healthy with a window of
//! its traffic in Prometheus, and the records. A scene's namespace and policy go whatever ends
//! the scenario (`Drop`). What a scene sees of a rollout is in `rollout.rs`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use custody_e2e::{deployment, kubectl, provenance, run, stateful_set, wait_for};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::exporter::{ERROR_RATIO, Exporter, Watched};
use crate::prometheus::Prometheus;
use crate::rollout::{Clock, Revision, Rollout};
use crate::support::{Ctx, policies_api, records_api};

/// The prefix of the namespaces the chart's default policy leaves to these scenarios.
pub const NAMESPACE_PREFIX: &str = "custody-e2e-analysis-";
/// The prefix of the scenes' policies.
const POLICY_PREFIX: &str = "e2e-analysis-";

/// The policy's one metric: the revision's share of failed requests.
pub const METRIC: &str = "error-ratio";
const QUERY: &str = r#"sum(rate(e2e_http_errors_total{namespace="{{namespace}}",revision="{{revision}}"}[{{window}}])) / sum(rate(e2e_http_requests_total{namespace="{{namespace}}",revision="{{revision}}"}[{{window}}]))"#;
const WINDOW_SECONDS: u64 = 10;
/// How long a guarded rollout is held after its first Pod.
pub const HOLD_SECONDS: u64 = 20;

/// A real Prometheus scraping the suite's exporter, for every scene.
pub struct Rig {
    pub prometheus: Prometheus,
    pub exporter: Exporter,
}

impl Rig {
    /// Starts the exporter and Prometheus; `None` when no `prometheus` binary is installed.
    pub async fn setup(ctx: &Ctx) -> anyhow::Result<Option<Self>> {
        let Some(binary) = Prometheus::binary() else {
            return Ok(None);
        };
        remove_leftovers(ctx).await?;
        let exporter = Exporter::start(ctx.client.clone()).await?;
        let prometheus = Prometheus::launch(binary, exporter.addr).await?;
        Ok(Some(Self {
            prometheus,
            exporter,
        }))
    }
}

/// Deletes the scenes' policies and namespaces a killed run left behind (a scene deletes its own
/// when dropped, which a SIGKILL skips).
async fn remove_leftovers(ctx: &Ctx) -> anyhow::Result<()> {
    let policies = policies_api(&ctx.client);
    for p in policies.list(&ListParams::default()).await?.items {
        let name = p.name_any();
        if name.starts_with(POLICY_PREFIX) {
            policies.delete(&name, &DeleteParams::default()).await?;
        }
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    for ns in namespaces.list(&ListParams::default()).await?.items {
        let name = ns.name_any();
        if name.starts_with(NAMESPACE_PREFIX) && ns.metadata.deletion_timestamp.is_none() {
            namespaces.delete(&name, &DeleteParams::default()).await?;
        }
    }
    Ok(())
}

/// The kinds of workload the scenes roll out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Deployment,
    StatefulSet,
}

/// A scenario's namespace and policy, deleted when dropped.
pub struct Scene<'a> {
    pub ctx: Ctx,
    pub rig: &'a Rig,
    policy: String,
    _watched: Watched,
}

impl Drop for Scene<'_> {
    fn drop(&mut self) {
        // kubectl, not the async client: this runs on a panic too.
        for (kind, name) in [("custodypolicy", &self.policy), ("namespace", &self.ctx.ns)] {
            if let Err(e) = run(
                &kubectl(),
                &["delete", kind, name, "--ignore-not-found", "--wait=false"],
            ) {
                eprintln!("e2e cleanup: deleting {kind} {name} failed: {e:#}");
            }
        }
    }
}

impl<'a> Scene<'a> {
    /// Scenario `number`'s namespace, watched by the exporter, and its policy; `canary` guards
    /// agents' rollouts.
    pub async fn open(ctx: &Ctx, rig: &'a Rig, number: u32, canary: bool) -> anyhow::Result<Self> {
        let id = std::process::id();
        let ns = format!("{NAMESPACE_PREFIX}{number}-{id}");
        let scene = Self {
            ctx: Ctx {
                client: ctx.client.clone(),
                settings: ctx.settings.clone(),
                ns: ns.clone(),
                local: None,
            },
            rig,
            policy: format!("{POLICY_PREFIX}{number}-{id}"),
            _watched: rig.exporter.watch(&ns),
        };
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let mut spec = json!({
            "match": {"namespaces": {"include": [ns]}},
            "rollback": {
                "notReadySeconds": 15,
                "healthyAfterSeconds": 5,
                "analysis": {
                    "intervalSeconds": 5,
                    "windowSeconds": WINDOW_SECONDS,
                    "failureLimit": 2,
                    "provider": {"prometheus": {"address": rig.prometheus.address(), "timeoutSeconds": 2}},
                    "metrics": [{
                        "name": METRIC,
                        "query": QUERY,
                        "condition": {"baseline": {"ratioAbove": 5, "differenceAbove": 0.05}}
                    }]
                }
            }
        });
        if canary {
            spec["agents"] = json!({"canary": {"holdSeconds": HOLD_SECONDS}});
        }
        policies_api(&ctx.client)
            .patch(
                &scene.policy,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
                    "metadata": {"name": scene.policy},
                    "spec": spec
                })),
            )
            .await?;
        Ok(scene)
    }

    pub fn ns(&self) -> &str {
        &self.ctx.ns
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        let resource = match kind {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        };
        Api::namespaced_with(self.ctx.client.clone(), self.ns(), &resource)
    }

    /// The workload `app` of `replicas` Pods at `version`, by `actor`; `ratio` sets its Pods'
    /// share of failed requests. No `minReadySeconds`, even under a guard: the lab's simulated
    /// Pods are Ready within a fraction of a second, so the controller's hold must land before
    /// the rollout's controller can take a second step, as it must on a fast real cluster.
    pub fn workload(
        &self,
        kind: Kind,
        app: &str,
        actor: &str,
        version: &str,
        ratio: Option<&str>,
        replicas: u32,
    ) -> Value {
        let commit = format!(
            "{:x}{:06x}",
            0xa,
            fnv(&format!("{app}{version}")) & 0xff_ffff
        );
        let annotations = provenance(actor, &commit, &format!("run-{version}"));
        let mut w = match kind {
            Kind::Deployment => deployment(&self.ctx.settings, app, annotations, version, false),
            Kind::StatefulSet => stateful_set(&self.ctx.settings, app, annotations, version, false),
        };
        w["spec"]["replicas"] = json!(replicas);
        if let Some(r) = ratio {
            w["spec"]["template"]["metadata"]["annotations"][ERROR_RATIO] = json!(r);
        }
        w
    }

    /// Server-side applies `object` as GitOps would.
    pub async fn apply(&self, kind: Kind, object: &Value) -> anyhow::Result<()> {
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        self.api(kind)
            .patch(
                name,
                &PatchParams::apply("e2e-gitops").force(),
                &Patch::Apply(object),
            )
            .await?;
        Ok(())
    }

    /// The workload as stored, as JSON.
    pub async fn get(&self, kind: Kind, app: &str) -> anyhow::Result<Value> {
        Ok(serde_json::to_value(self.api(kind).get(app).await?)?)
    }

    /// The dynamic API of the workload's kind (for a watch).
    pub fn workload_api(&self, kind: Kind) -> Api<DynamicObject> {
        self.api(kind)
    }

    /// The workload's revisions.
    pub async fn revisions(&self, kind: Kind, app: &str) -> anyhow::Result<Vec<Revision>> {
        let selector = ListParams::default().labels(&format!("app={app}"));
        Ok(match kind {
            Kind::Deployment => {
                let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.ns());
                api.list(&selector)
                    .await?
                    .items
                    .into_iter()
                    .map(|rs| Revision {
                        name: rs.name_any(),
                        hash: rs
                            .labels()
                            .get("pod-template-hash")
                            .cloned()
                            .unwrap_or_default(),
                        annotations: rs.annotations().clone(),
                    })
                    .collect()
            }
            Kind::StatefulSet => {
                let api: Api<ControllerRevision> =
                    Api::namespaced(self.ctx.client.clone(), self.ns());
                api.list(&selector)
                    .await?
                    .items
                    .into_iter()
                    .map(|cr| Revision {
                        name: cr.name_any(),
                        hash: cr.name_any(),
                        annotations: cr.annotations().clone(),
                    })
                    .collect()
            }
        })
    }

    /// The one revision other than `v1`, once it exists.
    pub async fn new_revision(
        &self,
        kind: Kind,
        app: &str,
        v1: &str,
    ) -> anyhow::Result<Option<Revision>> {
        Ok(self
            .revisions(kind, app)
            .await?
            .into_iter()
            .find(|r| r.hash != v1))
    }

    /// Creates `app`'s v1 (by `actor`, `replicas` Pods, the default error ratio) and waits until
    /// the controller marks it healthy and Prometheus holds a window of its traffic; answers its
    /// revision and what Prometheus measured.
    pub async fn v1(
        &self,
        kind: Kind,
        app: &'static str,
        actor: &str,
        replicas: u32,
        clock: &Clock,
    ) -> anyhow::Result<(Rollout, String)> {
        self.apply(kind, &self.workload(kind, app, actor, "v1", None, replicas))
            .await?;
        let v1 = wait_for(
            &format!("{app}'s v1 marked healthy"),
            Duration::from_secs(240),
            || async {
                Ok(self
                    .revisions(kind, app)
                    .await?
                    .into_iter()
                    .find(|r| r.healthy()))
            },
        )
        .await?;
        clock.mark("v1 healthy");
        let baseline = self.wait_baseline(&v1.hash).await?;
        clock.mark("v1's window in Prometheus");
        Ok((Rollout { kind, app, v1 }, baseline))
    }

    /// The policy's query filled in for `revision` over the policy's window.
    pub fn query(&self, revision: &str) -> String {
        QUERY
            .replace("{{namespace}}", self.ns())
            .replace("{{revision}}", revision)
            .replace("{{window}}", &format!("{WINDOW_SECONDS}s"))
    }

    /// Waits until Prometheus holds more than a window of `revision`'s traffic (every Pod's
    /// series scraped at least 11 times in the last 12 s) and the policy's query answers the
    /// default error ratio for it; answers what it measured.
    async fn wait_baseline(&self, revision: &str) -> anyhow::Result<String> {
        let started = Instant::now();
        let prometheus = &self.rig.prometheus;
        let samples = format!(
            "min(count_over_time(e2e_http_requests_total{{namespace=\"{}\",revision=\"{revision}\"}}[12s]))",
            self.ns()
        );
        let query = self.query(revision);
        let (n, ratio) = wait_for(
            &format!("a window of {revision}'s traffic in Prometheus"),
            Duration::from_secs(90),
            || async {
                let n = prometheus.query(&samples).await?.unwrap_or(0.0);
                let ratio = prometheus.query(&query).await?;
                Ok(ratio
                    .filter(|r| n >= 11.0 && (r - crate::exporter::DEFAULT_RATIO).abs() < 0.001)
                    .map(|r| (n, r)))
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}; prometheus's log: {}", prometheus.log_tail()))?;
        Ok(format!(
            "Prometheus answered the policy's query for v1 with {ratio:.4} ({n} samples of each Pod in the last 12s) {:.1}s after v1 was marked healthy",
            started.elapsed().as_secs_f64()
        ))
    }

    /// `app`'s RollbackRecords.
    pub async fn records(&self, app: &str) -> anyhow::Result<Vec<DynamicObject>> {
        Ok(records_api(&self.ctx.client, self.ns())
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|r| r.data["spec"]["workload"]["name"] == app)
            .collect())
    }

    /// Waits for `app`'s record with `action`.
    pub async fn wait_record(
        &self,
        app: &str,
        action: &str,
        deadline: Duration,
    ) -> anyhow::Result<DynamicObject> {
        wait_for(&format!("a record {action} of {app}"), deadline, || async {
            Ok(self
                .records(app)
                .await?
                .into_iter()
                .find(|r| r.data["spec"]["action"] == action))
        })
        .await
    }

    /// What the cluster shows of the scene, for a failure message: the workload's hold, its
    /// revisions' marks and analysis, its Pods, its records, and the controllers' log lines
    /// about the namespace.
    pub async fn evidence(
        &self,
        kind: Kind,
        app: &str,
        local: Option<&custody_e2e::local::LocalInstall>,
    ) -> String {
        let workload = match self.get(kind, app).await {
            Ok(w) => format!(
                "paused={} partition={} annotations={}",
                w["spec"]["paused"],
                w["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
                w["metadata"]["annotations"]
            ),
            Err(e) => format!("(reading {app} failed: {e:#})"),
        };
        let revisions = match self.revisions(kind, app).await {
            Ok(rs) => rs
                .iter()
                .map(|r| {
                    let marks: BTreeMap<&String, &String> = r
                        .annotations
                        .iter()
                        .filter(|(k, _)| k.starts_with("custody.dev/"))
                        .collect();
                    format!("{} {marks:?}", r.name)
                })
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("(listing revisions failed: {e:#})"),
        };
        let records = match self.records(app).await {
            Ok(rs) => rs
                .iter()
                .map(|r| format!("{} {}", r.name_any(), r.data["spec"]))
                .collect::<Vec<_>>()
                .join("; "),
            Err(e) => format!("(listing records failed: {e:#})"),
        };
        let logs = local
            .map(|l| l.controller_log_lines(&[self.ns(), "analysis", "prometheus", "canary"]))
            .unwrap_or_default();
        format!(
            "\n  {app}: {workload}\n  revisions: {revisions}\n  pods: {}\n  records: {records}\n  controller log lines about {}:\n{logs}",
            self.ctx.pods_described(app).await,
            self.ns()
        )
    }
}

/// A stable hash of a text (FNV-1a), for a commit that differs per workload and version.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}
