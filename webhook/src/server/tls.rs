//! Serving certificates that follow their files.
//!
//! Kubernetes updates a mounted Secret by swapping a symlink (`..data`) atomically, which
//! path-based inotify watches miss. So the store re-reads the files' *contents* on a short
//! interval and swaps the certified key atomically when they change: new handshakes get the new
//! certificate, connections in flight keep theirs, and nothing restarts. A half-updated pair
//! (certificate and key read across a swap) fails the key-match check and is retried on the next
//! tick, so the server never serves a mismatched pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// Why a certificate pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    /// PEM could not be parsed.
    #[error("cannot parse PEM in {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls rejected the pair.
    #[error("the certificate and key are not usable: {0}")]
    Rustls(#[from] rustls::Error),
    /// The certificate's validity could not be read.
    #[error("cannot read the certificate's validity: {0}")]
    Validity(String),
}

/// A certificate pair as loaded, with its expiry.
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: i64,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

/// The current serving certificate, swapped atomically on reload.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    not_after: std::sync::atomic::AtomicI64,
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// Loads the pair once; fails if it is unusable, so the server never starts without one.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let loaded = load_pair(cert_path, key_path, &provider)?;
        Ok(Self {
            current: ArcSwap::new(loaded.key),
            not_after: std::sync::atomic::AtomicI64::new(loaded.not_after),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
        })
    }

    /// Unix seconds at which the serving certificate expires.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-reads the files every `interval` until `shutdown`, swapping in a changed, valid pair.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) {
        let mut last = (
            std::fs::read(&self.cert_path).unwrap_or_default(),
            std::fs::read(&self.key_path).unwrap_or_default(),
        );
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            metrics
                .certificate_expiry_seconds
                .set(self.not_after() - unix_now());
            let (Ok(cert), Ok(key)) = (
                std::fs::read(&self.cert_path),
                std::fs::read(&self.key_path),
            ) else {
                // Mid-swap, or the Secret is gone: keep serving the certificate we have.
                continue;
            };
            if (cert.as_slice(), key.as_slice()) == (last.0.as_slice(), last.1.as_slice()) {
                continue;
            }
            match parse_pair(&cert, &key, &self.cert_path, &self.key_path, &self.provider) {
                Ok(loaded) => {
                    self.current.store(loaded.key);
                    self.not_after
                        .store(loaded.not_after, std::sync::atomic::Ordering::Relaxed);
                    last = (loaded.cert_pem, loaded.key_pem);
                    tracing::info!(cert = %self.cert_path.display(), not_after = loaded.not_after, "serving certificate reloaded");
                }
                Err(error) => {
                    metrics.certificate_reload_errors.inc();
                    tracing::warn!(%error, "certificate files changed but cannot be loaded; keeping the current certificate");
                }
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    parse_pair(
        &read(cert_path)?,
        &read(key_path)?,
        cert_path,
        key_path,
        provider,
    )
}

fn parse_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let pem_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Pem { path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(pem_error(cert_path))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate(cert_path.to_path_buf()))?;
    let not_after = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| TlsError::Validity(e.to_string()))?
        .1
        .validity()
        .not_after
        .timestamp();
    // The first private key of any kind (PKCS#8, PKCS#1 or SEC1); none at all is its own error.
    let key = match PrivateKeyDer::from_pem_slice(key_pem) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey(key_path.to_path_buf()));
        }
        Err(e) => return Err(pem_error(key_path)(e)),
    };
    let certified = CertifiedKey::from_der(certs, key, provider)?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        cert_pem: cert_pem.to_vec(),
        key_pem: key_pem.to_vec(),
    })
}

/// The rustls server configuration: ring provider, TLS 1.3 and 1.2, HTTP/2 and HTTP/1.1 by ALPN,
/// the certificate from the store.
pub fn server_config(
    store: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
