//! Approvals (`spec.agents.approval`), in a namespace of its own that the chart's default policy
//! leaves out, under a policy whose approval covers every agent there, with the owning
//! CustodyTeam's members as the approvers. The agent is an impersonated service account, the
//! people impersonated users.
//!
//! 42: the agent's new revision is denied (`ApprovalRequired`, naming the request to create);
//! it proposes the change through the API as a harness would; its own approval is refused
//! (`ChangeRefused`), so is an outsider's; a team member's is admitted and the controller marks
//! the request `Approved`; the same manifest is then admitted, a slightly different one is not;
//! the controller records the revision the approval was spent on, and still reverts that
//! revision when it does not become ready: an approval exempts nothing from the rollback.

use std::time::{Duration, Instant};

use custody_crds::{ChangePhase, CustodyChange};
use custody_e2e::{client_as, deployment, provenance, wait_for};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::desk::Desk;
use crate::proposal::{digest, proposal};
use crate::support::{Ctx, Refusal, create, refusal, secs};

/// The scenario, as the suite names it.
pub const NAME: &str = "42 approvals: an agent's change waits for a person's approval of its CustodyChange, which admits that exact manifest once and does not exempt it from the revert";

/// The prefix of the namespaces the chart's default policy leaves to this scenario.
pub const NAMESPACE_PREFIX: &str = "custody-e2e-approval-";

/// What the other parts of Custody call things, in one place.
mod names {
    /// The webhook's route for writes of CustodyChanges and their status.
    pub const ROUTE: &str = "/validate-change";
    /// The resources that route must receive.
    pub const RESOURCES: [&str; 2] = ["custodychanges", "custodychanges/status"];
    /// The Event the controller emits once a request has its approvals.
    pub const APPROVED_EVENT: &str = "ChangeApproved";
    /// An agent's new revision without an approved request.
    pub const APPROVAL_REQUIRED: &str = "ApprovalRequired";
    /// A write to a CustodyChange that breaks its rules.
    pub const CHANGE_REFUSED: &str = "ChangeRefused";
}

const APP: &str = "approval-app";
const AGENT_SA: &str = "e2e-approval-agent";
/// A member of the owning team: may approve.
const APPROVER: &str = "ann@e2e.dev";
/// A person outside the team: may not.
const OUTSIDER: &str = "bob@e2e.dev";
const REASON: &str = "e2e: ship v2 of the app (new command) for the checkout fix";
const REVIEW: &str = "e2e: read the diff; the new command is the expected one";

/// The scenario's desk: its namespace, a team whose member approves, and a policy that asks
/// for approval of the agent's changes.
async fn open_desk(main: &Ctx) -> anyhow::Result<Desk> {
    let desk = Desk::open(main, NAMESPACE_PREFIX, "approval").await?;
    desk.team(json!({"oncall": ["@e2e-approval-pager"], "members": {"users": [APPROVER]}}))
        .await?;
    let ns = &desk.ctx.ns;
    desk.policy(json!({
        "mode": "Enforce",
        "identities": {"agents": {"serviceAccounts": [format!("{ns}/{AGENT_SA}")]}},
        "rollback": {"notReadySeconds": 15, "healthyAfterSeconds": 5},
        "agents": {"approval": {"agents": ["*"], "validFor": "1h"}}
    }))
    .await?;
    Ok(desk)
}

/// What this scenario does with its desk.
trait ApprovalDesk {
    /// The agent's service account.
    fn agent(&self) -> String;
    /// A client acting as the agent's service account.
    async fn agent_client(&self) -> anyhow::Result<Client>;
    /// `APP` at `version` by `actor`, owned by the team; `broken` never becomes ready.
    fn revision(&self, actor: &str, version: &str, broken: bool) -> Value;
}

impl ApprovalDesk for Desk {
    fn agent(&self) -> String {
        format!("system:serviceaccount:{}:{AGENT_SA}", self.ctx.ns)
    }

