//! An exporter the suite controls, for the metric-analysis scenarios: it simulates traffic for
//! the Pods it finds in the namespaces it is told to watch, and serves it in Prometheus's text
//! format on 127.0.0.1. Every second each Running and Ready Pod serves 20 requests, of which
//! `ratio × 20` fail, `ratio` being the Pod's `e2e.custody.dev/error-ratio` annotation (0.005
//! when absent): a scenario makes a revision bad by setting it in the pod template. Series are
//! labelled `namespace`, `pod` and `revision` (the `pod-template-hash`, else the
//! `controller-revision-hash`), which is what the policies' queries select by.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::task::JoinHandle;

use crate::support::pod_ready;

/// The pod-template annotation that sets a Pod's share of failed requests.
pub const ERROR_RATIO: &str = "e2e.custody.dev/error-ratio";
/// The share of failed requests of a Pod without the annotation.
pub const DEFAULT_RATIO: f64 = 0.005;
const REQUESTS_PER_SECOND: f64 = 20.0;

/// A series' labels: namespace, pod, revision.
type Series = (String, String, String);

#[derive(Default)]
struct Traffic {
    /// The namespaces whose Pods are simulated.
    namespaces: BTreeSet<String>,
    /// Every series ever seen, with its requests and errors; never reset, so each counter is
    /// monotonic.
    counters: BTreeMap<Series, (f64, f64)>,
    /// The series of the Pods that exist now (the only ones exposed), with their error ratio
    /// while Running and Ready.
    present: BTreeMap<Series, Option<f64>>,
}

type Shared = Arc<Mutex<Traffic>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Traffic> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The exporter: serving, listing Pods and counting until dropped.
pub struct Exporter {
    /// Where `/metrics` is served.
    pub addr: SocketAddr,
    traffic: Shared,
    tasks: Vec<JoinHandle<()>>,
}

/// A namespace's Pods simulated until this is dropped.
pub struct Watched {
    traffic: Shared,
    namespace: String,
}

impl Drop for Watched {
    fn drop(&mut self) {
        lock(&self.traffic).namespaces.remove(&self.namespace);
    }
}

impl Exporter {
    pub async fn start(client: Client) -> anyhow::Result<Self> {
        let traffic = Shared::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = Router::new()
            .route("/metrics", get(metrics))
            .with_state(traffic.clone());
        let serve = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("the e2e exporter stopped serving: {e}");
            }
        });
        let list = tokio::spawn(list_pods(client, traffic.clone()));
        let count = tokio::spawn(count(traffic.clone()));
        Ok(Self {
            addr,
            traffic,
            tasks: vec![serve, list, count],
        })
    }

    /// Simulates `namespace`'s Pods until the answer is dropped.
    pub fn watch(&self, namespace: &str) -> Watched {
        lock(&self.traffic).namespaces.insert(namespace.to_string());
        Watched {
            traffic: self.traffic.clone(),
            namespace: namespace.to_string(),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A Pod's series, and its error ratio when it is Running and Ready.
fn series(namespace: &str, pod: &Pod) -> Option<(Series, Option<f64>)> {
    let labels = pod.metadata.labels.as_ref()?;
    let revision = labels
        .get("pod-template-hash")
        .or_else(|| labels.get("controller-revision-hash"))?;
    let serving = pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod_ready(pod);
    let ratio = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ERROR_RATIO))
        .and_then(|r| r.parse::<f64>().ok())
        .unwrap_or(DEFAULT_RATIO)
        .clamp(0.0, 1.0);
    Some((
        (
            namespace.to_string(),
            pod.metadata.name.clone()?,
            revision.clone(),
        ),
        serving.then_some(ratio),
    ))
}

