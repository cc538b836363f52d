//! Faults of the control plane itself, on the lab: the kube-apiserver SIGKILLed and restarted
//! during an agent's broken rollout (the watches recover, the revert happens once), and etcd
//! stopped and started under steady applies (nothing admitted without the webhook's judgement,
//! no duplicate record). A guard restarts whatever was stopped, however the scenario ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custody_e2e::{deployment, kubectl, provenance, run, wait_for};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::{Ctx, apply, create, pod_ready, secs};

/// Starts whatever of the lab is not running (the lab's `up.sh` skips running processes).
fn lab_up(lab: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("setsid")
        .args(["-w", "bash"])
        .arg(lab.join("scripts/up.sh"))
        .env("LAB", lab)
        .stdin(std::process::Stdio::null())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the lab's up.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// SIGKILLs one of the lab's processes by its pid file.
fn kill(lab: &Path, process: &str) -> anyhow::Result<()> {
    let pid_file = lab.join("run").join(format!("{process}.pid"));
    let pid = std::fs::read_to_string(&pid_file)?.trim().to_string();
    run("kill", &["-9", &pid])?;
    // Wait for it to be gone, so up.sh sees it stopped.
    for _ in 0..50 {
        if run("kill", &["-0", &pid]).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{process} (pid {pid}) survived SIGKILL")
}

/// Brings the lab back up whatever happens to the scenario.
struct Restore(PathBuf);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = lab_up(&self.0) {
            eprintln!("restoring the lab: {e:#}");
        }
    }
}

fn lab_of(ctx: &Ctx) -> anyhow::Result<PathBuf> {
    ctx.settings
        .lab
        .clone()
        .ok_or_else(|| anyhow::anyhow!("CUSTODY_E2E_LAB is not set"))
}

async fn apiserver_ready(within: Duration) -> anyhow::Result<()> {
    wait_for("the apiserver to be ready", within, || async {
        Ok(run(&kubectl(), &["get", "--raw", "/readyz"])
            .is_ok()
            .then_some(()))
    })
    .await
}

/// An agent's Deployment `name` at v1, created and marked healthy; its broken v2 to apply.
async fn healthy_agent_v1(ctx: &Ctx, name: &str, commit: &str) -> anyhow::Result<Value> {
    let v1 = deployment(
        &ctx.settings,
        name,
        provenance("agent", &format!("{commit}1"), "run-v1"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &v1).await?;
    ctx.wait_healthy_mark(name).await?;
    Ok(deployment(
        &ctx.settings,
        name,
        provenance("agent", &format!("{commit}2"), "run-v2"),
        "v2",
        true,
    ))
}

/// Waits for `name` back at v1, then long enough for a duplicate revert to show up if a
/// recovered watch replayed: the seconds since `applied`, and the one Reverted record.
async fn reverted_once(ctx: &Ctx, name: &str, applied: Instant) -> anyhow::Result<(f64, String)> {
    let window = ctx.settings.revert_window + Duration::from_secs(60);
    if let Err(e) = ctx.wait_version(name, "v1", window).await {
        anyhow::bail!(
            "{e:#}; the cluster shows: {}",
            ctx.pods_described(name).await
        );
    }
    let reverted_after = secs(applied);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut records = ctx.records_of(name, "Reverted").await?;
    anyhow::ensure!(
        records.len() == 1,
        "expected exactly one Reverted record, found {records:?}"
    );
    Ok((reverted_after, records.remove(0)))
}

/// Once a Pod of `app` is unready by its own containers (kwok's ContainersNotReady), does to
/// `app`'s Ready Pods what the node lifecycle controller does to every Pod of a Node whose
/// heartbeats it stopped seeing (`MarkPodsNotReady`): Ready flips to False alone, its (empty)
/// reason kept, ContainersReady still True. After an apiserver outage longer than the node
/// monitor's grace it does that to Nodes that are fine, and kwok, unlike a kubelet, never
/// reports those Pods again. The lab produces that only when its timing falls so, so the
/// scenario writes it on purpose. Answers the Pods marked.
async fn withdraw_readiness_as_the_node_controller(
    ctx: &Ctx,
    app: &str,
) -> anyhow::Result<Vec<String>> {
    let api = ctx.pods();
    let selector = ListParams::default().labels(&format!("app={app}"));
    let failing = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Ready"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ContainersNotReady")
                })
            })
    };
    wait_for(
        &format!("a pod of {app} unready by its containers"),
        Duration::from_secs(120),
        || {
            let (api, selector) = (api.clone(), selector.clone());
            async move {
                Ok(api
                    .list(&selector)
                    .await?
                    .items
                    .iter()
                    .any(failing)
                    .then_some(()))
            }
        },
    )
    .await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mark = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": now}
    ]}});
    let mut marked = Vec::new();
    for pod in api
        .list(&selector)
        .await?
        .items
        .iter()
        .filter(|p| pod_ready(p))
    {
        let name = pod.metadata.name.clone().unwrap_or_default();
        api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&mark))
            .await?;
        marked.push(name);
    }
    if marked.is_empty() {
        // The node lifecycle controller got there first, as it does when the outage outlasts
        // its grace: the state this writes is there already.
        let withdrawn = api
            .list(&selector)
            .await?
            .items
            .iter()
            .filter(|p| !pod_ready(p) && !failing(p))
            .count();
        anyhow::ensure!(
            withdrawn > 0,
            "no ready pod of {app} to mark, and none whose readiness was withdrawn"
        );
    }
    Ok(marked)
}