    /// A client acting as the agent's service account (`system:masters` besides its own groups,
    /// so that RBAC lets it write and only Custody decides).
    async fn agent_client(&self) -> anyhow::Result<Client> {
        let own = format!("system:serviceaccounts:{}", self.ctx.ns);
        impersonate(
            &self.agent(),
            &["system:masters", "system:serviceaccounts", &own],
        )
        .await
    }

    /// `APP` at `version` by `actor`, owned by the team; `broken` never becomes ready.
    fn revision(&self, actor: &str, version: &str, broken: bool) -> Value {
        let commit = format!("42{:0>5}", version.trim_start_matches('v'));
        let mut annotations = provenance(actor, &commit, &format!("run-42-{version}"));
        annotations["custody.dev/owner"] = json!(self.team);
        deployment(&self.ctx.settings, APP, annotations, version, broken)
    }
}

async fn impersonate(user: &str, groups: &[&str]) -> anyhow::Result<Client> {
    let kubeconfig = std::env::var_os("CUSTODY_E2E_KUBECONFIG").unwrap_or_default();
    client_as(&kubeconfig, user, groups).await
}

/// Some webhook sends CustodyChange writes and their status writes to the change route.
async fn change_webhook_registered(client: &Client) -> anyhow::Result<()> {
    let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut covered: Vec<String> = Vec::new();
    for hook in vwcs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .flat_map(|v| v.webhooks.unwrap_or_default())
    {
        let config = &hook.client_config;
        let path = config
            .url
            .clone()
            .or_else(|| config.service.as_ref().and_then(|s| s.path.clone()))
            .unwrap_or_default();
        if path.ends_with(names::ROUTE) {
            covered.extend(
                hook.rules
                    .iter()
                    .flatten()
                    .flat_map(|r| r.resources.clone().unwrap_or_default()),
            );
        }
    }
    let missing: Vec<&str> = names::RESOURCES
        .into_iter()
        .filter(|r| !covered.iter().any(|c| c == r))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "no webhook sends {missing:?} to {} (registered there: {covered:?})",
        names::ROUTE
    );
    Ok(())
}

/// Server-side applies `object` to `api` (a dry run when `dry`): `None` when admitted.
async fn applied(
    api: &Api<Deployment>,
    object: &Value,
    dry: bool,
) -> anyhow::Result<Option<Refusal>> {
    let params = PatchParams {
        dry_run: dry,
        ..PatchParams::apply("e2e-agent").force()
    };
    match api.patch(APP, &params, &Patch::Apply(object)).await {
        Ok(_) => Ok(None),
        Err(e) => refusal(&e).map(Some).ok_or_else(|| e.into()),
    }
}

/// Waits (10 s: the webhook's watches trail the writes) until a dry run of `object` is refused
/// for `code`.
async fn wait_refused(
    api: &Api<Deployment>,
    object: &Value,
    code: &str,
) -> anyhow::Result<Refusal> {
    let found = wait_for(
        &format!("a dry run refused for {code}"),
        Duration::from_secs(10),
        || async { Ok(applied(api, object, true).await?.filter(|r| r.has(code))) },
    )
    .await;
    match found {
        Ok(r) => Ok(r),
        Err(e) => {
            let last = applied(api, object, true).await;
            Err(e.context(format!("the last answer: {last:?}")))
        }
    }
}

/// Writes an approval of `change` under `user`'s name, as `user`: `None` when admitted.
async fn approve_as(
    ns: &str,
    user: &str,
    groups: &[&str],
    change: &str,
) -> anyhow::Result<Option<Refusal>> {
    let api: Api<CustodyChange> = Api::namespaced(impersonate(user, groups).await?, ns);
    let at = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ");
    let patch =
        json!({"status": {"approvals": [{"by": user, "reason": REVIEW, "at": at.to_string()}]}});
    match api
        .patch_status(change, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(None),
        Err(e) => refusal(&e).map(Some).ok_or_else(|| e.into()),
    }
}

fn refused_for(answer: &Option<Refusal>, code: &str, words: &str) -> bool {
    answer
        .as_ref()
        .is_some_and(|r| r.code == 403 && r.has(code) && r.message.contains(words))
}

