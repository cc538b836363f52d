//! Registered ownership and change freezes, in a namespace of their own that the chart's default
//! policy leaves out (`defaultPolicy.excludeNamespaces`), under a policy of this scenario's.
//!
//! 24: an unregistered owner is denied; a registered team's workload without `oncall` is
//! admitted. 25: while a freeze is open, an agent's change is denied, Custody's revert of an
//! agent revision goes through, a person's break-glass is admitted and leaves a BreakGlass Event.

use std::time::{Duration, Instant};

use custody_e2e::{deployment, provenance, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Ctx, api_error, apply, create, policies_api, secs, teams_api};

/// The prefix of the namespaces the chart's default policy leaves to these scenarios.
pub const NAMESPACE_PREFIX: &str = "custody-e2e-teams-";
pub const TEAM: &str = "team-e2e-freeze";
const APP: &str = "frozen-app";

/// The scenarios' namespace, policy and team, removed however the scenarios end.
pub struct Frozen {
    pub ctx: Ctx,
    policy: String,
}

impl Frozen {
    pub async fn setup(ctx: &Ctx) -> anyhow::Result<Self> {
        let id = std::process::id();
        let ns = format!("{NAMESPACE_PREFIX}{id}");
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let frozen = Self {
            ctx: Ctx {
                client: ctx.client.clone(),
                settings: ctx.settings.clone(),
                ns: ns.clone(),
                local: None,
            },
            policy: format!("e2e-freeze-{id}"),
        };
        teams_api(ctx)
            .patch(
                TEAM,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
                    "metadata": {"name": TEAM},
                    "spec": {"namespaces": [format!("{NAMESPACE_PREFIX}*")], "oncall": ["@e2e-freeze-pager"]}
                })),
            )
            .await?;
        frozen.set_policy(json!({})).await?;
        Ok(frozen)
    }

    /// Applies the scenarios' policy: registered owners, the e2e rollback timings, and `extra`
    /// (freezes, agents) on top.
    pub async fn set_policy(&self, extra: Value) -> anyhow::Result<()> {
        let mut spec = json!({
            "mode": "Enforce",
            "match": {"namespaces": {"include": [self.ctx.ns]}},
            "ownership": "Registered",
            "rollback": {"notReadySeconds": 15, "healthyAfterSeconds": 5}
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        policies_api(&self.ctx.client)
            .patch(
                &self.policy,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
                    "metadata": {"name": self.policy},
                    "spec": spec
                })),
            )
            .await?;
        Ok(())
    }

    pub async fn teardown(&self, ctx: &Ctx) {
        let _ = policies_api(&ctx.client)
            .delete(&self.policy, &DeleteParams::default())
            .await;
        let _ = teams_api(ctx).delete(TEAM, &DeleteParams::default()).await;
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let _ = namespaces
            .delete(&self.ctx.ns, &DeleteParams::default())
            .await;
    }
}

pub fn owned_by(owner: &str, actor: &str, commit: &str, oncall: bool) -> Value {
    let mut a = provenance(actor, commit, &format!("run-{commit}"));
    a["custody.dev/owner"] = json!(owner);
    if !oncall {
        a.as_object_mut().map(|m| m.remove("custody.dev/oncall"));
    }
    a
}

/// Dry-run applies `object`; the denial's message, if denied.
pub async fn denial(ctx: &Ctx, object: &Value) -> anyhow::Result<Option<String>> {
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::apply("e2e-gitops").force()
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match ctx
        .deployments()
        .patch(name, &dry, &Patch::Apply(object))
        .await
    {
        Ok(_) => Ok(None),
        Err(e) => match api_error(&e) {
            Some((403, message)) => Ok(Some(message)),
            _ => Err(e.into()),
        },
    }
}

pub async fn registered_owner(frozen: &Result<Frozen, anyhow::Error>) -> anyhow::Result<String> {
    let f = frozen
        .as_ref()
        .map_err(|e| anyhow::anyhow!("setup failed: {e:#}"))?;
    let ctx = &f.ctx;
    let started = Instant::now();
    let stranger = deployment(
        &ctx.settings,
        "stranger",
        owned_by("team-nobody", "human", "1212121", true),
        "v1",
        false,
    );
    let message = wait_for(
        "an unregistered owner to be denied",
        Duration::from_secs(10),
        || async { denial(ctx, &stranger).await },
    )
    .await?;
    anyhow::ensure!(
        message.contains("not a registered CustodyTeam") && message.contains(TEAM),
        "the denial does not name the namespace's team: {message}"
    );
    let denied = secs(started);
    let v1 = deployment(
        &ctx.settings,
        APP,
        owned_by(TEAM, "agent", "1111111", false),
        "v1",
        false,
    );
    // The team's watch may trail the policy's by a moment.
    wait_for(
        "a registered team's workload without oncall to be admitted",
        Duration::from_secs(10),
        || async {
            match create(&ctx.deployments(), &v1).await {
                Ok(_) => Ok(Some(())),
                Err(e) if format!("{e:#}").contains("not a registered CustodyTeam") => Ok(None),
                Err(e) => Err(e),
            }
        },
    )
    .await?;
    Ok(format!(
        "unregistered owner denied {denied:.1}s after the policy, naming {TEAM}; {TEAM}'s workload without oncall admitted"
    ))
}

