//! Admission: denials that name every missing key, what is admitted, forged ownerReferences,
//! namespaces never judged, and policy changes that apply live.

use std::time::Duration;

use custody_e2e::{deployment, provenance, wait_for};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::{Ctx, api_error, create, policies_api};

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

pub async fn unannotated_denied(ctx: &Ctx) -> anyhow::Result<String> {
    // The webhook may still be syncing: wait for a real answer.
    let object = deployment(&ctx.settings, "unannotated", json!({}), "v1", false);
    let api = ctx.deployments();
    let message = wait_for("a denial", Duration::from_secs(60), || {
        let (api, object) = (api.clone(), object.clone());
        async move {
            match create(&api, &object).await {
                Ok(_) => anyhow::bail!("an unannotated Deployment was admitted"),
                Err(e) => Ok(e
                    .downcast_ref::<kube::Error>()
                    .and_then(api_error)
                    .filter(|(c, m)| *c == 403 && m.contains("Custody denied"))
                    .map(|(_, m)| m)),
            }
        }
    })
    .await?;
    for key in ["actor", "source-repo", "source-commit", "owner", "oncall"] {
        anyhow::ensure!(
            message.contains(&format!("custody.dev/{key} is missing")),
            "the denial does not name {key}: {message}"
        );
    }
    Ok("denied, every missing key named".to_string())
}

pub async fn annotated_admitted(ctx: &Ctx) -> anyhow::Result<String> {
    let v1 = deployment(
        &ctx.settings,
        "agent-app",
        provenance("agent", "1111111", "run-1"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &v1).await?;
    ctx.wait_pods("agent-app", 2, false, Duration::from_secs(120))
        .await?;
    Ok("admitted; the controller-created ReplicaSet and Pods were not blocked".to_string())
}

/// A user writes a `controller: true` ownerReference to an existing ReplicaSet on a bare,
/// unannotated Pod: the ownerReference is data, not an identity, so the Pod is judged.
pub async fn forged_owner_denied(ctx: &Ctx) -> anyhow::Result<String> {
    let rss: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let rs = rss
        .list(&ListParams::default().labels("app=agent-app"))
        .await?
        .items
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("agent-app has no ReplicaSet"))?;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "forged-owner",
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                "name": rs.metadata.name, "uid": rs.metadata.uid
            }]
        },
        "spec": {"containers": [{"name": "x", "image": ctx.settings.workload_image}]}
    }))?;
    let pods: Api<Pod> = ctx.pods();
    match pods.create(&PostParams::default(), &pod).await {
        Ok(_) => anyhow::bail!("the Pod with a forged controller ownerReference was admitted"),
        Err(e) => {
            let (code, message) = api_error(&e).ok_or_else(|| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                code == 403 && message.contains("custody.dev/owner is missing"),
                "unexpected answer {code}: {message}"
            );
        }
    }
    Ok("denied for its missing annotations, as any user-written Pod".to_string())
}

pub async fn kube_system_untouched(ctx: &Ctx) -> anyhow::Result<String> {
    let system: Api<Deployment> = Api::namespaced(ctx.client.clone(), "kube-system");
    let object: Deployment = serde_json::from_value(deployment(
        &ctx.settings,
        "custody-e2e-probe",
        json!({}),
        "v1",
        false,
    ))?;
    system.create(&dry_run(), &object).await?;
    Ok("an unannotated Deployment in kube-system is admitted (server dry run)".to_string())
}

pub async fn policy_change_live(ctx: &Ctx) -> anyhow::Result<String> {
    let policies = policies_api(&ctx.client);
    let warn = json!({"metadata": {"annotations": {"custody.dev/acknowledge-weakening": format!("e2e {}", std::process::id())}}, "spec": {"mode": "Warn"}});
    policies
        .patch("default", &PatchParams::default(), &Patch::Merge(&warn))
        .await?;
    let object = deployment(&ctx.settings, "warned", json!({}), "v1", false);
    let api = ctx.deployments();
    wait_for("Warn mode to apply", Duration::from_secs(30), || {
        let (api, object) = (api.clone(), object.clone());
        async move {
            Ok(api
                .create(&dry_run(), &serde_json::from_value(object)?)
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await?;
    policies
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"mode": "Enforce"}})),
        )
        .await?;
    Ok("Warn took effect live, then Enforce was restored".to_string())
}
