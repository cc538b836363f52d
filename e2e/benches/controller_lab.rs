//! The controller benchmark of `controller/benches/controller.rs`, against a REAL kube-apiserver
//! (the lab, built once per machine as docs/testing.md says: kube-apiserver,
//! controller-manager and scheduler v1.28.7, nodes simulated by kwok). Numbers, not assertions.
//!
//! ```sh
//! cargo build --release -p custody-controller
//! KUBECONFIG=$HOME/k8s-lab/kubeconfig cargo bench -p custody-e2e --bench controller_lab
//! ```
//!
//! It takes `/tmp/custody-lab.lock` (flock) for its whole run, so that e2e runs and this bench
//! do not distort each other; when the caller already holds it (`flock /tmp/custody-lab.lock
//! env CUSTODY_LAB_LOCK_HELD=1 cargo bench ...`), CUSTODY_LAB_LOCK_HELD=1 says so. Without
//! KUBECONFIG, or when the apiserver does not answer, it prints one SKIPPED line on stderr and
//! exits 0.
//!
//! What it does, in namespaces `custody-bench-<pid>-<k>` (200 Deployments each):
//! 1. applies the Custody CRDs (server-side), creates kwok Nodes of its own (tainted, so only its
//!    Pods land there: the lab's three nodes take 110 Pods each), and a CustodyPolicy that
//!    governs only its namespaces, with short windows. No admission webhook is registered.
//! 2. creates LAB_DEPLOYMENTS agent-annotated Deployments of 3 replicas, paced
//!    (LAB_CREATE_RATE per second, LAB_CREATE_CONCURRENCY in flight), and waits until all are
//!    available;
//! 3. starts the release `custody-controller` (CUSTODY_CONTROLLER_BIN for another build), and
//!    measures the time until its /readyz answers 200 and its RSS 5 s later;
//! 4. waits until the controller has marked every v1 ReplicaSet healthy;
//! 5. watches the sample Deployments and their v2 Pods, rolls out a crash-looping v2 on
//!    LAB_SAMPLES Deployments (one every LAB_SAMPLE_INTERVAL_MS), and measures per Deployment the
//!    time from the first v2 Pod event showing CrashLoopBackOff to the Deployment event whose pod
//!    template is v1 again (the revert PATCH landing), both as they arrive at this process. It
//!    also splits that time: the controller does not judge a Deployment whose status has not yet
//!    observed its generation, so the wait for the controller-manager's status write is reported
//!    apart from the controller's own part. The deadline is LAB_REVERT_DEADLINE seconds.
//!
//! The rest of the knobs: LAB_SETTLE_TIMEOUT (seconds for every Deployment to become
//! available), LAB_CLEANUP_TIMEOUT (seconds to wait for the namespaces to go).
//!
//! Every exit path (error, panic, SIGINT, SIGTERM) stops the controller and deletes the policy,
//! the namespaces and the nodes. The controller's log is kept only when the run fails (or with
//! LAB_KEEP_LOG=1; BENCH_RUST_LOG sets its filter).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use custody_crds::{CustodyPolicy, RollbackRecord};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, CustomResourceExt, Resource, ResourceExt};
use serde_json::{Value, json};

const LOCK_PATH: &str = "/tmp/custody-lab.lock";
const FIELD_MANAGER: &str = "custody-bench";
/// On every object the bench creates: the run (this process's id).
const RUN_LABEL: &str = "bench.custody.dev/run";
/// On the sample Deployments.
const SAMPLE_LABEL: &str = "bench.custody.dev/sample";
/// On v2 pod templates only, so v2 Pods can be watched alone.
const V2_LABEL: &str = "bench.custody.dev/v2";
const DEPLOYMENTS_PER_NAMESPACE: usize = 200;
const PODS_PER_NODE: usize = 3000;
/// What the fake-apiserver memory budget was set for.
const BUDGET_MIB: f64 = 64.0;
const BUDGET_OBJECTS: (u64, u64, u64) = (10_000, 10_000, 30_000);

fn env_or<T: FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    deployments: usize,
    samples: usize,
    create_rate: f64,
    create_concurrency: usize,
    sample_interval: Duration,
    settle_timeout: Duration,
    revert_deadline: Duration,
    controller_bin: PathBuf,
    log_filter: String,
}

