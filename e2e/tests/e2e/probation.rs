//! Probation, in the freeze scenarios' namespace (their policy, with probation turned on): the
//! third broken revision of one agent is reverted, its fourth change is denied while a person's
//! change to the same workload is admitted, and a person's lift lets the agent back.

use std::time::{Duration, Instant};

use custody_e2e::{deployment, repo_root, run, wait_for};
use serde_json::{Value, json};

use crate::freeze::{Frozen, TEAM, denial, owned_by};
use crate::support::{Ctx, apply, create, secs};

const APP: &str = "probation-app";
/// An agent of its own, so the freeze scenario's revert does not count here.
const AGENT: &str = "e2e-probation/1.0";

fn revision(ctx: &Ctx, actor: &str, version: &str, broken: bool) -> Value {
    let commit = format!("{:0>7}", version.trim_start_matches('v'));
    let mut annotations = owned_by(TEAM, actor, &format!("abc{commit}"), true);
    if actor == "agent" {
        annotations["custody.dev/agent"] = json!(AGENT);
    }
    deployment(&ctx.settings, APP, annotations, version, broken)
}

/// Whether the webhook's `custody_agent_probation` has the agent on probation in `ns` (None
/// without a local install, whose metrics port is known).
async fn gauge(main: &Ctx, ns: &str) -> anyhow::Result<Option<bool>> {
    let Some(local) = main.local.as_ref() else {
        return Ok(None);
    };
    let text = local.webhook_metrics().await?;
    let series = format!("custody_agent_probation{{agent=\"{AGENT}\",scope=\"namespace/{ns}\"}} 1");
    Ok(Some(text.lines().any(|l| l == series)))
}

pub async fn probation(
    main: &Ctx,
    frozen: &Result<Frozen, anyhow::Error>,
) -> anyhow::Result<String> {
    let f = frozen
        .as_ref()
        .map_err(|e| anyhow::anyhow!("setup failed: {e:#}"))?;
    let ctx = &f.ctx;
    f.set_policy(json!({"agents": {"probation": {"reverts": 3, "window": "1h"}}}))
        .await?;
    // This update also ends scenario 25's freeze; each webhook process hears of it by its own
    // watch, a moment later, and until then refuses the agent's v1 as frozen.
    wait_for(
        "the agent's v1 admitted once every webhook process has the policy without its freeze",
        Duration::from_secs(15),
        || async {
            match create(&ctx.deployments(), &revision(ctx, "agent", "v1", false)).await {
                Ok(_) => Ok(Some(())),
                Err(e) if format!("{e:#}").contains("change freeze") => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    ctx.wait_healthy_mark(APP).await?;

    let started = Instant::now();
    let mut reverts = Vec::new();
    for (i, version) in ["v2", "v3", "v4"].into_iter().enumerate() {
        let applied = Instant::now();
        apply(&ctx.deployments(), &revision(ctx, "agent", version, true))
            .await
            .map_err(|e| anyhow::anyhow!("broken {version} refused before probation: {e}"))?;
        ctx.wait_version(APP, "v1", ctx.settings.revert_window)
            .await?;
        wait_for(
            &format!("{} Reverted records of {APP}", i + 1),
            Duration::from_secs(20),
            || async { Ok((ctx.records_of(APP, "Reverted").await?.len() > i).then_some(())) },
        )
        .await?;
        reverts.push(format!("{version} {:.1}s", secs(applied)));
    }

    // The fourth change of the agent is refused; a person's change to the same workload is not.
    let fourth = revision(ctx, "agent", "v5", false);
    let message = wait_for(
        "the agent's fourth change to be denied on probation",
        Duration::from_secs(10),
        || async { denial(ctx, &fourth).await },
    )
    .await?;
    anyhow::ensure!(
        message.contains(&format!("agent \"{AGENT}\" is on probation"))
            && message.contains("--probation"),
        "the denial does not name the agent and the lift: {message}"
    );
    apply(&ctx.deployments(), &revision(ctx, "human", "v6", false))
        .await
        .map_err(|e| anyhow::anyhow!("a person's change was refused: {e}"))?;
    let gauged = gauge(main, &ctx.ns).await?;
    anyhow::ensure!(
        gauged != Some(false),
        "custody_agent_probation does not show {AGENT} in {}",
        ctx.ns
    );

    // A person lifts the probation on the newest record: the agent may ship again.
    let mut records = ctx.records_of(APP, "Reverted").await?;
    records.sort();
    let newest = newest_record(ctx, &records).await?;
    let plugin = repo_root().join("target/debug/kubectl-custody");
    let out = run(
        &plugin.display().to_string(),
        &[
            "lift",
            &newest,
            "-n",
            &ctx.ns,
            "--probation",
            "--reason",
            "e2e: reviewed the agent's three reverts",
            "-o",
            "json",
        ],
    )?;
    let report: Value = serde_json::from_str(&out)?;
    anyhow::ensure!(
        report["kindOfLift"] == "Probation" && report["event"] == "created",
        "unexpected lift report: {report}"
    );
    ctx.wait_event("ProbationLifted", APP).await?;
    wait_for(
        "the agent's change to be admitted after the lift",
        Duration::from_secs(10),
        || async { Ok(denial(ctx, &fourth).await?.is_none().then_some(())) },
    )
    .await?;
    anyhow::ensure!(
        gauge(main, &ctx.ns).await? != Some(true),
        "custody_agent_probation still shows {AGENT} after the lift"
    );
    let metric = match gauged {
        Some(_) => "; custody_agent_probation showed it, and not after the lift",
        None => "",
    };
    Ok(format!(
        "three reverts ({}); the fourth agent change denied on probation {:.1}s after the first apply; a person's change admitted; `kubectl custody lift --probation` let the agent back{metric}",
        reverts.join(", "),
        secs(started)
    ))
}

/// The record of the latest revert among `names`.
async fn newest_record(ctx: &Ctx, names: &[String]) -> anyhow::Result<String> {
    let mut newest: Option<(String, String)> = None;
    for name in names {
        let r = ctx.records().get(name).await?;
        let at = r.data["spec"]["actedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if newest.as_ref().is_none_or(|(t, _)| at > *t) {
            newest = Some((at, name.clone()));
        }
    }
    newest
        .map(|(_, n)| n)
        .ok_or_else(|| anyhow::anyhow!("no Reverted record of {APP}"))
}
