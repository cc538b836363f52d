//! A node dies under an agent's healthy revision (the lab's `node-down.sh`): its Pods go not
//! ready, and the controller neither reverts nor alerts, because the revision is not the cause.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use custody_e2e::{deployment, provenance, run, wait_for};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use crate::support::{Ctx, apply, create, pod_ready, secs};

/// The node `node-down.sh` stops: the lab's last one.
const NODE: &str = "kwok-node-2";

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Brings the node back whatever happens to the scenario.
struct NodeUp(PathBuf);

impl Drop for NodeUp {
    fn drop(&mut self) {
        let script = self.0.join("scripts/node-up.sh");
        let _ = std::process::Command::new("bash")
            .arg(&script)
            .env("LAB", &self.0)
            .output();
    }
}

pub async fn node_dies(ctx: &mut Ctx) -> anyhow::Result<String> {
    let lab = ctx
        .settings
        .lab
        .clone()
        .ok_or_else(|| anyhow::anyhow!("CUSTODY_E2E_LAB is not set"))?;
    let pin = |mut d: serde_json::Value| {
        d["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": NODE});
        d
    };
    let v1 = pin(deployment(
        &ctx.settings,
        "node-app",
        provenance("agent", "bbbbbb1", "run-b1"),
        "v1",
        false,
    ));
    create(&ctx.deployments(), &v1).await?;
    ctx.wait_healthy_mark("node-app").await?;
    // A healthy agent revision: v1 is its healthy predecessor, so a revert would be possible.
    let v2 = pin(deployment(
        &ctx.settings,
        "node-app",
        provenance("agent", "bbbbbb2", "run-b2"),
        "v2",
        false,
    ));
    apply(&ctx.deployments(), &v2).await?;
    ctx.wait_version("node-app", "v2", Duration::from_secs(10))
        .await?;
    let pods: Api<Pod> = ctx.pods();
    wait_for(
        "node-app v2 pods ready",
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=node-app"))
                .await?
                .items;
            let v2_ready = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("e2e.custody.dev/version"))
                        .map(String::as_str)
                        == Some("v2")
                })
                .filter(|p| pod_ready(p))
                .count();
            Ok((v2_ready >= 2 && list.len() == 2).then_some(()))
        },
    )
    .await?;

    let _up = NodeUp(lab.clone());
    run(
        "bash",
        &[&lab.join("scripts/node-down.sh").display().to_string()],
    )?;
    let down = Instant::now();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    wait_for(
        "the node to go NotReady",
        Duration::from_secs(120),
        || async { Ok((!node_ready(&nodes.get(NODE).await?)).then_some(())) },
    )
    .await?;
    let not_ready_node = secs(down);
    wait_for(
        "node-app's pods to go not ready",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=node-app"))
                .await?
                .items;
            Ok((!list.is_empty() && list.iter().all(|p| !pod_ready(p))).then_some(()))
        },
    )
    .await?;
    let not_ready_pods = secs(down);
    // The leader counts the situation once the policy's not-ready window (15 s) has passed
    // for those pods: the moment a revert would have happened without attribution.
    let not_attributed = wait_for(
        "a not-attributed regression counted",
        Duration::from_secs(90),
        || async {
            let mut found = String::new();
            for name in ctx
                .local
                .as_ref()
                .map(|l| l.controller_names())
                .unwrap_or_default()
            {
                let metrics = match ctx.local.as_ref() {
                    Some(l) => l.controller_metrics(&name).await.unwrap_or_default(),
                    None => String::new(),
                };
                found.extend(
                    metrics
                        .lines()
                        .filter(|l| {
                            l.starts_with("custody_regressions_not_attributed_total")
                                && l.contains("Deployment")
                                && !l.ends_with(" 0")
                        })
                        .map(|l| format!("{name}: {l}; ")),
                );
            }
            Ok((!found.is_empty()).then_some(found))
        },
    )
    .await?;
    let counted = secs(down);
    // And a little longer, for a revert that would follow the count.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reverted = ctx.records_of("node-app", "Reverted").await?;
    let alerted = ctx.records_of("node-app", "Alerted").await?;
    anyhow::ensure!(
        reverted.is_empty() && alerted.is_empty(),
        "a dead node was blamed on the revision: {reverted:?} {alerted:?}"
    );
    anyhow::ensure!(
        crate::support::image_version(&ctx.deployments().get("node-app").await?) == "v2",
        "node-app was changed"
    );

    drop(_up);
    let t = Instant::now();
    wait_for(
        "the node to come back",
        Duration::from_secs(120),
        || async { Ok(node_ready(&nodes.get(NODE).await?).then_some(())) },
    )
    .await?;
    Ok(format!(
        "node NotReady {not_ready_node:.1}s after its heartbeats stopped, pods not ready at {not_ready_pods:.1}s, counted as not attributed at {counted:.1}s ({not_attributed}); nothing reverted or alerted; node back in {:.1}s",
        secs(t)
    ))
}
