//! The webhook's availability: what proceeds while it is down under `failurePolicy: Fail`, and a
//! certificate rotation under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use custody_e2e::{deployment, provenance, wait_for};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::{Ctx, apply, create, secs};

fn labelled(ctx: &Ctx, kind: &str, name: &str) -> serde_json::Value {
    let template = json!({
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": ctx.settings.workload_image,
            "command": ["sh", "-c", "true"]}], "terminationGracePeriodSeconds": 1}
    });
    let annotations = provenance("automation", "7777777", "run-7");
    match kind {
        "DaemonSet" => json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}
        }),
        _ => {
            let mut job_template = template;
            job_template["spec"]["restartPolicy"] = json!("Never");
            json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
                "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid",
                    "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
                    "jobTemplate": {"spec": {"backoffLimit": 0, "template": job_template}}}
            })
        }
    }
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

/// Deletes one pod of `app` and waits until `count` live pods exist again.
async fn replaced(pods: &Api<Pod>, app: &str, count: usize) -> anyhow::Result<f64> {
    let victim = pods_of(pods, app)
        .await?
        .into_iter()
        .next()
        .and_then(|p| p.metadata.name)
        .ok_or_else(|| anyhow::anyhow!("{app} has no pod to delete"))?;
    let t = Instant::now();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await?;
    wait_for(
        &format!("a replacement {app} pod"),
        Duration::from_secs(60),
        || async {
            let live = pods_of(pods, app).await?;
            Ok((live.len() >= count
                && live
                    .iter()
                    .all(|p| p.metadata.name.as_deref() != Some(victim.as_str())))
            .then_some(()))
        },
    )
    .await?;
    Ok(secs(t))
}

/// With the webhook process stopped and `failurePolicy: Fail`, what Custody does not judge goes
/// on: a scale-up, a Pod replaced, a DaemonSet's Pod replaced, a CronJob's Job and its Pod, and
/// the controller's own revert of an agent's broken revision. A user's own change is refused.
pub async fn webhook_down(ctx: &mut Ctx) -> anyhow::Result<String> {
    let deployments = ctx.deployments();
    let pods = ctx.pods();
    let daemon_sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.ns);

    // Before the outage, with the webhook up: the objects the outage must not stop.
    let mut app = deployment(
        &ctx.settings,
        "outage-app",
        provenance("human", "8888888", "run-8"),
        "v1",
        false,
    );
    app["spec"]["replicas"] = json!(1);
    create(&deployments, &app).await?;
    daemon_sets
        .create(
            &PostParams::default(),
            &serde_json::from_value(labelled(ctx, "DaemonSet", "outage-ds"))?,
        )
        .await?;
    cron_jobs
        .create(
            &PostParams::default(),
            &serde_json::from_value(labelled(ctx, "CronJob", "outage-cron"))?,
        )
        .await?;
    let agent_v1 = deployment(
        &ctx.settings,
        "outage-agent",
        provenance("agent", "9999991", "run-91"),
        "v1",
        false,
    );
    create(&deployments, &agent_v1).await?;
    ctx.wait_pods("outage-app", 1, true, Duration::from_secs(60))
        .await?;
    let nodes = wait_for("DaemonSet pods", Duration::from_secs(60), || async {
        let ds = daemon_sets.get("outage-ds").await?;
        let status = ds.status.unwrap_or_default();
        Ok((status.desired_number_scheduled > 0
            && status.number_ready == status.desired_number_scheduled)
            .then_some(status.desired_number_scheduled as usize))
    })
    .await?;
    ctx.wait_healthy_mark("outage-agent").await?;

    // The agent's broken v2 lands while the webhook is up; then the webhook goes away.
    let agent_v2 = deployment(
        &ctx.settings,
        "outage-agent",
        provenance("agent", "9999992", "run-92"),
        "v2",
        true,
    );
    apply(&deployments, &agent_v2).await?;
    // Jobs the CronJob made before the outage do not count.
    let before: Vec<String> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    ctx.local()?.stop_webhook()?;
    let down = Instant::now();
    let mut timings = Vec::new();

    let probe = deployment(
        &ctx.settings,
        "outage-probe",
        provenance("human", "8888888", "run-8"),
        "v1",
        false,
    );
    match create(&deployments, &probe).await {
        Ok(_) => anyhow::bail!("a user's Deployment was admitted with the webhook down under Fail"),
        Err(e) => anyhow::ensure!(
            format!("{e:#}").contains("failed calling webhook"),
            "unexpected answer with the webhook down: {e:#}"
        ),
    }

    let t = Instant::now();
    deployments
        .patch_scale(
            "outage-app",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await?;
    ctx.wait_pods("outage-app", 3, false, Duration::from_secs(60))
        .await?;
    timings.push(format!("scale 1->3 {:.1}s", secs(t)));
    timings.push(format!(
        "pod replaced {:.1}s",
        replaced(&pods, "outage-app", 3).await?
    ));
    timings.push(format!(
        "DaemonSet pod replaced {:.1}s",
        replaced(&pods, "outage-ds", nodes).await?
    ));

    ctx.wait_version("outage-agent", "v1", ctx.settings.revert_window)
        .await?;
    let reverted = ctx.records_of("outage-agent", "Reverted").await?;
    anyhow::ensure!(
        reverted.len() == 1,
        "expected one RollbackRecord, found {reverted:?}"
    );
    timings.push(format!(
        "agent v2 reverted {:.1}s into the outage",
        secs(down)
    ));

    let t = Instant::now();
    wait_for(
        "a CronJob's Job, created during the outage, to succeed",
        Duration::from_secs(100),
        || async {
            let done = jobs
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|j| {
                    j.metadata
                        .name
                        .as_ref()
                        .is_some_and(|n| !before.contains(n))
                })
                .any(|j| {
                    j.metadata
                        .owner_references
                        .as_ref()
                        .is_some_and(|o| o.iter().any(|o| o.name == "outage-cron"))
                        && j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0
                });
            Ok(done.then_some(()))
        },
    )
    .await?;
    timings.push(format!(
        "a CronJob's new Job and its Pod succeeded {:.1}s later (the next minute)",
        secs(t)
    ));

    let _ = cron_jobs
        .delete("outage-cron", &DeleteParams::default())
        .await;
    let t = Instant::now();
    ctx.local()?.start_webhook().await?;
    timings.push(format!("webhook back and ready {:.1}s", secs(t)));
    Ok(timings.join("; "))
}