impl Settings {
    fn from_env() -> Self {
        let deployments = env_or("LAB_DEPLOYMENTS", 2000_usize).max(1);
        Self {
            deployments,
            samples: env_or("LAB_SAMPLES", 50_usize).clamp(1, deployments),
            create_rate: env_or("LAB_CREATE_RATE", 20.0_f64).max(0.1),
            create_concurrency: env_or("LAB_CREATE_CONCURRENCY", 4_usize).max(1),
            sample_interval: Duration::from_millis(env_or("LAB_SAMPLE_INTERVAL_MS", 1000)),
            settle_timeout: Duration::from_secs(env_or("LAB_SETTLE_TIMEOUT", 2400)),
            revert_deadline: Duration::from_secs(env_or("LAB_REVERT_DEADLINE", 120)),
            controller_bin: std::env::var_os("CUSTODY_CONTROLLER_BIN").map_or_else(
                || repo_root().join("target/release/custody-controller"),
                PathBuf::from,
            ),
            log_filter: std::env::var("BENCH_RUST_LOG")
                .unwrap_or_else(|_| "warn,custody_controller::run=info".into()),
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of one run's objects.
struct Run {
    id: String,
    namespaces: Vec<String>,
    nodes: Vec<String>,
    policy: String,
}

impl Run {
    fn new(settings: &Settings) -> Self {
        let id = std::process::id().to_string();
        let namespaces = settings.deployments.div_ceil(DEPLOYMENTS_PER_NAMESPACE);
        // Every Pod, the surge Pods of the samples' rollouts, and the reverts' replacements.
        let nodes = (settings.deployments * 3 + settings.samples * 2).div_ceil(PODS_PER_NODE);
        Self {
            namespaces: (0..namespaces)
                .map(|k| format!("custody-bench-{id}-{k}"))
                .collect(),
            nodes: (0..nodes)
                .map(|k| format!("custody-bench-{id}-node-{k}"))
                .collect(),
            // Sorts before any name that starts with a letter: the controller takes the first
            // selecting policy by name.
            policy: format!("0-custody-bench-{id}"),
            id,
        }
    }

    /// Deployment `i`: its namespace and name.
    fn deployment(&self, i: usize) -> (String, String) {
        let ns = &self.namespaces[i / DEPLOYMENTS_PER_NAMESPACE];
        (ns.clone(), format!("svc-{i:05}"))
    }

    /// The samples, spread evenly over the Deployments.
    fn is_sample(i: usize, settings: &Settings) -> bool {
        (i * settings.samples) % settings.deployments < settings.samples
    }
}

/// What exists now and must go on exit.
#[derive(Default)]
struct Created {
    controller: Option<ControllerProcess>,
    policy: Option<String>,
    namespaces: Vec<String>,
    nodes: Vec<String>,
}

type Shared<T> = Arc<Mutex<T>>;

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------- objects ----------

fn provenance(run: &str, version: u32) -> Value {
    json!({
        "custody.dev/actor": "agent",
        "custody.dev/agent": "claude-code/1.0",
        "custody.dev/model": "claude-sonnet-4",
        "custody.dev/source-repo": "https://git.example.com/shop/web",
        "custody.dev/source-commit": if version == 1 { "3f9c2a7" } else { "b41d0e9c" },
        "custody.dev/pipeline-run": format!("bench-{run}-{version}"),
        "custody.dev/owner": "team-web",
        "custody.dev/oncall": "web-oncall@example.com"
    })
}

fn deployment(run: &Run, name: &str, sample: bool) -> Value {
    let mut labels = json!({"app": name, RUN_LABEL: run.id});
    if sample {
        labels[SAMPLE_LABEL] = json!(run.id);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": provenance(&run.id, 1)},
        "spec": {
            "replicas": 3,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, RUN_LABEL: run.id}},
                "spec": {
                    "nodeSelector": {RUN_LABEL: run.id},
                    "tolerations": [{"key": RUN_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{
                        "name": "web",
                        "image": "registry.example.com/shop/web:1",
                        "ports": [{"containerPort": 8080}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                    }],
                    "terminationGracePeriodSeconds": 1
                }
            }
        }
    })
}

/// v2: a new commit and run, a new image, and the kwok annotation that makes its Pods crash loop.
fn v2_patch(run: &Run) -> Value {
    json!({
        "metadata": {"annotations": provenance(&run.id, 2)},
        "spec": {"template": {
            "metadata": {"labels": {V2_LABEL: run.id}, "annotations": {"kwok.lab/health": "crashloop"}},
            "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:2"}]}
        }}
    })
}

