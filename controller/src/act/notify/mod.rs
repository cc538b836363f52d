//! Notifications: a JSON POST (a RollbackRecord, or a break-glass notice) to each of its
//! destinations ([`crate::decide::route`]), retried with backoff on its own task, so a slow or
//! failing endpoint never delays a revert. A destination's headers come from a Secret in the
//! controller's own namespace ([`headers`]), read when the notification is sent: they
//! are rare, and a Secret watch would keep every Secret of the namespace in memory.

use crate::headers;

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::task::JoinHandle;

use crate::decide::route::Destination;
use crate::metrics::Metrics;

use headers::HeaderError;

/// Sends notifications to webhook URLs.
#[derive(Clone)]
pub struct Notifier {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempts: u32,
    first_backoff: Duration,
    metrics: Metrics,
    /// Secrets of the controller's own namespace, for `headersFrom`.
    secrets: Option<Api<Secret>>,
}

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The request could not be built.
    #[error("invalid notification request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The body could not be encoded.
    #[error("cannot encode the notification: {0}")]
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
    /// The Secret of the target's headers could not be read.
    #[error("cannot read the Secret {name:?} of the target's headers: {source}")]
    Secret {
        /// The Secret's name.
        name: String,
        /// Why.
        #[source]
        source: Box<kube::Error>,
    },
    /// The target names a Secret, but the controller was given no namespace to read it from.
    #[error("the target's headers come from the Secret {0:?}, but Secrets are not readable here")]
    NoSecrets(String),
    /// The Secret's data are not valid headers.
    #[error("the Secret {name:?} does not hold valid headers: {source}")]
    Headers {
        /// The Secret's name.
        name: String,
        /// Which key, and why.
        #[source]
        source: HeaderError,
    },
}

/// What became of one notification, once every destination has been tried.
#[derive(Debug, Default)]
pub struct Delivered {
    /// Destinations that accepted it.
    pub accepted: usize,
    /// Destinations that did not, with why.
    pub failed: Vec<(Destination, NotifyError)>,
}

impl Delivered {
    /// A record's `status.notified` and `status.notificationError` after its notification:
    /// notified only if every destination accepted it; the error names each failed destination
    /// by [`Destination::label`], never by its full URL (which may carry a token). A `null`
    /// error clears the last one.
    pub fn status(&self) -> serde_json::Value {
        let errors: Vec<String> = self
            .failed
            .iter()
            .map(|(destination, error)| format!("{}: {error}", destination.label()))
            .collect();
        serde_json::json!({
            "notified": errors.is_empty() && self.accepted > 0,
            "notificationError": (!errors.is_empty()).then(|| errors.join("; ")),
        })
    }
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
            secrets: None,
        })
    }

    /// Reads `headersFrom` Secrets through `secrets`: an Api of the controller's own namespace.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Api<Secret>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Sends `body` to every destination at once, in the background; each failure is logged
    /// and counted. `subject` names what is sent, for the logs.
    pub fn spawn(
        &self,
        subject: String,
        destinations: Vec<Destination>,
        body: Bytes,
    ) -> JoinHandle<Delivered> {
        let this = self.clone();
        tokio::spawn(async move {
            let sends = destinations.into_iter().map(|destination| {
                let (this, body) = (this.clone(), body.clone());
                async move {
                    let result = this.deliver(&destination, body).await;
                    (destination, result)
                }
            });
            let mut delivered = Delivered::default();
            for (destination, result) in futures::future::join_all(sends).await {
                match result {
                    Ok(()) => {
                        delivered.accepted += 1;
                        tracing::debug!(subject = %subject, destination = %destination.label(), "notified");
                    }
                    Err(error) => {
                        this.metrics.notification_failures.inc();
                        tracing::warn!(
                            subject = %subject, destination = %destination.label(), %error,
                            "notification failed"
                        );
                        delivered.failed.push((destination, error));
                    }
                }
            }
            delivered
        })
    }

    /// One destination: its headers, then the POST with retries. A Secret that is missing or
    /// holds bad headers fails the destination at once: retrying would not fix it, and sending
    /// without the headers would not be accepted (or worse, would be).
    async fn deliver(&self, destination: &Destination, body: Bytes) -> Result<(), NotifyError> {
        let headers = match &destination.headers_from {
            None => Vec::new(),
            Some(name) => self.headers(name).await?,
        };
        self.send(&destination.url, &headers, body).await
    }

    async fn headers(&self, name: &str) -> Result<Vec<(HeaderName, HeaderValue)>, NotifyError> {
        let secrets = self
            .secrets
            .as_ref()
            .ok_or_else(|| NotifyError::NoSecrets(name.to_string()))?;
        let secret = secrets.get(name).await.map_err(|e| NotifyError::Secret {
            name: name.to_string(),
            source: Box::new(e),
        })?;
        headers::from_secret_data(&secret.data.unwrap_or_default()).map_err(|source| {
            NotifyError::Headers {
                name: name.to_string(),
                source,
            }
        })
    }

    /// Posts `body` with `headers`, retrying with exponential backoff.
    pub async fn send(
        &self,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<(), NotifyError> {
        let mut backoff = self.first_backoff;
        let mut last = NotifyError::Status(0);
        for attempt in 1..=self.attempts {
            let mut request = hyper::Request::post(url)
                .header("content-type", "application/json")
                .header("user-agent", "custody-controller");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request.body(Full::new(body.clone()))?;
            match tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await
            {
                Ok(Ok(response)) if response.status().is_success() => return Ok(()),
                Ok(Ok(response)) => last = NotifyError::Status(response.status().as_u16()),
                Ok(Err(error)) => last = NotifyError::Send(error),
                Err(_) => last = NotifyError::Status(504),
            }
            if attempt < self.attempts {
                tracing::debug!(attempt, error = %last, "notification failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::route::Via;
    use serde_json::json;

    fn failed(url: &str, error: NotifyError) -> (Destination, NotifyError) {
        let destination = Destination {
            url: url.into(),
            headers_from: None,
            via: Via::Team("team-web".into()),
        };
        (destination, error)
    }

    #[test]
    fn status_by_outcome() {
        let all = Delivered {
            accepted: 2,
            failed: vec![],
        };
        assert_eq!(
            all.status(),
            json!({"notified": true, "notificationError": null})
        );
        let some = Delivered {
            accepted: 1,
            failed: vec![failed(
                "https://pager.example.com/hook?token=s3cret",
                NotifyError::Status(500),
            )],
        };
        assert_eq!(
            some.status(),
            json!({"notified": false, "notificationError": "team team-web (pager.example.com): the notification endpoint answered 500"})
        );
        let none = Delivered {
            accepted: 0,
            failed: vec![
                failed(
                    "https://a.example.com",
                    NotifyError::NoSecrets("tok".into()),
                ),
                failed("https://b.example.com", NotifyError::Status(404)),
            ],
        };
        let status = none.status();
        assert_eq!(status["notified"], json!(false));
        let error = status["notificationError"].as_str().unwrap();
        assert!(
            error.contains("(a.example.com): the target's headers come from the Secret \"tok\""),
            "{error}"
        );
        assert!(
            error.contains(
                "; team team-web (b.example.com): the notification endpoint answered 404"
            ),
            "{error}"
        );
    }
}
