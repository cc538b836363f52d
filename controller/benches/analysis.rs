//! Metric analysis of agents' rollouts in flight against the real Prometheus. Numbers, not
//! assertions.
//!
//! `cargo bench -p custody-controller --bench analysis` starts Debian's `prometheus` (without
//! one it prints a SKIPPED line and exits 0) scraping, every second, an exporter in this process
//! that serves `bench_error_ratio{namespace, revision}` for the new and the previous revision of
//! each analysed rollout. The fake API server holds DEPLOYMENTS Deployments (default 10000), each
//! with its ReplicaSets and three Pods; ANALYSES of them (default 1000) are an agent's rollout in
//! flight (the previous revision healthy and serving beside one Pod of the new one). The release
//! `custody-controller` (or CUSTODY_CONTROLLER_BIN) runs against it as a process, twice, on the
//! same timeline:
//! - without analysis in the policy, as the baseline: RSS and CPU;
//! - with `spec.rollback.analysis` (intervalSeconds INTERVAL, default 10; windowSeconds 30;
//!   failureLimit FAILURE_LIMIT, default 2; one metric against the previous revision, so two
//!   queries per check): the queries per second Prometheus received (its own
//!   `prometheus_http_requests_total`) and the checks the controller counted, against the
//!   expected rate; Prometheus's query latency; RSS and CPU against the baseline; then, for
//!   SAMPLES rollouts (default 50), the time from the exporter's value for the new revision
//!   turning bad to the revert PATCH reaching the fake API server, beside the bounds the scrape
//!   and check intervals set.
//!
//! MEASURE_SECONDS (default three intervals) is the measured period.

#[path = "support/processes.rs"]
mod processes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use custody_testkit::fake_apiserver::FakeApiServer;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use processes::{
    SCRAPE_SECONDS, buckets, cpu_seconds, eventually, http_get, rss_mib, sockets, start_controller,
    sum,
};

const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const REPLICASETS: &str = "apis/apps/v1/replicasets";
const PODS: &str = "api/v1/pods";
const POLICIES: &str = "apis/custody.dev/v1alpha1/custodypolicies";
const GOOD: f64 = 0.005;
const BAD: f64 = 0.3;
const WINDOW_SECONDS: u64 = 30;

/// The bench's settings, from the environment.
struct Knobs {
    deployments: usize,
    analyses: usize,
    samples: usize,
    interval: u64,
    failure_limit: u64,
    measure: u64,
}

impl Knobs {
    fn from_env() -> Self {
        let knob = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let deployments = knob("DEPLOYMENTS", 10_000);
        let analyses = knob("ANALYSES", 1000).min(deployments);
        let interval = knob("INTERVAL", 10).max(5) as u64;
        Self {
            deployments,
            analyses,
            samples: knob("SAMPLES", 50).min(analyses),
            interval,
            failure_limit: knob("FAILURE_LIMIT", 2).max(1) as u64,
            measure: knob("MEASURE_SECONDS", 3 * interval as usize) as u64,
        }
    }
}

/// One Deployment of the bench: where it is and its revisions' pod-template-hashes.
struct Rollout {
    namespace: String,
    name: String,
    previous: String,
    new: String,
}

fn rollout(i: usize) -> Rollout {
    Rollout {
        namespace: format!("team-{}", i % 100),
        name: format!("svc{i}"),
        previous: format!("5b{i:06x}"),
        new: format!("7f{i:06x}"),
    }
}

fn ago(seconds: i64) -> String {
    Timestamp::now()
        .checked_sub(SignedDuration::from_secs(seconds))
        .expect("time")
        .to_string()
}

fn template(app: &str, image: &str, hash: Option<&str>) -> Value {
    let mut labels = json!({"app": app});
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "web", "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}, "ports": [{"containerPort": 8080}]}]}})
}

fn owner(kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true}])
}

fn annotations(revision: u32) -> Value {
    json!({
        "custody.dev/actor": "agent", "custody.dev/agent": "claude-code/1.0", "custody.dev/model": "claude-sonnet-4",
        "custody.dev/source-repo": "https://git.example.com/shop/web", "custody.dev/source-commit": format!("{revision:07x}"),
        "custody.dev/pipeline-run": format!("run-{revision}"), "custody.dev/owner": "team-web",
        "custody.dev/oncall": "web@example.com", "deployment.kubernetes.io/revision": revision.to_string()
    })
}

