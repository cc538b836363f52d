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

use custody_e2e::local::NAMESPACE as CUSTODY_NAMESPACE;
use custody_e2e::{deployment, kubectl, provenance, run, wait_for};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::alertmanager::Alertmanager;
use crate::support::{Ctx, apply, create, policies_api, teams_api};
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

/// The scenario's namespace, team, policy and Secrets, deleted however the scenario ends.
struct Desk {
    ctx: Ctx,
    team: String,
    policy: String,
    secrets: [String; 2],
}

impl Drop for Desk {
    fn drop(&mut self) {
        // kubectl, not the async client: this runs on a panic too. The policy first, so nothing
        // is judged under it while the rest goes.
        let mut doomed = vec![
            vec!["custodypolicy", &self.policy],
            vec!["custodyteam", &self.team],
            vec!["namespace", &self.ctx.ns],
        ];
        for secret in &self.secrets {
            doomed.push(vec!["secret", secret, "-n", CUSTODY_NAMESPACE]);
        }
        for what in doomed {
            let mut args = vec!["delete"];
            args.extend(&what);
            args.extend(["--ignore-not-found", "--wait=false"]);
            if let Err(e) = run(&kubectl(), &args) {
                eprintln!("e2e cleanup: deleting {} failed: {e:#}", what.join(" "));
            }
        }
    }
}

impl Desk {
    async fn open(main: &Ctx, alertmanager: &str, receiver: &str) -> anyhow::Result<Self> {
        let id = std::process::id();
        let ns = format!("{NAMESPACE_PREFIX}{id}");
        let desk = Self {
            ctx: Ctx {
                client: main.client.clone(),
                settings: main.settings.clone(),
                ns: ns.clone(),
                local: None,
            },
            team: format!("team-e2e-oncall-{id}"),
            policy: format!("e2e-oncall-{id}"),
            secrets: [
                format!("e2e-oncall-slack-{id}"),
                format!("e2e-oncall-pagerduty-{id}"),
            ],
        };
        let namespaces: Api<Namespace> = Api::all(main.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let secrets: Api<Secret> = Api::namespaced(main.client.clone(), CUSTODY_NAMESPACE);
        for (name, data) in desk.secrets.iter().zip([
            json!({"url": format!("{receiver}/slack")}),
            json!({"routing-key": ROUTING_KEY}),
        ]) {
            let _ = secrets.delete(name, &DeleteParams::default()).await;
            secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(
                        json!({"metadata": {"name": name}, "stringData": data}),
                    )?,
                )
                .await?;
        }
        let ssa = PatchParams::apply("e2e").force();
        let notify = json!([
            {"url": alertmanager, "format": "alertmanager"},
            {"urlFrom": {"name": desk.secrets[0], "key": "url"}, "format": "slack"},
            {"url": format!("{receiver}/pd"), "format": "pagerduty",
             "routingKeyFrom": {"name": desk.secrets[1], "key": "routing-key"},
             "events": ["alerted", "reverted"]},
            {"url": format!("{receiver}/ce"), "format": "cloudevents"}
        ]);
        teams_api(main)
            .patch(
                &desk.team,
                &ssa,
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
                    "metadata": {"name": desk.team},
                    "spec": {"namespaces": [ns], "oncall": ["@e2e-oncall-pager"], "notify": notify}
                })),
            )
            .await?;
        policies_api(&main.client)
            .patch(
                &desk.policy,
                &ssa,
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
                    "metadata": {"name": desk.policy},
                    "spec": {
                        "match": {"namespaces": {"include": [ns]}},
                        "rollback": {"notReadySeconds": 15, "healthyAfterSeconds": 5}
                    }
                })),
            )
            .await?;
        Ok(desk)
    }

    /// `app` at `version` by `actor`, owned by the team; `broken` never becomes ready.
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
    let desk = Desk::open(main, &alertmanager.address(), &receiver.base).await?;
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
