//! Custody as local processes beside a control plane on this host (the lab): the chart's
//! service accounts and RBAC applied for real, the webhook and controllers running as those
//! service accounts (tokens from the TokenRequest API), and the chart's webhook configurations
//! registered by `url: https://127.0.0.1:PORT` only once every process is ready.
//!
//! Whatever ends the run, nothing stays behind to block the cluster: `Drop` (a normal end or a
//! panic) removes the webhook configurations first and then stops the processes, and a janitor
//! process in a session of its own does the same when the test process dies without unwinding
//! (Ctrl-C, SIGKILL).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::certs::ServingCerts;
use crate::{helm, kubectl, repo_root, run, run_with_input};

/// The Helm release name the local install renders the chart with.
pub const RELEASE: &str = "custody-e2e";
/// The namespace of the local install (the controllers' Lease lives here).
pub const NAMESPACE: &str = "custody-e2e-system";
/// The Lease the controllers compete for.
pub const LEASE: &str = "custody-e2e-controller";
/// The webhook configurations the local install always removes (the chart's names for `RELEASE`
/// and the second process's); whatever else the chart renders is removed too
/// (`LocalInstall::configurations`).
pub const WEBHOOK_CONFIGURATIONS: [&str; 3] = [
    "custody-e2e-workloads",
    "custody-e2e-policies",
    SECOND_WORKLOADS,
];

/// The configuration that sends workloads to the second webhook process as well.
const SECOND_WORKLOADS: &str = "custody-e2e-workloads-second";

/// The webhook flags the local processes take from the chart's webhook Deployment, as the chart
/// sets them (the rest, such as where to listen, are the local install's own): Custody's
/// controller's identity, the only writer of a CustodyChange's phase.
const CHART_WEBHOOK_FLAGS: [&str; 1] = ["--controller-user"];

/// How the chart is rendered for the local install.
#[derive(Clone, Debug)]
pub struct ChartValues {
    /// `--set` pairs for every render.
    pub set: Vec<(String, String)>,
}

/// One process Custody runs.
struct Process {
    name: String,
    child: Child,
    admin: u16,
    log: PathBuf,
}

/// Custody installed as local processes. Dropping it uninstalls.
pub struct LocalInstall {
    dir: PathBuf,
    kubeconfig: PathBuf,
    /// The port the webhook serves admission on.
    pub webhook_port: u16,
    webhook: Option<Process>,
    /// A second webhook process (scenarios with two replicas), on its own port.
    second_webhook: Option<(Process, u16)>,
    controllers: Vec<Process>,
    janitor: Option<Child>,
    certs: ServingCerts,
    values: ChartValues,
    /// The webhook configurations to remove: the chart's as rendered, and the second process's.
    configurations: Vec<String>,
    /// The flags of `CHART_WEBHOOK_FLAGS` as the chart's webhook Deployment passes them.
    webhook_flags: Vec<String>,
    registered: bool,
    torn_down: bool,
}

/// A port free on 127.0.0.1 now (bound, read and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn render(
    values: &ChartValues,
    templates: &[&str],
    extra: &[(&str, String)],
) -> anyhow::Result<String> {
    let chart = repo_root().join("charts/custody");
    let mut args: Vec<String> = vec![
        "template".into(),
        RELEASE.into(),
        chart.display().to_string(),
        "-n".into(),
        NAMESPACE.into(),
        "--kube-version".into(),
        "1.28.7".into(),
    ];
    for t in templates {
        args.push("--show-only".into());
        args.push(format!("templates/{t}"));
    }
    for (k, v) in values
        .set
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .chain(extra.iter().cloned())
    {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&helm(), &args)
}

