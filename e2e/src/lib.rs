//! Support for Custody's end-to-end tests against a real cluster (`tests/e2e.rs`): how to
//! install Custody (Helm chart, or local processes beside a local control plane such as the
//! lab), the workloads the scenarios apply, and waiting with deadlines.
//!
//! Environment:
//! - `CUSTODY_E2E_KUBECONFIG`: the cluster to test. Without it the suite prints one SKIPPED line
//!   and passes. (Not `KUBECONFIG`: an ambient kubeconfig must never make `cargo test` install
//!   webhooks into whatever cluster it points at.)
//! - `CUSTODY_E2E_MODE`: `helm` (default) installs `charts/custody` with `helm`; `local` runs
//!   `target/debug/custody-webhook` and `custody-controller` as processes under the chart's
//!   service accounts and registers the chart's webhooks by `url: https://127.0.0.1:PORT` with a
//!   generated CA (the apiserver must run on this host, as the lab's does).
//! - `CUSTODY_E2E_LAB`: the lab's folder (`$LAB`), for the scenarios that stop a node; without
//!   it they are skipped, loudly.
//! - `CUSTODY_IMAGE`: the image for `helm` mode (default `ghcr.io/custody-dev/custody:0.1.0`).
//! - `CUSTODY_E2E_IMAGE`: the workload image (default `busybox:1.36`).
//! - `CUSTODY_E2E_BROKEN`: how v2 breaks: `readiness` (default: a readiness probe that always
//!   fails, for kind or k3d) or `annotation` (for simulated nodes such as kwok: the pod-template
//!   annotations in `CUSTODY_E2E_BROKEN_ANNOTATIONS`, a JSON object, make the simulator report
//!   the pod not ready).
//! - `CUSTODY_E2E_REVERT_WINDOW`: seconds allowed from v2 to its revert (default 120).
//! - `CUSTODY_E2E_PROMETHEUS`: the `prometheus` binary the metric-analysis scenarios start
//!   (default: from PATH, else `/usr/bin/prometheus`); without one they are skipped, loudly.
//! - `CUSTODY_E2E_ALERTMANAGER`: the `prometheus-alertmanager` binary the on-call scenario
//!   starts (default: from PATH, else `/usr/bin/prometheus-alertmanager`); without one it is
//!   skipped, loudly.
//! - `CUSTODY_E2E_ONCALL_SAMPLES`: a file the on-call scenario writes one body of each format to.

pub mod certs;
pub mod corpus;
pub mod local;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How Custody is installed for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The Helm chart, as a user installs it.
    Helm,
    /// Local processes beside a local control plane.
    Local,
}

/// The run's settings, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How Custody is installed.
    pub mode: Mode,
    /// The Custody image (helm mode).
    pub custody_image: String,
    /// The workload image.
    pub workload_image: String,
    /// Pod-template annotations that make v2 not ready on a simulated cluster; `None` means a
    /// failing readiness probe.
    pub broken_annotations: Option<Value>,
    /// Seconds allowed from v2 to its revert.
    pub revert_window: Duration,
    /// The lab's folder, when the cluster is the lab.
    pub lab: Option<std::path::PathBuf>,
}

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mode = match var("CUSTODY_E2E_MODE").as_deref() {
            None | Some("helm") => Mode::Helm,
            Some("local") => Mode::Local,
            Some(other) => anyhow::bail!("CUSTODY_E2E_MODE must be helm or local, not {other:?}"),
        };
        let broken_annotations = match var("CUSTODY_E2E_BROKEN").as_deref() {
            None | Some("readiness") => None,
            Some("annotation") => Some(serde_json::from_str(
                &var("CUSTODY_E2E_BROKEN_ANNOTATIONS").ok_or_else(|| {
                    anyhow::anyhow!(
                        "CUSTODY_E2E_BROKEN=annotation needs CUSTODY_E2E_BROKEN_ANNOTATIONS"
                    )
                })?,
            )?),
            Some(other) => {
                anyhow::bail!("CUSTODY_E2E_BROKEN must be readiness or annotation, not {other:?}")
            }
        };
        Ok(Self {
            mode,
            custody_image: var("CUSTODY_IMAGE")
                .unwrap_or_else(|| "ghcr.io/custody-dev/custody:0.1.0".into()),
            workload_image: var("CUSTODY_E2E_IMAGE").unwrap_or_else(|| "busybox:1.36".into()),
            broken_annotations,
            revert_window: Duration::from_secs(
                var("CUSTODY_E2E_REVERT_WINDOW")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(120),
            ),
            lab: var("CUSTODY_E2E_LAB").map(Into::into),
        })
    }
}

/// Provenance and ownership annotations for a revision.
pub fn provenance(actor: &str, commit: &str, run: &str) -> Value {
    let mut a = json!({
        "custody.dev/actor": actor,
        "custody.dev/source-repo": "https://git.example.com/e2e/app",
        "custody.dev/source-commit": commit,
        "custody.dev/pipeline-run": run,
        "custody.dev/owner": "team-e2e",
        "custody.dev/oncall": "e2e-oncall@example.com"
    });
    if actor == "agent" {
        a["custody.dev/agent"] = json!("claude-code/1.0");
        a["custody.dev/model"] = json!("claude-sonnet-4");
    }
    a
}

