//! Manifests nobody here wrote, as a platform team ships them: every project of the public
//! corpus (`e2e/corpus/`) stamped and signed by `custody stamp --sign`, applied with `kubectl
//! apply` under a policy that requires signatures, verified live with `custody verify` (bare
//! Pods after the scheduler bound them), applied again, restarted with `kubectl rollout
//! restart`, verified again, and checked live with `custody check`. Projects alternate between
//! the P-256 and the Ed25519 key.

use std::time::{Duration, Instant};

use custody_e2e::corpus::{self, Project, is_workload, json_stream, name_of};
use custody_e2e::{command, kubectl, repo_root, run, run_with_input, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};

use crate::support::{Ctx, policies_api, secs};

const POLICY: &str = "e2e-corpus";

fn key(name: &str) -> String {
    repo_root()
        .join("testkit/fixtures/keys")
        .join(name)
        .display()
        .to_string()
}

fn custody_binary() -> String {
    repo_root()
        .join("target/debug/custody")
        .display()
        .to_string()
}

/// Runs `custody` outside any checkout; Ok(stdout) on success, Err(output) otherwise.
fn custody(args: &[&str], input: &str) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(&custody_binary())
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITLAB_CI")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.success(),
        "custody {}: {stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Cleans up however the scenario ends: the namespaces and the policy go.
struct Cleanup {
    namespaces: Vec<String>,
    policy_file: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.policy_file);
        let mut args = vec!["delete", "namespace", "--ignore-not-found", "--wait=false"];
        args.extend(self.namespaces.iter().map(String::as_str));
        if let Err(e) = run(&kubectl(), &args) {
            eprintln!("corpus cleanup: {e}");
        }
        let _ = run(
            &kubectl(),
            &["delete", "custodypolicy", POLICY, "--ignore-not-found"],
        );
    }
}

pub async fn real_manifests(ctx: &Ctx) -> anyhow::Result<String> {
    let projects = corpus::projects()?;
    let prefix = format!("{}-c", ctx.ns);
    let pem = |f: &str| std::fs::read_to_string(key(f));
    let policy = json!({
        "apiVersion": "custody.dev/v1alpha1",
        "kind": "CustodyPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "match": {"namespaces": {"include": [format!("{prefix}-*")]}},
            "signatures": {
                "mode": "Required",
                "keys": [
                    {"keyId": "ci", "publicKey": pem("p256.pub")?,
                     "scope": {"actors": ["automation"]}},
                    {"keyId": "release", "publicKey": pem("ed25519.pub")?,
                     "scope": {"actors": ["automation"]}}
                ]
            }
        }
    });
    let policy_file = std::env::temp_dir().join(format!("{POLICY}-{}.json", std::process::id()));
    std::fs::write(&policy_file, policy.to_string())?;
    let mut cleanup = Cleanup {
        namespaces: Vec::new(),
        policy_file: policy_file.clone(),
    };
    policies_api(&ctx.client)
        .create(
            &PostParams::default(),
            &serde_json::from_value::<DynamicObject>(policy)?,
        )
        .await?;
    let policy_file = policy_file.display().to_string();
    let mut lines = Vec::new();
    let mut total = 0;
    let mut first = true;
    for (i, project) in projects.iter().enumerate() {
        let ns = format!("{prefix}-{}", project.name);
        create_namespace(ctx, &ns).await?;
        cleanup.namespaces.push(ns.clone());
        if first {
            wait_policy(&ns, project).await?;
            first = false;
        }
        let signer = if i % 2 == 0 {
            ("p256.key", "ci")
        } else {
            ("ed25519.key", "release")
        };
        let t = Instant::now();
        let n = one_project(&ns, project, signer, &policy_file).await?;
        total += n;
        lines.push(format!(
            "{} {n} ({}) {:.0}s",
            project.name,
            signer.1,
            secs(t)
        ));
    }
    drop(cleanup);
    Ok(format!(
        "{total} workloads of {} projects admitted, verified live, re-applied, restarted and verified again: {}",
        projects.len(),
        lines.join(", ")
    ))
}

async fn create_namespace(ctx: &Ctx, ns: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}}))?,
        )
        .await?;
    // The ServiceAccount admission plugin needs the namespace's default account.
    wait_for(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || {
            let ns = ns.to_string();
            async move {
                Ok(
                    run(&kubectl(), &["get", "serviceaccount", "default", "-n", &ns])
                        .is_ok()
                        .then_some(()),
                )
            }
        },
    )
    .await
}

/// Waits until the webhook has the corpus policy: an unsigned workload is refused for it.
async fn wait_policy(ns: &str, project: &Project) -> anyhow::Result<()> {
    let Some(workload) = project.workloads.first() else {
        return Ok(());
    };
    let unsigned = workload.to_string();
    wait_for(
        "the corpus policy to apply",
        Duration::from_secs(30),
        || {
            let unsigned = unsigned.clone();
            let ns = ns.to_string();
            async move {
                let out = run_with_input(
                    &kubectl(),
                    &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                    &unsigned,
                );
                Ok(match out {
                    Err(e)
                        if e.to_string().contains("SignatureMissing")
                            || e.to_string().contains("attestation is missing") =>
                    {
                        Some(())
                    }
                    _ => None,
                })
            }
        },
    )
    .await
}