/// A kubeconfig for `server` (from the admin kubeconfig) that authenticates with `token`.
fn token_kubeconfig(admin: &Path, token: &str, out: &Path) -> anyhow::Result<()> {
    let raw = run(
        &kubectl(),
        &[
            "--kubeconfig",
            &admin.display().to_string(),
            "config",
            "view",
            "--raw",
            "--minify",
            "--flatten",
            "-o",
            "json",
        ],
    )?;
    let mut config: Value = serde_json::from_str(&raw)?;
    let user = json!([{"name": "custody", "user": {"token": token.trim()}}]);
    config["users"] = user;
    if let Some(contexts) = config["contexts"].as_array_mut() {
        for c in contexts {
            c["context"]["user"] = json!("custody");
        }
    }
    std::fs::write(out, serde_json::to_vec_pretty(&config)?)?;
    Ok(())
}

async fn wait_ready(process: &mut Process, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    let url = format!("http://127.0.0.1:{}/readyz", process.admin);
    loop {
        if let Some(status) = process.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}) before it was ready; log: {}",
                process.name,
                tail(&process.log)
            );
        }
        if crate::http_get(&url)
            .await
            .is_ok_and(|(code, _)| code == 200)
        {
            return Ok(());
        }
        if Instant::now() > until {
            anyhow::bail!(
                "{} not ready after {deadline:?}; log: {}",
                process.name,
                tail(&process.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last lines of a log, for an error message.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(40);
    format!("{}:\n{}", path.display(), lines[from..].join("\n"))
}

/// The documents of a rendered manifest stream, as JSON.
fn documents(rendered: &str) -> impl Iterator<Item = Value> + '_ {
    rendered
        .split("\n---")
        .filter_map(|doc| custody_crds::yaml::from_manifest_yaml::<Value>(doc).ok())
}

/// The arguments of `args` (a container's) that set one of `CHART_WEBHOOK_FLAGS`, as
/// `--flag=value` or as `--flag value`.
fn chart_flags(args: &Value) -> Vec<String> {
    let args: Vec<&str> = args
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        for flag in CHART_WEBHOOK_FLAGS {
            if arg
                .strip_prefix(flag)
                .is_some_and(|rest| rest.starts_with('='))
            {
                out.push(arg.to_string());
            } else if *arg == flag
                && let Some(value) = args.get(i + 1)
            {
                out.push(format!("{flag}={value}"));
            }
        }
    }
    out
}

