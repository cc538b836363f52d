//! Leader election on a coordination.k8s.io Lease, with kube-lease-manager: every replica
//! watches and caches; only the holder writes. Dropping the receiver releases the Lease, so a
//! clean shutdown hands over at once instead of waiting for the Lease to expire.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a holder keeps the Lease without renewing.
    pub duration_seconds: u64,
    /// Seconds before expiry at which the holder renews.
    pub grace_seconds: u64,
}

/// Starts competing for the Lease. The receiver says whether this replica leads; drop it to
/// release the Lease.
pub async fn elect(
    client: Client,
    config: &LeaseConfig,
) -> Result<
    (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    ),
    kube_lease_manager::LeaseManagerError,
> {
    let manager = LeaseManagerBuilder::new(client, config.name.clone())
        .with_namespace(config.namespace.clone())
        .with_identity(config.identity.clone())
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .with_field_manager("custody-controller")
        .build()
        .await?;
    Ok(manager.watch().await)
}

/// Competes for the Lease, retrying with a capped backoff while the Lease cannot be read yet
/// (the chart creates it, and Helm may start this pod first; or the apiserver is away). `None`
/// when `shutdown` comes first.
pub async fn elect_with_retry(
    client: Client,
    config: &LeaseConfig,
    shutdown: &CancellationToken,
) -> Option<(
    watch::Receiver<bool>,
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
)> {
    let mut delay = Duration::from_millis(500);
    loop {
        match elect(client.clone(), config).await {
            Ok(elected) => return Some(elected),
            Err(error) => {
                tracing::warn!(
                    lease = %config.name,
                    namespace = %config.namespace,
                    %error,
                    retry_in_ms = delay.as_millis() as u64,
                    "cannot start leader election yet"
                );
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(15));
    }
}