/// A Deployment of `replicas` pods running `settings.workload_image`; `broken` makes its pods
/// never Ready.
pub fn deployment(
    settings: &Settings,
    name: &str,
    annotations: Value,
    version: &str,
    broken: bool,
) -> Value {
    let mut container = json!({
        "name": "app",
        "image": settings.workload_image,
        "command": ["sh", "-c", format!("echo {version}; sleep 3600")],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
    });
    let mut pod_annotations = json!({"e2e.custody.dev/version": version});
    if broken {
        match &settings.broken_annotations {
            None => {
                container["readinessProbe"] = json!({"exec": {"command": ["false"]}, "periodSeconds": 2, "failureThreshold": 1});
            }
            Some(extra) => {
                if let (Some(p), Some(e)) = (pod_annotations.as_object_mut(), extra.as_object()) {
                    p.extend(e.clone());
                }
            }
        }
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": annotations, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": pod_annotations},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 1}
            }
        }
    })
}

/// The same workload as a StatefulSet: pods started in parallel, rolled one at a time.
pub fn stateful_set(
    settings: &Settings,
    name: &str,
    annotations: Value,
    version: &str,
    broken: bool,
) -> Value {
    let mut object = deployment(settings, name, annotations, version, broken);
    object["kind"] = json!("StatefulSet");
    if let Some(spec) = object["spec"].as_object_mut() {
        spec.remove("strategy");
        spec.insert("serviceName".into(), json!(name));
        spec.insert("podManagementPolicy".into(), json!("Parallel"));
        spec.insert("updateStrategy".into(), json!({"type": "RollingUpdate"}));
    }
    object
}

/// Polls `check` until it yields a value or `deadline` passes.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let until = Instant::now() + deadline;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) if Instant::now() > until => {
                return Err(e.context(format!("waiting for {what}")));
            }
            Err(_) => {}
        }
        if Instant::now() > until {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn config(kubeconfig: &std::ffi::OsStr) -> anyhow::Result<kube::Config> {
    let config = kube::config::Kubeconfig::read_from(kubeconfig)?;
    Ok(
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await?,
    )
}

/// A client for the cluster under test.
pub async fn client(kubeconfig: &std::ffi::OsStr) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(config(kubeconfig).await?)?)
}

/// A client for the cluster under test that acts as `user` in `groups` (impersonation: the
/// kubeconfig's own identity must be allowed to impersonate, as an admin is).
pub async fn client_as(
    kubeconfig: &std::ffi::OsStr,
    user: &str,
    groups: &[&str],
) -> anyhow::Result<kube::Client> {
    let mut config = config(kubeconfig).await?;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Ok(kube::Client::try_from(config)?)
}

/// A command whose cluster, if it talks to one, is the cluster under test and only that:
/// `KUBECONFIG` is set from `CUSTODY_E2E_KUBECONFIG`.
pub fn command(program: &str) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    if let Some(k) = std::env::var_os("CUSTODY_E2E_KUBECONFIG") {
        c.env("KUBECONFIG", k);
    }
    c
}

/// Runs a command, failing with its output when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    run_with(program, args, None)
}

/// Runs a command with `input` on its standard input, failing with its output when it fails.
pub fn run_with_input(program: &str, args: &[&str], input: &str) -> anyhow::Result<String> {
    run_with(program, args, Some(input))
}

fn run_with(program: &str, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {program}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A plain-HTTP GET on loopback (the admin ports): status and body.
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<hyper::body::Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(url.parse()?)).await??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `kubectl`: `KUBECTL`, else from `.tools/bin` when the CI scripts installed it there, else
/// from PATH.
pub fn kubectl() -> String {
    if let Some(k) = std::env::var("KUBECTL").ok().filter(|k| !k.is_empty()) {
        return k;
    }
    let local = repo_root().join(".tools/bin/kubectl");
    if local.exists() {
        local.display().to_string()
    } else {
        "kubectl".into()
    }
}

/// The repository root.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `helm`, from `.tools/bin` when the CI scripts installed it there, else from PATH.
pub fn helm() -> String {
    let local = repo_root().join(".tools/bin/helm");
    if local.exists() {
        local.display().to_string()
    } else {
        "helm".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_revision_by_probe_or_annotation() {
        let mut s = Settings {
            mode: Mode::Helm,
            custody_image: "i".into(),
            workload_image: "busybox:1.36".into(),
            broken_annotations: None,
            revert_window: Duration::from_secs(60),
            lab: None,
        };
        let d = deployment(&s, "app", provenance("agent", "abcdef1", "r1"), "v2", true);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"][0],
            "false"
        );
        s.broken_annotations = Some(json!({"kwok.x-k8s.io/ready": "false"}));
        let d = deployment(&s, "app", provenance("agent", "abcdef1", "r1"), "v2", true);
        assert!(
            d["spec"]["template"]["spec"]["containers"][0]
                .get("readinessProbe")
                .is_none()
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["annotations"]["kwok.x-k8s.io/ready"],
            "false"
        );
        let healthy = deployment(&s, "app", provenance("human", "abcdef1", "r1"), "v1", false);
        assert!(
            healthy["spec"]["template"]["metadata"]["annotations"]
                .get("kwok.x-k8s.io/ready")
                .is_none()
        );
    }
}
