//! What a rollout did, seen by watches from before it starts to the end of the scenario: every
//! Pod of the workload ever seen with the revisions it ran, the workload's hold and release
//! (paused, partition, `custody.dev/held` and `custody.dev/released`), and the most Pods of a
//! new revision alive at once while the workload was held. Watches rather than polls, so a Pod
//! that lived a moment is seen too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody_e2e::wait_for;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::support::pod_ready;

/// A Pod's revision: its `pod-template-hash`, else its `controller-revision-hash`.
pub fn pod_revision(pod: &Pod) -> Option<String> {
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get("pod-template-hash")
        .or_else(|| labels.get("controller-revision-hash"))
        .cloned()
}

/// The workload's fields a hold changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hold {
    pub version: String,
    pub paused: bool,
    pub partition: Option<i64>,
    pub held: Option<String>,
    /// The partition a StatefulSet's hold restores.
    pub held_partition: Option<String>,
    pub released: Option<String>,
}

impl Hold {
    fn of(workload: &Value) -> Self {
        let annotation = |k: &str| {
            workload["metadata"]["annotations"][k]
                .as_str()
                .map(String::from)
        };
        Self {
            version:
                workload["spec"]["template"]["metadata"]["annotations"]["e2e.custody.dev/version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            paused: workload["spec"]["paused"].as_bool().unwrap_or(false),
            partition: workload["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64(),
            held: annotation("custody.dev/held"),
            held_partition: annotation("custody.dev/held-partition"),
            released: annotation("custody.dev/released"),
        }
    }
}

/// What the watches saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Every Pod ever seen, with the revisions it ran.
    pub pods: BTreeMap<String, BTreeSet<String>>,
    /// When each Pod was first seen, and first seen Ready (seconds since the start).
    first_seen: BTreeMap<String, (f64, Option<f64>)>,
    /// Each distinct state of the workload's hold, with the seconds since the start.
    pub holds: Vec<(f64, Hold)>,
    /// The most Pods of a revision other than the baseline alive at once while the workload
    /// carried `custody.dev/held`.
    pub most_new_while_held: usize,
    /// Both watches have listed once.
    synced: (bool, bool),
    /// Pods alive now (not deleted, no deletionTimestamp), with their revision.
    alive: BTreeMap<String, String>,
    /// Watch errors, for a failure message.
    pub errors: Vec<String>,
}

impl Seen {
    /// The names of the Pods that ever ran a revision other than `baseline`.
    pub fn new_revision_pods(&self, baseline: &str) -> BTreeSet<String> {
        self.pods
            .iter()
            .filter(|(_, revisions)| revisions.iter().any(|r| r != baseline))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The first time the hold state satisfied `f`.
    pub fn first(&self, f: impl Fn(&Hold) -> bool) -> Option<(f64, Hold)> {
        self.holds.iter().find(|(_, h)| f(h)).cloned()
    }

    /// The hold's states, one a line, for a failure message.
    pub fn describe(&self) -> String {
        let holds: Vec<String> = self
            .holds
            .iter()
            .map(|(t, h)| {
                format!(
                    "{t:.1}s {} paused={} partition={:?} held={:?} held-partition={:?} released={:?}",
                    h.version, h.paused, h.partition, h.held, h.held_partition, h.released
                )
            })
            .collect();
        let pods: Vec<String> = self
            .pods
            .iter()
            .map(|(name, revisions)| {
                let (seen, ready) = self.first_seen.get(name).copied().unwrap_or_default();
                let ready = ready.map_or("never".into(), |r| format!("{r:.1}s"));
                format!("{name} {revisions:?} seen {seen:.1}s, Ready {ready}")
            })
            .collect();
        format!(
            "pods ever seen: [{}]; workload: [{}]; watch errors {:?}",
            pods.join("; "),
            holds.join("; "),
            self.errors
        )
    }
}

enum Update {
    Pod(Box<Result<Event<Pod>, watcher::Error>>),
    Workload(Box<Result<Event<DynamicObject>, watcher::Error>>),
}

/// The watches, until dropped.
pub struct Timeline {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Timeline {
    /// Watches `app`'s Pods and `workload` (a Deployment or StatefulSet named `app`); Pods of a
    /// revision other than `baseline` are the new revision's. Answers once both watches listed.
    pub async fn start(
        pods: Api<Pod>,
        workload: Api<DynamicObject>,
        app: &str,
        baseline: &str,
    ) -> anyhow::Result<Self> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let started = Instant::now();
        let pod_events = watcher(
            pods,
            watcher::Config::default().labels(&format!("app={app}")),
        )
        .default_backoff()
        .map(|e| Update::Pod(Box::new(e)))
        .boxed();
        let workload_events = watcher(
            workload,
            watcher::Config::default().fields(&format!("metadata.name={app}")),
        )
        .default_backoff()
        .map(|e| Update::Workload(Box::new(e)))
        .boxed();
        let (shared, baseline) = (seen.clone(), baseline.to_string());
        let task = tokio::spawn(async move {
            let mut updates = stream::select(pod_events, workload_events);
            while let Some(update) = updates.next().await {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                apply(&mut s, update, started.elapsed().as_secs_f64(), &baseline);
            }
        });
        let timeline = Self { seen, task };
        wait_for(
            "the rollout's watches to list",
            Duration::from_secs(30),
            || async {
                let s = timeline.seen();
                Ok((s.synced.0 && s.synced.1).then_some(()))
            },
        )
        .await?;
        Ok(timeline)
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn apply(s: &mut Seen, update: Update, at: f64, baseline: &str) {
    match update {
        Update::Pod(event) => match *event {
            Ok(Event::Init) => s.alive.clear(),
            Ok(Event::InitDone) => s.synced.0 = true,
            Ok(Event::Apply(p) | Event::InitApply(p)) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                let revision = pod_revision(&p).unwrap_or_default();
                s.pods
                    .entry(name.clone())
                    .or_default()
                    .insert(revision.clone());
                let seen = s.first_seen.entry(name.clone()).or_insert((at, None));
                if seen.1.is_none() && pod_ready(&p) {
                    seen.1 = Some(at);
                }
                if p.metadata.deletion_timestamp.is_none() {
                    s.alive.insert(name, revision);
                } else {
                    s.alive.remove(&name);
                }
            }
            Ok(Event::Delete(p)) => {
                s.alive.remove(&p.metadata.name.unwrap_or_default());
            }
            Err(e) => s.errors.push(format!("{at:.1}s pods: {e}")),
        },
        Update::Workload(event) => match *event {
            Ok(Event::InitDone) => s.synced.1 = true,
            Ok(Event::Init | Event::Delete(_)) => {}
            Ok(Event::Apply(w) | Event::InitApply(w)) => {
                let hold = Hold::of(&serde_json::to_value(&w).unwrap_or_default());
                if s.holds.last().is_none_or(|(_, last)| *last != hold) {
                    s.holds.push((at, hold));
                }
            }
            Err(e) => s.errors.push(format!("{at:.1}s workload: {e}")),
        },
    }
    let held = s.holds.last().is_some_and(|(_, h)| h.held.is_some());
    if held {
        let new = s.alive.values().filter(|r| r.as_str() != baseline).count();
        s.most_new_while_held = s.most_new_while_held.max(new);
    }
}
