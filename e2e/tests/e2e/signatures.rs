//! Signed provenance on a real apiserver: manifests stamped and signed by `custody stamp`, as a
//! pipeline would, judged by the webhook under a policy that requires signatures; a forged actor
//! refused; a signed revision reverted by the controller still verifying; a key rotation; and
//! manifests the apiserver and its admission plugins rewrite still verifying.
//! Keys are the OpenSSL-made fixtures of the webhook's tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use custody_e2e::{command, deployment, provenance, repo_root, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::core::DynamicObject;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::support::{Ctx, api_error, apply, policies_api, secs, wait_revision_healthy};

const POLICY: &str = "e2e-signatures";

/// The namespace and policy the signature scenarios share, and when the old release key ends.
pub struct Signed {
    ns: String,
    old_key_until: Instant,
    policy_file: PathBuf,
}

fn key(name: &str) -> PathBuf {
    repo_root().join("testkit/fixtures/keys").join(name)
}

fn custody() -> String {
    repo_root()
        .join("target/debug/custody")
        .display()
        .to_string()
}

/// Runs the `custody` CLI outside any git checkout, as a pipeline step would.
fn custody_cli(args: &[&str], input: &str) -> anyhow::Result<(bool, String)> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(&custody())
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

impl Signed {
    pub async fn setup(ctx: &Ctx) -> anyhow::Result<Self> {
        let ns = format!("{}-signed", ctx.ns);
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
            )
            .await?;
        let pem = |f: &str| std::fs::read_to_string(key(f));
        let old_key_for = Duration::from_secs(150);
        let old_until = k8s_openapi::jiff::Timestamp::now() + old_key_for;
        let policy = json!({
            "apiVersion": "custody.dev/v1alpha1",
            "kind": "CustodyPolicy",
            "metadata": {"name": POLICY},
            "spec": {
                "match": {"namespaces": {"include": [ns]}},
                "signatures": {
                    "mode": "Required",
                    "keys": [
                        {"keyId": "ci", "publicKey": pem("p256.pub")?,
                         "scope": {"actors": ["agent", "automation"], "namespaces": [ns]}},
                        {"keyId": "release-1", "publicKey": pem("ed25519.pub")?,
                         "notAfter": old_until.to_string(), "scope": {"actors": ["human"]}},
                        {"keyId": "release-2", "publicKey": pem("rotated-ed25519.pub")?,
                         "scope": {"actors": ["human"]}}
                    ]
                }
            }
        });
        let policy_file =
            std::env::temp_dir().join(format!("{POLICY}-{}.json", std::process::id()));
        std::fs::write(&policy_file, policy.to_string())?;
        policies_api(&ctx.client)
            .create(
                &PostParams::default(),
                &serde_json::from_value::<DynamicObject>(policy)?,
            )
            .await?;
        let signed = Self {
            ns,
            old_key_until: Instant::now() + old_key_for,
            policy_file,
        };
        // The webhook applies the policy once its watch delivers it: an unsigned Deployment is
        // then refused for want of a signature.
        let unsigned = signed.manifest(ctx, "probe", "agent", "1111111", "v1", false);
        let api = signed.deployments(&ctx.client);
        wait_for(
            "the signature policy to apply",
            Duration::from_secs(30),
            || {
                let (api, unsigned) = (api.clone(), unsigned.clone());
                async move {
                    match api
                        .create(&dry_run(), &serde_json::from_value(unsigned)?)
                        .await
                    {
                        Err(e)
                            if api_error(&e).is_some_and(|(_, m)| {
                                m.contains("SignatureMissing")
                                    || m.contains("attestation is missing")
                            }) =>
                        {
                            Ok(Some(()))
                        }
                        _ => Ok(None),
                    }
                }
            },
        )
        .await?;
        Ok(signed)
    }

    pub async fn teardown(&self, ctx: &Ctx) {
        let _ = policies_api(&ctx.client)
            .delete(POLICY, &DeleteParams::default())
            .await;
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        let _ = namespaces.delete(&self.ns, &DeleteParams::default()).await;
        let _ = std::fs::remove_file(&self.policy_file);
    }

    fn deployments(&self, client: &Client) -> Api<Deployment> {
        Api::namespaced(client.clone(), &self.ns)
    }

    fn manifest(
        &self,
        ctx: &Ctx,
        name: &str,
        actor: &str,
        commit: &str,
        version: &str,
        broken: bool,
    ) -> Value {
        let mut annotations = provenance(actor, commit, &format!("run-{commit}"));
        annotations["custody.dev/source-repo"] = json!("https://github.com/acme/e2e");
        let mut d = deployment(&ctx.settings, name, annotations, version, broken);
        d["metadata"]["namespace"] = json!(self.ns);
        d
    }

    /// `custody stamp --sign`: the manifest's own annotations, signed by `key` under `key_id`.
    fn sign(&self, manifest: &Value, key_file: &str, key_id: &str) -> anyhow::Result<Value> {
        let actor = manifest["metadata"]["annotations"]["custody.dev/actor"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key_path = key(key_file).display().to_string();
        let (ok, out) = custody_cli(
            &[
                "stamp", "--actor", &actor, "--sign", &key_path, "--key-id", key_id, "-n",
                &self.ns, "-",
            ],
            &manifest.to_string(),
        )?;
        anyhow::ensure!(ok, "custody stamp failed: {out}");
        Ok(serde_json::from_str(&out)?)
    }

    /// `custody verify` of the Deployment as stored.
    async fn verify_live(&self, ctx: &Ctx, name: &str) -> anyhow::Result<String> {
        let live = self.deployments(&ctx.client).get(name).await?;
        self.verify_json(name, &serde_json::to_string(&live)?)
    }

    /// `custody verify` of an object as stored, given as JSON.
    fn verify_json(&self, name: &str, live: &str) -> anyhow::Result<String> {
        let policy = self.policy_file.display().to_string();
        let (ok, out) = custody_cli(&["verify", "-p", &policy, "-n", &self.ns, "-"], live)?;
        anyhow::ensure!(ok, "custody verify of the live {name}: {out}");
        Ok(out.trim().to_string())
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..Default::default()
    }
}

