//! Lifting a quarantine: refused to a service account and to a person writing someone else's
//! name; `kubectl custody lift` as a person writes the lift and an Event, and the reverted
//! template is admitted again.

use std::time::Instant;

use custody_e2e::{client_as, deployment, provenance, repo_root, run, wait_for};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{Ctx, api_error, apply, create, records_api, secs};

const APP: &str = "lift-app";
const REASON: &str = "e2e: root cause fixed in the app's config";

fn revision(ctx: &Ctx, version: &str, commit: &str) -> Value {
    deployment(
        &ctx.settings,
        APP,
        provenance("agent", commit, &format!("run-{version}")),
        version,
        version == "v2",
    )
}

/// A status patch lifting `record` under `by`, sent as `user`; the apiserver's answer.
async fn lift_as(ctx: &Ctx, user: &str, by: &str, record: &str) -> anyhow::Result<(u16, String)> {
    let client = client_as(
        std::env::var_os("CUSTODY_E2E_KUBECONFIG")
            .unwrap_or_default()
            .as_os_str(),
        user,
        &["system:masters"],
    )
    .await?;
    let records: Api<DynamicObject> = records_api(&client, &ctx.ns);
    let patch =
        json!({"status": {"lifted": {"by": by, "reason": REASON, "at": "2026-12-03T00:00:00Z"}}});
    match records
        .patch_status(record, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok((200, String::new())),
        Err(e) => api_error(&e).ok_or_else(|| anyhow::anyhow!("{e}")),
    }
}

pub async fn lift(ctx: &Ctx) -> anyhow::Result<String> {
    create(&ctx.deployments(), &revision(ctx, "v1", "5555555")).await?;
    ctx.wait_healthy_mark(APP).await?;
    let applied = Instant::now();
    apply(&ctx.deployments(), &revision(ctx, "v2", "6666666")).await?;
    ctx.wait_version(APP, "v1", ctx.settings.revert_window)
        .await?;
    let record = ctx
        .records_of(APP, "Reverted")
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no Reverted record for {APP}"))?;
    let reverted = secs(applied);

    // The quarantine holds.
    let again = revision(ctx, "v2", "7777777");
    let denied = apply(&ctx.deployments(), &again).await;
    anyhow::ensure!(
        denied
            .as_ref()
            .err()
            .and_then(api_error)
            .is_some_and(|(c, m)| c == 403 && m.contains(&record)),
        "the quarantined template was admitted before the lift: {denied:?}"
    );

    // Lifts the webhook refuses.
    let agent = "system:serviceaccount:agents:e2e-agent";
    let (code, message) = lift_as(ctx, agent, agent, &record).await?;
    anyhow::ensure!(
        code == 403 && message.contains("is a service account"),
        "a service account's lift: {code} {message}"
    );
    let (code, message) = lift_as(ctx, "bob@e2e.dev", "ann@e2e.dev", &record).await?;
    anyhow::ensure!(
        code == 403 && message.contains("but the request comes from"),
        "a lift under another's name: {code} {message}"
    );

    // A person's lift, with the plugin.
    let plugin = repo_root().join("target/debug/kubectl-custody");
    let out = run(
        &plugin.display().to_string(),
        &[
            "lift", &record, "-n", &ctx.ns, "--reason", REASON, "-o", "json",
        ],
    )?;
    let report: Value = serde_json::from_str(&out)?;
    let by = report["lifted"]["by"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    anyhow::ensure!(
        !by.is_empty() && report["lifted"]["reason"] == REASON && report["event"] == "created",
        "unexpected lift report: {report}"
    );
    let stored = records_api(&ctx.client, &ctx.ns).get(&record).await?;
    anyhow::ensure!(
        stored.data["status"]["lifted"]["by"] == by.as_str(),
        "the record does not hold the lift: {}",
        stored.data
    );
    ctx.wait_event("QuarantineLifted", APP).await?;

    // The template is admitted again (a dry run: the revision is still broken).
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::apply("e2e-gitops").force()
    };
    wait_for(
        "the lifted template to be admitted",
        std::time::Duration::from_secs(10),
        || {
            let (api, again) = (ctx.deployments(), again.clone());
            let dry = dry.clone();
            async move {
                Ok(api
                    .patch(APP, &dry, &Patch::Apply(&again))
                    .await
                    .ok()
                    .map(|_| ()))
            }
        },
    )
    .await?;
    Ok(format!(
        "reverted in {reverted:.1}s; lifts by a service account and under another's name refused; `kubectl custody lift` as {by} wrote the lift and the Event; the template is admitted again"
    ))
}
