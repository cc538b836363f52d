//! Notifications: each notice's body in its target's format ([`crate::decide::oncall`]),
//! POSTed with retries and backoff on its own task, so a slow or failing endpoint never delays
//! a revert, behind a circuit breaker per target ([`breaker`]). A target's URL, headers and
//! PagerDuty routing key may come from Secrets in the controller's own namespace, read when the
//! notice is sent: they are rare, and a Secret watch would keep every Secret of the namespace
//! in memory. [`dispatch`] decides what each target is owed and keeps it in the records.

pub mod breaker;
mod delivered;
pub mod dispatch;
mod memory;
mod owed;

use crate::headers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use custody_crds::{NotifyFormat, SecretKeyRef};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::http::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::decide::oncall::{self, BodyError, Notice};
use crate::decide::route::Destination;
use crate::metrics::{Label, Metrics, NotificationLabels, SendResult, TargetLabels};

use breaker::Breakers;
use headers::HeaderError;

/// Sends notices to targets.
#[derive(Clone)]
pub struct Notifier {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    attempts: u32,
    first_backoff: Duration,
    metrics: Metrics,
    /// Secrets of the controller's own namespace, for `urlFrom`, `headersFrom` and
    /// `routingKeyFrom`.
    secrets: Option<Api<Secret>>,
    breakers: Arc<Mutex<Breakers>>,
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
    /// The body could not be built for the target's format.
    #[error("cannot build the body: {0}")]
    Body(#[from] BodyError),
    /// The endpoint could not be reached.
    #[error("cannot reach the notification endpoint: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    /// The endpoint answered with an error.
    #[error("the notification endpoint answered {0}")]
    Status(u16),
    /// No TLS roots are available.
    #[error("cannot load TLS roots: {0}")]
    Roots(std::io::Error),
    /// A Secret the target names could not be read.
    #[error("cannot read the Secret {name:?} the target names: {source}")]
    Secret {
        /// The Secret's name.
        name: String,
        /// Why.
        #[source]
        source: Box<kube::Error>,
    },
    /// The Secret has no such key, or its value is not text.
    #[error("the Secret {name:?} has no text under the key {key:?}")]
    SecretKey {
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// The target names a Secret, but the controller was given no namespace to read it from.
    #[error("the target names the Secret {0:?}, but Secrets are not readable here")]
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
    /// The target failed too often lately: it is left alone for a while.
    #[error(
        "the target failed {} times in a row; its circuit is open, it is tried again within a minute",
        breaker::TRIP_AFTER
    )]
    CircuitOpen,
}