fn denial(result: Result<Deployment, kube::Error>, code: &str) -> anyhow::Result<String> {
    match result {
        Ok(_) => anyhow::bail!("admitted; expected a {code} denial"),
        Err(e) => {
            let (status, message) = api_error(&e).ok_or_else(|| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                status == 403 && message.contains(code),
                "expected 403 with {code}, got {status}: {message}"
            );
            Ok(message)
        }
    }
}

fn setup_of(signed: &anyhow::Result<Signed>) -> anyhow::Result<&Signed> {
    signed
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the signature policy could not be set up: {e:#}"))
}

fn codes_of(message: &str) -> String {
    message
        .lines()
        .skip(1)
        .take(1)
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn agent_admitted_forgery_denied(
    ctx: &Ctx,
    signed: &anyhow::Result<Signed>,
) -> anyhow::Result<String> {
    let s = setup_of(signed)?;
    let api = s.deployments(&ctx.client);
    let v1 = s.sign(
        &s.manifest(ctx, "signed-app", "agent", "aaaaaaa", "v1", false),
        "p256.key",
        "ci",
    )?;
    apply(&api, &v1).await?;
    // The agent's next change, claiming to be a person's: the signed actor is agent.
    let mut forged = s.sign(
        &s.manifest(ctx, "signed-app", "agent", "bbbbbbb", "v2", false),
        "p256.key",
        "ci",
    )?;
    forged["metadata"]["annotations"]["custody.dev/actor"] = json!("human");
    let m1 = denial(
        apply(&api, &forged).await,
        "actor is \"human\" on the object but \"agent\"",
    )?;
    // And signing the forged claim with the CI key does not help: it may not vouch for humans.
    let resigned = s.sign(
        &s.manifest(ctx, "signed-app", "human", "bbbbbbb", "v2", false),
        "p256.key",
        "ci",
    )?;
    let m2 = denial(
        apply(&api, &resigned).await,
        "may not attest actor \"human\"",
    )?;
    Ok(format!(
        "signed agent Deployment admitted; forged actor: {}; re-signed forgery: {}",
        codes_of(&m1),
        codes_of(&m2)
    ))
}

pub async fn signed_revert_verifies(
    ctx: &Ctx,
    signed: &anyhow::Result<Signed>,
) -> anyhow::Result<String> {
    let s = setup_of(signed)?;
    let api = s.deployments(&ctx.client);
    let records = crate::support::records_api(&ctx.client, &s.ns);
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &s.ns);
    wait_for(
        "signed-app v1 marked healthy",
        Duration::from_secs(240),
        || {
            let rss = rss.clone();
            async move {
                let list = rss
                    .list(&kube::api::ListParams::default().labels("app=signed-app"))
                    .await?;
                Ok(list
                    .items
                    .iter()
                    .any(|rs| {
                        rs.metadata
                            .annotations
                            .as_ref()
                            .is_some_and(|a| a.contains_key("custody.dev/healthy-since"))
                    })
                    .then_some(()))
            }
        },
    )
    .await?;
    let v2 = s.sign(
        &s.manifest(ctx, "signed-app", "agent", "ccccccc", "v2", true),
        "p256.key",
        "ci",
    )?;
    let applied = Instant::now();
    apply(&api, &v2).await?;
    let record = wait_for("signed-app reverted", ctx.settings.revert_window, || {
        let records = records.clone();
        async move {
            let list = records.list(&kube::api::ListParams::default()).await?;
            Ok(list.items.into_iter().find(|r| {
                r.data["spec"]["workload"]["name"] == "signed-app"
                    && r.data["spec"]["action"] == "Reverted"
            }))
        }
    })
    .await?;
    let attested_by = record.data["spec"]["from"]["attestedBy"].clone();
    anyhow::ensure!(
        attested_by == json!("ci"),
        "the record should name the key that vouched for the reverted revision, found {attested_by}"
    );
    let api2 = api.clone();
    wait_for("the Deployment back at v1", Duration::from_secs(60), || {
        let api = api2.clone();
        async move {
            Ok(
                (crate::support::image_version(&api.get("signed-app").await?) == "v1")
                    .then_some(()),
            )
        }
    })
    .await?;
    let reverted_in = secs(applied);
    let verified = s.verify_live(ctx, "signed-app").await?;
    // Re-applying the restored object as it is (what a GitOps tool would see) is admitted.
    let live = api.get("signed-app").await?;
    api.replace(
        "signed-app",
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &live,
    )
    .await?;
    // `kubectl rollout undo` restores a revision's annotations too: a signed v3, then undo to
    // v1. The webhook judges the undo under the policy, so its admission is the verification.
    let v3 = s.sign(
        &s.manifest(ctx, "signed-app", "agent", "ddddddd", "v3", false),
        "p256.key",
        "ci",
    )?;
    apply(&api, &v3).await?;
    ctx_wait_version(&api, "v3").await?;
    custody_e2e::run(
        &custody_e2e::kubectl(),
        &["rollout", "undo", "deployment/signed-app", "-n", &s.ns],
    )?;
    ctx_wait_version(&api, "v1").await?;
    let undone = s.verify_live(ctx, "signed-app").await?;
    Ok(format!(
        "reverted {reverted_in:.1}s after v2; record names key ci; the live Deployment verifies: {verified}; after kubectl rollout undo from a signed v3: {undone}"
    ))
}

async fn ctx_wait_version(api: &Api<Deployment>, version: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("signed-app at {version}"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                Ok(
                    (crate::support::image_version(&api.get("signed-app").await?) == version)
                        .then_some(()),
                )
            }
        },
    )
    .await
}

