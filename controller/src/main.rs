//! `custody-controller`: the rollback operator. Wiring only: flags, client, Lease, admin port,
//! and the controller loop from the library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use custody_controller::act::notify::Notifier;
use custody_controller::audit::AuditConfig;
use custody_controller::leader::{self, LeaseConfig};
use custody_controller::measure::sources::Sources;
use custody_controller::metrics::Metrics;
use custody_controller::run::{self, RunConfig};
use custody_crds::Vocabulary;
use custody_crds::report::ReportFormat;
use custody_runtime::{LogFormat, Readiness};
use prometheus_client::registry::Registry;

#[derive(Debug, Parser)]
#[command(
    name = "custody-controller",
    version,
    about = "Custody's rollback operator"
)]
struct Args {
    /// Plain-HTTP address for /healthz, /readyz and /metrics.
    #[arg(long, env = "CUSTODY_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// Record and alert what would be reverted, without reverting (overrides every policy).
    #[arg(long, env = "CUSTODY_DRY_RUN")]
    dry_run: bool,
    /// The coordination.k8s.io Lease replicas compete for.
    #[arg(long, env = "CUSTODY_LEASE_NAME", default_value = "custody-controller")]
    lease_name: String,
    /// The Lease's namespace (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "custody-system")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME", default_value = "custody-controller")]
    identity: String,
    /// Seconds a Lease holder keeps the Lease without renewing.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Run without leader election (a single replica only).
    #[arg(long)]
    no_leader_election: bool,
    /// Notification attempts per record.
    #[arg(long, default_value_t = 5)]
    notify_attempts: u32,
    /// Log format.
    #[arg(long, env = "CUSTODY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain)]
    log_format: LogFormat,
    /// Manage the webhook's serving certificate in this Secret (without cert-manager).
    #[arg(long, env = "CUSTODY_WEBHOOK_CERT_SECRET")]
    webhook_cert_secret: Option<String>,
    /// The webhook Service the certificate is for.
    #[arg(long, default_value = "custody-webhook")]
    webhook_service: String,
    /// The namespace of the Secret and the Service.
    #[arg(long, env = "POD_NAMESPACE", default_value = "custody-system")]
    webhook_namespace: String,
    /// A ValidatingWebhookConfiguration whose caBundle follows the CA; repeatable.
    #[arg(long = "webhook-configuration", value_name = "NAME")]
    webhook_configurations: Vec<String>,
    /// Validity of the serving certificate, in days.
    #[arg(long, default_value_t = 90)]
    cert_validity_days: u64,
    /// Rotate the serving certificate when fewer days than this remain.
    #[arg(long, default_value_t = 30)]
    cert_renew_before_days: u64,
    /// Background audit of running workloads against the policies: off, or where results go
    /// besides metrics (openreports.io/v1alpha1 Report, wgpolicyk8s.io/v1alpha2 PolicyReport,
    /// or metrics only).
    #[arg(long, env = "CUSTODY_AUDIT", value_enum, default_value_t = AuditReports::Openreports)]
    audit: AuditReports,
    /// Seconds between audits when no policy changes.
    #[arg(long, env = "CUSTODY_AUDIT_PERIOD_SECONDS", default_value_t = 600)]
    audit_period_seconds: u64,
    /// Results per report; a namespace with more gets several reports.
    #[arg(long, default_value_t = 1000)]
    audit_max_results: usize,
    /// Report writes per second, at most.
    #[arg(long, default_value_t = 5)]
    audit_writes_per_second: u32,
}

/// Where audit results go besides metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum AuditReports {
    /// No audit.
    Off,
    /// Metrics only.
    Metrics,
    /// openreports.io/v1alpha1 Report (Kyverno 1.15+, Policy Reporter).
    Openreports,
    /// wgpolicyk8s.io/v1alpha2 PolicyReport.
    Policyreport,
}

impl Args {
    fn audit_config(&self) -> Option<AuditConfig> {
        let format = match self.audit {
            AuditReports::Off => return None,
            AuditReports::Metrics => None,
            AuditReports::Openreports => Some(ReportFormat::OpenReports),
            AuditReports::Policyreport => Some(ReportFormat::PolicyReport),
        };
        Some(AuditConfig {
            period: Duration::from_secs(self.audit_period_seconds.max(10)),
            format,
            max_results: self.audit_max_results.max(1),
            writes_per_second: self.audit_writes_per_second.max(1),
        })
    }
}

