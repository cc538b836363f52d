//! Controller benchmarks against the in-process fake API server. Numbers, not assertions.
//!
//! `cargo bench -p custody-controller --bench controller` prints:
//! - reaction time: from the Pod status change that confirms a regression (a container entering
//!   CrashLoopBackOff) reaching the API server, to the revert PATCH reaching it; p50 and p99 over
//!   REACTION_SAMPLES Deployments (default 200);
//! - memory: the RSS of the release `custody-controller` process with MEMORY_DEPLOYMENTS
//!   Deployments (default 10000), one ReplicaSet each and three Pods each in its caches, with the
//!   background audit on (one CustodyPolicy, metrics only: the fake API server serves no report
//!   CRD), and the audit's own time and result counts.
//!   CUSTODY_CONTROLLER_BIN runs another build, or a profiler wrapping one (it is stopped with
//!   SIGTERM, so massif and the like write their output);
//! - memory, signed: the same cluster under a policy with `spec.signatures`, each Deployment and
//!   its ReplicaSet carrying the DSSE attestation `custody stamp --sign` writes (about 2 kB).
//!   MEMORY_VARIANTS picks `unsigned`, `signed` or both (the default, `unsigned,signed`).

#[path = "support/processes.rs"]
mod processes;
#[path = "../tests/support/signing.rs"]
mod signing;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use custody_controller::metrics::Metrics;
use custody_controller::run::{self, RunConfig};
use custody_crds::Vocabulary;
use custody_testkit::fake_apiserver::FakeApiServer;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use processes::{http_get, rss_mib, start_controller};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn ago(seconds: i64) -> String {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("time")
        .to_string()
}

fn template(image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": "web"});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "ports": [{"containerPort": 8080}]}]}})
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
}

fn annotations(actor: &str, revision: u32) -> Value {
    json!({
        "custody.dev/actor": actor, "custody.dev/agent": "claude-code/1.0", "custody.dev/model": "claude-sonnet-4",
        "custody.dev/source-repo": "https://git.example.com/shop/web", "custody.dev/source-commit": format!("{revision:07x}"),
        "custody.dev/pipeline-run": format!("run-{revision}"), "custody.dev/owner": "team-web",
        "custody.dev/oncall": "web@example.com", "deployment.kubernetes.io/revision": revision.to_string()
    })
}

fn pod(ns: &str, name: &str, rs: &str, rs_uid: &str, ready: bool, waiting: Option<&str>) -> Value {
    let state = match waiting {
        Some(reason) => json!({"waiting": {"reason": reason}}),
        None => json!({"running": {"startedAt": ago(60)}}),
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "labels": {"app": "web"},
                     "ownerReferences": owner("ReplicaSet", rs, rs_uid)},
        "spec": {"containers": [{"name": "web", "image": "web"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "startTime": ago(60), "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": ago(60)}],
            "containerStatuses": [{"name": "web", "image": "web", "imageID": "", "ready": ready, "restartCount": 1, "state": state}]}
    })
}

/// The Node every bench Pod is bound to, Ready: a Pod on a Node the controller does not know
/// is on a Node that is gone, whose failures are not its revision's.
fn seed_node(api: &FakeApiServer) {
    api.upsert("api/v1/nodes", json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
        "spec": {"podCIDR": "10.0.0.0/24"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                   "images": [{"names": ["web:1"], "sizeBytes": 1000000}]}
    }));
}

/// Deployment `name` mid-rollout: v1 healthy, v2 by an agent with one Ready pod.
fn seed_rollout(api: &FakeApiServer, ns: &str, name: &str) {
    let uid = format!("uid-{ns}-{name}");
    api.upsert("apis/apps/v1/deployments", json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": 2, "annotations": annotations("agent", 2)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web:2", None)},
        "status": {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}
    }));
    let mut v1 = annotations("human", 1);
    v1["custody.dev/healthy-since"] = json!(ago(3600));
    for (rs, rev, image, ann) in [
        ("1", 1, "web:1", v1),
        ("2", 2, "web:2", annotations("agent", 2)),
    ] {
        api.upsert("apis/apps/v1/replicasets", json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-{rs}"), "namespace": ns, "uid": format!("{uid}-rs{rs}"), "annotations": ann,
                         "ownerReferences": owner("Deployment", name, &uid)},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template(image, Some(&format!("h{rev}")))}
        }));
    }
    api.upsert(
        "api/v1/pods",
        pod(
            ns,
            &format!("{name}-2-a"),
            &format!("{name}-2"),
            &format!("{uid}-rs2"),
            true,
            None,
        ),
    );
}