/// The serving certificate is rotated (a new key pair, the Secret-style symlink swap) while
/// admission requests are in flight: none fails, and new handshakes get the new certificate.
pub async fn certificate_rotation(ctx: &mut Ctx) -> anyhow::Result<String> {
    let deployments: Api<Deployment> = ctx.deployments();
    let object: Deployment = serde_json::from_value(deployment(
        &ctx.settings,
        "rotation-probe",
        provenance("human", "abcdef0", "run-rot"),
        "v1",
        false,
    ))?;
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop_at = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (api, object, ok, failures) = (
            deployments.clone(),
            object.clone(),
            ok.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let dry = PostParams {
                dry_run: true,
                ..Default::default()
            };
            while Instant::now() < stop_at {
                match api.create(&dry, &object).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures
                        .lock()
                        .map(|mut f| f.push(format!("{e}")))
                        .unwrap_or(()),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = ctx.local()?.webhook_port;
    ctx.local()?.rotate_certificate()?;
    let rotated = Instant::now();
    let subject = wait_for("the new certificate to be served", Duration::from_secs(10), || async {
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -subject"),
            ])
            .output()?;
        let subject = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(subject.contains("webhook 2").then_some(subject))
    })
    .await?;
    let picked_up = secs(rotated);
    for t in tasks {
        t.await?;
    }
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let ok = ok.load(Ordering::Relaxed);
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        failures.len() + ok,
        failures.first()
    );
    anyhow::ensure!(ok > 0, "no request was made");
    Ok(format!(
        "{ok} dry-run applies over 8s, 0 failed; new certificate served {picked_up:.1}s after the swap ({subject})"
    ))
}

/// `webhook.failurePolicyByActor`: with the webhook down and `failurePolicy: Ignore`, an agent's
/// service account is still refused (its entry fails closed), while a person is admitted.
pub async fn failure_policy_by_actor(ctx: &mut Ctx) -> anyhow::Result<String> {
    const AGENT: &str = "system:serviceaccount:e2e-agents:bot";
    let kubeconfig = std::env::var_os("CUSTODY_E2E_KUBECONFIG")
        .ok_or_else(|| anyhow::anyhow!("CUSTODY_E2E_KUBECONFIG is not set"))?;
    // The agent may create Deployments here (RBAC answers before admission does).
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(ctx.client.clone(), &ctx.ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "e2e-agent-edit"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot", "namespace": "e2e-agents"}]
            }))?,
        )
        .await?;
    ctx.local()?.register_webhooks(&[
        ("webhook.failurePolicy", "Ignore".into()),
        ("webhook.failurePolicyByActor.enabled", "true".into()),
        (
            "defaultPolicy.identities.agents.serviceAccounts[0]",
            "e2e-agents/*".into(),
        ),
    ])?;
    ctx.local()?.stop_webhook()?;
    let result = async {
        let agent = custody_e2e::client_as(
            &kubeconfig,
            AGENT,
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:e2e-agents",
                "system:authenticated",
            ],
        )
        .await?;
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let as_agent: Api<Deployment> = Api::namespaced(agent, &ctx.ns);
        let object: Deployment = serde_json::from_value(deployment(
            &ctx.settings,
            "actor-probe",
            provenance("agent", "ccccccc", "run-c"),
            "v1",
            false,
        ))?;
        match as_agent.create(&dry, &object).await {
            Ok(_) => anyhow::bail!("the agent's Deployment was admitted with the webhook down"),
            Err(e) => anyhow::ensure!(
                format!("{e}").contains("failed calling webhook")
                    && format!("{e}").contains("agents.workloads.custody.dev"),
                "unexpected answer to the agent: {e}"
            ),
        }
        let unannotated: Deployment = serde_json::from_value(deployment(
            &ctx.settings,
            "actor-probe",
            json!({}),
            "v1",
            false,
        ))?;
        ctx.deployments()
            .create(&dry, &unannotated)
            .await
            .map_err(|e| anyhow::anyhow!("a person was refused during the outage: {e}"))?;
        Ok("with the webhook down and failurePolicy Ignore: the agent service account refused (agents.workloads.custody.dev fails closed), a person admitted".to_string())
    }
    .await;
    // Back to the install's own configuration, whatever happened.
    let restored = async {
        ctx.local()?.start_webhook().await?;
        ctx.local()?.register_webhooks(&[])
    }
    .await;
    let _ = bindings
        .delete("e2e-agent-edit", &DeleteParams::default())
        .await;
    restored?;
    result
}