pub async fn freeze(frozen: &Result<Frozen, anyhow::Error>) -> anyhow::Result<String> {
    let f = frozen
        .as_ref()
        .map_err(|e| anyhow::anyhow!("setup failed: {e:#}"))?;
    let ctx = &f.ctx;
    // v1 (scenario 24) becomes the healthy revision; v2 is broken, admitted before the freeze.
    ctx.wait_healthy_mark(APP).await?;
    let v2 = deployment(
        &ctx.settings,
        APP,
        owned_by(TEAM, "agent", "2222222", false),
        "v2",
        true,
    );
    let applied = Instant::now();
    apply(&ctx.deployments(), &v2).await?;

    // The freeze opens a minute ago and closes in an hour.
    let now = k8s_openapi::jiff::Timestamp::now();
    let start = (now - k8s_openapi::jiff::SignedDuration::from_secs(60)).to_string();
    let end = (now + k8s_openapi::jiff::SignedDuration::from_secs(3600)).to_string();
    f.set_policy(json!({"freezes": [{
        "name": "e2e-freeze",
        "message": "an e2e freeze",
        "start": start, "end": end, "timeZone": "Europe/Berlin",
        "actors": ["agent"]
    }]}))
    .await?;
    let v3 = deployment(
        &ctx.settings,
        APP,
        owned_by(TEAM, "agent", "3333333", false),
        "v3",
        false,
    );
    let message = wait_for(
        "an agent's change to be denied by the freeze",
        Duration::from_secs(10),
        || async { denial(ctx, &v3).await },
    )
    .await?;
    anyhow::ensure!(
        message.contains("change freeze") && message.contains("\"e2e-freeze\" until"),
        "the denial does not name the window: {message}"
    );

    // Custody's revert of the agent's broken v2 is not stopped by the freeze.
    ctx.wait_version(APP, "v1", ctx.settings.revert_window)
        .await?;
    let reverted = secs(applied);
    anyhow::ensure!(
        !ctx.records_of(APP, "Reverted").await?.is_empty(),
        "no Reverted record"
    );

    // A person breaks glass: admitted, and the controller says so in an Event.
    let mut glass = owned_by(TEAM, "human", "4444444", true);
    glass["custody.dev/break-glass"] = json!("INC-1: e2e break-glass during the freeze");
    let fix = deployment(&ctx.settings, APP, glass, "v4", false);
    apply(&ctx.deployments(), &fix)
        .await
        .map_err(|e| anyhow::anyhow!("the break-glass revision was refused: {e}"))?;
    ctx.wait_event("BreakGlass", APP).await?;
    Ok(format!(
        "agent change denied naming the window; the broken agent v2 reverted {reverted:.1}s after apply, during the freeze; a person's break-glass admitted with a BreakGlass Event"
    ))
}

/// The chart's default policy (FreeForm) and a Registered one over the same namespace: a
/// workload whose owner is a team registered for the namespace, without `oncall`, is admitted
/// by both, since the team's on-call stands in under every policy; an unregistered owner
/// without `oncall` is still denied for it.
pub async fn team_oncall_under_every_policy(ctx: &Ctx) -> anyhow::Result<String> {
    let id = std::process::id();
    let team = format!("team-e2e-oncall-{id}");
    let policy = format!("e2e-registered-{id}");
    teams_api(ctx)
        .patch(
            &team,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(json!({
                "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
                "metadata": {"name": team},
                "spec": {"namespaces": [ctx.ns], "oncall": ["@e2e-oncall-pager"]}
            })),
        )
        .await?;
    let result = async {
        policies_api(&ctx.client)
            .patch(
                &policy,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(json!({
                    "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
                    "metadata": {"name": policy},
                    "spec": {"mode": "Enforce", "ownership": "Registered",
                             "match": {"namespaces": {"include": [ctx.ns]}}}
                })),
            )
            .await?;
        let started = Instant::now();
        let stranger = deployment(
            &ctx.settings,
            "oncall-stranger",
            owned_by("team-nobody", "human", "3434343", false),
            "v1",
            false,
        );
        // Once the Registered policy applies, the stranger is refused by it too.
        let message = wait_for("the Registered policy to apply", Duration::from_secs(10), || async {
            Ok(denial(ctx, &stranger)
                .await?
                .filter(|m| m.contains("not a registered CustodyTeam")))
        })
        .await?;
        anyhow::ensure!(
            message.contains("custody.dev/oncall is missing"),
            "an unregistered owner without oncall must still be denied for it: {message}"
        );
        let owned = deployment(
            &ctx.settings,
            "oncall-owned",
            owned_by(&team, "human", "3535353", false),
            "v1",
            false,
        );
        wait_for(
            "the registered team's workload without oncall to be admitted",
            Duration::from_secs(10),
            || async { Ok(denial(ctx, &owned).await?.is_none().then_some(())) },
        )
        .await?;
        Ok(format!(
            "{team}'s workload without oncall admitted under the default FreeForm policy and a Registered one {:.1}s after the policy; team-nobody's denied for oncall",
            secs(started)
        ))
    }
    .await;
    let _ = policies_api(&ctx.client)
        .delete(&policy, &DeleteParams::default())
        .await;
    let _ = teams_api(ctx).delete(&team, &DeleteParams::default()).await;
    result
}
