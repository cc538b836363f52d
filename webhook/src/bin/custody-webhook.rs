//! `custody-webhook`: the validating admission webhook. Wiring only: flags, client, watches,
//! admin port and the HTTPS server; the logic lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use custody_crds::{FailurePolicy, Vocabulary};
use custody_runtime::{LogFormat, Readiness};
use custody_webhook::server::{self, LiveState, Metrics, ServerConfig};
use prometheus_client::registry::Registry;

// See the mimalloc dependency in Cargo.toml for what it was measured to buy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "custody-webhook",
    version,
    about = "Custody's validating admission webhook"
)]
struct Args {
    /// HTTPS address for AdmissionReviews.
    #[arg(long, env = "CUSTODY_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, env = "CUSTODY_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// PEM certificate chain; re-read when it changes.
    #[arg(long, env = "CUSTODY_TLS_CERT", default_value = "/tls/tls.crt")]
    tls_cert: PathBuf,
    /// PEM private key; re-read when it changes.
    #[arg(long, env = "CUSTODY_TLS_KEY", default_value = "/tls/tls.key")]
    tls_key: PathBuf,
    /// How often to check the certificate files for changes, in milliseconds.
    #[arg(long, env = "CUSTODY_CERT_RELOAD_MS", default_value_t = 1000)]
    cert_reload_ms: u64,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// What to answer before the policy caches have synced.
    #[arg(long, env = "CUSTODY_FAILURE_POLICY_BEFORE_SYNC", value_enum, default_value_t = BeforeSync::Fail)]
    failure_policy_before_sync: BeforeSync,
    /// The per-request deadline in milliseconds (keep it well under the webhook's timeoutSeconds).
    #[arg(long, env = "CUSTODY_REQUEST_TIMEOUT_MS", default_value_t = 2000)]
    request_timeout_ms: u64,
    /// The largest AdmissionReview accepted, in bytes. The apiserver accepts request bodies of
    /// up to 3 MiB, and the review of an UPDATE carries the object twice (object and
    /// oldObject), so the default leaves room for both and the envelope.
    #[arg(long, env = "CUSTODY_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long to let in-flight requests finish after SIGTERM, in milliseconds.
    #[arg(long, env = "CUSTODY_DRAIN_MS", default_value_t = 10_000)]
    drain_ms: u64,
    /// Custody's controller's user name (system:serviceaccount:<namespace>:<name>), the only
    /// writer of a CustodyChange's phase and `applied`; repeatable.
    #[arg(
        long = "controller-user",
        value_name = "USER",
        env = "CUSTODY_CONTROLLER_USERS",
        value_delimiter = ','
    )]
    controller_users: Vec<String>,
    /// Log format.
    #[arg(long, env = "CUSTODY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Serve without a cluster: policies from --policy files (or the built-in default), no
    /// quarantine. For local development and benchmarks.
    #[arg(long)]
    standalone: bool,
    /// CustodyPolicy files or directories for --standalone.
    #[arg(long = "policy", value_name = "PATH", requires = "standalone")]
    policies: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BeforeSync {
    #[value(name = "Fail")]
    Fail,
    #[value(name = "Ignore")]
    Ignore,
}

impl From<BeforeSync> for FailurePolicy {
    fn from(b: BeforeSync) -> Self {
        match b {
            BeforeSync::Fail => FailurePolicy::Fail,
            BeforeSync::Ignore => FailurePolicy::Ignore,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    custody_runtime::logging::init(args.log_format);
    // kube's client and our server both use ring; install it so no other provider is picked.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = custody_runtime::shutdown_token();

    let mut registry = Registry::with_prefix("custody");
    let metrics = Metrics::register(&mut registry);
    let readiness = Readiness::new();
    let synced = readiness.register("policy caches");

    let live = if args.standalone {
        standalone_state(&args.policies, metrics.clone())?
    } else {
        let client = kube::Client::try_default()
            .await
            .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;
        let (live, namespace_writer) = LiveState::watched(metrics.clone());
        tokio::spawn(server::reflect::run(
            client,
            live.clone(),
            namespace_writer,
            metrics.clone(),
            shutdown.clone(),
        ));
        live
    };
    tokio::spawn(follow_sync(live.clone(), synced, shutdown.clone()));
    let admin = tokio::spawn(custody_runtime::serve_admin(
        args.admin_listen,
        Arc::new(registry),
        readiness,
        shutdown.clone(),
    ));

    let config = ServerConfig {
        listen: args.listen,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        cert_reload_interval: Duration::from_millis(args.cert_reload_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_body_bytes: args.max_body_bytes,
        failure_before_sync: args.failure_policy_before_sync.into(),
        drain_timeout: Duration::from_millis(args.drain_ms),
        vocabulary: Vocabulary::with_prefix(&args.annotation_prefix),
        controller_users: args.controller_users,
    };
    let running = server::start(&config, live, metrics, shutdown.clone())
        .await
        .context("cannot start the HTTPS server")?;
    running
        .done
        .await
        .context("the HTTPS server task failed")??;
    shutdown.cancel();
    admin.await.context("the admin server task failed")??;
    Ok(())
}

fn standalone_state(paths: &[PathBuf], metrics: Metrics) -> anyhow::Result<Arc<LiveState>> {
    let files = custody_engine::files::load_policy_files(paths, &mut std::io::empty());
    if let Some(error) = files.errors.first() {
        anyhow::bail!("cannot read the policies: {error}");
    }
    if let Some(error) = files.policy_errors.first() {
        anyhow::bail!("{error}");
    }
    tracing::info!(
        policies = files.policies.len(),
        teams = files.teams.len(),
        "standalone: serving policies and teams from files"
    );
    let live = LiveState::fixed(
        files.policies,
        custody_engine::QuarantineIndex::default(),
        metrics,
    );
    live.set_teams(files.teams);
    Ok(live)
}

/// Mirrors cache sync into readiness: the pod is Ready only while it can judge.
async fn follow_sync(
    live: Arc<LiveState>,
    ready: custody_runtime::ReadyHandle,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                ready.set(false);
                return;
            }
            _ = tick.tick() => ready.set(live.is_synced()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_chart() {
        let args = Args::try_parse_from(["custody-webhook"]).unwrap();
        assert_eq!(args.listen.port(), 8443);
        assert_eq!(args.admin_listen.port(), 9090);
        assert_eq!(args.request_timeout_ms, 2000);
        assert_eq!(args.failure_policy_before_sync, BeforeSync::Fail);
        assert!(args.controller_users.is_empty());
        let args =
            Args::try_parse_from(["custody-webhook", "--failure-policy-before-sync", "Ignore"])
                .unwrap();
        assert_eq!(
            FailurePolicy::from(args.failure_policy_before_sync),
            FailurePolicy::Ignore
        );
    }

    #[test]
    fn controller_users_repeat_or_come_comma_separated() {
        let args = Args::try_parse_from([
            "custody-webhook",
            "--controller-user=system:serviceaccount:custody-system:custody-controller",
            "--controller-user",
            "system:serviceaccount:other:custody-controller",
        ])
        .unwrap();
        assert_eq!(
            args.controller_users,
            [
                "system:serviceaccount:custody-system:custody-controller",
                "system:serviceaccount:other:custody-controller"
            ]
        );
        let args = Args::try_parse_from([
            "custody-webhook",
            "--controller-user=system:serviceaccount:a:b,system:serviceaccount:c:d",
        ])
        .unwrap();
        assert_eq!(
            args.controller_users,
            ["system:serviceaccount:a:b", "system:serviceaccount:c:d"]
        );
    }
}
