//! A scenario's own desk: a namespace, a CustodyTeam owning it and a CustodyPolicy selecting
//! it (and Secrets in Custody's namespace), deleted however the scenario ends.

use custody_e2e::local::NAMESPACE as CUSTODY_NAMESPACE;
use custody_e2e::{kubectl, run};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::{Ctx, policies_api, teams_api};

/// A namespace, team and policy named after the scenario and this process.
pub struct Desk {
    /// The namespace's context.
    pub ctx: Ctx,
    /// The team's name.
    pub team: String,
    /// The policy's name.
    pub policy: String,
    /// Secrets created in Custody's namespace.
    secrets: Vec<String>,
}

impl Drop for Desk {
    fn drop(&mut self) {
        // kubectl, not the async client: this runs on a panic too. The policy first, so nothing
        // is judged under it while the rest goes.
        let mut doomed: Vec<Vec<&str>> = vec![
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
    /// Creates the namespace `<prefix><pid>`; the team and policy, named `team-e2e-<name>-<pid>`
    /// and `e2e-<name>-<pid>`, come with [`Desk::team`] and [`Desk::policy`].
    pub async fn open(main: &Ctx, prefix: &str, name: &str) -> anyhow::Result<Self> {
        let id = std::process::id();
        let ns = format!("{prefix}{id}");
        let desk = Self {
            ctx: Ctx {
                client: main.client.clone(),
                settings: main.settings.clone(),
                ns: ns.clone(),
                local: None,
            },
            team: format!("team-e2e-{name}-{id}"),
            policy: format!("e2e-{name}-{id}"),
            secrets: Vec::new(),
        };
        let namespaces: Api<Namespace> = Api::all(main.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        Ok(desk)
    }

    /// Creates (or re-creates) the Secret `name` in Custody's namespace with `string_data`.
    pub async fn secret(&mut self, name: String, string_data: Value) -> anyhow::Result<()> {
        let secrets: Api<Secret> = Api::namespaced(self.ctx.client.clone(), CUSTODY_NAMESPACE);
        let _ = secrets.delete(&name, &DeleteParams::default()).await;
        let object = json!({"metadata": {"name": name}, "stringData": string_data});
        self.secrets.push(name);
        secrets
            .create(&PostParams::default(), &serde_json::from_value(object)?)
            .await?;
        Ok(())
    }

    /// Applies the team with `spec`, its `namespaces` set to the desk's.
    pub async fn team(&self, mut spec: Value) -> anyhow::Result<()> {
        spec["namespaces"] = json!([self.ctx.ns]);
        let team = json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyTeam",
            "metadata": {"name": self.team}, "spec": spec
        });
        teams_api(&self.ctx)
            .patch(&self.team, &ssa(), &Patch::Apply(team))
            .await?;
        Ok(())
    }

    /// Applies the policy with `spec`, its `match` set to the desk's namespace.
    pub async fn policy(&self, mut spec: Value) -> anyhow::Result<()> {
        spec["match"] = json!({"namespaces": {"include": [self.ctx.ns]}});
        let policy = json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy",
            "metadata": {"name": self.policy}, "spec": spec
        });
        policies_api(&self.ctx.client)
            .patch(&self.policy, &ssa(), &Patch::Apply(policy))
            .await?;
        Ok(())
    }
}

fn ssa() -> PatchParams {
    PatchParams::apply("e2e").force()
}
