//! Rollback: an agent's broken revision is reverted (Deployment and StatefulSet, and after a
//! restart), the reverted template is quarantined against re-sync, and a human's regression is
//! only alerted.

use std::time::Instant;

use custody_e2e::{deployment, provenance, stateful_set, wait_for};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Ctx, api_error, apply, create, image_version, secs, wait_revision_healthy};

fn agent_v2(ctx: &Ctx) -> Value {
    deployment(
        &ctx.settings,
        "agent-app",
        provenance("agent", "2222222", "run-2"),
        "v2",
        true,
    )
}

pub async fn agent_reverted(ctx: &Ctx) -> anyhow::Result<String> {
    ctx.wait_healthy_mark("agent-app").await?;
    let applied = Instant::now();
    apply(&ctx.deployments(), &agent_v2(ctx)).await?;
    ctx.wait_version("agent-app", "v1", ctx.settings.revert_window)
        .await?;
    let revert_seconds = secs(applied);
    let reverted = ctx.records_of("agent-app", "Reverted").await?;
    anyhow::ensure!(
        reverted.len() == 1,
        "expected one RollbackRecord, found {reverted:?}"
    );
    ctx.wait_event("Reverted", "agent-app").await?;
    Ok(format!(
        "reverted {revert_seconds:.1}s after v2 was applied (detection window 15s); record {}",
        reverted[0]
    ))
}

pub async fn quarantine(ctx: &Ctx) -> anyhow::Result<String> {
    let v2 = agent_v2(ctx);
    match apply(&ctx.deployments(), &v2).await {
        Ok(_) => anyhow::bail!("the quarantined template was re-admitted"),
        Err(e) => {
            let (code, message) = api_error(&e).ok_or_else(|| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                code == 403 && message.contains("RollbackRecord"),
                "unexpected answer {code}: {message}"
            );
        }
    }
    let mut human = v2.clone();
    human["metadata"]["annotations"]["custody.dev/actor"] = json!("human");
    human["metadata"]["annotations"]["custody.dev/quarantine-override"] =
        json!("e2e: verified by a human");
    apply(&ctx.deployments(), &human).await?;
    Ok("re-sync denied naming the record; human override admitted".to_string())
}

pub async fn human_alerted(ctx: &Ctx) -> anyhow::Result<String> {
    let h1 = deployment(
        &ctx.settings,
        "human-app",
        provenance("human", "3333333", "run-3"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &h1).await?;
    ctx.wait_healthy_mark("human-app").await?;
    let h2 = deployment(
        &ctx.settings,
        "human-app",
        provenance("human", "4444444", "run-4"),
        "v2",
        true,
    );
    let applied = Instant::now();
    apply(&ctx.deployments(), &h2).await?;
    wait_for("an alert record", ctx.settings.revert_window, || async {
        Ok((!ctx.records_of("human-app", "Alerted").await?.is_empty()).then_some(()))
    })
    .await?;
    let alerted = secs(applied);
    anyhow::ensure!(
        image_version(&ctx.deployments().get("human-app").await?) == "v2",
        "the human's spec was changed"
    );
    Ok(format!("alerted {alerted:.1}s after v2; spec untouched"))
}

/// An agent's broken v2, restarted by a person (`kubectl rollout restart`) before Custody reverts
/// it: the restart runs the same code, so the revert goes back to v1, and the record keeps the
/// code's fingerprint, so Git's copy of v2 (which has no restart annotation) is refused on
/// re-sync.
pub async fn restarted_then_reverted(ctx: &Ctx) -> anyhow::Result<String> {
    let name = "restart-app";
    let v1 = deployment(
        &ctx.settings,
        name,
        provenance("agent", "5555555", "run-5"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &v1).await?;
    ctx.wait_healthy_mark(name).await?;
    let v2 = deployment(
        &ctx.settings,
        name,
        provenance("agent", "6666666", "run-6"),
        "v2",
        true,
    );
    let applied = Instant::now();
    apply(&ctx.deployments(), &v2).await?;
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": k8s_openapi::jiff::Timestamp::now().to_string()
    }}}}});
    ctx.deployments()
        .patch(name, &PatchParams::default(), &Patch::Strategic(restart))
        .await
        .map_err(|e| anyhow::anyhow!("the restart was refused: {e}"))?;
    ctx.wait_version(name, "v1", ctx.settings.revert_window)
        .await?;
    let reverted_in = secs(applied);
    let reverted = ctx.records_of(name, "Reverted").await?;
    anyhow::ensure!(
        reverted.len() == 1,
        "expected one RollbackRecord, found {reverted:?}"
    );
    match apply(&ctx.deployments(), &v2).await {
        Ok(_) => anyhow::bail!("Git's copy of the reverted, restarted revision was re-admitted"),
        Err(e) => {
            let (code, message) = api_error(&e).ok_or_else(|| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                code == 403 && message.contains("RollbackRecord"),
                "unexpected answer {code}: {message}"
            );
        }
    }
    Ok(format!(
        "v2 restarted, then reverted to v1 {reverted_in:.1}s after v2 was applied; record {}; Git's v2 refused on re-sync",
        reverted[0]
    ))
}

fn stateful_set_version(set: &StatefulSet) -> String {
    set.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("e2e.custody.dev/version").cloned())
        .unwrap_or_default()
}

pub async fn stateful_set_reverted(ctx: &Ctx) -> anyhow::Result<String> {
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    let s1 = stateful_set(
        &ctx.settings,
        "agent-db",
        provenance("agent", "5555555", "run-5"),
        "v1",
        false,
    );
    sets.create(&PostParams::default(), &serde_json::from_value(s1)?)
        .await?;
    wait_revision_healthy::<ControllerRevision>(&ctx.client, &ctx.ns, "agent-db").await?;
    let s2 = stateful_set(
        &ctx.settings,
        "agent-db",
        provenance("agent", "6666666", "run-6"),
        "v2",
        true,
    );
    let applied = Instant::now();
    sets.patch(
        "agent-db",
        &PatchParams::apply("e2e-gitops").force(),
        &Patch::Apply(&s2),
    )
    .await?;
    wait_for(
        "the StatefulSet revert to v1",
        ctx.settings.revert_window,
        || {
            let sets = sets.clone();
            async move { Ok((stateful_set_version(&sets.get("agent-db").await?) == "v1").then_some(())) }
        },
    )
    .await?;
    let reverted = ctx.records_of("agent-db", "Reverted").await?;
    anyhow::ensure!(
        reverted.len() == 1,
        "expected one RollbackRecord for the StatefulSet, found {reverted:?}"
    );
    Ok(format!(
        "reverted {:.1}s after v2 was applied",
        secs(applied)
    ))
}