fn node(run: &Run, name: &str) -> Value {
    let resources = json!({"cpu": "1k", "memory": "4Ti", "pods": PODS_PER_NODE.to_string()});
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            // Managed by the lab's main kwok.
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name, "type": "kwok", RUN_LABEL: run.id
            }
        },
        "spec": {"taints": [{"key": RUN_LABEL, "value": run.id, "effect": "NoSchedule"}]},
        "status": {
            "allocatable": resources, "capacity": resources,
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                         "kubeletVersion": "v1.28.7", "kubeProxyVersion": "v1.28.7",
                         "containerRuntimeVersion": "kwok", "bootID": "", "kernelVersion": "",
                         "machineID": "", "osImage": "", "systemUUID": ""}
        }
    })
}

fn policy(run: &Run) -> anyhow::Result<CustodyPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "custody.dev/v1alpha1",
        "kind": "CustodyPolicy",
        "metadata": {"name": run.policy, "labels": {RUN_LABEL: run.id}},
        "spec": {
            "mode": "Audit",
            "match": {"kinds": ["Deployment"], "namespaces": {"include": [format!("custody-bench-{}-*", run.id)]}},
            "rollback": {"notReadySeconds": 5, "healthyAfterSeconds": 5, "restartThreshold": 3}
        }
    }))?)
}

fn typed<T: DeserializeOwned>(v: Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

// ---------- the controller process ----------

struct ControllerProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        // SIGTERM first, so it shuts down as in a rollout.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn readyz(admin: std::net::SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let timeout = Duration::from_secs(2);
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&admin, timeout) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf.starts_with(b"HTTP/1.1 200")
    })
    .await
    .unwrap_or(false)
}

/// Warns when the binary is older than the controller's sources: it would measure old code.
fn warn_if_stale(bin: &Path) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(bin) else { return };
    let mut stack = vec![
        repo_root().join("controller/src"),
        repo_root().join("runtime/src"),
        repo_root().join("crds/src"),
    ];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if modified(&path).is_some_and(|m| m > built) {
                eprintln!(
                    "controller_lab: WARNING {} is newer than {}; rebuild with `cargo build --release -p custody-controller`",
                    path.display(),
                    bin.display()
                );
                return;
            }
        }
    }
}

/// Starts the controller; returns its pid, the time until its /readyz answered 200, and its RSS
/// and peak RSS 5 s later (KiB).
async fn start_controller(
    settings: &Settings,
    run: &Run,
    created: &Shared<Created>,
) -> anyhow::Result<(u32, Duration, u64, u64)> {
    let admin = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let log = std::env::temp_dir().join(format!("custody-bench-{}-controller.log", run.id));
    let log_file = File::create(&log)?;
    warn_if_stale(&settings.controller_bin);
    let child = Command::new(&settings.controller_bin)
        .args([
            "--no-leader-election",
            "--admin-listen",
            &admin.to_string(),
            "--identity",
            &format!("custody-bench-{}", run.id),
        ])
        .env("RUST_LOG", &settings.log_filter)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", settings.controller_bin.display()))?;
    let pid = child.id();
    locked(created).controller = Some(ControllerProcess { child, log });
    let started = Instant::now();
    while !readyz(admin).await {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("custody-controller not ready after 300 s");
        }
        if status_kib(pid, "VmRSS:") == 0 {
            bail!("custody-controller exited before it was ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = started.elapsed();
    // Every workload is reconciled once after the sync; let that settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok((
        pid,
        synced,
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "VmHWM:"),
    ))
}

/// Stops the controller (SIGTERM, then SIGKILL after 20 s).
async fn stop_controller(created: &Shared<Created>) -> Option<PathBuf> {
    let controller = locked(created).controller.take()?;
    let log = controller.log.clone();
    let _ = tokio::task::spawn_blocking(move || drop(controller)).await;
    Some(log)
}

// ---------- helpers ----------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

