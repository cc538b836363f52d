//! Custody end to end on a real cluster (see the crate docs for the environment). Without
//! KUBECONFIG it prints one SKIPPED line and passes, so it always runs in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custody_e2e::{
    Mode, Settings, deployment, helm, provenance, repo_root, run, stateful_set, wait_for,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube::{Api, Client};
use serde_json::{Value, json};

const NAMESPACE: &str = "custody-system";

struct Outcome {
    name: &'static str,
    ok: bool,
    seconds: f64,
    detail: String,
}

struct Local {
    children: Vec<Child>,
}

impl Drop for Local {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn records_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "custody.dev".into(),
        version: "v1alpha1".into(),
        api_version: "custody.dev/v1alpha1".into(),
        kind: "RollbackRecord".into(),
        plural: "rollbackrecords".into(),
    };
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn policies_api(client: &Client) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "custody.dev".into(),
        version: "v1alpha1".into(),
        api_version: "custody.dev/v1alpha1".into(),
        kind: "CustodyPolicy".into(),
        plural: "custodypolicies".into(),
    };
    Api::all_with(client.clone(), &ar)
}

async fn install(settings: &Settings, client: &Client) -> anyhow::Result<Option<Local>> {
    let chart = repo_root().join("charts/custody");
    match settings.mode {
        Mode::Helm => {
            let (repo, tag) = settings
                .custody_image
                .rsplit_once(':')
                .unwrap_or((&settings.custody_image, "latest"));
            run(
                &helm(),
                &[
                    "upgrade",
                    "--install",
                    "custody",
                    chart.to_str().unwrap(),
                    "-n",
                    NAMESPACE,
                    "--create-namespace",
                    "--set",
                    &format!("image.repository={repo}"),
                    "--set",
                    &format!("image.tag={tag}"),
                    "--set",
                    "defaultPolicy.rollback.notReadySeconds=15",
                    "--set",
                    "defaultPolicy.rollback.healthyAfterSeconds=5",
                    "--wait",
                    "--timeout",
                    "5m",
                ],
            )?;
            // The controller bootstraps the certificate and the caBundle; wait for both.
            let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            wait_for("the webhook's caBundle", Duration::from_secs(120), || {
                let vwcs = vwcs.clone();
                async move {
                    let v = vwcs.get("custody-workloads").await?;
                    Ok(v.webhooks
                        .unwrap_or_default()
                        .iter()
                        .all(|w| w.client_config.ca_bundle.is_some())
                        .then_some(()))
                }
            })
            .await?;
            Ok(None)
        }
        Mode::Local => {
            run(
                "kubectl",
                &[
                    "apply",
                    "--server-side",
                    "-f",
                    repo_root().join("crds/generated").to_str().unwrap(),
                ],
            )?;
            let dir = std::env::temp_dir().join(format!("custody-e2e-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "custody e2e CA");
            let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate()?)?;
            let key = rcgen::KeyPair::generate()?;
            let cert = rcgen::CertificateParams::new(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])?
            .signed_by(&key, &ca)?;
            std::fs::write(dir.join("tls.crt"), cert.pem())?;
            std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let bin = |name: &str| repo_root().join("target/debug").join(name);
            let webhook = Command::new(bin("custody-webhook"))
                .args([
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--admin-listen",
                    "127.0.0.1:0",
                ])
                .arg("--tls-cert")
                .arg(dir.join("tls.crt"))
                .arg("--tls-key")
                .arg(dir.join("tls.key"))
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot start target/debug/custody-webhook (cargo build first): {e}"
                    )
                })?;
            let controller = Command::new(bin("custody-controller"))
                .args(["--no-leader-election", "--admin-listen", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!("cannot start target/debug/custody-controller: {e}")
                })?;
            let bundle = k8s_openapi::ByteString(ca.pem().into_bytes());
            let exclude = json!(["kube-system", "kube-public", "kube-node-lease", NAMESPACE]);
            let vwc = |name: &str, path: &str, rules: Value, selector: bool| {
                let mut hook = json!({
                    "name": format!("{name}.custody.dev"), "admissionReviewVersions": ["v1"], "sideEffects": "None",
                    "failurePolicy": "Fail", "timeoutSeconds": 5,
                    "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": bundle},
                    "rules": rules
                });
                if selector {
                    hook["namespaceSelector"] = json!({"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": exclude}]});
                }
                serde_json::from_value::<ValidatingWebhookConfiguration>(json!({
                    "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                    "metadata": {"name": format!("custody-{name}")}, "webhooks": [hook]
                }))
            };
            let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            let workloads = vwc(
                "workloads",
                "/validate",
                json!([
                    {"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"], "operations": ["CREATE", "UPDATE"]},
                    {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"], "operations": ["CREATE", "UPDATE"]},
                    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "replicationcontrollers"], "operations": ["CREATE", "UPDATE"]}
                ]),
                true,
            )?;
            let policies = vwc(
                "policies",
                "/validate-policy",
                json!([
                    {"apiGroups": ["custody.dev"], "apiVersions": ["v1alpha1"], "resources": ["custodypolicies"], "operations": ["CREATE", "UPDATE"]}
                ]),
                false,
            )?;
            for v in [workloads, policies] {
                vwcs.patch(
                    v.metadata.name.as_deref().unwrap(),
                    &PatchParams::apply("custody-e2e").force(),
                    &Patch::Apply(&v),
                )
                .await?;
            }
            let policy = json!({"apiVersion": "custody.dev/v1alpha1", "kind": "CustodyPolicy", "metadata": {"name": "default"},
                "spec": {"rollback": {"notReadySeconds": 15, "healthyAfterSeconds": 5}}});
            let policy: DynamicObject = serde_json::from_value(policy)?;
            policies_api(client)
                .patch(
                    "default",
                    &PatchParams::apply("custody-e2e").force(),
                    &Patch::Apply(&policy),
                )
                .await?;
            Ok(Some(Local {
                children: vec![webhook, controller],
            }))
        }
    }
}