pub async fn key_rotation(ctx: &Ctx, signed: &anyhow::Result<Signed>) -> anyhow::Result<String> {
    let s = setup_of(signed)?;
    let api = s.deployments(&ctx.client);
    let human = s.manifest(ctx, "release-app", "human", "ddddddd", "v1", false);
    let old = s.sign(&human, "ed25519.key", "release-1")?;
    let new = s.sign(&human, "rotated-ed25519.key", "release-2")?;
    let dry = |o: &Value| -> anyhow::Result<Deployment> { Ok(serde_json::from_value(o.clone())?) };
    api.create(&dry_run(), &dry(&old)?).await?;
    api.create(&dry_run(), &dry(&new)?).await?;
    let deadline =
        s.old_key_until.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
    let message = wait_for("release-1 refused past its notAfter", deadline, || {
        let (api, old) = (api.clone(), old.clone());
        async move {
            let result = api.create(&dry_run(), &serde_json::from_value(old)?).await;
            Ok(denial(result, "expired at").ok())
        }
    })
    .await?;
    anyhow::ensure!(
        Instant::now() + Duration::from_secs(2) >= s.old_key_until,
        "release-1 was refused before its notAfter: {message}"
    );
    api.create(&dry_run(), &dry(&new)?).await?;
    Ok(format!(
        "both release keys accepted during the overlap; after notAfter the old one is refused ({}) and the new one accepted",
        codes_of(&message)
    ))
}

