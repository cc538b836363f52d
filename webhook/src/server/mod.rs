//! The HTTPS admission server.
//!
//! TLS (rustls, ring, reloading certificates) terminates in [`tls`]; axum routes `/validate`,
//! `/validate-policy`, `/validate-record` and `/validate-change` to [`routes`], behind a body
//! limit, a per-request deadline and a panic guard; [`reflect`] keeps [`state::LiveState`]
//! current from watches. Probes and metrics live on the separate admin port
//! (`custody_runtime::admin`).

pub mod metrics;
pub mod reflect;
pub mod routes;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use custody_crds::{FailurePolicy, Vocabulary};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

pub use metrics::Metrics;
pub use routes::AppState;
pub use state::LiveState;
pub use tls::{CertStore, TlsError};

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen for HTTPS.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub tls_cert: PathBuf,
    /// PEM private key.
    pub tls_key: PathBuf,
    /// How often to re-read the certificate files.
    pub cert_reload_interval: Duration,
    /// The per-request deadline (reading the body included).
    pub request_timeout: Duration,
    /// The largest AdmissionReview accepted.
    pub max_body_bytes: usize,
    /// What to answer before the caches have synced.
    pub failure_before_sync: FailurePolicy,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub drain_timeout: Duration,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Custody's controller's user names, the only writers of a CustodyChange's phase.
    pub controller_users: Vec<String>,
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate could not be loaded at start.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listener failed.
    #[error("the HTTPS server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// The axum application: routes, body limit, deadline and panic guard.
pub fn app(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let panics = state.metrics.panics.clone();
    let max_body = state.max_body_bytes;
    Router::new()
        .route("/validate", post(routes::validate))
        .route("/validate-policy", post(routes::validate_policy_route))
        .route("/validate-record", post(routes::validate_record_route))
        .route("/validate-change", post(routes::validate_change_route))
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(CatchPanicLayer::custom(
            move |panic: Box<dyn std::any::Any + Send>| {
                panics.inc();
                let detail = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                tracing::error!(panic = detail, "admission handler panicked; answering 500");
                panic_response(detail)
            },
        ))
}

fn panic_response(detail: &str) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Custody's webhook failed while judging this request ({detail}); the webhook's failurePolicy decides. Please report this.\n"),
    )
        .into_response()
}

/// A started server: its address, and the task that ends when it has drained.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Resolves when the server has stopped.
    pub done: tokio::task::JoinHandle<Result<(), ServerError>>,
}

/// Binds and serves until `shutdown`, then drains in-flight requests for up to the drain timeout.
pub async fn start(
    config: &ServerConfig,
    live: Arc<LiveState>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<Running, ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let store = Arc::new(CertStore::load(
        &config.tls_cert,
        &config.tls_key,
        provider.clone(),
    )?);
    tokio::spawn(store.clone().watch(
        config.cert_reload_interval,
        metrics.clone(),
        shutdown.clone(),
    ));
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls::server_config(
        store, provider,
    )?));
    let state = Arc::new(AppState {
        live,
        vocabulary: config.vocabulary.clone(),
        metrics,
        failure_before_sync: config.failure_before_sync,
        max_body_bytes: config.max_body_bytes,
        attestations: custody_engine::attest::AttestationCache::default(),
        controller_users: config.controller_users.clone(),
    });
    let handle = axum_server::Handle::new();
    let server = axum_server::bind_rustls(config.listen, tls).handle(handle.clone());
    let router = app(state, config.request_timeout);
    let drain = config.drain_timeout;
    let drainer = handle.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        tracing::info!(?drain, "draining in-flight admission requests");
        drainer.graceful_shutdown(Some(drain));
    });
    let done = tokio::spawn(async move {
        server.serve(router.into_make_service()).await?;
        Ok(())
    });
    let addr = handle.listening().await.ok_or_else(|| {
        ServerError::Serve(std::io::Error::other("the HTTPS listener did not start"))
    })?;
    tracing::info!(%addr, "admission webhook listening");
    Ok(Running { addr, done })
}