/// Every 500 ms, the Pods of the watched namespaces.
async fn list_pods(client: Client, traffic: Shared) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let namespaces: Vec<String> = lock(&traffic).namespaces.iter().cloned().collect();
        let mut present = BTreeMap::new();
        let mut listed = BTreeSet::new();
        for ns in &namespaces {
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            // A failed list keeps what was known of the namespace.
            if let Ok(list) = pods.list(&ListParams::default()).await {
                listed.insert(ns.clone());
                present.extend(list.items.iter().filter_map(|p| series(ns, p)));
            }
        }
        let mut t = lock(&traffic);
        let kept: Vec<(Series, Option<f64>)> = t
            .present
            .iter()
            .filter(|(s, _)| t.namespaces.contains(&s.0) && !listed.contains(&s.0))
            .map(|(s, r)| (s.clone(), *r))
            .collect();
        present.extend(kept);
        for s in present.keys() {
            t.counters.entry(s.clone()).or_default();
        }
        t.present = present;
    }
}

/// Every second, each serving Pod's requests and errors.
async fn count(traffic: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut t = lock(&traffic);
        let serving: Vec<(Series, f64)> = t
            .present
            .iter()
            .filter_map(|(s, r)| r.map(|r| (s.clone(), r)))
            .collect();
        for (s, ratio) in serving {
            let c = t.counters.entry(s).or_default();
            c.0 += REQUESTS_PER_SECOND;
            c.1 += ratio * REQUESTS_PER_SECOND;
        }
    }
}

async fn metrics(State(traffic): State<Shared>) -> String {
    exposition(&lock(&traffic))
}

fn exposition(t: &Traffic) -> String {
    let mut requests = String::from("# TYPE e2e_http_requests_total counter\n");
    let mut errors = String::from("# TYPE e2e_http_errors_total counter\n");
    for (s @ (ns, pod, revision), (r, e)) in &t.counters {
        if !t.present.contains_key(s) {
            continue;
        }
        let labels = format!(
            "namespace=\"{}\",pod=\"{}\",revision=\"{}\"",
            escape(ns),
            escape(pod),
            escape(revision)
        );
        requests.push_str(&format!("e2e_http_requests_total{{{labels}}} {r}\n"));
        errors.push_str(&format!("e2e_http_errors_total{{{labels}}} {e}\n"));
    }
    requests + &errors
}

fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, hash: (&str, &str), ratio: Option<&str>, ready: bool) -> Pod {
        let mut p = serde_json::json!({
            "metadata": {"name": name, "labels": {hash.0: hash.1}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}
            ]}
        });
        if let Some(r) = ratio {
            p["metadata"]["annotations"] = serde_json::json!({ERROR_RATIO: r});
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn series_are_labelled_by_revision_and_count_only_ready_pods() {
        let (s, r) = series(
            "ns",
            &pod("a-1", ("pod-template-hash", "7f9c"), Some("0.3"), true),
        )
        .unwrap();
        assert_eq!(s, ("ns".into(), "a-1".into(), "7f9c".into()));
        assert_eq!(r, Some(0.3));
        let (s, r) = series(
            "ns",
            &pod("db-2", ("controller-revision-hash", "db-5b1d"), None, false),
        )
        .unwrap();
        assert_eq!(s.2, "db-5b1d");
        assert_eq!(r, None);
        let (_, r) = series("ns", &pod("a-2", ("pod-template-hash", "7f9c"), None, true)).unwrap();
        assert_eq!(r, Some(DEFAULT_RATIO));
    }

    #[test]
    fn only_present_pods_are_exposed() {
        let mut t = Traffic::default();
        let here: Series = ("ns".into(), "a-1".into(), "7f9c".into());
        let gone: Series = ("ns".into(), "a-0".into(), "5b1d".into());
        t.counters.insert(here.clone(), (40.0, 0.2));
        t.counters.insert(gone, (20.0, 0.1));
        t.present.insert(here, Some(0.005));
        let text = exposition(&t);
        assert!(text.contains(
            "e2e_http_requests_total{namespace=\"ns\",pod=\"a-1\",revision=\"7f9c\"} 40\n"
        ));
        assert!(text.contains(
            "e2e_http_errors_total{namespace=\"ns\",pod=\"a-1\",revision=\"7f9c\"} 0.2\n"
        ));
        assert!(!text.contains("a-0"), "{text}");
    }
}