/// Waits (10 s) for an Event with `reason` about the change request or its workload.
async fn wait_change_event(ctx: &Ctx, reason: &str, change: &str) -> anyhow::Result<()> {
    let events: Api<Event> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    wait_for(
        &format!("a {reason} Event about {change} or {APP}"),
        Duration::from_secs(10),
        || async {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding
                            .as_ref()
                            .and_then(|r| r.name.as_deref())
                            .is_some_and(|n| n == change || n == APP)
                })
                .then_some(()))
        },
    )
    .await
}

/// The Deployment revision (`deployment.kubernetes.io/revision`) of the ReplicaSet running
/// `version`.
async fn revision_of(ctx: &Ctx, version: &str) -> anyhow::Result<String> {
    let sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ctx.ns);
    sets.list(&ListParams::default().labels(&format!("app={APP}")))
        .await?
        .items
        .into_iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("e2e.custody.dev/version"))
                .is_some_and(|v| v == version)
        })
        .and_then(|rs| {
            rs.metadata
                .annotations?
                .remove("deployment.kubernetes.io/revision")
        })
        .ok_or_else(|| anyhow::anyhow!("no ReplicaSet of {APP} runs {version}"))
}

pub async fn approvals(main: &Ctx) -> anyhow::Result<String> {
    let desk = open_desk(main).await?;
    let ctx = &desk.ctx;
    change_webhook_registered(&ctx.client).await?;
    // v1 is a person's: no approval; it becomes the revision to revert to.
    create(&ctx.deployments(), &desk.revision("human", "v1", false)).await?;
    ctx.wait_healthy_mark(APP).await?;
    let agent = desk.agent_client().await?;
    let steps = Steps {
        desk: &desk,
        as_agent: Api::namespaced(agent.clone(), &ctx.ns),
        changes: Api::namespaced(ctx.client.clone(), &ctx.ns),
        v2: desk.revision("agent", "v2", true),
        started: Instant::now(),
    };
    let name = steps.refused_then_proposed(&agent).await?;
    let decided = steps.decided(&name).await?;
    let admitted = steps.admitted_once().await?;
    let spent = steps.reverted_and_spent(&name).await?;
    Ok(format!(
        "{name} proposed through the API after v2 was refused for it; {decided}; {admitted}; {spent}"
    ))
}

/// The scenario's steps, in order, on one workload and one change request.
struct Steps<'a> {
    desk: &'a Desk,
    /// The workload, as the agent writes it.
    as_agent: Api<Deployment>,
    /// The change requests, as an administrator reads them.
    changes: Api<CustodyChange>,
    /// The agent's broken v2, as its manifest says.
    v2: Value,
    started: Instant,
}

