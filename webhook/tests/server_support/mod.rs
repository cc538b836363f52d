//! Test support for the HTTPS server: a throwaway PKI, a Secret-like certificate directory that
//! is updated the way the kubelet updates a mounted Secret, a TLS client, and a started server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custody_crds::{FailurePolicy, Vocabulary};
use custody_webhook::server::{self, LiveState, Metrics, ServerConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;

/// A CA that issues serving certificates for 127.0.0.1.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn ca_der(&self) -> rustls::pki_types::CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A serving certificate for 127.0.0.1 and localhost whose common name is `cn`.
    pub fn issue(&self, cn: &str) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A directory laid out like a mounted Secret: `tls.crt -> ..data/tls.crt`, `..data -> ..<stamp>`.
pub struct SecretDir {
    pub dir: PathBuf,
    generation: u32,
}

impl SecretDir {
    pub fn new(cert: &str, key: &str) -> Self {
        // Tests in one binary run in parallel and may read the clock in the same tick: a
        // counter keeps their directories apart.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "custody-tls-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Self { dir, generation: 0 };
        s.swap(cert, key);
        std::os::unix::fs::symlink("..data/tls.crt", s.dir.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", s.dir.join("tls.key")).unwrap();
        s
    }

    /// Writes a new pair into a fresh directory and swaps `..data` to it atomically (rename).
    pub fn swap(&mut self, cert: &str, key: &str) {
        self.generation += 1;
        let stamp = format!("..gen_{}", self.generation);
        let target = self.dir.join(&stamp);
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("tls.crt"), cert).unwrap();
        std::fs::write(target.join("tls.key"), key).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A started server and what a test needs to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub live: Arc<LiveState>,
    pub metrics: Metrics,
    pub registry: Arc<std::sync::Mutex<Registry>>,
    pub shutdown: CancellationToken,
    pub done: tokio::task::JoinHandle<Result<(), server::ServerError>>,
}

pub fn config(secret: &SecretDir) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: secret.cert(),
        tls_key: secret.key(),
        cert_reload_interval: Duration::from_millis(50),
        request_timeout: Duration::from_secs(2),
        max_body_bytes: 8 * 1024 * 1024,
        failure_before_sync: FailurePolicy::Fail,
        drain_timeout: Duration::from_secs(5),
        vocabulary: Vocabulary::default(),
        controller_users: vec![CONTROLLER.to_string()],
    }
}

/// Custody's controller in the test servers (`--controller-user`).
pub const CONTROLLER: &str = "system:serviceaccount:custody-system:custody-controller";

pub async fn start(
    config: ServerConfig,
    live: impl FnOnce(Metrics) -> Arc<LiveState>,
) -> TestServer {
    let mut registry = Registry::with_prefix("custody");
    let metrics = Metrics::register(&mut registry);
    let live = live(metrics.clone());
    let shutdown = CancellationToken::new();
    let running = server::start(&config, live.clone(), metrics.clone(), shutdown.clone())
        .await
        .unwrap();
    TestServer {
        addr: running.addr,
        live,
        metrics,
        registry: Arc::new(std::sync::Mutex::new(registry)),
        shutdown,
        done: running.done,
    }
}

/// One HTTPS connection (HTTP/1.1 keep-alive) trusting the test CA.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub peer_cn: String,
}

pub fn tls_client(
    ca: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn peer_common_name(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl Conn {
    pub async fn open(addr: SocketAddr, ca: &rustls::pki_types::CertificateDer<'static>) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let tls = tls_client(ca, &[b"http/1.1"])
            .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
            .await
            .unwrap();
        let peer_cn = peer_common_name(&tls);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        Self { sender, peer_cn }
    }

    pub async fn post(&mut self, path: &str, body: Vec<u8>) -> (u16, String) {
        let request = hyper::Request::post(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Opens a connection, posts once, and returns (status, body).
pub async fn post_once(
    addr: SocketAddr,
    ca: &rustls::pki_types::CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
) -> (u16, String) {
    Conn::open(addr, ca).await.post(path, body).await
}

/// Waits for `check` to hold, polling, up to `deadline`.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../testkit/fixtures/admission")
            .join(name),
    )
    .unwrap()
}
