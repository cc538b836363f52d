//! Notifications: a JSON POST of a RollbackRecord to the policy's URL (the owner's on-call
//! route), retried with backoff on its own task, so a slow or failing endpoint never delays a
//! revert.

use std::time::Duration;

use custody_crds::RollbackRecord;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::metrics::Metrics;

/// Sends records to webhook URLs.
#[derive(Clone)]
pub struct Notifier {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempts: u32,
    first_backoff: Duration,
    metrics: Metrics,
}

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request could not be built.
    #[error("invalid notification request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The record could not be encoded.
    #[error("cannot encode the record: {0}")]
    Encode(#[from] serde_json::Error),
    /// The endpoint could not be reached.
    #[error("cannot reach the notification endpoint: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    /// The endpoint answered with an error.
    #[error("the notification endpoint answered {0}")]
    Status(u16),
    /// No TLS roots are available.
    #[error("cannot load TLS roots: {0}")]
    Roots(std::io::Error),
}

impl Notifier {
    /// A notifier trusting the system's roots, with `attempts` tries and exponential backoff.
    pub fn new(
        metrics: Metrics,
        attempts: u32,
        first_backoff: Duration,
    ) -> Result<Self, NotifyError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(NotifyError::Roots)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            attempts: attempts.max(1),
            first_backoff,
            metrics,
        })
    }

    /// Sends in the background; failures are logged and counted.
    pub fn spawn(&self, url: String, record: RollbackRecord) {
        let this = self.clone();
        tokio::spawn(async move {
            let name = record.metadata.name.clone().unwrap_or_default();
            if let Err(error) = this.send(&url, &record).await {
                this.metrics.notification_failures.inc();
                tracing::warn!(record = %name, %url, %error, "notification failed after every retry");
            }
        });
    }

    /// Posts the record, retrying with exponential backoff.
    pub async fn send(&self, url: &str, record: &RollbackRecord) -> Result<(), NotifyError> {
        let body = Bytes::from(serde_json::to_vec(record)?);
        let mut backoff = self.first_backoff;
        let mut last = NotifyError::Status(0);
        for attempt in 1..=self.attempts {
            let request = hyper::Request::post(url)
                .header("content-type", "application/json")
                .header("user-agent", "custody-controller")
                .body(Full::new(body.clone()))?;
            match tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await
            {
                Ok(Ok(response)) if response.status().is_success() => return Ok(()),
                Ok(Ok(response)) => last = NotifyError::Status(response.status().as_u16()),
                Ok(Err(error)) => last = NotifyError::Send(error),
                Err(_) => last = NotifyError::Status(504),
            }
            if attempt < self.attempts {
                tracing::debug!(%url, attempt, error = %last, "notification failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        Err(last)
    }
}