// One thread is plenty: a reconcile is microseconds of decision and, rarely, a few writes; and
// one thread means one malloc arena, which keeps the caches' memory compact.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let audit = args.audit_config();
    custody_runtime::logging::init(args.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = custody_runtime::shutdown_token();

    let mut registry = Registry::with_prefix("custody");
    let metrics = Metrics::register(&mut registry);
    let readiness = Readiness::new();
    let caches = readiness.register("controller caches");
    let client = kube::Client::try_default()
        .await
        .context("cannot build a Kubernetes client (in-cluster config or KUBECONFIG)")?;

    let admin = tokio::spawn(custody_runtime::serve_admin(
        args.admin_listen,
        Arc::new(registry),
        readiness,
        shutdown.clone(),
    ));

    let (_keep_leading, leader, lease_task) = if args.no_leader_election {
        let (tx, rx) = tokio::sync::watch::channel(true);
        (Some(tx), rx, None)
    } else {
        let config = LeaseConfig {
            name: args.lease_name,
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
            duration_seconds: args.lease_duration_seconds,
            grace_seconds: (args.lease_duration_seconds / 3).max(2),
        };
        let Some((rx, task)) = leader::elect_with_retry(client.clone(), &config, &shutdown).await
        else {
            tracing::info!("shut down before leader election started");
            return Ok(());
        };
        (None, rx, Some(task))
    };
    if let Some(secret) = &args.webhook_cert_secret {
        let config = custody_controller::certs::CertConfig {
            namespace: args.webhook_namespace.clone(),
            secret_name: secret.clone(),
            service_name: args.webhook_service.clone(),
            webhook_configurations: args.webhook_configurations.clone(),
            validity: Duration::from_secs(args.cert_validity_days * 24 * 3600),
            renew_before: Duration::from_secs(args.cert_renew_before_days * 24 * 3600),
        };
        // Every replica runs it: writes are resourceVersion-guarded, and the webhook must get a
        // certificate even while no replica holds the Lease.
        tokio::spawn(custody_controller::certs::run(
            client.clone(),
            config,
            Duration::from_secs(60),
            shutdown.clone(),
        ));
    }
    tokio::spawn(follow_leadership(
        leader.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));

    let notifier = match Notifier::new(
        metrics.clone(),
        args.notify_attempts,
        Duration::from_millis(500),
    ) {
        // Teams' header Secrets live in the controller's own namespace, the Lease's.
        Ok(n) => Some(n.with_secrets(kube::Api::namespaced(client.clone(), &args.lease_namespace))),
        Err(error) => {
            tracing::warn!(%error, "notifications disabled");
            None
        }
    };
    let config = RunConfig {
        audit,
        vocabulary: Vocabulary::with_prefix(&args.annotation_prefix),
        dry_run: args.dry_run,
        identity: args.identity,
        notifier,
        // Providers' CA and header Secrets live in the controller's own namespace too.
        sources: Sources::new(Some(kube::Api::namespaced(
            client.clone(),
            &args.lease_namespace,
        ))),
    };
    run::run(client, config, metrics, leader, caches, shutdown.clone()).await;

    // Dropping every receiver makes the lease task release the Lease.
    if let Some(task) = lease_task {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(error))) => tracing::warn!(%error, "lease release failed"),
            Ok(Err(error)) => tracing::warn!(%error, "lease task failed"),
            Err(_) => tracing::warn!("lease release timed out"),
        }
    }
    shutdown.cancel();
    admin.await.context("the admin server task failed")??;
    Ok(())
}

/// Mirrors leadership into the metric, until shutdown (when its receiver must go, so that the
/// Lease is released).
async fn follow_leadership(
    mut leader: tokio::sync::watch::Receiver<bool>,
    metrics: Metrics,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let leading = *leader.borrow_and_update();
        metrics.leader.set(i64::from(leading));
        tracing::info!(leading, "leadership");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = leader.changed() => if changed.is_err() { return },
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
        let args = Args::try_parse_from(["custody-controller", "--dry-run"]).unwrap();
        assert!(args.dry_run);
        assert_eq!(args.admin_listen.port(), 9090);
        let audit = args.audit_config().unwrap();
        assert_eq!(audit.format, Some(ReportFormat::OpenReports));
        assert_eq!(audit.period, Duration::from_secs(600));
        let off = Args::try_parse_from(["custody-controller", "--audit", "off"]).unwrap();
        assert!(off.audit_config().is_none());
        let metrics = Args::try_parse_from(["custody-controller", "--audit=metrics"]).unwrap();
        assert_eq!(metrics.audit_config().unwrap().format, None);
    }
}
