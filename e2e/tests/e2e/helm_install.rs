//! Installing and uninstalling: the local install's webhooks go away cleanly, and `helm install`
//! then `helm uninstall` of the chart leave no webhook configuration, RBAC or Lease behind,
//! while kube-system and the release namespace stay writable in between.

use std::time::{Duration, Instant};

use custody_e2e::local::base64;
use custody_e2e::{Mode, deployment, helm, repo_root, run, wait_for};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::{Ctx, api_error, policies_api, secs};

/// The helm scenario's release and namespace.
pub const RELEASE: &str = "custody-helm";
pub const NAMESPACE: &str = "custody-helm-e2e";

async fn custody_webhook_configurations(
    client: &Client,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    Ok(vwcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|v| v.metadata.name)
        .filter(|n| n.starts_with(prefix))
        .collect())
}

pub async fn uninstall(ctx: &mut Ctx) -> anyhow::Result<String> {
    match ctx.settings.mode {
        Mode::Helm => {
            run(
                &helm(),
                &[
                    "uninstall",
                    "custody",
                    "-n",
                    crate::HELM_NAMESPACE,
                    "--wait",
                ],
            )?;
        }
        Mode::Local => {
            ctx.local()?.unregister()?;
            let _ = policies_api(&ctx.client)
                .delete("default", &DeleteParams::default())
                .await;
        }
    }
    let left = custody_webhook_configurations(&ctx.client, "custody").await?;
    anyhow::ensure!(left.is_empty(), "left behind: {left:?}");
    Ok("no Custody webhook configuration remains".to_string())
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

/// What the release left in its namespace and the cluster, by kind.
async fn leftovers(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut left = Vec::new();
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let names = |kind: &str, items: Vec<Option<String>>| -> Vec<String> {
        items
            .into_iter()
            .flatten()
            .map(|n| format!("{kind}/{n}"))
            .collect()
    };
    left.extend(names(
        "ValidatingWebhookConfiguration",
        custody_webhook_configurations(client, RELEASE)
            .await?
            .into_iter()
            .map(Some)
            .collect(),
    ));
    let cr: Api<ClusterRole> = Api::all(client.clone());
    left.extend(names(
        "ClusterRole",
        cr.list(&selector)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let crb: Api<ClusterRoleBinding> = Api::all(client.clone());
    left.extend(names(
        "ClusterRoleBinding",
        crb.list(&selector)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let all = ListParams::default();
    let role: Api<Role> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "Role",
        role.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let rb: Api<RoleBinding> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "RoleBinding",
        rb.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let lease: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "Lease",
        lease
            .list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let sa: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "ServiceAccount",
        sa.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .filter(|n| n.as_deref() != Some("default"))
            .collect(),
    ));
    let secret: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "Secret",
        secret
            .list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "ConfigMap",
        cm.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .filter(|n| n.as_deref() != Some("kube-root-ca.crt"))
            .collect(),
    ));
    let svc: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "Service",
        svc.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    let dep: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    left.extend(names(
        "Deployment",
        dep.list(&all)
            .await?
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect(),
    ));
    Ok(left)
}

/// `helm install` of the chart as a user would, its webhooks pointing at the running local
/// webhook by url (the lab routes no Service), then `helm uninstall`.
pub async fn helm_round_trip(ctx: &mut Ctx) -> anyhow::Result<String> {
    let local = ctx.local()?;
    let (url, bundle) = (local.webhook_url(), base64(local.ca_pem().as_bytes()));
    let chart = repo_root().join("charts/custody");
    let t = Instant::now();
    run(
        &helm(),
        &[
            "install",
            RELEASE,
            &chart.display().to_string(),
            "-n",
            NAMESPACE,
            "--create-namespace",
            "--set",
            &format!("webhook.external.url={url}"),
            "--set",
            &format!("webhook.external.caBundle={bundle}"),
            "--wait",
            "--timeout",
            "3m",
        ],
    )?;
    let installed = secs(t);
    // Whatever fails below, the release goes.
    struct Uninstall(bool);
    impl Drop for Uninstall {
        fn drop(&mut self) {
            if self.0 {
                let _ = run(&helm(), &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"]);
            }
        }
    }
    let mut guard = Uninstall(true);

    let probe = |name: &str| -> anyhow::Result<Deployment> {
        Ok(serde_json::from_value(deployment(
            &ctx.settings,
            name,
            json!({}),
            "v1",
            false,
        ))?)
    };
    let system: Api<Deployment> = Api::namespaced(ctx.client.clone(), "kube-system");
    system
        .create(&dry_run(), &probe("custody-helm-probe")?)
        .await?;
    let release: Api<Deployment> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    release
        .create(&dry_run(), &probe("custody-helm-probe")?)
        .await?;

    // Elsewhere, the release's webhooks judge (once the webhook has seen the chart's policy).
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let judged_ns = format!("custody-helm-probe-{}", std::process::id());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": judged_ns}}))?,
        )
        .await?;
    let judged: Api<Deployment> = Api::namespaced(ctx.client.clone(), &judged_ns);
    let object = probe("unannotated")?;
    let denial = wait_for(
        "the release's webhook to deny",
        Duration::from_secs(30),
        || async {
            match judged.create(&dry_run(), &object).await {
                Ok(_) => Ok(None),
                Err(e) => Ok(api_error(&e).filter(|(c, _)| *c == 403).map(|(_, m)| m)),
            }
        },
    )
    .await;
    let _ = namespaces
        .delete(&judged_ns, &DeleteParams::default())
        .await;
    denial?;

    let t = Instant::now();
    run(&helm(), &["uninstall", RELEASE, "-n", NAMESPACE, "--wait"])?;
    guard.0 = false;
    let uninstalled = secs(t);
    let left = wait_for(
        "the release's objects to go",
        Duration::from_secs(60),
        || async {
            let left = leftovers(&ctx.client).await?;
            Ok(left.is_empty().then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}"));
    let remaining = leftovers(&ctx.client).await.unwrap_or_default();
    let _ = namespaces.delete(NAMESPACE, &DeleteParams::default()).await;
    left.map_err(|e| anyhow::anyhow!("{e}; left behind: {remaining:?}"))?;
    Ok(format!(
        "installed in {installed:.1}s; kube-system and {NAMESPACE} writable, workloads elsewhere judged; uninstalled in {uninstalled:.1}s leaving no webhook configuration, RBAC, Lease, Secret or Service"
    ))
}
