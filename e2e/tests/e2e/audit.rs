//! Background audit: a running workload that a new policy would refuse shows up in the
//! namespace's openreports Report, with its provenance, and leaves it when the policy goes.

use std::time::{Duration, Instant};

use custody_e2e::{deployment, kubectl, provenance, repo_root, run, wait_for};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

use crate::support::{Ctx, create, policies_api, secs};

const CRD: &str = "reports.openreports.io";

/// Deletes the report CRD however the scenario ends: the cluster is left as it was found.
struct CrdGuard;

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let _ = run(
            &kubectl(),
            &["delete", "crd", CRD, "--ignore-not-found", "--wait=false"],
        );
    }
}

fn reports(ctx: &Ctx) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report");
    Api::namespaced_with(
        ctx.client.clone(),
        &ctx.ns,
        &ApiResource::from_gvk_with_plural(&gvk, "reports"),
    )
}

/// The results of `policy` about the Deployment `name` in the namespace's report.
async fn results(ctx: &Ctx, policy: &str, name: &str) -> anyhow::Result<Vec<Value>> {
    let report = match reports(ctx).get_opt("custody-audit").await? {
        Some(r) => r,
        None => return Ok(Vec::new()),
    };
    Ok(report.data["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["policy"] == policy && r["resources"][0]["name"] == name)
        .collect())
}

pub async fn reports_what_runs(ctx: &Ctx) -> anyhow::Result<String> {
    let crd = repo_root().join("crds/generated/reports/reports.openreports.io.yaml");
    if run(&kubectl(), &["get", "crd", CRD]).is_ok() {
        anyhow::bail!(
            "{CRD} is already installed here; this scenario installs and removes its own"
        );
    }
    let _guard = CrdGuard;
    run(&kubectl(), &["apply", "-f", &crd.display().to_string()])?;
    run(
        &kubectl(),
        &[
            "wait",
            "--for=condition=Established",
            &format!("crd/{CRD}"),
            "--timeout=60s",
        ],
    )?;

    let object = deployment(
        &ctx.settings,
        "audited",
        provenance("human", "3333333", "run-audit"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &object).await?;

    // A policy that the running Deployment breaks: Audit mode, this namespace only, `model`
    // required.
    let policy = format!("e2e-audit-{}", std::process::id());
    let policies = policies_api(&ctx.client);
    let started = Instant::now();
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "custody.dev/v1alpha1",
                "kind": "CustodyPolicy",
                "metadata": {"name": policy},
                "spec": {
                    "mode": "Audit",
                    "match": {"namespaces": {"include": [ctx.ns]}},
                    "annotations": [{"key": "model"}]
                }
            }))?,
        )
        .await?;
    let outcome = async {
        let found = wait_for(
            "the audit's failing result in the namespace's Report",
            Duration::from_secs(90),
            || async { Ok(results(ctx, &policy, "audited").await?.into_iter().next()) },
        )
        .await?;
        let reported = secs(started);
        for (field, want) in [
            ("result", "fail"),
            ("rule", "MissingAnnotation"),
            ("severity", "low"),
            ("source", "custody"),
        ] {
            anyhow::ensure!(found[field] == want, "{field} is not {want}: {found}");
        }
        anyhow::ensure!(
            found["properties"]["owner"] == "team-e2e"
                && found["properties"]["actor"] == "human"
                && found["properties"]["source-commit"] == "3333333",
            "the result does not carry the provenance: {found}"
        );
        anyhow::ensure!(
            found["message"]
                .as_str()
                .is_some_and(|m| m.contains("custody.dev/model")),
            "the message does not name the key: {found}"
        );
        // The default policy's verdict on the same Deployment is in the same report.
        let default = results(ctx, "default", "audited").await?;
        anyhow::ensure!(
            default.iter().any(|r| r["result"] == "pass"),
            "no pass result of the default policy: {default:?}"
        );

        policies.delete(&policy, &DeleteParams::default()).await?;
        let deleted = Instant::now();
        wait_for(
            "the deleted policy's results to leave the Report",
            Duration::from_secs(90),
            || async { Ok(results(ctx, &policy, "audited").await?.is_empty().then_some(())) },
        )
        .await?;
        Ok(format!(
            "fail result (MissingAnnotation, low, with actor/owner/commit) reported {reported:.1}s after the policy was created; gone {:.1}s after it was deleted",
            secs(deleted)
        ))
    }
    .await;
    let _ = policies.delete(&policy, &DeleteParams::default()).await;
    outcome
}