fn api_error(e: &kube::Error) -> Option<(u16, String)> {
    match e {
        kube::Error::Api(s) => Some((s.code, s.message.clone())),
        _ => None,
    }
}

async fn create(api: &Api<Deployment>, object: &Value) -> Result<Deployment, kube::Error> {
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object.clone()).unwrap(),
    )
    .await
}

async fn apply(api: &Api<Deployment>, object: &Value) -> Result<Deployment, kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("e2e-gitops").force(),
        &Patch::Apply(object),
    )
    .await
}

fn image_version(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("e2e.custody.dev/version").cloned())
        .unwrap_or_default()
}

async fn wait_healthy_mark(client: &Client, ns: &str, app: &str) -> anyhow::Result<()> {
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{app} v1 marked healthy"),
        Duration::from_secs(240),
        || {
            let rss = rss.clone();
            let app = app.to_string();
            async move {
                let list = rss
                    .list(&ListParams::default().labels(&format!("app={app}")))
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
    .await
}

#[tokio::test]
async fn custody_end_to_end() {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Written to stderr directly, past the test harness's capture, so the skip is seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: custody e2e needs a cluster: set KUBECONFIG (options in e2e/src/lib.rs)"
        );
        return;
    }
    let settings = Settings::from_env().expect("e2e settings");
    let client = Client::try_default()
        .await
        .expect("a client for KUBECONFIG");
    let started = Instant::now();
    let _local = install(&settings, &client).await.expect("install Custody");
    println!(
        "installed Custody ({:?} mode) in {:.1}s",
        settings.mode,
        started.elapsed().as_secs_f64()
    );

    let ns = format!("custody-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("test namespace");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut record = |name, t: Instant, result: anyhow::Result<String>| {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        outcomes.push(Outcome {
            name,
            ok,
            seconds: t.elapsed().as_secs_f64(),
            detail,
        });
    };

    // 1. Unannotated: denied, listing every missing key.
    let t = Instant::now();
    let r = async {
        // The webhook may still be syncing: wait for a real answer.
        let object = deployment(&settings, "unannotated", json!({}), "v1", false);
        let message = wait_for("a denial", Duration::from_secs(60), || {
            let (api, object) = (deployments.clone(), object.clone());
            async move {
                match create(&api, &object).await {
                    Ok(_) => anyhow::bail!("an unannotated Deployment was admitted"),
                    Err(e) => Ok(api_error(&e)
                        .filter(|(c, m)| *c == 403 && m.contains("Custody denied"))
                        .map(|(_, m)| m)),
                }
            }
        })
        .await?;
        for key in ["actor", "source-repo", "source-commit", "owner", "oncall"] {
            anyhow::ensure!(
                message.contains(&format!("custody.dev/{key} is missing")),
                "the denial does not name {key}: {message}"
            );
        }
        Ok("denied, every missing key named".to_string())
    }
    .await;
    record("1 unannotated Deployment denied", t, r);

    // 2. Annotated agent Deployment admitted; its ReplicaSets and Pods too.
    let t = Instant::now();
    let v1 = deployment(
        &settings,
        "agent-app",
        provenance("agent", "1111111", "run-1"),
        "v1",
        false,
    );
    let r = async {
        create(&deployments, &v1).await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        wait_for("agent-app pods", Duration::from_secs(120), || {
            let pods = pods.clone();
            async move {
                Ok((pods
                    .list(&ListParams::default().labels("app=agent-app"))
                    .await?
                    .items
                    .len()
                    >= 2)
                    .then_some(()))
            }
        })
        .await?;
        Ok("admitted; the controller-created ReplicaSet and Pods were not blocked".to_string())
    }
    .await;
    record(
        "2 annotated Deployment admitted with its ReplicaSets and Pods",
        t,
        r,
    );

    // 3. A broken agent v2 is reverted to v1, with a record and an Event.
    let t = Instant::now();
    let v2 = deployment(
        &settings,
        "agent-app",
        provenance("agent", "2222222", "run-2"),
        "v2",
        true,
    );
    let r = async {
        wait_healthy_mark(&client, &ns, "agent-app").await?;
        let applied = Instant::now();
        apply(&deployments, &v2).await?;
        wait_for("the revert to v1", settings.revert_window, || {
            let api = deployments.clone();
            async move { Ok((image_version(&api.get("agent-app").await?) == "v1").then_some(())) }
        })
        .await?;
        let revert_seconds = applied.elapsed().as_secs_f64();
        let records = records_api(&client, &ns)
            .list(&ListParams::default())
            .await?;
        let reverted = records
            .items
            .iter()
            .find(|r| {
                r.data["spec"]["action"] == "Reverted"
                    && r.data["spec"]["workload"]["name"] == "agent-app"
            })
            .ok_or_else(|| anyhow::anyhow!("no RollbackRecord"))?;
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let has_event = events
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Reverted"));
        anyhow::ensure!(has_event, "no Reverted Event");
        Ok(format!(
            "reverted {revert_seconds:.1}s after v2 was applied (detection window 15s); record {}",
            reverted.metadata.name.clone().unwrap_or_default()
        ))
    }
    .await;
    record("3 broken agent v2 reverted", t, r);

    // 4. Re-applying v2 (a GitOps re-sync) is denied; a human override is admitted.
    let t = Instant::now();
    let r = async {
        match apply(&deployments, &v2).await {
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
        apply(&deployments, &human).await?;
        Ok("re-sync denied naming the record; human override admitted".to_string())
    }
    .await;
    record(
        "4 quarantine holds against re-sync, yields to a human override",
        t,
        r,
    );

    // 5. A human-authored regression is reported, not reverted.
    let t = Instant::now();
    let r = async {
        let h1 = deployment(
            &settings,
            "human-app",
            provenance("human", "3333333", "run-3"),
            "v1",
            false,
        );
        create(&deployments, &h1).await?;
        wait_healthy_mark(&client, &ns, "human-app").await?;
        let h2 = deployment(
            &settings,
            "human-app",
            provenance("human", "4444444", "run-4"),
            "v2",
            true,
        );
        apply(&deployments, &h2).await?;
        let records = records_api(&client, &ns);
        wait_for("an alert record", settings.revert_window, || {
            let records = records.clone();
            async move {
                Ok(records
                    .list(&ListParams::default())
                    .await?
                    .items
                    .iter()
                    .any(|r| {
                        r.data["spec"]["workload"]["name"] == "human-app"
                            && r.data["spec"]["action"] == "Alerted"
                    })
                    .then_some(()))
            }
        })
        .await?;
        anyhow::ensure!(
            image_version(&deployments.get("human-app").await?) == "v2",
            "the human's spec was changed"
        );
        Ok("alerted; spec untouched".to_string())
    }
    .await;
    record("5 human regression alerted, not reverted", t, r);

    // 9. A broken agent revision of a StatefulSet is reverted through its ControllerRevisions.
    let t = Instant::now();
    let r = async {
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let s1 = stateful_set(
            &settings,
            "agent-db",
            provenance("agent", "5555555", "run-5"),
            "v1",
            false,
        );
        sets.create(&PostParams::default(), &serde_json::from_value(s1)?)
            .await?;
        let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
        wait_for(
            "agent-db v1 marked healthy",
            Duration::from_secs(240),
            || {
                let revisions = revisions.clone();
                async move {
                    Ok(revisions
                        .list(&ListParams::default().labels("app=agent-db"))
                        .await?
                        .items
                        .iter()
                        .any(|r| {
                            r.metadata
                                .annotations
                                .as_ref()
                                .is_some_and(|a| a.contains_key("custody.dev/healthy-since"))
                        })
                        .then_some(()))
                }
            },
        )
        .await?;
        let s2 = stateful_set(
            &settings,
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
            settings.revert_window,
            || {
                let sets = sets.clone();
                async move {
                    let set = sets.get("agent-db").await?;
                    let version = set
                        .spec
                        .and_then(|s| s.template.metadata)
                        .and_then(|m| m.annotations)
                        .and_then(|a| a.get("e2e.custody.dev/version").cloned())
                        .unwrap_or_default();
                    Ok((version == "v1").then_some(()))
                }
            },
        )
        .await?;
        let records = records_api(&client, &ns)
            .list(&ListParams::default())
            .await?;
        anyhow::ensure!(
            records
                .items
                .iter()
                .any(|r| r.data["spec"]["workload"]["kind"] == "StatefulSet"
                    && r.data["spec"]["action"] == "Reverted"),
            "no RollbackRecord for the StatefulSet"
        );
        Ok(format!(
            "reverted {:.1}s after v2 was applied",
            applied.elapsed().as_secs_f64()
        ))
    }
    .await;
    record("9 broken agent StatefulSet revision reverted", t, r);

    // 6. kube-system is never judged.
    let t = Instant::now();
    let r = async {
        let system: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
        let object: Deployment = serde_json::from_value(deployment(
            &settings,
            "custody-e2e-probe",
            json!({}),
            "v1",
            false,
        ))?;
        system
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &object,
            )
            .await?;
        Ok("an unannotated Deployment in kube-system is admitted (server dry run)".to_string())
    }
    .await;
    record("6 kube-system untouched", t, r);

    // 7. A policy change applies without a restart.
    let t = Instant::now();
    let r = async {
        let policies = policies_api(&client);
        let warn = json!({"metadata": {"annotations": {"custody.dev/acknowledge-weakening": format!("e2e {}", std::process::id())}}, "spec": {"mode": "Warn"}});
        policies.patch("default", &PatchParams::default(), &Patch::Merge(&warn)).await?;
        let object = deployment(&settings, "warned", json!({}), "v1", false);
        let dry = PostParams { dry_run: true, ..Default::default() };
        wait_for("Warn mode to apply", Duration::from_secs(30), || {
            let (api, object, dry) = (deployments.clone(), object.clone(), dry.clone());
            async move { Ok(api.create(&dry, &serde_json::from_value(object)?).await.ok().map(|_| ())) }
        })
        .await?;
        policies.patch("default", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"mode": "Enforce"}}))).await?;
        Ok("Warn took effect live, then Enforce was restored".to_string())
    }
    .await;
    record("7 policy change live", t, r);

    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;

    // 8. Uninstalling leaves no webhook configuration behind.
    let t = Instant::now();
    let r = async {
        match settings.mode {
            Mode::Helm => {
                run(
                    &helm(),
                    &["uninstall", "custody", "-n", NAMESPACE, "--wait"],
                )?;
            }
            Mode::Local => {
                let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                for name in ["custody-workloads", "custody-policies"] {
                    vwcs.delete(name, &DeleteParams::default()).await?;
                }
            }
        }
        let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let left: Vec<String> = vwcs
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|v| v.metadata.name)
            .filter(|n| n.starts_with("custody"))
            .collect();
        anyhow::ensure!(left.is_empty(), "left behind: {left:?}");
        Ok("no Custody webhook configuration remains".to_string())
    }
    .await;
    record("8 uninstall leaves no webhook configuration", t, r);

    println!("\nCustody e2e ({:?} mode):", settings.mode);
    for o in &outcomes {
        println!(
            "  {} {:<66} {:>6.1}s  {}",
            if o.ok { "PASS" } else { "FAIL" },
            o.name,
            o.seconds,
            o.detail
        );
    }
    let failed: Vec<&str> = outcomes.iter().filter(|o| !o.ok).map(|o| o.name).collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}