/// An agent's broken v2 is applied and the apiserver is SIGKILLed at once; it comes back 10 s
/// later. The controller's watches must recover by themselves and revert v2 exactly once,
/// though the outage also cost v1's Pod its readiness (as the node lifecycle controller takes
/// it), in the same window as v2's Pod fails: that is the Node's doing, not a cause the two
/// revisions share, and must not hold the revert back.
pub async fn apiserver_killed_mid_rollout(ctx: &Ctx) -> anyhow::Result<String> {
    let lab = lab_of(ctx)?;
    let name = "fault-app";
    let v2 = healthy_agent_v1(ctx, name, "fa1700").await?;
    let _restore = Restore(lab.clone());
    let applied = Instant::now();
    apply(&ctx.deployments(), &v2).await?;
    kill(&lab, "kube-apiserver")?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let down = secs(applied);
    lab_up(&lab)?;
    apiserver_ready(Duration::from_secs(60)).await?;
    let back = secs(applied);
    let withdrawn = withdraw_readiness_as_the_node_controller(ctx, name).await?;
    let marked = secs(applied);
    let (reverted_after, record) = reverted_once(ctx, name, applied).await?;
    let withdrawn = if withdrawn.is_empty() {
        "readiness already withdrawn by the node lifecycle controller".to_string()
    } else {
        format!("{withdrawn:?} marked not ready as the node controller does")
    };
    Ok(format!(
        "apiserver down {down:.1}s after v2, ready again at {back:.1}s; v1's {withdrawn} at {marked:.1}s, when v2's pod failed; v2 reverted at {reverted_after:.1}s, one record ({record})"
    ))
}

/// What the steady writer saw.
#[derive(Default, Debug)]
struct Tally {
    admitted: usize,
    denied: usize,
    failed: usize,
    /// The longest an admitted write took: one held while etcd was away.
    slowest_admitted: Duration,
    unjudged_admitted: Vec<String>,
}

/// Writes without pause until `stop`: a person's annotated update of `steady-app` (admitted when
/// the apiserver can store it) and an unannotated Deployment (which the webhook must refuse).
fn steady_writer(ctx: &Ctx, stop: tokio::sync::watch::Receiver<bool>) -> JoinHandle<Tally> {
    let api = ctx.deployments();
    let settings = ctx.settings.clone();
    tokio::spawn(async move {
        let mut tally = Tally::default();
        let mut i = 0u32;
        while !*stop.borrow() {
            i += 1;
            let good = deployment(
                &settings,
                "steady-app",
                provenance("human", "5eed001", &format!("run-steady-{i}")),
                &format!("s{i}"),
                false,
            );
            let t = Instant::now();
            match apply(&api, &good).await {
                Ok(_) => {
                    tally.admitted += 1;
                    tally.slowest_admitted = tally.slowest_admitted.max(t.elapsed());
                }
                Err(_) => tally.failed += 1,
            }
            let bad_name = format!("unjudged-{i}");
            let bad = deployment(&settings, &bad_name, json!({}), "v1", false);
            let created = api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(bad).unwrap_or_default(),
                )
                .await;
            match created {
                Ok(_) => tally.unjudged_admitted.push(bad_name),
                Err(kube::Error::Api(s)) if s.code == 403 => tally.denied += 1,
                Err(_) => tally.failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tally
    })
}

/// etcd is SIGKILLed for 15 s while a writer applies without pause, with an agent's broken
/// revision being reverted around it. Writes are held (or fail) while etcd is away, the
/// webhook keeps refusing from its caches, none is admitted that it would refuse, and the
/// revert is recorded once.
pub async fn etcd_stopped_under_applies(ctx: &Ctx) -> anyhow::Result<String> {
    let lab = lab_of(ctx)?;
    let name = "etcd-app";
    let v2 = healthy_agent_v1(ctx, name, "e7cd00").await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = steady_writer(ctx, stop_rx);
    let _restore = Restore(lab.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let applied = Instant::now();
    apply(&ctx.deployments(), &v2).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(&lab, "etcd")?;
    let stopped = secs(applied);
    tokio::time::sleep(Duration::from_secs(15)).await;
    lab_up(&lab)?;
    apiserver_ready(Duration::from_secs(60)).await?;
    let back = secs(applied);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = stop_tx.send(true);
    let tally = writer.await?;
    let (reverted_after, _) = reverted_once(ctx, name, applied).await?;
    let stray: Vec<String> = ctx
        .deployments()
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .filter(|n| n.starts_with("unjudged-"))
        .collect();
    anyhow::ensure!(
        tally.unjudged_admitted.is_empty() && stray.is_empty(),
        "admitted without judgement: {:?}, present: {stray:?}",
        tally.unjudged_admitted
    );
    // The apiserver holds a write while etcd is away and completes it when etcd is back, or
    // fails it: either way the outage must have been felt.
    anyhow::ensure!(
        tally.failed > 0 || tally.slowest_admitted >= Duration::from_secs(5),
        "no write failed or waited while etcd was stopped: the outage did not happen ({tally:?})"
    );
    anyhow::ensure!(
        tally.admitted > 0 && tally.denied > 0,
        "the writer made no progress around the outage: {tally:?}"
    );
    Ok(format!(
        "etcd stopped {stopped:.1}s after v2, apiserver serving again at {back:.1}s; writer: {} admitted (the slowest held {:.1}s), {} denied, {} failed, 0 admitted unjudged; v2 reverted at {reverted_after:.1}s, one record",
        tally.admitted,
        tally.slowest_admitted.as_secs_f64(),
        tally.denied,
        tally.failed
    ))
}