fn summary(label: &str, mut values: Vec<Duration>) {
    values.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {label} ({} samples): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, min {:.0} ms",
        values.len(),
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.99)),
        ms(values.last().copied().unwrap_or_default()),
        ms(values.first().copied().unwrap_or_default()),
    );
}

/// Objects of `K` in the whole cluster, counted without listing them all.
async fn count<K>(client: &Client) -> anyhow::Result<u64>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let list = Api::<K>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await?;
    let rest = list.metadata.remaining_item_count.unwrap_or(0);
    Ok(list.items.len() as u64 + u64::try_from(rest).unwrap_or(0))
}

async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if Instant::now() > until => {
                return Err(e.context(format!("waiting for {what}")));
            }
            Err(_) => {}
        }
        if Instant::now() > until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------- the run ----------

async fn setup(client: &Client, run: &Run, created: &Shared<Created>) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for crd in [CustodyPolicy::crd(), RollbackRecord::crd()] {
        let name = crd.name_any();
        crds.patch(&name, &apply, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying the CRD {name}"))?;
        wait_until(
            &format!("the CRD {name} established"),
            Duration::from_secs(30),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await?;
                    Ok(crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    }))
                }
            },
        )
        .await?;
    }

    let nodes: Api<Node> = Api::all(client.clone());
    for name in &run.nodes {
        locked(created).nodes.push(name.clone());
        nodes
            .create(&PostParams::default(), &typed(node(run, name))?)
            .await
            .with_context(|| format!("creating the node {name}"))?;
    }
    wait_until(
        "the bench's nodes Ready (kwok)",
        Duration::from_secs(120),
        || {
            let nodes = nodes.clone();
            let selector = format!("{RUN_LABEL}={}", run.id);
            async move {
                let list = nodes.list(&ListParams::default().labels(&selector)).await?;
                Ok(list.items.len() == run.nodes.len()
                    && list.items.iter().all(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    }))
            }
        },
    )
    .await?;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in &run.namespaces {
        locked(created).namespaces.push(ns.clone());
        namespaces
            .create(
                &PostParams::default(),
                &typed(json!({"metadata": {"name": ns, "labels": {RUN_LABEL: run.id}}}))?,
            )
            .await
            .with_context(|| format!("creating the namespace {ns}"))?;
    }
    // Pods are admitted only once their namespace's default ServiceAccount exists.
    for ns in &run.namespaces {
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
        wait_until(
            &format!("the default ServiceAccount in {ns}"),
            Duration::from_secs(60),
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.is_some()) }
            },
        )
        .await?;
    }

    locked(created).policy = Some(run.policy.clone());
    Api::<CustodyPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy(run)?)
        .await
        .context("creating the CustodyPolicy")?;
    Ok(())
}