/// A signed agent StatefulSet revision reverted by the controller verifies after the revert:
/// the revert restores the target ControllerRevision's attestation with its template.
pub async fn signed_stateful_set_revert_verifies(
    ctx: &Ctx,
    signed: &anyhow::Result<Signed>,
) -> anyhow::Result<String> {
    use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
    let s = setup_of(signed)?;
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &s.ns);
    let manifest = |commit: &str, version: &str, broken: bool| {
        let mut m = s.manifest(ctx, "signed-db", "agent", commit, version, broken);
        let mut set = custody_e2e::stateful_set(
            &ctx.settings,
            "signed-db",
            m["metadata"]["annotations"].take(),
            version,
            broken,
        );
        set["metadata"]["namespace"] = json!(s.ns);
        set
    };
    let v1 = s.sign(&manifest("1a2b3c4", "v1", false), "p256.key", "ci")?;
    sets.patch(
        "signed-db",
        &kube::api::PatchParams::apply("e2e-gitops").force(),
        &kube::api::Patch::Apply(&v1),
    )
    .await?;
    wait_revision_healthy::<ControllerRevision>(&ctx.client, &s.ns, "signed-db").await?;
    let v2 = s.sign(&manifest("5d6e7f8", "v2", true), "p256.key", "ci")?;
    let applied = Instant::now();
    sets.patch(
        "signed-db",
        &kube::api::PatchParams::apply("e2e-gitops").force(),
        &kube::api::Patch::Apply(&v2),
    )
    .await?;
    let records = crate::support::records_api(&ctx.client, &s.ns);
    let record = wait_for("signed-db reverted", ctx.settings.revert_window, || {
        let records = records.clone();
        async move {
            let list = records.list(&kube::api::ListParams::default()).await?;
            Ok(list.items.into_iter().find(|r| {
                r.data["spec"]["workload"]["name"] == "signed-db"
                    && r.data["spec"]["action"] == "Reverted"
            }))
        }
    })
    .await?;
    anyhow::ensure!(
        record.data["spec"]["from"]["attestedBy"] == json!("ci"),
        "the record should name key ci: {}",
        record.data["spec"]["from"]
    );
    let version = |set: &StatefulSet| {
        set.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("e2e.custody.dev/version").cloned())
            .unwrap_or_default()
    };
    wait_for("signed-db back at v1", Duration::from_secs(60), || {
        let sets = sets.clone();
        async move { Ok((version(&sets.get("signed-db").await?) == "v1").then_some(())) }
    })
    .await?;
    let reverted_in = secs(applied);
    let live = sets.get("signed-db").await?;
    let verified = s.verify_json("signed-db", &serde_json::to_string(&live)?)?;
    Ok(format!(
        "reverted {reverted_in:.1}s after v2; record names key ci; the live StatefulSet verifies: {verified}"
    ))
}