fn ready_pod(ns: &str, name: &str, rs: &str, rs_uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}"), "labels": {"app": "web"},
                     "ownerReferences": owner("ReplicaSet", rs, rs_uid)},
        "spec": {"containers": [{"name": "web", "image": "web"}], "nodeName": "node-1"},
        "status": {"phase": "Running", "startTime": ago(120), "podIP": "10.0.0.1",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ago(120)}],
            "containerStatuses": [{"name": "web", "image": "web", "imageID": "", "ready": true, "restartCount": 0,
                                   "state": {"running": {"startedAt": ago(120)}}}]}
    })
}

/// The cluster: one Ready Node, the policy (analysing when `analysis` is given), and the
/// Deployments, the first `analyses` of them an agent's v2 rolling out (one Pod of three) over
/// a healthy v1, the others settled on v1.
fn seed(api: &FakeApiServer, knobs: &Knobs, analysis: Option<Value>) {
    api.upsert("api/v1/nodes", json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}
    }));
    let mut spec = json!({"mode": "Enforce"});
    if let Some(analysis) = analysis {
        spec["rollback"] = json!({"analysis": analysis});
    }
    api.upsert(
        POLICIES,
        json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": "bench", "uid": "uid-policy-bench"}, "spec": spec
        }),
    );
    for i in 0..knobs.deployments {
        let Rollout {
            namespace: ns,
            name,
            previous,
            new,
        } = rollout(i);
        let uid = format!("uid-{ns}-{name}");
        let analysed = i < knobs.analyses;
        let (revision, image, updated) = if analysed {
            (2, "web:2", 1)
        } else {
            (1, "web:1", 3)
        };
        api.upsert(DEPLOYMENTS, json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "generation": revision,
                         "labels": {"app": name}, "annotations": annotations(revision)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}}, "template": template(&name, image, None)},
            "status": {"observedGeneration": revision, "replicas": 3, "updatedReplicas": updated,
                       "readyReplicas": 3, "availableReplicas": 3}
        }));
        let mut v1 = annotations(1);
        v1["custody.dev/healthy-since"] = json!(ago(3600));
        // Rolling out, v1 serves with two Pods beside v2's one.
        let serving = if analysed { 2 } else { 3 };
        let mut revisions = vec![(previous, v1, "web:1", serving, ago(3600))];
        if analysed {
            revisions.push((new, annotations(2), "web:2", 1, ago(120)));
        }
        for (hash, ann, image, replicas, created) in revisions {
            let rs = format!("{name}-{hash}");
            let rs_uid = format!("{uid}-{hash}");
            api.upsert(REPLICASETS, json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs, "namespace": ns, "uid": rs_uid, "annotations": ann,
                             "creationTimestamp": created, "ownerReferences": owner("Deployment", &name, &uid)},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": template(&name, image, Some(&hash))}
            }));
            for p in 0..replicas {
                api.upsert(PODS, ready_pod(&ns, &format!("{rs}-{p}"), &rs, &rs_uid));
            }
        }
    }
}

/// The analysis the policy carries: one metric, judged against the previous revision.
fn analysis_spec(knobs: &Knobs, prometheus: &str) -> Value {
    json!({
        "intervalSeconds": knobs.interval, "windowSeconds": WINDOW_SECONDS, "failureLimit": knobs.failure_limit,
        "provider": {"prometheus": {"address": prometheus}},
        "metrics": [{"name": "error-ratio",
            "query": "max_over_time(bench_error_ratio{namespace=\"{{namespace}}\",revision=\"{{revision}}\"}[{{window}}])",
            "condition": {"baseline": {"ratioAbove": 5, "differenceAbove": 0.05}}}]
    })
}

/// The exporter Prometheus scrapes: each analysed rollout's error ratio, per revision.
struct Exporter {
    rollouts: Vec<Rollout>,
    bad: Vec<AtomicBool>,
}

