//! The controller's whole loop against the in-process fake API server, for the I/O tests.

use std::time::Duration;

use custody_controller::measure::sources::Sources;
use custody_controller::metrics::Metrics;
use custody_controller::run::{self, RunConfig};
use custody_crds::Vocabulary;
use custody_testkit::fake_apiserver::FakeApiServer;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A controller running as the leader.
pub struct Running {
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub metrics: Metrics,
    pub readiness: custody_runtime::Readiness,
}

/// The settings every I/O test starts from: the default vocabulary, no dry run, no
/// notifications, no audit.
pub fn config() -> RunConfig {
    RunConfig {
        vocabulary: Vocabulary::default(),
        dry_run: false,
        identity: "test".into(),
        notifier: None,
        audit: None,
        sources: Sources::new(None),
    }
}

/// Starts the controller against `api` as the leader, with the settings `configure` makes
/// from the client and the metrics.
pub fn start(
    api: &FakeApiServer,
    configure: impl FnOnce(&kube::Client, &Metrics) -> RunConfig,
) -> Running {
    let (running, leading) = start_with_lease(api, configure, true);
    // Kept for as long as the controller runs, so it stays the leader.
    tokio::spawn({
        let shutdown = running.shutdown.clone();
        async move {
            shutdown.cancelled().await;
            drop(leading);
        }
    });
    running
}

/// Starts the controller against `api`, leading or following as `leads` says; the sender
/// hands the Lease over later (or takes it away).
#[allow(dead_code)] // Not every test binary that includes this module changes leaders.
pub fn start_with_lease(
    api: &FakeApiServer,
    configure: impl FnOnce(&kube::Client, &Metrics) -> RunConfig,
    leads: bool,
) -> (Running, tokio::sync::watch::Sender<bool>) {
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (tx, leader) = tokio::sync::watch::channel(leads);
    let shutdown = CancellationToken::new();
    let readiness = custody_runtime::Readiness::new();
    let ready = readiness.register("caches");
    let config = configure(&client, &metrics);
    let task = tokio::spawn({
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        async move {
            run::run(client, config, metrics, leader, ready, shutdown).await;
        }
    });
    (
        Running {
            shutdown,
            task,
            metrics,
            readiness,
        },
        tx,
    )
}

impl Running {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Whether `check` holds within `deadline`, looking every 20 ms.
pub async fn eventually(deadline: Duration, check: impl Fn() -> bool) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// The image of Deployment `shop/web` as stored.
pub fn image(api: &FakeApiServer) -> String {
    api.get("apis/apps/v1/deployments", "shop", "web").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The time `seconds` ago, as the API server writes it.
pub fn ago(seconds: i64) -> String {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .unwrap()
        .to_string()
}

/// A pod template of app `web` running `image`, with the `pod-template-hash` label a
/// ReplicaSet's copy carries when `hash` is given.
pub fn pod_template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image}]}})
}