impl LocalInstall {
    /// Installs Custody: CRDs, namespace, the chart's service accounts and RBAC, the processes
    /// (waited for), then the chart's webhook configurations and default policy.
    pub async fn start(values: ChartValues, controllers: &[&str]) -> anyhow::Result<Self> {
        let kubeconfig = PathBuf::from(
            std::env::var("CUSTODY_E2E_KUBECONFIG")
                .map_err(|_| anyhow::anyhow!("CUSTODY_E2E_KUBECONFIG is not set"))?,
        );
        let dir = std::env::temp_dir().join(format!("custody-e2e-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let certs = ServingCerts::create(&dir.join("tls"))?;
        let mut install = Self {
            dir,
            kubeconfig,
            webhook_port: free_port()?,
            webhook: None,
            second_webhook: None,
            controllers: Vec::new(),
            janitor: None,
            certs,
            values,
            configurations: WEBHOOK_CONFIGURATIONS.map(String::from).to_vec(),
            webhook_flags: Vec::new(),
            registered: false,
            torn_down: false,
        };
        install.read_chart()?;
        install.spawn_janitor()?;
        // A run killed before it could clean up left these behind: remove them first.
        install.unregister()?;

        let k = kubectl();
        run(
            &k,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                &repo_root().join("crds/generated").display().to_string(),
            ],
        )?;
        run(
            &k,
            &[
                "wait",
                "--for=condition=Established",
                "crd/custodyagents.custody.dev",
                "crd/custodychanges.custody.dev",
                "crd/custodypolicies.custody.dev",
                "crd/custodyteams.custody.dev",
                "crd/rollbackrecords.custody.dev",
                "--timeout=60s",
            ],
        )?;
        let ns = format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{{\"name\":\"{NAMESPACE}\"}}}}"
        );
        run_with_input(&k, &["apply", "-f", "-"], &ns)?;
        let rbac = render(
            &install.values,
            &["serviceaccounts.yaml", "rbac.yaml", "lease.yaml"],
            &[],
        )?;
        run_with_input(
            &k,
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &rbac,
        )?;

        for (sa, file) in [
            ("webhook", "webhook.kubeconfig"),
            ("controller", "controller.kubeconfig"),
        ] {
            let token = run(
                &k,
                &[
                    "create",
                    "token",
                    &format!("{RELEASE}-{sa}"),
                    "-n",
                    NAMESPACE,
                    "--duration",
                    "6h",
                ],
            )?;
            token_kubeconfig(&install.kubeconfig, &token, &install.dir.join(file))?;
        }

        install.start_webhook().await?;
        for name in controllers {
            install.start_controller(name).await?;
        }
        install.register()?;
        Ok(install)
    }

    /// Reads from the chart what the local install mirrors: the names of the webhook
    /// configurations it renders (so that each is removed, whatever the chart adds) and the
    /// webhook flags of `CHART_WEBHOOK_FLAGS`.
    fn read_chart(&mut self) -> anyhow::Result<()> {
        let rendered = render(
            &self.values,
            &["webhook-configurations.yaml"],
            &self.external_values(),
        )?;
        for doc in documents(&rendered) {
            if let (Some("ValidatingWebhookConfiguration"), Some(name)) =
                (doc["kind"].as_str(), doc["metadata"]["name"].as_str())
                && !self.configurations.iter().any(|c| c == name)
            {
                self.configurations.push(name.to_string());
            }
        }
        let webhook = render(&self.values, &["webhook.yaml"], &[])?;
        self.webhook_flags = documents(&webhook)
            .filter(|d| d["kind"] == "Deployment")
            .flat_map(|d| chart_flags(&d["spec"]["template"]["spec"]["containers"][0]["args"]))
            .collect();
        Ok(())
    }

    /// The janitor: waits for this process to end, then removes the webhook configurations and
    /// kills whatever this run started. Its own session keeps it out of a Ctrl-C.
    fn spawn_janitor(&mut self) -> anyhow::Result<()> {
        let pids = self.dir.join("pids");
        std::fs::write(&pids, "")?;
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done\n\
             {k} --kubeconfig '{cfg}' delete validatingwebhookconfiguration {vwcs} --ignore-not-found --wait=false >/dev/null 2>&1\n\
             for p in $(cat '{pids}'); do kill -9 \"$p\" 2>/dev/null; done\n\
",
            me = std::process::id(),
            k = kubectl(),
            cfg = self.kubeconfig.display(),
            vwcs = self.configurations.join(" "),
            pids = pids.display(),
        );
        self.janitor = Some(janitor(&script, "the cleanup janitor")?);
        Ok(())
    }

    fn record_pids(&self) {
        let pids: Vec<String> = self
            .webhook
            .iter()
            .chain(self.second_webhook.iter().map(|(p, _)| p))
            .chain(self.controllers.iter())
            .map(|p| p.child.id().to_string())
            .collect();
        let _ = std::fs::write(self.dir.join("pids"), pids.join("\n"));
    }

    fn bin(name: &str) -> anyhow::Result<PathBuf> {
        let path = repo_root().join("target/debug").join(name);
        anyhow::ensure!(
            path.exists(),
            "{} is missing: run `cargo build -p custody-webhook -p custody-controller` first",
            path.display()
        );
        Ok(path)
    }

    /// Starts the webhook (again) on the same port and waits until it is ready.
    pub async fn start_webhook(&mut self) -> anyhow::Result<()> {
        let listen = format!("127.0.0.1:{}", self.webhook_port);
        let mut command = Command::new(Self::bin("custody-webhook")?);
        command
            .args(["--listen", &listen])
            .arg("--tls-cert")
            .arg(self.certs.cert_path())
            .arg("--tls-key")
            .arg(self.certs.key_path())
            .args(["--drain-ms", "2000"])
            .args(&self.webhook_flags);
        // Recorded before the wait, so the janitor knows it whatever happens during the wait.
        self.webhook = Some(self.spawn("custody-webhook", "webhook.kubeconfig", command)?);
        self.record_pids();
        match self.webhook.as_mut() {
            Some(p) => wait_ready(p, Duration::from_secs(60)).await,
            None => Ok(()),
        }
    }

    /// Starts one of Custody's processes under `kubeconfig`'s identity, logging to a file named
    /// after it, with a free admin port.
    fn spawn(&self, name: &str, kubeconfig: &str, mut command: Command) -> anyhow::Result<Process> {
        let admin = free_port()?;
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = command
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("KUBECONFIG", self.dir.join(kubeconfig))
            .env("RUST_LOG", "info")
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
            admin,
            log,
        })
    }

    /// Stops the webhook with SIGTERM and waits for it to exit: an outage.
    pub fn stop_webhook(&mut self) -> anyhow::Result<()> {
        if let Some(mut p) = self.webhook.take() {
            terminate(&mut p.child)?;
        }
        self.record_pids();
        Ok(())
    }

    /// Starts a controller replica named `name` (its identity in the Lease) and waits until its
    /// admin port answers.
    pub async fn start_controller(&mut self, name: &str) -> anyhow::Result<()> {
        let mut command = Command::new(Self::bin("custody-controller")?);
        command
            .args(["--lease-name", LEASE, "--lease-duration-seconds", "6"])
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", name);
        let process = self.spawn(name, "controller.kubeconfig", command)?;
        self.controllers.push(process);
        self.record_pids();
        // Followers keep warm caches and report ready too.
        match self.controllers.last_mut() {
            Some(p) => wait_ready(p, Duration::from_secs(60)).await,
            None => Ok(()),
        }
    }

    /// Kills a controller replica with SIGKILL: no Lease release, no goodbye.
    pub fn kill_controller(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .controllers
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| anyhow::anyhow!("no controller replica {name}"))?;
        let mut p = self.controllers.remove(i);
        p.child.kill()?;
        p.child.wait()?;
        self.record_pids();
        Ok(())
    }

    /// The replicas running now.
    pub fn controller_names(&self) -> Vec<String> {
        self.controllers.iter().map(|p| p.name.clone()).collect()
    }

    /// A replica's /metrics text.
    pub async fn controller_metrics(&self, name: &str) -> anyhow::Result<String> {
        let p = self
            .controllers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| anyhow::anyhow!("no controller replica {name}"))?;
        Ok(
            crate::http_get(&format!("http://127.0.0.1:{}/metrics", p.admin))
                .await?
                .1,
        )
    }

    /// The webhook's /metrics text.
    pub async fn webhook_metrics(&self) -> anyhow::Result<String> {
        let p = self
            .webhook
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the webhook is not running"))?;
        Ok(
            crate::http_get(&format!("http://127.0.0.1:{}/metrics", p.admin))
                .await?
                .1,
        )
    }

    /// The webhook's log, for an error message.
    pub fn webhook_log(&self) -> String {
        tail(&self.dir.join("custody-webhook.log"))
    }

    /// Logs of every controller replica, for an error message.
    pub fn controller_logs(&self) -> String {
        self.controllers
            .iter()
            .map(|p| tail(&p.log))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The lines of every controller replica's log that mention one of `needles` (the last 60
    /// of each), for an error message about one namespace or workload.
    pub fn controller_log_lines(&self, needles: &[&str]) -> String {
        self.controllers
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| needles.iter().any(|n| l.contains(n)))
                    .collect();
                let from = lines.len().saturating_sub(60);
                format!("{}:\n{}", p.name, lines[from..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The CA the serving certificates are signed by, PEM.
    pub fn ca_pem(&self) -> String {
        self.certs.ca_pem()
    }

    /// The base URL the webhook serves on.
    pub fn webhook_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.webhook_port)
    }

    /// Issues a new serving certificate and swaps it in as Kubernetes swaps a mounted Secret.
    pub fn rotate_certificate(&mut self) -> anyhow::Result<String> {
        self.certs.rotate()
    }

    /// Renders the chart's webhook configurations pointing at the local webhook and applies
    /// them, then the chart's default policy.
    fn register(&mut self) -> anyhow::Result<()> {
        self.register_webhooks(&[])?;
        let extra = self.external_values();
        let policy = render(&self.values, &["default-policy.yaml"], &extra)?;
        run_with_input(
            &kubectl(),
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &policy,
        )?;
        Ok(())
    }

    fn external_values(&self) -> Vec<(&'static str, String)> {
        vec![
            ("webhook.external.url", self.webhook_url()),
            (
                "webhook.external.caBundle",
                base64(self.certs.ca_pem().as_bytes()),
            ),
        ]
    }

    /// Renders and applies the chart's webhook configurations with `set` on top of the install's
    /// values (for example another failure policy), pointing at the local webhook.
    pub fn register_webhooks(&mut self, set: &[(&'static str, String)]) -> anyhow::Result<()> {
        let mut extra = self.external_values();
        extra.extend(set.iter().cloned());
        let vwcs = render(&self.values, &["webhook-configurations.yaml"], &extra)?;
        // Never register by Service here: the apiserver would dial a cluster IP, which leads
        // off this machine on a local control plane.
        anyhow::ensure!(
            !vwcs.contains("service:") && vwcs.matches(&self.webhook_url()).count() >= 2,
            "the chart did not render both webhooks by url {}: {vwcs}",
            self.webhook_url()
        );
        self.registered = true;
        run_with_input(
            &kubectl(),
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &vwcs,
        )?;
        Ok(())
    }

    /// Starts a second webhook process on its own port, as a second replica would run, and
    /// registers it by url for workloads beside the first: the apiserver then asks both, and a
    /// request is admitted only if both admit it. Never by Service (see `register_webhooks`).
    pub async fn start_second_webhook(&mut self) -> anyhow::Result<()> {
        let port = free_port()?;
        let mut command = Command::new(Self::bin("custody-webhook")?);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(self.certs.cert_path())
            .arg("--tls-key")
            .arg(self.certs.key_path())
            .args(["--drain-ms", "2000"])
            .args(&self.webhook_flags);
        let process = self.spawn("custody-webhook-2", "webhook.kubeconfig", command)?;
        self.second_webhook = Some((process, port));
        self.record_pids();
        if let Some((p, _)) = self.second_webhook.as_mut() {
            wait_ready(p, Duration::from_secs(60)).await?;
        }
        let rendered = render(
            &self.values,
            &["webhook-configurations.yaml"],
            &self.external_values(),
        )?;
        let first = self.webhook_url();
        let second = format!("https://127.0.0.1:{port}");
        let mut workloads: serde_json::Value = documents(&rendered)
            .find(|doc| doc["metadata"]["name"] == "custody-e2e-workloads")
            .ok_or_else(|| {
                anyhow::anyhow!("the chart rendered no workloads webhook configuration")
            })?;
        workloads["metadata"]["name"] = serde_json::json!(SECOND_WORKLOADS);
        for hook in workloads["webhooks"].as_array_mut().into_iter().flatten() {
            let name = hook["name"].as_str().unwrap_or_default().to_string();
            hook["name"] = serde_json::json!(format!("second.{name}"));
            let url = hook["clientConfig"]["url"].as_str().unwrap_or_default();
            anyhow::ensure!(
                url.starts_with(&first),
                "webhook {name} is not registered by url on {first}: {url}"
            );
            hook["clientConfig"]["url"] = serde_json::json!(url.replacen(&first, &second, 1));
        }
        run_with_input(
            &kubectl(),
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &workloads.to_string(),
        )?;
        Ok(())
    }

    /// The second webhook's /metrics text.
    pub async fn second_webhook_metrics(&self) -> anyhow::Result<String> {
        let (p, _) = self
            .second_webhook
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no second webhook is running"))?;
        Ok(
            crate::http_get(&format!("http://127.0.0.1:{}/metrics", p.admin))
                .await?
                .1,
        )
    }

    /// Unregisters and stops the second webhook process (idempotent).
    pub fn stop_second_webhook(&mut self) -> anyhow::Result<()> {
        run(
            &kubectl(),
            &[
                "delete",
                "validatingwebhookconfiguration",
                SECOND_WORKLOADS,
                "--ignore-not-found",
                "--wait=true",
            ],
        )?;
        if let Some((mut p, _)) = self.second_webhook.take() {
            terminate(&mut p.child)?;
        }
        self.record_pids();
        Ok(())
    }

    /// Removes the webhook configurations (idempotent).
    pub fn unregister(&mut self) -> anyhow::Result<()> {
        let mut args = vec!["delete", "validatingwebhookconfiguration"];
        args.extend(self.configurations.iter().map(String::as_str));
        args.extend(["--ignore-not-found", "--wait=true"]);
        run(&kubectl(), &args)?;
        self.registered = false;
        Ok(())
    }

    /// Uninstalls: webhook configurations first (so nothing is blocked even if a later step
    /// fails), then the processes, the policy and the namespace.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if let Err(e) = self.unregister() {
            eprintln!("e2e cleanup: removing the webhook configurations failed: {e:#}");
        }
        for mut p in self
            .webhook
            .take()
            .into_iter()
            .chain(self.second_webhook.take().map(|(p, _)| p))
            .chain(self.controllers.drain(..))
        {
            let _ = terminate(&mut p.child);
        }
        self.record_pids();
        let k = kubectl();
        let _ = run(
            &k,
            &[
                "delete",
                "custodypolicy",
                "default",
                "--ignore-not-found",
                "--wait=false",
            ],
        );
        let _ = run(
            &k,
            &[
                "delete",
                "namespace",
                NAMESPACE,
                "--ignore-not-found",
                "--wait=false",
            ],
        );
        if let Ok(rbac) = render(&self.values, &["rbac.yaml"], &[]) {
            let _ = run_with_input(&k, &["delete", "--ignore-not-found", "-f", "-"], &rbac);
        }
    }
}