async fn exposition(State(exporter): State<Arc<Exporter>>) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(exporter.rollouts.len() * 120);
    out.push_str("# TYPE bench_error_ratio gauge\n");
    for (r, bad) in exporter.rollouts.iter().zip(&exporter.bad) {
        let new = if bad.load(Ordering::Relaxed) {
            BAD
        } else {
            GOOD
        };
        let ns = &r.namespace;
        let _ = writeln!(
            out,
            "bench_error_ratio{{namespace=\"{ns}\",revision=\"{}\"}} {new}",
            r.new
        );
        let _ = writeln!(
            out,
            "bench_error_ratio{{namespace=\"{ns}\",revision=\"{}\"}} {GOOD}",
            r.previous
        );
    }
    out
}

async fn serve_exporter(exporter: Arc<Exporter>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("exporter port");
    let addr = listener.local_addr().expect("exporter address");
    let app = Router::new()
        .route("/metrics", get(exposition))
        .with_state(exporter);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn deployment_path(r: &Rollout) -> String {
    format!(
        "/apis/apps/v1/namespaces/{}/deployments/{}",
        r.namespace, r.name
    )
}

/// What one run of the controller measured.
struct Phase {
    rss: f64,
    sockets: usize,
    peak: f64,
    cpu_per_second: f64,
}

/// What the analysing run needs besides the cluster.
struct Analysing<'a> {
    exporter: &'a Exporter,
    prometheus: SocketAddr,
}

/// One run of the controller against a fresh cluster: ready, warmed up for two intervals, then
/// the measured period; with `analysing`, the query rate over it and the reaction after it.
async fn phase(knobs: &Knobs, analysing: Option<Analysing<'_>>) -> Option<Phase> {
    let label = if analysing.is_some() {
        "analysing"
    } else {
        "baseline"
    };
    let api = FakeApiServer::start().await.expect("fake api");
    let spec = analysing
        .as_ref()
        .map(|a| analysis_spec(knobs, &format!("http://{}", a.prometheus)));
    seed(&api, knobs, spec);
    let (controller, admin) = start_controller(&api, "error");
    let pid = controller.child.id();
    let started = Instant::now();
    if !eventually(Duration::from_secs(120), || async {
        http_get(admin, "/readyz").await.is_some()
    })
    .await
    {
        println!("{label}: custody-controller NOT READY after 120 s; no numbers");
        return None;
    }
    let synced = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2 * knobs.interval + 5)).await;
    let controller_metrics = http_get(admin, "/metrics").await.unwrap_or_default();
    if analysing.is_some() {
        println!(
            "{label}: {} analyses running, {} checks so far, {:.1} s after the caches synced in {:.1} s",
            sum(&controller_metrics, "custody_analyses_running", &[]),
            sum(&controller_metrics, "custody_analysis_checks_total", &[]),
            started.elapsed().as_secs_f64() - synced.as_secs_f64(),
            synced.as_secs_f64()
        );
    }
    let cpu_before = cpu_seconds(pid);
    let measured_from = Instant::now();
    let rate = match &analysing {
        Some(a) => Some(query_rate(knobs, &api, admin, a.prometheus).await),
        None => {
            tokio::time::sleep(Duration::from_secs(knobs.measure)).await;
            None
        }
    };
    let cpu_per_second = (cpu_seconds(pid) - cpu_before) / measured_from.elapsed().as_secs_f64();
    let result = Phase {
        rss: rss_mib(pid, "VmRSS:"),
        sockets: sockets(pid),
        peak: rss_mib(pid, "VmHWM:"),
        cpu_per_second,
    };
    println!(
        "{label}: custody-controller RSS {:.1} MiB (peak {:.1} MiB), {} sockets open, CPU {:.1}% of a core over the {} s measured, with {} Deployments ({} rolling out){}",
        result.rss,
        result.peak,
        result.sockets,
        100.0 * cpu_per_second,
        knobs.measure,
        knobs.deployments,
        knobs.analyses,
        if analysing.is_some() {
            format!(", {} under analysis", knobs.analyses)
        } else {
            String::new()
        },
    );
    if let Some(rate) = rate {
        println!("{rate}");
    }
    if let Some(a) = &analysing {
        reaction(knobs, &api, a.exporter).await;
    }
    drop(controller);
    api.stop();
    Some(result)
}

