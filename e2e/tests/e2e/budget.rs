//! Blast-radius budget, in the freeze scenarios' namespace (their policy, with a budget): an
//! agent with two rollouts in flight is refused a third until one of them finishes, by both
//! webhook processes (scenarios 24 to 28 run with a second one registered by url).

use std::time::{Duration, Instant};

use custody_e2e::{deployment, wait_for};
use serde_json::{Value, json};

use crate::freeze::{Frozen, TEAM, denial, owned_by};
use crate::support::{Ctx, api_error, apply, create, secs};

/// An agent of its own, so the other scenarios' revisions do not count here.
const AGENT: &str = "e2e-budget/1.0";

fn revision(ctx: &Ctx, name: &str, actor: &str, version: &str, broken: bool) -> Value {
    let commit = format!("bd{:0>5}", version.trim_start_matches('v'));
    let mut annotations = owned_by(TEAM, actor, &commit, true);
    if actor == "agent" {
        annotations["custody.dev/agent"] = json!(AGENT);
    }
    deployment(&ctx.settings, name, annotations, version, broken)
}

/// The denial of a real (not dry-run) apply, if denied.
async fn refused(ctx: &Ctx, object: &Value) -> anyhow::Result<Option<String>> {
    match apply(&ctx.deployments(), object).await {
        Ok(_) => Ok(None),
        Err(e) => match api_error(&e) {
            Some((403, message)) => Ok(Some(message)),
            _ => Err(e.into()),
        },
    }
}

pub async fn in_flight_budget(
    main: &Ctx,
    frozen: &Result<Frozen, anyhow::Error>,
) -> anyhow::Result<String> {
    let f = frozen
        .as_ref()
        .map_err(|e| anyhow::anyhow!("setup failed: {e:#}"))?;
    let ctx = &f.ctx;
    f.set_policy(json!({"agents": {"limits": [
        {"agents": ["e2e-budget/*"], "maxInFlight": 2}
    ]}}))
    .await?;
    // People create the three workloads (budgets bind agents only), and they become healthy.
    for name in ["budget-a", "budget-b", "budget-c"] {
        create(
            &ctx.deployments(),
            &revision(ctx, name, "human", "v1", false),
        )
        .await?;
    }
    for name in ["budget-a", "budget-b", "budget-c"] {
        ctx.wait_healthy_mark(name).await?;
    }
    // Two broken agent rollouts: in flight until Custody reverts them.
    let started = Instant::now();
    for name in ["budget-a", "budget-b"] {
        apply(
            &ctx.deployments(),
            &revision(ctx, name, "agent", "v2", true),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{name} v2 refused within the budget: {e}"))?;
    }
    // The third is refused once the controller's summary shows the two. Dry runs until then
    // (a real apply admitted before the summary would start the third rollout), then one real
    // apply, refused and counted.
    let third = revision(ctx, "budget-c", "agent", "v2", false);
    let message = wait_for(
        "the third agent rollout to be refused",
        Duration::from_secs(15),
        || async { denial(ctx, &third).await },
    )
    .await?;
    let refused_after = secs(started);
    anyhow::ensure!(
        message.contains("rollouts in flight")
            && message.contains("budget-a")
            && message.contains("budget-b"),
        "the denial does not name the rollouts in flight: {message}"
    );
    anyhow::ensure!(
        refused(ctx, &third).await?.is_some(),
        "the third rollout was admitted for real while two were in flight"
    );
    // Room frees when Custody reverts one of them; then the third goes through.
    wait_for(
        "the third agent rollout to be admitted once one finished",
        ctx.settings.revert_window,
        || async { Ok(denial(ctx, &third).await?.is_none().then_some(())) },
    )
    .await?;
    apply(&ctx.deployments(), &third)
        .await
        .map_err(|e| anyhow::anyhow!("the third rollout was refused after room freed: {e}"))?;
    let freed_after = secs(started);
    let mut counted = String::new();
    if let Some(local) = main.local.as_ref() {
        let series =
            format!("custody_agent_limit_denials_total{{agent=\"{AGENT}\",limit=\"inFlight\"}}");
        for (which, text) in [
            ("first", local.webhook_metrics().await?),
            ("second", local.second_webhook_metrics().await?),
        ] {
            anyhow::ensure!(
                text.lines().any(|l| l.starts_with(&series)),
                "the {which} webhook did not count the denial ({series})"
            );
        }
        counted = "; both webhook processes refused it and counted it".to_string();
    }
    Ok(format!(
        "2 agent rollouts in flight; the third refused {refused_after:.1}s after the first, naming both{counted}; admitted {freed_after:.1}s after the first, once Custody reverted one"
    ))
}
