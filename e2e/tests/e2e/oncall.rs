//! On-call notifications in the receivers' own formats, in a namespace the chart's default policy
//! leaves out, under a policy of its own, owned by a CustodyTeam with four targets: a real
//! Alertmanager (`alertmanager.rs`), and Slack, PagerDuty and CloudEvents receivers in this
//! process that check every body against its format's schema (`custody_testkit::schemas`). The
//! Slack URL and the PagerDuty routing key come from Secrets in Custody's namespace. Every
//! receiver is on 127.0.0.1: local mode only.
//!
//! 43, two situations at once: an agent's broken revision is reverted, and a person's broken
//! revision of another Deployment is alerted (`revertActors` is the default, agents only). Each
//! fires an alert in Alertmanager with its labels and commands, which Alertmanager routes on,
//! a PagerDuty trigger, a Slack message and a CloudEvent, all written in the record's
//! `status.notifications`. When a newer revision is marked healthy (the restored one after the
//! revert, the person's fix after the alert), Alertmanager and PagerDuty are sent the
//! resolution; Slack and CloudEvents are not.
//!
//! `CUSTODY_E2E_ONCALL_SAMPLES=<file>` writes the bodies seen (one of each) to that file.

mod receiver;
mod situation;

use custody_e2e::{deployment, provenance, wait_for};
use serde_json::{Value, json};

use crate::alertmanager::Alertmanager;
use crate::desk::Desk;
use crate::support::{Ctx, apply, create};
use receiver::Receiver;
use situation::{ALERTED, REVERTED, Situation};

/// The scenario, as the suite names it.
pub const NAME: &str = "43 on-call: a revert and a person's alerted regression reach Alertmanager, Slack, PagerDuty and CloudEvents in their formats; a newer healthy revision resolves them in Alertmanager and PagerDuty";

/// The prefix of the namespaces the chart's default policy leaves to this scenario.
pub const NAMESPACE_PREFIX: &str = "custody-e2e-oncall-";

const AGENT_APP: &str = "oncall-agent-app";
const HUMAN_APP: &str = "oncall-human-app";
/// An integration key of PagerDuty's shape (32 characters).
const ROUTING_KEY: &str = "e2e43oncallroutingkey00000000043";

/// The scenario's desk: its namespace, a team with the four targets (the Slack URL and the
/// PagerDuty routing key in Secrets of Custody's namespace), and a policy of its own.
async fn open_desk(main: &Ctx, alertmanager: &str, receiver: &str) -> anyhow::Result<Desk> {
    let mut desk = Desk::open(main, NAMESPACE_PREFIX, "oncall").await?;
    let id = std::process::id();
    let (slack, pagerduty) = (
        format!("e2e-oncall-slack-{id}"),
        format!("e2e-oncall-pagerduty-{id}"),
    );
    desk.secret(slack.clone(), json!({"url": format!("{receiver}/slack")}))
        .await?;
    desk.secret(pagerduty.clone(), json!({"routing-key": ROUTING_KEY}))
        .await?;
    let notify = json!([
        {"url": alertmanager, "format": "alertmanager"},
        {"urlFrom": {"name": slack, "key": "url"}, "format": "slack"},
        {"url": format!("{receiver}/pd"), "format": "pagerduty",
         "routingKeyFrom": {"name": pagerduty, "key": "routing-key"},
         "events": ["alerted", "reverted"]},
        {"url": format!("{receiver}/ce"), "format": "cloudevents"}
    ]);
    desk.team(json!({"oncall": ["@e2e-oncall-pager"], "notify": notify}))
        .await?;
    desk.policy(json!({"rollback": {"notReadySeconds": 15, "healthyAfterSeconds": 5}}))
        .await?;
    Ok(desk)
}

/// What this scenario does with its desk.
trait OncallDesk {
    /// `app` at `version` by `actor`, owned by the team; `broken` never becomes ready.
    fn revision(&self, app: &str, actor: &str, version: &str, broken: bool) -> Value;
}