/// The queries Prometheus answered and the checks the controller counted over the measured
/// period, in words.
async fn query_rate(
    knobs: &Knobs,
    api: &FakeApiServer,
    admin: SocketAddr,
    prometheus: SocketAddr,
) -> String {
    const QUERY: &str = "handler=\"/api/v1/query\"";
    let patches = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|(m, p)| *m == Method::PATCH && p.contains("/replicasets/"))
            .count()
    };
    let prom_before = http_get(prometheus, "/metrics").await.unwrap_or_default();
    let ours_before = http_get(admin, "/metrics").await.unwrap_or_default();
    let patches_before = patches(api);
    let from = Instant::now();
    // Prometheus's counter every quarter second, for the busiest quarter.
    let mut last = sum(&prom_before, "prometheus_http_requests_total", &[QUERY]);
    let mut busiest = 0.0f64;
    while from.elapsed() < Duration::from_secs(knobs.measure) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = http_get(prometheus, "/metrics").await.unwrap_or_default();
        let count = sum(&now, "prometheus_http_requests_total", &[QUERY]);
        busiest = busiest.max(count - last);
        last = count;
    }
    let prom_after = http_get(prometheus, "/metrics").await.unwrap_or_default();
    let ours_after = http_get(admin, "/metrics").await.unwrap_or_default();
    let seconds = from.elapsed().as_secs_f64();
    let delta = |before: &str, after: &str, name: &str, labels: &[&str]| {
        sum(after, name, labels) - sum(before, name, labels)
    };
    let queries = delta(
        &prom_before,
        &prom_after,
        "prometheus_http_requests_total",
        &[QUERY],
    );
    let latency_sum = delta(
        &prom_before,
        &prom_after,
        "prometheus_http_request_duration_seconds_sum",
        &[QUERY],
    );
    let latency_count = delta(
        &prom_before,
        &prom_after,
        "prometheus_http_request_duration_seconds_count",
        &[QUERY],
    );
    let before = buckets(
        &prom_before,
        "prometheus_http_request_duration_seconds",
        &[QUERY],
    );
    let after = buckets(
        &prom_after,
        "prometheus_http_request_duration_seconds",
        &[QUERY],
    );
    let p99_bucket = after
        .iter()
        .zip(&before)
        .find(|((_, a), (_, b))| a - b >= 0.99 * latency_count)
        .map_or(f64::NAN, |((le, _), _)| *le);
    let eval_p99 = sum(
        &prom_after,
        "prometheus_engine_query_duration_seconds",
        &["slice=\"inner_eval\"", "quantile=\"0.99\""],
    );
    let checks = |result: &str| {
        delta(
            &ours_before,
            &ours_after,
            "custody_analysis_checks_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    let (pass, fail, inconclusive) = (checks("pass"), checks("fail"), checks("inconclusive"));
    let all_checks = delta(
        &ours_before,
        &ours_after,
        "custody_analysis_checks_total",
        &[],
    );
    let expected = knobs.analyses as f64 * 2.0 / knobs.interval as f64;
    format!(
        "queries: Prometheus answered {:.1} queries/s over {seconds:.0} s (expected {} analyses x 2 queries / {} s = {expected:.1}/s; busiest quarter second {:.0}/s); \
         the controller counted {:.1} checks/s ({:.1} queries/s: {pass:.0} pass, {fail:.0} fail, {inconclusive:.0} inconclusive) and wrote {:.1} analysis marks/s; \
         Prometheus's query latency mean {:.2} ms, p99 under {p99_bucket} s (its histogram's coarsest bucket), evaluation p99 {:.2} ms",
        queries / seconds,
        knobs.analyses,
        knobs.interval,
        busiest * 4.0,
        all_checks / seconds,
        2.0 * all_checks / seconds,
        (patches(api) - patches_before) as f64 / seconds,
        1000.0 * latency_sum / latency_count.max(1.0),
        1000.0 * eval_p99,
    )
}

/// Turns SAMPLES rollouts' new revision bad, spread over one interval so they fall at every
/// point of the checks' cycle, and times each to its revert PATCH.
async fn reaction(knobs: &Knobs, api: &FakeApiServer, exporter: &Exporter) {
    let chosen: Vec<usize> = (0..knobs.samples)
        .map(|k| k * knobs.analyses / knobs.samples.max(1))
        .collect();
    let spacing = Duration::from_millis(knobs.interval * 1000 / knobs.samples.max(1) as u64);
    let mut flipped = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        exporter.bad[i].store(true, Ordering::Relaxed);
        flipped.push((i, Instant::now()));
        tokio::time::sleep(spacing).await;
    }
    let reverted = |i: usize| {
        let r = rollout(i);
        api.get(DEPLOYMENTS, &r.namespace, &r.name)
            .is_some_and(|d| d["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1")
    };
    let limit = Duration::from_secs((knobs.failure_limit + 1) * knobs.interval + 60);
    eventually(limit, || async { chosen.iter().all(|&i| reverted(i)) }).await;
    let log = api.timed_requests();
    let mut reactions: Vec<Duration> = Vec::new();
    for (i, at) in &flipped {
        let path = deployment_path(&rollout(*i));
        match log
            .iter()
            .find(|(t, m, p)| t >= at && *m == Method::PATCH && *p == path)
        {
            Some((t, _, _)) => reactions.push(t.duration_since(*at)),
            None => println!("reaction: svc{i} not reverted within {} s", limit.as_secs()),
        }
    }
    reactions.sort();
    let pct = |p: f64| {
        reactions
            .get(((reactions.len() as f64 - 1.0) * p).round() as usize)
            .map_or(f64::NAN, Duration::as_secs_f64)
    };
    let (interval, limit) = (knobs.interval, knobs.failure_limit);
    println!(
        "reaction: metric crossing its threshold -> revert PATCH ({} of {} reverted): p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s; \
         by construction between {} s (failureLimit - 1 = {} more checks after the first failing one, {interval} s apart) and {} s \
         (+ one scrape of {SCRAPE_SECONDS} s, + up to 1 s as a query's time is whole seconds, + up to one interval until the first check)",
        reactions.len(),
        flipped.len(),
        pct(0.5),
        pct(0.99),
        pct(0.0),
        pct(1.0),
        (limit - 1) * interval,
        limit - 1,
        limit * interval + SCRAPE_SECONDS + 1,
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("analysis bench: run with `cargo bench -p custody-controller --bench analysis`");
        return;
    }
    let Some(binary) = custody_testkit::prometheus::binary() else {
        println!(
            "SKIPPED: analysis bench: no prometheus binary (Debian's `prometheus` package; .ci/tools.sh installs it)"
        );
        return;
    };
    let knobs = Knobs::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let exporter = Arc::new(Exporter {
            rollouts: (0..knobs.analyses).map(rollout).collect(),
            bad: (0..knobs.analyses).map(|_| AtomicBool::new(false)).collect(),
        });
        let target = serve_exporter(exporter.clone()).await;
        let prometheus_process =
            custody_testkit::prometheus::Prometheus::start(&binary, target, SCRAPE_SECONDS, "bench")
                .expect("start prometheus");
        let prometheus = prometheus_process.address();
        let series = knobs.analyses * 2;
        let query = "/api/v1/query?query=count%28bench_error_ratio%29";
        let scraped = eventually(Duration::from_secs(60), || async {
            http_get(prometheus, query)
                .await
                .and_then(|body| serde_json::from_str::<Value>(&body).ok())
                .and_then(|v| v["data"]["result"][0]["value"][1].as_str().map(str::to_string))
                .is_some_and(|count| count == series.to_string())
        })
        .await;
        if !scraped {
            println!("prometheus: the {series} series were not scraped within 60 s; no numbers");
            return;
        }
        println!(
            "setup: {} Deployments, {} of them an agent's rollout under analysis (every {} s, window {WINDOW_SECONDS} s, failureLimit {}); \
             Prometheus scraping {series} series every {SCRAPE_SECONDS} s",
            knobs.deployments, knobs.analyses, knobs.interval, knobs.failure_limit
        );
        let baseline = phase(&knobs, None).await;
        let analysing = phase(&knobs, Some(Analysing { exporter: &exporter, prometheus })).await;
        if let (Some(b), Some(a)) = (baseline, analysing) {
            println!(
                "memory: {:.1} MiB without analysis, {:.1} MiB with {} analyses running (budget 48 MiB at 10,000 Deployments): {:+.1} MiB, {:+.1} KiB per analysis; CPU {:.1}% -> {:.1}% of a core; sockets {} -> {}",
                b.rss,
                a.rss,
                knobs.analyses,
                a.rss - b.rss,
                (a.rss - b.rss) * 1024.0 / knobs.analyses.max(1) as f64,
                100.0 * b.cpu_per_second,
                100.0 * a.cpu_per_second,
                b.sockets,
                a.sockets,
            );
        }
        drop(prometheus_process);
    });
}