async fn reaction(samples: usize) {
    let api = FakeApiServer::start().await.expect("fake api");
    seed_node(&api);
    for i in 0..samples {
        seed_rollout(&api, "bench", &format!("web{i}"));
    }
    let client =
        kube::Client::try_from(kube::Config::new(api.url().parse().expect("url"))).expect("client");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let (leader_tx, leader) = tokio::sync::watch::channel(true);
    let shutdown = CancellationToken::new();
    let readiness = custody_runtime::Readiness::new();
    let ready = readiness.register("caches");
    let config = RunConfig {
        vocabulary: Vocabulary::default(),
        dry_run: false,
        identity: "bench".into(),
        notifier: None,
        audit: None,
        sources: custody_controller::measure::sources::Sources::new(None),
    };
    // The controller runs on one thread of its own, as the binary does; the fake API server and
    // this loop run on the bench's runtime.
    let controller_shutdown = shutdown.clone();
    let controller = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("controller runtime");
        runtime.block_on(run::run(
            client,
            config,
            metrics,
            leader,
            ready,
            controller_shutdown,
        ));
    });
    while !readiness.is_ready() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut reactions = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("web{i}");
        let uid = format!("uid-bench-{name}");
        let before = Instant::now();
        api.upsert(
            "api/v1/pods",
            pod(
                "bench",
                &format!("{name}-2-a"),
                &format!("{name}-2"),
                &format!("{uid}-rs2"),
                false,
                Some("CrashLoopBackOff"),
            ),
        );
        let path = format!("/apis/apps/v1/namespaces/bench/deployments/{name}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let written = loop {
            let hit = api
                .timed_requests()
                .into_iter()
                .rev()
                .find(|(at, m, p)| *m == Method::PATCH && *p == path && *at >= before)
                .map(|(at, _, _)| at);
            if let Some(at) = hit {
                break Some(at);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        match written {
            Some(at) => reactions.push(at.duration_since(before)),
            None => println!("{name}: no revert within 10 s"),
        }
    }
    shutdown.cancel();
    drop(leader_tx);
    let _ = tokio::task::spawn_blocking(move || controller.join()).await;
    reactions.sort();
    let pct = |p: f64| {
        reactions
            .get(((reactions.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "reaction time, status change confirming a regression -> revert written ({} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        reactions.len(),
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
        reactions.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );
}

async fn memory(deployments: usize, signed: bool) {
    let api = FakeApiServer::start().await.expect("fake api");
    seed_node(&api);
    let key = signed.then(|| signing::Key::new("ci"));
    let mut spec = json!({"mode": "Enforce"});
    if let Some(key) = &key {
        spec["signatures"] =
            json!({"mode": "Required", "keys": [key.trusted(vec![custody_crds::Actor::Agent])]});
    }
    // Every tenth Deployment lacks `oncall`, so the audit finds failures as well as passes.
    api.upsert(
        "apis/custody.dev/v1alpha1/custodypolicies",
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "bench", "uid": "uid-policy-bench"},
            "spec": spec
        }),
    );
    let mut envelope_bytes = 0usize;
    for i in 0..deployments {
        let ns = format!("team-{}", i % 100);
        let name = format!("svc{i}");
        let uid = format!("uid-{ns}-{name}");
        let mut deployment_annotations = annotations("agent", 1);
        if i % 10 == 0
            && let Some(a) = deployment_annotations.as_object_mut()
        {
            a.remove("custody.dev/oncall");
        }
        // The attestation `custody stamp --sign` writes; the ReplicaSet copies it.
        let attestation = key.as_ref().map(|key| {
            let signed: BTreeMap<String, String> =
                serde_json::from_value(deployment_annotations.clone()).expect("annotations");
            key.sign_for(
                custody_crds::WorkloadKind::Deployment,
                &ns,
                &name,
                &template("web:1", None),
                &signed,
            )
        });
        if let Some(envelope) = &attestation {
            envelope_bytes = envelope.len();
            deployment_annotations["custody.dev/attestation"] = json!(envelope);
        }
        api.upsert("apis/apps/v1/deployments", json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": 1, "labels": {"app": name},
                         "annotations": deployment_annotations},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}}, "template": template("web:1", None)},
            "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
        }));
        let mut ann = annotations("agent", 1);
        ann["custody.dev/healthy-since"] = json!(ago(3600));
        if let Some(envelope) = &attestation {
            ann["custody.dev/attestation"] = json!(envelope);
        }
        api.upsert("apis/apps/v1/replicasets", json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("{name}-1"), "namespace": ns, "uid": format!("{uid}-rs1"), "annotations": ann,
                         "ownerReferences": owner("Deployment", &name, &uid)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}}, "template": template("web:1", Some("h1"))}
        }));
        for p in 0..3 {
            api.upsert(
                "api/v1/pods",
                pod(
                    &ns,
                    &format!("{name}-1-{p}"),
                    &format!("{name}-1"),
                    &format!("{uid}-rs1"),
                    true,
                    None,
                ),
            );
        }
    }
    // CUSTODY_CONTROLLER_BIN measures another build (or a profiler wrapping one).
    let (child, admin) = start_controller(&api, "warn");
    let pid = child.child.id();
    let started = Instant::now();
    // Ready once every cache has synced.
    loop {
        let ready = http_get(admin, "/readyz").await.is_some();
        if ready || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = started.elapsed();
    if http_get(admin, "/readyz").await.is_none() {
        println!(
            "memory: custody-controller NOT READY after {:.0} s; no number",
            synced.as_secs_f64()
        );
        return;
    }
    // Every Deployment is reconciled once after the sync; let that settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let variant = if signed {
        format!(
            ", signed (attestations of {envelope_bytes} bytes on each Deployment and ReplicaSet)"
        )
    } else {
        String::new()
    };
    println!(
        "memory: custody-controller RSS {:.1} MiB (peak {:.1} MiB) with {deployments} Deployments, {deployments} ReplicaSets and {} Pods cached{variant} (synced in {:.1} s)",
        rss_mib(pid, "VmRSS:"),
        rss_mib(pid, "VmHWM:"),
        deployments * 3,
        synced.as_secs_f64()
    );
    let metrics = http_get(admin, "/metrics").await.unwrap_or_default();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    println!(
        "audit: {} run(s), last judged {} results in {:.0} ms ({} pass, {} fail; {} workloads failing)",
        value("custody_audit_runs_total"),
        value("custody_audit_results{"),
        value("custody_audit_duration_milliseconds"),
        value("custody_audit_results{policy=\"bench\",result=\"pass\"}"),
        value("custody_audit_results{policy=\"bench\",result=\"fail\"}"),
        value("custody_audit_failing_workloads{"),
    );
    drop(child);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "controller bench: run with `cargo bench -p custody-controller --bench controller`"
        );
        return;
    }
    let samples = std::env::var("REACTION_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let deployments = std::env::var("MEMORY_DEPLOYMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let variants = std::env::var("MEMORY_VARIANTS").unwrap_or_else(|_| "unsigned,signed".into());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(reaction(samples));
    for variant in variants.split(',') {
        match variant.trim() {
            "unsigned" => runtime.block_on(memory(deployments, false)),
            "signed" => runtime.block_on(memory(deployments, true)),
            other => println!("memory: unknown variant {other:?} (unsigned, signed)"),
        }
    }
}