impl Steps<'_> {
    /// The agent's v2 is refused for approval, naming the request; the agent proposes it.
    async fn refused_then_proposed(&self, agent: &Client) -> anyhow::Result<String> {
        let ctx = &self.desk.ctx;
        let expected = digest(&ctx.ns, &self.v2)?;
        let denied = wait_refused(&self.as_agent, &self.v2, names::APPROVAL_REQUIRED).await?;
        anyhow::ensure!(
            denied.message.contains(&expected.name),
            "the denial does not name the request {}: {}",
            expected.name,
            denied.message
        );
        let real = applied(&self.as_agent, &self.v2, false).await?;
        anyhow::ensure!(
            refused_for(&real, names::APPROVAL_REQUIRED, &expected.name),
            "the agent's apply of v2 was not refused for approval: {real:?}"
        );
        let live = serde_json::to_value(ctx.deployments().get(APP).await?)?;
        let change = proposal(&ctx.ns, &self.v2, Some(&live), &self.desk.agent(), REASON)?;
        let as_agent: Api<CustodyChange> = Api::namespaced(agent.clone(), &ctx.ns);
        as_agent
            .create(&PostParams::default(), &change)
            .await
            .map_err(|e| anyhow::anyhow!("the agent's proposal was refused: {e}"))?;
        Ok(expected.name)
    }

    /// The agent's own approval and an outsider's are refused; a team member's is admitted,
    /// and the controller marks the request Approved, with an Event.
    async fn decided(&self, name: &str) -> anyhow::Result<String> {
        let ns = &self.desk.ctx.ns;
        let own = approve_as(ns, &self.desk.agent(), &["system:masters"], name).await?;
        anyhow::ensure!(
            refused_for(&own, names::CHANGE_REFUSED, "service account"),
            "the agent's own approval was not refused: {own:?}"
        );
        let outsider = approve_as(ns, OUTSIDER, &["system:masters"], name).await?;
        anyhow::ensure!(
            refused_for(&outsider, names::CHANGE_REFUSED, "may not decide"),
            "an approval by someone outside the team was not refused: {outsider:?}"
        );
        let approved = approve_as(ns, APPROVER, &["system:masters"], name).await?;
        anyhow::ensure!(
            approved.is_none(),
            "the team member's approval was refused: {approved:?}"
        );
        // What a harness waits for (`kubectl wait --for=jsonpath='{.status.phase}'=Approved`).
        wait_for(
            "the controller to mark the request Approved",
            Duration::from_secs(30),
            || async {
                let phase = self.changes.get(name).await?.status.and_then(|s| s.phase);
                Ok((phase == Some(ChangePhase::Approved)).then_some(()))
            },
        )
        .await?;
        wait_change_event(&self.desk.ctx, names::APPROVED_EVENT, name).await?;
        Ok(format!(
            "the agent's and an outsider's approvals refused, {APPROVER}'s admitted; Approved with its Event {:.1}s after the first refusal",
            secs(self.started)
        ))
    }

    /// The same manifest is admitted (once the webhook's watch has the approval); one env var
    /// more is another change, which the approval does not admit.
    async fn admitted_once(&self) -> anyhow::Result<String> {
        wait_for(
            "the approved v2 to be admitted",
            Duration::from_secs(10),
            || async {
                match applied(&self.as_agent, &self.v2, false).await? {
                    None => Ok(Some(())),
                    Some(r) if r.has(names::APPROVAL_REQUIRED) => Ok(None),
                    Some(r) => Err(anyhow::anyhow!("the approved v2 was refused: {r:?}")),
                }
            },
        )
        .await?;
        let mut other = self.v2.clone();
        other["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "E2E_EXTRA", "value": "1"}]);
        let other_name = digest(&self.desk.ctx.ns, &other)?.name;
        let different = applied(&self.as_agent, &other, true).await?;
        anyhow::ensure!(
            refused_for(&different, names::APPROVAL_REQUIRED, &other_name),
            "a different manifest was not refused for its own approval ({other_name}): {different:?}"
        );
        Ok("the same manifest admitted, one env var more refused".to_string())
    }

    /// v2 never becomes ready: reverted, approval or not; the request records the revision it
    /// was spent on, and re-applying v2 is refused as spent.
    async fn reverted_and_spent(&self, name: &str) -> anyhow::Result<String> {
        let ctx = &self.desk.ctx;
        let admitted = Instant::now();
        ctx.wait_version(APP, "v1", ctx.settings.revert_window)
            .await?;
        let reverted_in = secs(admitted);
        let records = ctx.records_of(APP, "Reverted").await?;
        anyhow::ensure!(!records.is_empty(), "no Reverted record of {APP}");
        let revision = revision_of(ctx, "v2").await?;
        let stored = wait_for(
            "the controller to mark the request Applied",
            Duration::from_secs(60),
            || async {
                let status = self.changes.get(name).await?.status.unwrap_or_default();
                Ok(status
                    .applied
                    .filter(|_| status.phase == Some(ChangePhase::Applied))
                    .map(|a| a.revision))
            },
        )
        .await?;
        anyhow::ensure!(
            stored == revision,
            "the request was spent on revision {stored}, but v2 is revision {revision}"
        );
        let again = wait_refused(&self.as_agent, &self.v2, names::APPROVAL_REQUIRED).await?;
        anyhow::ensure!(
            again.message.contains("spent"),
            "re-applying v2 after its revert does not say the approval is spent: {}",
            again.message
        );
        Ok(format!(
            "v2 reverted {reverted_in:.1}s after its admission (record {}); Applied as revision {stored}; v2 refused again as spent",
            records[0]
        ))
    }
}