impl OncallDesk for Desk {
    fn revision(&self, app: &str, actor: &str, version: &str, broken: bool) -> Value {
        let tag = if actor == "agent" { 'a' } else { 'b' };
        let commit = format!("43{tag}{:0>4}", version.trim_start_matches('v'));
        let mut annotations = provenance(actor, &commit, &format!("run-43-{app}-{version}"));
        annotations["custody.dev/owner"] = json!(self.team);
        annotations["custody.dev/oncall"] = json!("@e2e-oncall-pager");
        deployment(&self.ctx.settings, app, annotations, version, broken)
    }
}

/// The agent's broken v2 reverted: its situation opens and closes once the restored revision
/// is healthy.
async fn reverted(situation: Situation<'_>) -> anyhow::Result<(String, Value)> {
    let (desk, app) = (situation.desk, situation.app);
    let ctx = &desk.ctx;
    create(
        &ctx.deployments(),
        &desk.revision(app, "agent", "v1", false),
    )
    .await?;
    ctx.wait_healthy_mark(app).await?;
    let applied = std::time::Instant::now();
    apply(&ctx.deployments(), &desk.revision(app, "agent", "v2", true)).await?;
    ctx.wait_version(app, "v1", ctx.settings.revert_window)
        .await?;
    let took = applied.elapsed().as_secs_f64();
    let mut fired = situation.fired().await?;
    let resolved = situation.resolved(&mut fired).await?;
    Ok((
        format!(
            "agent's v2 reverted {took:.1}s after it was applied: {}; {resolved}",
            fired.summary
        ),
        fired.samples,
    ))
}

/// A person's broken v2 alerted, not reverted: its situation opens, and closes once the
/// person's fixed v3 is healthy.
async fn alerted(situation: Situation<'_>) -> anyhow::Result<(String, Value)> {
    let (desk, app) = (situation.desk, situation.app);
    let ctx = &desk.ctx;
    create(
        &ctx.deployments(),
        &desk.revision(app, "human", "v1", false),
    )
    .await?;
    ctx.wait_healthy_mark(app).await?;
    let applied = std::time::Instant::now();
    apply(&ctx.deployments(), &desk.revision(app, "human", "v2", true)).await?;
    wait_for(
        "the person's v2 alerted",
        ctx.settings.revert_window,
        || async { Ok((!ctx.records_of(app, "Alerted").await?.is_empty()).then_some(())) },
    )
    .await?;
    let took = applied.elapsed().as_secs_f64();
    let mut fired = situation.fired().await?;
    apply(
        &ctx.deployments(),
        &desk.revision(app, "human", "v3", false),
    )
    .await?;
    let resolved = situation.resolved(&mut fired).await?;
    Ok((
        format!(
            "person's v2 alerted {took:.1}s after it was applied: {}; the fix's {resolved}",
            fired.summary
        ),
        fired.samples,
    ))
}

pub async fn notifications(main: &Ctx) -> anyhow::Result<String> {
    let binary = Alertmanager::binary().ok_or_else(|| {
        anyhow::anyhow!("no prometheus-alertmanager (.ci/tools.sh installs Debian's)")
    })?;
    let receiver = Receiver::start().await?;
    let alertmanager = Alertmanager::launch(binary, &format!("{}/am", receiver.base)).await?;
    let desk = open_desk(main, &alertmanager.address(), &receiver.base).await?;
    let inbox = &receiver.inbox;
    let situation = |app, expected| Situation {
        desk: &desk,
        alertmanager: &alertmanager,
        inbox,
        app,
        expected,
    };
    let both = tokio::try_join!(
        reverted(situation(AGENT_APP, REVERTED)),
        alerted(situation(HUMAN_APP, ALERTED)),
    );
    let broken = inbox.broken();
    let ((revert, revert_samples), (alert, alert_samples)) = both.map_err(|e| {
        if broken.is_empty() {
            e
        } else {
            e.context(format!("bodies that broke their schema: {broken:#?}"))
        }
    })?;
    anyhow::ensure!(
        broken.is_empty(),
        "{} bodies broke their schema: {broken:#?}",
        broken.len()
    );
    if let Some(path) = std::env::var_os("CUSTODY_E2E_ONCALL_SAMPLES").filter(|p| !p.is_empty()) {
        let samples = json!({"reverted": revert_samples, "alerted": alert_samples});
        std::fs::write(path, serde_json::to_string_pretty(&samples)?)?;
    }
    Ok(format!("{revert} | {alert}"))
}
