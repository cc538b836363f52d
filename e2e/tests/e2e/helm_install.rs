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

/// `Kind/name` of every object `api` lists with `params`, but the ones named in `keep`.
async fn listed<K>(api: Api<K>, params: &ListParams, keep: &[&str]) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Ok(api
        .list(params)
        .await?
        .items
        .into_iter()
        .filter_map(|o| o.meta().name.clone())
        .filter(|n| !keep.contains(&n.as_str()))
        .map(|n| format!("{}/{n}", K::kind(&())))
        .collect())
}

/// What the release left in its namespace and the cluster, by kind.
async fn leftovers(client: &Client) -> anyhow::Result<Vec<String>> {
    let release = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let all = ListParams::default();
    let mut left: Vec<String> = custody_webhook_configurations(client, RELEASE)
        .await?
        .into_iter()
        .map(|n| format!("ValidatingWebhookConfiguration/{n}"))
        .collect();
    left.extend(listed(Api::<ClusterRole>::all(client.clone()), &release, &[]).await?);
    left.extend(
        listed(
            Api::<ClusterRoleBinding>::all(client.clone()),
            &release,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<Role>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<Lease>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
            &all,
            &["default"],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<Secret>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE),
            &all,
            &["kube-root-ca.crt"],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<Service>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
    left.extend(
        listed(
            Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
            &all,
            &[],
        )
        .await?,
    );
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