async fn one_project(
    ns: &str,
    project: &Project,
    (key_file, key_id): (&str, &str),
    policy_file: &str,
) -> anyhow::Result<usize> {
    let name = &project.name;
    // What the workloads need to exist (accounts, config): not judged, applied as shipped.
    for object in &project.support {
        if let Err(e) = run_with_input(
            &kubectl(),
            &["apply", "-n", ns, "-f", "-"],
            &object.to_string(),
        ) {
            anyhow::bail!("{name}: {} was refused: {e}", name_of(object));
        }
    }
    let key_path = key(key_file);
    let repo = format!("https://github.com/acme/{name}");
    let stamped = custody(
        &[
            "stamp",
            "--sign",
            &key_path,
            "--key-id",
            key_id,
            "-n",
            ns,
            "--actor",
            "automation",
            "--source-repo",
            &repo,
            "--source-commit",
            "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f",
            "--pipeline-run",
            "https://ci.example.com/runs/corpus",
            "--owner",
            "team-platform",
            "--oncall",
            "@platform-oncall",
            "-",
        ],
        &json_stream(&project.workloads),
    )?;
    let apply = ["apply", "-n", ns, "-f", "-"];
    run_with_input(&kubectl(), &apply, &stamped)
        .map_err(|e| anyhow::anyhow!("{name}: kubectl apply of the signed manifests: {e}"))?;
    wait_pods_scheduled(ns, project).await?;
    verify_live(ns, project, policy_file, "as admitted")?;
    run_with_input(&kubectl(), &apply, &stamped)
        .map_err(|e| anyhow::anyhow!("{name}: re-applying the same signed manifests: {e}"))?;
    for kind in ["deployment", "statefulset"] {
        if project.workloads.iter().any(|w| {
            w["kind"]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case(kind))
        }) {
            run(&kubectl(), &["rollout", "restart", kind, "-n", ns])
                .map_err(|e| anyhow::anyhow!("{name}: kubectl rollout restart {kind}: {e}"))?;
        }
    }
    verify_live(ns, project, policy_file, "after the restart")?;
    let live = live_objects(ns, project)?;
    custody(
        &["check", "-p", policy_file, "-n", ns, "-"],
        &json_stream(&live),
    )
    .map_err(|e| anyhow::anyhow!("{name}: custody check of the live objects: {e}"))?;
    Ok(project.workloads.len())
}

/// The project's workloads as stored now. A Job with `ttlSecondsAfterFinished` may already be
/// gone (ingress-nginx's run with 0): that one alone may be missing.
fn live_objects(ns: &str, project: &Project) -> anyhow::Result<Vec<Value>> {
    let mut live = Vec::new();
    for w in project.workloads.iter().filter(|w| is_workload(w)) {
        let kind = w["kind"].as_str().unwrap_or_default().to_lowercase();
        let name = w["metadata"]["name"].as_str().unwrap_or_default();
        let out = run(
            &kubectl(),
            &[
                "get",
                &kind,
                name,
                "-n",
                ns,
                "-o",
                "json",
                "--ignore-not-found",
            ],
        )?;
        if out.trim().is_empty() {
            anyhow::ensure!(
                kind == "job" && w["spec"]["ttlSecondsAfterFinished"].is_number(),
                "{}: {} is gone",
                project.name,
                name_of(w)
            );
            continue;
        }
        live.push(serde_json::from_str(&out)?);
    }
    Ok(live)
}

fn verify_live(ns: &str, project: &Project, policy_file: &str, when: &str) -> anyhow::Result<()> {
    let live = live_objects(ns, project)?;
    let out = custody(
        &["verify", "-p", policy_file, "-n", ns, "-"],
        &json_stream(&live),
    )
    .map_err(|e| anyhow::anyhow!("{}: custody verify {when}: {e}", project.name))?;
    let verified = out.lines().filter(|l| l.starts_with("verified ")).count();
    anyhow::ensure!(
        verified == live.len(),
        "{}: {verified} of {} verified {when}: {out}",
        project.name,
        live.len()
    );
    Ok(())
}

/// Bare Pods are verified once the scheduler has bound them, as they run.
async fn wait_pods_scheduled(ns: &str, project: &Project) -> anyhow::Result<()> {
    let pods: Vec<String> = project
        .workloads
        .iter()
        .filter(|w| w["kind"] == "Pod")
        .filter_map(|w| w["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    for pod in pods {
        wait_for(
            &format!("Pod {pod} to be scheduled"),
            Duration::from_secs(60),
            || {
                let (ns, pod) = (ns.to_string(), pod.clone());
                async move {
                    let out = run(
                        &kubectl(),
                        &[
                            "get",
                            "pod",
                            &pod,
                            "-n",
                            &ns,
                            "-o",
                            "jsonpath={.spec.nodeName}",
                        ],
                    )?;
                    Ok((!out.trim().is_empty()).then_some(()))
                }
            },
        )
        .await?;
    }
    Ok(())
}
