//! What a scene sees of a rollout: the workload's revisions as the controller marks them, the
//! milestones from the apply on (seconds to each), a look at the workload every 500 ms until a
//! condition holds, and the checks of a record of a metric regression.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::ListParams;
use kube::core::DynamicObject;
use serde_json::Value;

use crate::scene::{Kind, METRIC, Scene};
use crate::support::pod_ready;

/// One of a workload's revisions: its ReplicaSet or ControllerRevision.
#[derive(Clone, Debug)]
pub struct Revision {
    /// The object's name.
    pub name: String,
    /// What its Pods are labelled with (and the exporter's `revision` label).
    pub hash: String,
    pub annotations: BTreeMap<String, String>,
}

impl Revision {
    pub fn healthy(&self) -> bool {
        self.annotations.contains_key("custody.dev/healthy-since")
    }

    /// The controller's `custody.dev/analysis` annotation, parsed.
    pub fn analysis(&self) -> Option<Value> {
        serde_json::from_str(self.annotations.get("custody.dev/analysis")?).ok()
    }

    /// The analysis's phase, and whether any metric's result is `result`.
    pub fn analysis_shows(&self, result: &str) -> bool {
        self.analysis().is_some_and(|a| {
            a["phase"] == result
                || a["metrics"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["result"] == result))
        })
    }
}