/// Manifests as people write them, signed as written: resource quantities the apiserver
/// rewrites (`"0.5"` comes back `500m`, `1000000` as `1M`, `1024Mi` as `1Gi`), and a bare Pod,
/// to which admission plugins add a token volume and its mount, two tolerations and a
/// priority. Both are admitted and verify as stored.
pub async fn written_forms_verify(
    ctx: &Ctx,
    signed: &anyhow::Result<Signed>,
) -> anyhow::Result<String> {
    let s = setup_of(signed)?;
    let api = s.deployments(&ctx.client);
    let mut manifest = s.manifest(ctx, "quantities", "agent", "ccccccc", "v1", false);
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
        "limits": {"cpu": "0.5", "memory": "1024Mi"},
        "requests": {"cpu": 0.25, "memory": 1_000_000, "ephemeral-storage": "1.5Gi"}
    });
    let stored = apply(&api, &s.sign(&manifest, "p256.key", "ci")?).await?;
    let stored = serde_json::to_value(&stored)?;
    let resources = &stored["spec"]["template"]["spec"]["containers"][0]["resources"];
    anyhow::ensure!(
        resources["limits"]["cpu"] == "500m"
            && resources["limits"]["memory"] == "1Gi"
            && resources["requests"]["memory"] == "1M",
        "the apiserver did not rewrite the quantities as expected: {resources}"
    );
    let deployment = s.verify_live(ctx, "quantities").await?;

    let mut annotations = provenance("agent", "ddddddd", "run-ddddddd");
    annotations["custody.dev/source-repo"] = json!("https://github.com/acme/e2e");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "signed-pod", "namespace": s.ns, "annotations": annotations},
        "spec": {"containers": [{
            "name": "app",
            "image": ctx.settings.workload_image,
            "command": ["sh", "-c", "sleep 3600"],
            "resources": {"requests": {"cpu": "0.01", "memory": "16Mi"}}
        }]}
    });
    let pod: Pod = serde_json::from_value(s.sign(&pod, "p256.key", "ci")?)?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &s.ns);
    // The namespace's default ServiceAccount, which the plugin needs, appears shortly after the
    // namespace.
    let created = wait_for(
        "the signed Pod to be created",
        Duration::from_secs(20),
        || {
            let (pods, pod) = (pods.clone(), pod.clone());
            async move {
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(p) => Ok(Some(p)),
                    Err(e) if api_error(&e).is_some_and(|(_, m)| m.contains("serviceaccount")) => {
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        },
    )
    .await?;
    let spec = serde_json::to_value(&created.spec)?;
    anyhow::ensure!(
        spec["volumes"][0]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-"))
            && spec["tolerations"].as_array().is_some_and(|t| t.len() == 2),
        "the admission plugins did not add what the scenario expects: {spec}"
    );
    let pod = s.verify_json("signed-pod", &serde_json::to_string(&created)?)?;
    Ok(format!(
        "Deployment with rewritten quantities: {deployment}; bare Pod: {pod}"
    ))
}

/// `kubectl rollout restart` of a signed agent Deployment, as the on-call engineer runs it: a
/// patch of the template's restart annotation and nothing else. It is admitted (no new
/// provenance needed, no new signature), rolls out a new ReplicaSet, and still verifies.
pub async fn restart_keeps_signature(
    ctx: &Ctx,
    signed: &anyhow::Result<Signed>,
) -> anyhow::Result<String> {
    let s = setup_of(signed)?;
    let api = s.deployments(&ctx.client);
    let manifest = s.manifest(ctx, "restarted", "agent", "eeeeeee", "v1", false);
    apply(&api, &s.sign(&manifest, "p256.key", "ci")?).await?;
    let before = api.get("restarted").await?;
    let generation = before.metadata.generation.unwrap_or_default();
    // What `kubectl rollout restart` sends (a strategic merge patch of the annotation).
    let at = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": at
    }}}}});
    // The control: the same patch that also changes the template otherwise is a new revision,
    // refused for its stale provenance (and its signature).
    let mut changed = patch.clone();
    changed["spec"]["template"]["metadata"]["annotations"]["e2e.custody.dev/version"] = json!("v9");
    let refused = denial(
        api.patch(
            "restarted",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(changed),
        )
        .await,
        "the pod template changed but",
    )?;
    let t = Instant::now();
    let restarted = api
        .patch(
            "restarted",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(patch),
        )
        .await
        .map_err(|e| anyhow::anyhow!("the restart was refused: {e}"))?;
    anyhow::ensure!(
        restarted.metadata.generation.unwrap_or_default() > generation,
        "the restart did not change the template"
    );
    let verified = s.verify_live(ctx, "restarted").await?;
    let replica_sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(ctx.client.clone(), &s.ns);
    let count = wait_for(
        "the restart's new ReplicaSet",
        Duration::from_secs(30),
        || {
            let replica_sets = replica_sets.clone();
            async move {
                let owned = replica_sets
                    .list(&kube::api::ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .filter(|rs| {
                        rs.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|o| o.name == "restarted")
                    })
                    .count();
                Ok((owned >= 2).then_some(owned))
            }
        },
    )
    .await?;
    Ok(format!(
        "restart with a change refused ({}); restart admitted in {:.2}s; {count} ReplicaSets; live Deployment: {verified}",
        codes_of(&refused),
        secs(t)
    ))
}