/// Creates the Deployments, paced; returns how long the create calls took.
async fn create_deployments(
    client: &Client,
    run: &Arc<Run>,
    settings: &Settings,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.create_rate));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let permits = Arc::new(tokio::sync::Semaphore::new(settings.create_concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..settings.deployments {
        pace.tick().await;
        let permit = permits.clone().acquire_owned().await?;
        let (ns, name) = run.deployment(i);
        let body: Deployment = typed(deployment(run, &name, Run::is_sample(i, settings)))?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
        tasks.spawn(async move {
            let result = api.create(&PostParams::default(), &body).await;
            drop(permit);
            result.with_context(|| format!("creating the Deployment {ns}/{name}"))
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
        if (i + 1) % 500 == 0 {
            println!(
                "  created {} Deployments in {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Deployments of the run whose rollout is complete and available.
async fn available(client: &Client, run: &Run) -> anyhow::Result<usize> {
    let mut n = 0;
    for ns in &run.namespaces {
        let list = Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await?;
        n += list
            .items
            .iter()
            .filter(|d| {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                d.status.as_ref().is_some_and(|s| {
                    s.observed_generation >= d.metadata.generation
                        && s.updated_replicas == Some(want)
                        && s.available_replicas == Some(want)
                        && s.replicas == Some(want)
                })
            })
            .count();
    }
    Ok(n)
}

/// ReplicaSets of the run the controller has marked healthy.
async fn marked_healthy(client: &Client, run: &Run) -> anyhow::Result<usize> {
    let mut n = 0;
    for ns in &run.namespaces {
        let list = Api::<ReplicaSet>::namespaced(client.clone(), ns)
            .list_metadata(&ListParams::default())
            .await?;
        n += list
            .items
            .iter()
            .filter(|rs| rs.annotations().contains_key("custody.dev/healthy-since"))
            .count();
    }
    Ok(n)
}

/// One sample's timeline, as events arrive at the bench.
#[derive(Clone, Copy, Default)]
struct Timeline {
    applied: Option<Instant>,
    v2_seen: Option<Instant>,
    /// The Deployment's status first shows the controller-manager observed v2: until then the
    /// controller waits (it does not judge a spec the Deployment controller has not seen).
    v2_observed: Option<Instant>,
    crash_loop: Option<Instant>,
    reverted: Option<Instant>,
}

enum Seen {
    Pod(Box<Event<Pod>>),
    Deployment(Box<Event<Deployment>>),
}

fn observe(timelines: &Shared<HashMap<String, Timeline>>, seen: Seen) {
    let now = Instant::now();
    match seen {
        Seen::Pod(event) => {
            let (Event::Apply(pod) | Event::InitApply(pod)) = *event else {
                return;
            };
            let crashing = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                    })
                });
            let Some(app) = pod.labels().get("app") else {
                return;
            };
            if crashing {
                let key = format!("{}/{app}", pod.namespace().unwrap_or_default());
                let mut t = locked(timelines);
                let t = t.entry(key).or_default();
                t.crash_loop.get_or_insert(now);
            }
        }
        Seen::Deployment(event) => {
            let (Event::Apply(d) | Event::InitApply(d)) = *event else {
                return;
            };
            let v2 = d
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.as_ref())
                .is_some_and(|l| l.contains_key(V2_LABEL));
            let key = format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any());
            let mut t = locked(timelines);
            let t = t.entry(key).or_default();
            if v2 {
                t.v2_seen.get_or_insert(now);
                let observed = d
                    .status
                    .as_ref()
                    .and_then(|s| s.observed_generation)
                    .is_some_and(|o| Some(o) >= d.metadata.generation);
                if observed {
                    t.v2_observed.get_or_insert(now);
                }
            } else if t.v2_seen.is_some() {
                t.reverted.get_or_insert(now);
            }
        }
    }
}

async fn reactions(client: &Client, run: &Arc<Run>, settings: &Settings) -> anyhow::Result<()> {
    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!("{V2_LABEL}={}", run.id)),
    )
    .default_backoff()
    .map(|e| e.map(|e| Seen::Pod(Box::new(e))));
    let deployments = watcher(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels(&format!("{SAMPLE_LABEL}={}", run.id)),
    )
    .default_backoff()
    .map(|e| e.map(|e| Seen::Deployment(Box::new(e))));
    let mut events = futures::stream::select(pods.boxed(), deployments.boxed());
    let timelines: Shared<HashMap<String, Timeline>> = Arc::default();

    // Both watches listed before v2 goes out, so no event is missed.
    let (mut pods_listed, mut deployments_listed) = (false, false);
    tokio::time::timeout(Duration::from_secs(60), async {
        while !(pods_listed && deployments_listed) {
            match events.next().await {
                Some(Ok(Seen::Pod(e))) if matches!(*e, Event::InitDone) => pods_listed = true,
                Some(Ok(Seen::Deployment(e))) if matches!(*e, Event::InitDone) => {
                    deployments_listed = true;
                }
                Some(Ok(seen)) => observe(&timelines, seen),
                Some(Err(error)) => eprintln!("  watch error: {error}"),
                None => break,
            }
        }
    })
    .await
    .context("the sample watches did not list within 60 s")?;
    let watching = tokio::spawn({
        let timelines = timelines.clone();
        async move {
            while let Some(event) = events.next().await {
                match event {
                    Ok(seen) => observe(&timelines, seen),
                    Err(error) => eprintln!("  watch error: {error}"),
                }
            }
        }
    });

    let samples: Vec<(String, String)> = (0..settings.deployments)
        .filter(|&i| Run::is_sample(i, settings))
        .map(|i| run.deployment(i))
        .collect();
    let patch = v2_patch(run);
    let rollout_started = Instant::now();
    for (ns, name) in &samples {
        let applied = Instant::now();
        Api::<Deployment>::namespaced(client.clone(), ns)
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Strategic(patch.clone()),
            )
            .await
            .with_context(|| format!("rolling out v2 of {ns}/{name}"))?;
        locked(&timelines)
            .entry(format!("{ns}/{name}"))
            .or_default()
            .applied = Some(applied);
        tokio::time::sleep(settings.sample_interval).await;
    }
    println!(
        "  v2 applied to {} Deployments in {:.1} s; waiting up to {} s for the reverts",
        samples.len(),
        rollout_started.elapsed().as_secs_f64(),
        settings.revert_deadline.as_secs()
    );
    let deadline = Instant::now() + settings.revert_deadline;
    while Instant::now() < deadline {
        let done = {
            let t = locked(&timelines);
            samples.iter().all(|(ns, name)| {
                t.get(&format!("{ns}/{name}"))
                    .is_some_and(|t| t.reverted.is_some())
            })
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    watching.abort();

    let t = locked(&timelines).clone();
    let mut crash_to_revert = Vec::new();
    let mut apply_to_crash = Vec::new();
    let mut apply_to_revert = Vec::new();
    let mut decidable_to_revert = Vec::new();
    let mut observed_lag = Vec::new();
    let (mut no_crash, mut not_reverted, mut revert_first) = (0, 0, 0);
    for (ns, name) in &samples {
        let s = t.get(&format!("{ns}/{name}")).copied().unwrap_or_default();
        let Some(applied) = s.applied else { continue };
        if let Some(c) = s.crash_loop {
            apply_to_crash.push(c.saturating_duration_since(applied));
        }
        if let Some(r) = s.reverted {
            apply_to_revert.push(r.saturating_duration_since(applied));
        }
        if let (Some(c), Some(o)) = (s.crash_loop, s.v2_observed) {
            observed_lag.push(o.saturating_duration_since(c));
            if let Some(r) = s.reverted {
                decidable_to_revert.push(r.saturating_duration_since(c.max(o)));
            }
        }
        match (s.crash_loop, s.reverted) {
            (Some(c), Some(r)) if r >= c => crash_to_revert.push(r - c),
            (Some(_), Some(_)) => revert_first += 1,
            (None, Some(_)) => no_crash += 1,
            (Some(_), None) => not_reverted += 1,
            (None, None) => {
                no_crash += 1;
                not_reverted += 1;
            }
        }
    }
    println!(
        "reaction time, first v2 Pod event with CrashLoopBackOff -> Deployment event with the v1 template, as watched from the bench:"
    );
    crash_to_revert.sort();
    println!(
        "  each, ms: {}",
        crash_to_revert
            .iter()
            .map(|d| d.as_millis().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    summary("CrashLoopBackOff -> revert", crash_to_revert);
    summary(
        "v2 applied -> first CrashLoopBackOff (controller-manager, scheduler, kwok)",
        apply_to_crash,
    );
    summary("v2 applied -> revert", apply_to_revert);
    summary(
        "CrashLoopBackOff -> Deployment status observedGeneration of v2 (controller-manager lag the controller waits out)",
        observed_lag,
    );
    summary(
        "later of CrashLoopBackOff and that status -> revert (the controller's own part)",
        decidable_to_revert,
    );
    println!(
        "  of {} samples: {not_reverted} not reverted within {} s of the last v2, {no_crash} without a CrashLoopBackOff seen, {revert_first} reverted before their CrashLoopBackOff event arrived",
        samples.len(),
        settings.revert_deadline.as_secs()
    );
    let mut records = 0;
    for ns in &run.namespaces {
        records += Api::<RollbackRecord>::namespaced(client.clone(), ns)
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
    }
    println!("  RollbackRecords written: {records}");
    Ok(())
}

async fn bench(client: Client, settings: Settings, created: Shared<Created>) -> anyhow::Result<()> {
    let run = Arc::new(Run::new(&settings));
    println!(
        "controller_lab: run {}: {} Deployments x 3 replicas in {} namespaces, {} kwok nodes of its own, {} samples",
        run.id,
        settings.deployments,
        run.namespaces.len(),
        run.nodes.len(),
        settings.samples
    );
    setup(&client, &run, &created).await?;
    // The controller's RSS before the run's objects exist: the baseline of the extrapolation.
    let (_, _, baseline, _) = start_controller(&settings, &run, &created).await?;
    stop_controller(&created).await;
    println!(
        "memory: baseline RSS {:.1} MiB, synced without the run's objects",
        mib(baseline)
    );

    let took = create_deployments(&client, &run, &settings).await?;
    println!(
        "creation: {} Deployments created in {:.1} s ({:.1}/s, {} in flight at most)",
        settings.deployments,
        took.as_secs_f64(),
        settings.deployments as f64 / took.as_secs_f64(),
        settings.create_concurrency
    );
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let n = available(&client, &run).await?;
        if n == settings.deployments {
            break;
        }
        if started.elapsed() > settings.settle_timeout {
            bail!(
                "only {n} of {} Deployments available after {:.0} s",
                settings.deployments,
                started.elapsed().as_secs_f64()
            );
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "  {n}/{} Deployments available after {:.0} s",
                settings.deployments,
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    println!(
        "creation: all {} Deployments available ({} Pods Running+Ready) {:.1} s after the last create",
        settings.deployments,
        settings.deployments * 3,
        started.elapsed().as_secs_f64()
    );

    // The controller, after the objects exist.
    let (pid, synced, rss, peak) = start_controller(&settings, &run, &created).await?;
    let (deployments, replica_sets, pods, revisions) = (
        count::<Deployment>(&client).await?,
        count::<ReplicaSet>(&client).await?,
        count::<Pod>(&client).await?,
        count::<ControllerRevision>(&client).await?,
    );
    println!(
        "sync: custody-controller /readyz 200 after {:.2} s",
        synced.as_secs_f64()
    );
    println!(
        "memory: RSS {:.1} MiB (peak {:.1} MiB) 5 s after the sync, with the cluster's {deployments} Deployments, {replica_sets} ReplicaSets, {pods} Pods and {revisions} ControllerRevisions cached",
        mib(rss),
        mib(peak)
    );
    // What the run's objects cost, scaled to the budget's object counts (the same 1:1:3 mix).
    let scale = BUDGET_OBJECTS.0 as f64 / settings.deployments as f64;
    let per_deployment_kib = (rss as f64 - baseline as f64) / settings.deployments as f64;
    println!(
        "  budget: {BUDGET_MIB} MiB for {}/{}/{} Deployments/ReplicaSets/Pods (fake apiserver) vs {}/{}/{} here (x{scale:.1}); {:.1} KiB per Deployment with its ReplicaSet and 3 Pods over the {:.1} MiB baseline -> ~{:.1} MiB at the budget's counts",
        BUDGET_OBJECTS.0,
        BUDGET_OBJECTS.1,
        BUDGET_OBJECTS.2,
        settings.deployments,
        settings.deployments,
        settings.deployments * 3,
        per_deployment_kib,
        mib(baseline),
        mib(baseline) + per_deployment_kib * BUDGET_OBJECTS.0 as f64 / 1024.0,
    );

    let started = Instant::now();
    wait_until(
        "every v1 ReplicaSet marked healthy",
        Duration::from_secs(600),
        || async { Ok(marked_healthy(&client, &run).await? >= settings.deployments) },
    )
    .await?;
    println!(
        "healthy: all {} v1 ReplicaSets marked healthy {:.1} s after the sync (healthyAfterSeconds 5)",
        settings.deployments,
        started.elapsed().as_secs_f64()
    );

    reactions(&client, &run, &settings).await?;
    println!(
        "memory: RSS {:.1} MiB (peak {:.1} MiB) after the reverts",
        mib(status_kib(pid, "VmRSS:")),
        mib(status_kib(pid, "VmHWM:"))
    );
    Ok(())
}

/// Stops the controller and deletes what the run created, waiting (up to LAB_CLEANUP_TIMEOUT
/// seconds, default 600) until the namespaces are gone so that the next run starts clean.
async fn cleanup(client: &Client, created: &Shared<Created>, failed: bool) {
    if let Some(log) = stop_controller(created).await {
        if failed || std::env::var_os("LAB_KEEP_LOG").is_some() {
            eprintln!("controller_lab: the controller's log: {}", log.display());
        } else {
            let _ = std::fs::remove_file(&log);
        }
    }
    let (policy, namespaces, nodes) = {
        let mut c = locked(created);
        (
            c.policy.take(),
            std::mem::take(&mut c.namespaces),
            std::mem::take(&mut c.nodes),
        )
    };
    if let Some(policy) = policy
        && let Err(error) = Api::<CustodyPolicy>::all(client.clone())
            .delete(&policy, &DeleteParams::default())
            .await
    {
        eprintln!("controller_lab: cannot delete the policy {policy}: {error}");
    }
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    for ns in &namespaces {
        if let Err(error) = api.delete(ns, &DeleteParams::background()).await {
            eprintln!("controller_lab: cannot delete the namespace {ns}: {error}");
        }
    }
    if !namespaces.is_empty() {
        println!(
            "cleanup: deleting {} namespaces (Ctrl-C again to stop waiting)",
            namespaces.len()
        );
        let timeout = Duration::from_secs(env_or("LAB_CLEANUP_TIMEOUT", 600));
        let gone = async {
            loop {
                let mut left = 0;
                for ns in &namespaces {
                    if !matches!(api.get_opt(ns).await, Ok(None)) {
                        left += 1;
                    }
                }
                if left == 0 {
                    return true;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        };
        tokio::select! {
            done = tokio::time::timeout(timeout, gone) => match done {
                Ok(_) => println!("cleanup: namespaces deleted in {:.1} s", started.elapsed().as_secs_f64()),
                Err(_) => eprintln!("controller_lab: namespaces {namespaces:?} still terminating after {timeout:?}"),
            },
            signal = interrupted() => eprintln!("controller_lab: {signal}: namespaces {namespaces:?} left terminating"),
        }
    }
    let node_api: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for node in &nodes {
        if let Err(error) = node_api.delete(node, &DeleteParams::default()).await {
            eprintln!("controller_lab: cannot delete the node {node}: {error}");
        }
        let _ = leases.delete(node, &DeleteParams::default()).await;
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        std::future::pending::<()>().await;
        return "";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn connect() -> anyhow::Result<Client> {
    let client = Client::try_default().await?;
    tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
        .await
        .context("no answer within 10 s")??;
    Ok(client)
}

async fn main_async() -> anyhow::Result<()> {
    let settings = Settings::from_env();
    let client = match connect().await {
        Ok(c) => c,
        Err(error) => {
            eprintln!(
                "SKIPPED: controller_lab: the apiserver in KUBECONFIG does not answer: {error:#}"
            );
            return Ok(());
        }
    };
    if !settings.controller_bin.exists() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p custody-controller`",
            settings.controller_bin.display()
        );
    }
    let created: Shared<Created> = Arc::default();
    let task = tokio::spawn(bench(client.clone(), settings, created.clone()));
    let abort = task.abort_handle();
    let outcome = tokio::select! {
        joined = task => match joined {
            Ok(result) => result,
            Err(error) => Err(anyhow::anyhow!("the bench failed: {error}")),
        },
        signal = interrupted() => {
            abort.abort();
            Err(anyhow::anyhow!("interrupted by {signal}"))
        }
    };
    cleanup(&client, &created, outcome.is_err()).await;
    outcome
}

/// Holds `/tmp/custody-lab.lock` until dropped, unless the caller says it holds it already.
fn lab_lock() -> anyhow::Result<Option<File>> {
    if std::env::var("CUSTODY_LAB_LOCK_HELD").is_ok_and(|v| v == "1") {
        return Ok(None);
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .with_context(|| format!("opening {LOCK_PATH}"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!(
                "controller_lab: waiting for {LOCK_PATH} (another lab run holds it; if this run is already under flock(1), set CUSTODY_LAB_LOCK_HELD=1)"
            );
            file.lock()
                .with_context(|| format!("locking {LOCK_PATH}"))?;
        }
        Err(TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {LOCK_PATH}"));
        }
    }
    Ok(Some(file))
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "controller_lab: run with `cargo bench -p custody-e2e --bench controller_lab` (needs KUBECONFIG)"
        );
        return ExitCode::SUCCESS;
    }
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "SKIPPED: controller_lab needs a cluster: set KUBECONFIG (e.g. $HOME/k8s-lab/kubeconfig)"
        );
        return ExitCode::SUCCESS;
    }
    let outcome = lab_lock().and_then(|lock| {
        let runtime = tokio::runtime::Runtime::new()?;
        let outcome = runtime.block_on(main_async());
        drop(lock);
        outcome
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("controller_lab: FAILED: {error:#}");
            ExitCode::FAILURE
        }
    }
}