impl Drop for LocalInstall {
    fn drop(&mut self) {
        self.teardown();
        // The janitor has nothing left to do; it ends when this process does.
        if let Some(j) = self.janitor.as_mut() {
            let _ = j.try_wait();
        }
    }
}

/// Runs `script` (a janitor, `what` in the error) in a bash of a session of its own, with no
/// terminal: a Ctrl-C to the test process does not reach it, so it is there to clean up after it.
pub fn janitor(script: &str, what: &str) -> anyhow::Result<Child> {
    Command::new("setsid")
        .args(["bash", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {what} (setsid bash): {e}"))
}

/// SIGTERM, then SIGKILL after 10 s.
pub fn terminate(child: &mut Child) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Standard base64, for a caBundle.
pub fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::{base64, chart_flags, documents};
    use serde_json::json;

    #[test]
    fn a_rendered_stream_reads_as_its_documents() {
        let rendered = "---\n# Source: custody/templates/webhook.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\n---\n# Source: custody/templates/webhook.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n";
        let kinds: Vec<String> = documents(rendered)
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(kinds, ["Deployment/a", "Service/b"]);
    }

    #[test]
    fn the_chart_flags_are_taken_in_either_form_and_nothing_else() {
        let args = json!([
            "--listen=0.0.0.0:8443",
            "--controller-user=system:serviceaccount:custody-e2e-system:custody-e2e-controller",
            "--log-format=json",
            "--controller-user",
            "system:serviceaccount:other:controller"
        ]);
        assert_eq!(
            chart_flags(&args),
            [
                "--controller-user=system:serviceaccount:custody-e2e-system:custody-e2e-controller",
                "--controller-user=system:serviceaccount:other:controller"
            ]
        );
        assert!(chart_flags(&json!(["--controller-users=x", "--listen=:1"])).is_empty());
        assert!(chart_flags(&json!(null)).is_empty());
    }

    #[test]
    fn base64_pads_like_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
