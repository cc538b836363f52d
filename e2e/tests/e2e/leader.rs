//! Two controller replicas share the Lease; the leader dies with SIGKILL while an agent's broken
//! revision rolls out, and the survivor reverts it exactly once.

use std::time::{Duration, Instant};

use custody_e2e::local::{LEASE, NAMESPACE};
use custody_e2e::{deployment, provenance, wait_for};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::support::{Ctx, apply, create, secs};

async fn holder(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt(LEASE)
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

pub async fn leader_killed(ctx: &mut Ctx) -> anyhow::Result<String> {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), NAMESPACE);
    let running = ctx.local()?.controller_names();
    anyhow::ensure!(
        running.len() == 2,
        "expected two controller replicas, have {running:?}"
    );
    let v1 = deployment(
        &ctx.settings,
        "leader-app",
        provenance("agent", "aaaaaa1", "run-a1"),
        "v1",
        false,
    );
    create(&ctx.deployments(), &v1).await?;
    ctx.wait_healthy_mark("leader-app").await?;

    let leader = wait_for("a Lease holder", Duration::from_secs(30), || {
        holder(&leases)
    })
    .await?;
    anyhow::ensure!(
        running.contains(&leader),
        "the Lease is held by {leader}, not by {running:?}"
    );
    let v2 = deployment(
        &ctx.settings,
        "leader-app",
        provenance("agent", "aaaaaa2", "run-a2"),
        "v2",
        true,
    );
    apply(&ctx.deployments(), &v2).await?;
    ctx.local()?.kill_controller(&leader)?;
    let killed = Instant::now();

    let survivor = wait_for(
        "the survivor to take the Lease",
        Duration::from_secs(60),
        || async { Ok(holder(&leases).await?.filter(|h| *h != leader)) },
    )
    .await?;
    let takeover = secs(killed);
    ctx.wait_version("leader-app", "v1", ctx.settings.revert_window)
        .await?;
    let reverted = secs(killed);

    // The killed replica comes back as a follower; still one record, one revert.
    ctx.local()?.start_controller(&leader).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let records = ctx.records_of("leader-app", "Reverted").await?;
    anyhow::ensure!(
        records.len() == 1,
        "expected exactly one RollbackRecord, found {records:?}"
    );
    Ok(format!(
        "leader {leader} killed; {survivor} took the Lease {takeover:.1}s later (lease 6s) and reverted {reverted:.1}s after the kill; one record {}",
        records[0]
    ))
}