/// A target ready to be sent to: its URL, headers and routing key, read from its Secrets.
struct Prepared {
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    routing_key: Option<String>,
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
            breakers: Arc::default(),
        })
    }

    /// Reads targets' Secrets through `secrets`: an Api of the controller's own namespace.
    #[must_use]
    pub fn with_secrets(mut self, secrets: Api<Secret>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Sends `notice` to `destination` in its format, unless its circuit is open; counts the
    /// outcome by target, format, kind and result.
    pub async fn deliver(
        &self,
        destination: &Destination,
        notice: &Notice,
    ) -> Result<(), NotifyError> {
        let id = destination.id();
        let format = destination.target.format;
        if !self.breakers().admit(&id, Instant::now()) {
            self.count(&id, format, notice, SendResult::CircuitOpen);
            return Err(NotifyError::CircuitOpen);
        }
        let result = self.prepare_and_send(destination, notice).await;
        let open = self.breakers().record(&id, result.is_ok(), Instant::now());
        self.metrics
            .notification_circuit_open
            .get_or_create(&TargetLabels {
                target: id.clone(),
                format: Label(format),
            })
            .set(i64::from(open));
        let outcome = if result.is_ok() {
            SendResult::Sent
        } else {
            SendResult::Failed
        };
        self.count(&id, format, notice, outcome);
        result
    }

    /// Whether `destination`'s circuit is open and still waiting: a send now would not be tried.
    pub fn waiting(&self, destination: &Destination) -> bool {
        self.breakers().waiting(&destination.id(), Instant::now())
    }

    fn breakers(&self) -> std::sync::MutexGuard<'_, Breakers> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, id: &str, format: NotifyFormat, notice: &Notice, result: SendResult) {
        self.metrics
            .notifications
            .get_or_create(&NotificationLabels {
                target: id.to_string(),
                format: Label(format),
                kind: Label(notice.kind),
                result: Label(result),
            })
            .inc();
    }

    /// The target's Secrets, the body, then the POST with retries. A Secret that is missing or
    /// holds bad headers fails the destination at once: retrying would not fix it, and sending
    /// without the headers would not be accepted (or worse, would be).
    async fn prepare_and_send(
        &self,
        destination: &Destination,
        notice: &Notice,
    ) -> Result<(), NotifyError> {
        let prepared = self.prepare(destination).await?;
        let format = destination.target.format;
        let body = oncall::body(
            notice,
            format,
            prepared.routing_key.as_deref(),
            Timestamp::now(),
        )?;
        let body = serde_json::to_vec(&body)?;
        self.send(
            &oncall::endpoint(format, &prepared.url),
            oncall::content_type(format),
            &prepared.headers,
            body.into(),
        )
        .await
    }

    async fn prepare(&self, destination: &Destination) -> Result<Prepared, NotifyError> {
        let target = &destination.target;
        let url = match (&target.url, &target.url_from) {
            (Some(url), _) => url.clone(),
            (None, Some(key)) => self.secret_text(key).await?.trim().to_string(),
            (None, None) => custody_crds::notify::PAGERDUTY_EVENTS_URL.to_string(),
        };
        let headers = match &target.headers_from {
            None => Vec::new(),
            Some(secret) => self.headers(&secret.name).await?,
        };
        let routing_key = match &target.routing_key_from {
            None => None,
            Some(key) => Some(self.secret_text(key).await?.trim().to_string()),
        };
        Ok(Prepared {
            url,
            headers,
            routing_key,
        })
    }

    async fn secret(&self, name: &str) -> Result<Secret, NotifyError> {
        let secrets = self
            .secrets
            .as_ref()
            .ok_or_else(|| NotifyError::NoSecrets(name.to_string()))?;
        secrets.get(name).await.map_err(|e| NotifyError::Secret {
            name: name.to_string(),
            source: Box::new(e),
        })
    }

    async fn secret_text(&self, key: &SecretKeyRef) -> Result<String, NotifyError> {
        let secret = self.secret(&key.name).await?;
        secret
            .data
            .unwrap_or_default()
            .remove(&key.key)
            .and_then(|v| String::from_utf8(v.0).ok())
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| NotifyError::SecretKey {
                name: key.name.clone(),
                key: key.key.clone(),
            })
    }

    async fn headers(&self, name: &str) -> Result<Vec<(HeaderName, HeaderValue)>, NotifyError> {
        let secret = self.secret(name).await?;
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
        content_type: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<(), NotifyError> {
        let mut backoff = self.first_backoff;
        let mut last = NotifyError::Status(0);
        for attempt in 1..=self.attempts {
            let mut request = hyper::Request::post(url)
                .header("content-type", content_type)
                .header("user-agent", "custody-controller");
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let request = request.body(Full::new(body.clone()))?;
            match tokio::time::timeout(Duration::from_secs(10), self.client.request(request)).await
            {
                Ok(Ok(response)) if response.status().is_success() => return Ok(()),
                Ok(Ok(response)) => {
                    let status = response.status();
                    last = NotifyError::Status(status.as_u16());
                    // A refusal of the request itself (a bad key, a bad body) is not retried:
                    // it would be refused again.
                    if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                        return Err(last);
                    }
                }
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