/// Seconds from a start to each milestone, each kept the first time it is reached.
pub struct Clock {
    start: Instant,
    /// Key, label, seconds.
    marks: Mutex<Vec<(String, String, f64)>>,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
            marks: Mutex::new(Vec::new()),
        }
    }

    /// Marks `what` the first time; answers its seconds.
    pub fn mark(&self, what: &str) -> f64 {
        self.mark_as(what, what)
    }

    /// Marks `key` the first time, printed as `label`; answers its seconds.
    pub fn mark_as(&self, key: &str, label: &str) -> f64 {
        let mut marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, t)) = marks.iter().find(|(k, _, _)| k == key) {
            return *t;
        }
        let t = self.start.elapsed().as_secs_f64();
        marks.push((key.to_string(), label.to_string(), t));
        t
    }

    pub fn at(&self, key: &str) -> Option<f64> {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks.iter().find(|(k, _, _)| k == key).map(|(_, _, t)| *t)
    }

    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn describe(&self) -> String {
        let marks = self.marks.lock().unwrap_or_else(|e| e.into_inner());
        marks
            .iter()
            .map(|(_, label, t)| format!("{label} {t:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A workload being rolled out from its v1.
pub struct Rollout {
    pub kind: Kind,
    pub app: &'static str,
    /// The revision marked healthy before the new one.
    pub v1: Revision,
}

impl Scene<'_> {
    /// Follows the rollout every 500 ms until `done` says so of what is seen (an error from it
    /// ends the wait at once), marking on `clock` the milestones of the new revision (the one
    /// other than `v1`): its first Ready Pod and all of them, Prometheus's first value for it,
    /// each phase of its analysis and its healthy mark. Answers the last observation.
    pub async fn follow(
        &self,
        r: &Rollout,
        clock: &Clock,
        what: &str,
        deadline: Duration,
        mut done: impl FnMut(&Observation) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Observation> {
        let until = Instant::now() + deadline;
        let mut last = None;
        loop {
            match self.observe(r, clock).await {
                Ok(seen) => {
                    if done(&seen)? {
                        return Ok(seen);
                    }
                    last = Some(seen);
                }
                Err(e) if Instant::now() > until => {
                    return Err(e.context(format!("waiting for {what}")));
                }
                Err(_) => {}
            }
            if Instant::now() > until {
                anyhow::bail!(
                    "timed out after {deadline:?} waiting for {what}; milestones: {}; last seen: {}",
                    clock.describe(),
                    last.map(|o: Observation| o.describe()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn observe(&self, r: &Rollout, clock: &Clock) -> anyhow::Result<Observation> {
        let (kind, app, v1) = (r.kind, r.app, &r.v1);
        let workload = self.get(kind, app).await?;
        let new = self.new_revision(kind, app, &v1.hash).await?;
        let pods = self
            .ctx
            .pods()
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await?
            .items;
        let ready = |hash: &str| {
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
                .filter(|p| crate::timeline::pod_revision(p).as_deref() == Some(hash))
                .count()
        };
        let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let (v1_ready, new_ready) = (ready(&v1.hash), new.as_ref().map_or(0, |n| ready(&n.hash)));
        if let Some(n) = &new {
            clock.mark_as("new", &format!("{} created", n.name));
            if new_ready > 0 {
                clock.mark("first new Pod Ready");
            }
            if new_ready >= replicas {
                clock.mark(&format!("all {replicas} new Pods Ready"));
            }
            if let Ok(Some(v)) = self.rig.prometheus.query(&self.query(&n.hash)).await {
                clock.mark_as("prometheus", &format!("Prometheus answers {v:.3} for it"));
            }
            if let Some(a) = n.analysis() {
                let phase = a["phase"].as_str().unwrap_or("?");
                clock.mark(&format!("analysis {phase}"));
                for m in a["metrics"].as_array().into_iter().flatten() {
                    let result = m["result"].as_str().unwrap_or("?");
                    clock.mark(&format!("a check {result}"));
                }
            }
            if n.healthy() {
                clock.mark("new revision marked healthy");
            }
        }
        if version(&workload) == "v1" && clock.at("new").is_some() {
            clock.mark("back at v1");
        }
        Ok(Observation {
            workload,
            new,
            new_ready,
            v1_ready,
        })
    }
}

/// The checks a record of a metric regression must pass: `action`, reason `MetricAnalysis`,
/// and the metric with both queries (the new revision's and the baseline's), values near the
/// simulated ratios and the failed checks that confirmed it. Answers a summary.
pub fn check_metric_record(
    record: &DynamicObject,
    action: &str,
    new: &Revision,
    v1: &Revision,
) -> anyhow::Result<String> {
    let spec = &record.data["spec"];
    let name = record.name_any();
    anyhow::ensure!(
        spec["action"] == action && spec["reason"] == "MetricAnalysis",
        "record {name} is not {action}/MetricAnalysis: {spec}"
    );
    let m = &spec["analysis"]["metrics"][0];
    anyhow::ensure!(m["name"] == METRIC, "record {name}'s metric: {m}");
    let query = m["query"].as_str().unwrap_or_default();
    let baseline_query = m["baselineQuery"].as_str().unwrap_or_default();
    anyhow::ensure!(
        query.contains(&new.hash) && baseline_query.contains(&v1.hash),
        "record {name}'s queries do not select the new revision {} and the baseline {}: {m}",
        new.hash,
        v1.hash
    );
    let value = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let (n, b) = (value(&m["new"]), value(&m["baseline"]));
    anyhow::ensure!(
        (0.25..=0.35).contains(&n) && (0.003..=0.008).contains(&b),
        "record {name}'s values are not ≈0.3 against ≈0.005: {m}"
    );
    let failed = m["failedChecks"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        !failed.is_empty()
            && failed.iter().all(|c| {
                c["at"].is_string()
                    && c["new"].is_number()
                    && c["baseline"].is_number()
                    && c["why"].as_str().is_some_and(|w| !w.is_empty())
            }),
        "record {name}'s failedChecks are empty or not {{at, new, baseline, why}}: {m}"
    );
    Ok(format!(
        "record {name}: {action}, MetricAnalysis, new {n:.3} against {b:.4}, {} failed checks (\"{}\")",
        failed.len(),
        failed[0]["why"].as_str().unwrap_or_default()
    ))
}

/// One look at a rollout.
#[derive(Clone, Debug)]
pub struct Observation {
    /// The workload as stored.
    pub workload: Value,
    /// The revision other than v1, once it exists.
    pub new: Option<Revision>,
    /// Ready Pods of the new revision.
    pub new_ready: usize,
    /// Ready Pods of v1.
    pub v1_ready: usize,
}

impl Observation {
    pub fn version(&self) -> String {
        version(&self.workload)
    }

    pub fn paused(&self) -> bool {
        self.workload["spec"]["paused"].as_bool().unwrap_or(false)
    }

    pub fn partition(&self) -> Option<i64> {
        self.workload["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64()
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.workload["metadata"]["annotations"][key].as_str()
    }

    /// The new revision's name, if it exists.
    pub fn new_name(&self) -> Option<&str> {
        self.new.as_ref().map(|n| n.name.as_str())
    }

    fn describe(&self) -> String {
        format!(
            "{} paused={} partition={:?} held={:?} released={:?}; new revision {:?} ({} Ready, analysis {:?}, healthy {}); v1 {} Ready",
            self.version(),
            self.paused(),
            self.partition(),
            self.annotation("custody.dev/held"),
            self.annotation("custody.dev/released"),
            self.new_name(),
            self.new_ready,
            self.new
                .as_ref()
                .and_then(|n| n.annotations.get("custody.dev/analysis")),
            self.new.as_ref().is_some_and(|n| n.healthy()),
            self.v1_ready
        )
    }
}

/// The workload's template version (`e2e.custody.dev/version`).
pub fn version(workload: &Value) -> String {
    workload["spec"]["template"]["metadata"]["annotations"]["e2e.custody.dev/version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
