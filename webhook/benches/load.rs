//! Load benchmark of the release webhook over TLS keep-alive on loopback.
//!
//! `cargo bench -p custody-webhook --bench load` starts `custody-webhook --standalone` (built-in
//! policy, certificates from a throwaway CA) as its own process, then drives it with an in-repo
//! generator (hyper + rustls, HTTP/1.1 keep-alive) sending a captured 7.7 KB Deployment
//! AdmissionReview: first closed-loop at full speed (peak), then open-loop at half of that rate
//! (latency measured from each request's scheduled send time, so queueing is not hidden). It
//! prints reviews/s, p50/p99/p99.9 latency, errors, and the server's RSS before and after.
//! It does so for unsigned reviews under the built-in policy, then for signed ones under a
//! policy requiring signatures: one envelope sent over and over (the cached path), and more
//! distinct envelopes than the cache holds (every review verified), for each key type.
//! Numbers, not assertions. Environment: LOAD_SECONDS (default 10), LOAD_CONNECTIONS (32),
//! LOAD_ONLY (run only the phases whose label contains it).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

#[path = "support/signed.rs"]
mod signed;

/// The review bodies a connection sends in turn, each connection starting elsewhere, so that
/// more distinct bodies than the attestation cache holds are never answered from it.
#[derive(Clone)]
struct Bodies {
    all: Arc<Vec<Bytes>>,
    start: usize,
}

impl Bodies {
    fn one(body: Bytes) -> Self {
        Self {
            all: Arc::new(vec![body]),
            start: 0,
        }
    }

    fn for_connection(&self, i: usize) -> Self {
        Self {
            all: Arc::clone(&self.all),
            start: i * self.all.len() / 32,
        }
    }

    /// The next body to send, each call (a `Bytes` clone shares the buffer).
    fn cycle(&self) -> impl FnMut() -> Bytes + use<> {
        let all = Arc::clone(&self.all);
        let mut i = self.start;
        move || {
            i = (i + 1) % all.len();
            all[i].clone()
        }
    }
}

struct Stats {
    latencies_us: Vec<u32>,
    errors: u64,
    late: u64,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time the process has used (user + system), in clock ticks of 1/100 s.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .unwrap_or(0)
}

fn pki(dir: &std::path::Path) -> CertificateDer<'static> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "custody bench CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("cert");
    std::fs::write(dir.join("tls.crt"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).expect("write key");
    ca.der().clone()
}

fn connector(ca: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    addr: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let stream = tls
        .connect(
            ServerName::try_from("127.0.0.1").expect("name").to_owned(),
            tcp,
        )
        .await
        .expect("tls");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    body: &Bytes,
) -> bool {
    let request = hyper::Request::post("/validate")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request");
    match sender.send_request(request).await {
        Ok(response) => {
            let ok = response.status() == 200;
            ok && response.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

/// Each connection sends as fast as answers come back.
async fn closed_loop(
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    bodies: Bodies,
    until: Instant,
) -> Stats {
    let mut next_body = bodies.cycle();
    let mut sender = connect(addr, &tls).await;
    let mut stats = Stats {
        latencies_us: Vec::with_capacity(1 << 16),
        errors: 0,
        late: 0,
    };
    while Instant::now() < until {
        let t = Instant::now();
        if send(&mut sender, &next_body()).await {
            stats
                .latencies_us
                .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else {
            stats.errors += 1;
            sender = connect(addr, &tls).await;
        }
    }
    stats
}

/// Each connection sends on a fixed schedule (open loop: a slow answer does not slow the
/// offered rate). Latency counts from the actual send: tokio's timer fires with up to 1 ms of
/// slop, which is the generator's, not the server's. Sends that start more than 1 ms behind
/// schedule are counted, so queueing in the generator or the server cannot hide.
async fn open_loop(
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
    bodies: Bodies,
    interval: Duration,
    until: Instant,
) -> Stats {
    let mut next_body = bodies.cycle();
    let mut sender = connect(addr, &tls).await;
    let mut stats = Stats {
        latencies_us: Vec::with_capacity(1 << 16),
        errors: 0,
        late: 0,
    };
    let mut next = Instant::now();
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        let sent = Instant::now();
        if sent.duration_since(next) > Duration::from_millis(1) {
            stats.late += 1;
        }
        if send(&mut sender, &next_body()).await {
            stats
                .latencies_us
                .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        } else {
            stats.errors += 1;
            sender = connect(addr, &tls).await;
        }
        next += interval;
    }
    stats
}

fn report(label: &str, mut all: Vec<Stats>, seconds: f64) -> f64 {
    let errors: u64 = all.iter().map(|s| s.errors).sum();
    let late: u64 = all.iter().map(|s| s.late).sum();
    let mut lat: Vec<u32> = all
        .iter_mut()
        .flat_map(|s| std::mem::take(&mut s.latencies_us))
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let rate = lat.len() as f64 / seconds;
    println!(
        "{label:<26} {rate:>9.0} reviews/s   p50 {:>6.3} ms   p99 {:>6.3} ms   p99.9 {:>6.3} ms   errors {errors}{}",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        if late > 0 {
            format!("   sends >1 ms behind schedule {late}")
        } else {
            String::new()
        },
    );
    rate
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `custody-webhook --standalone` with `args`, then runs a warm-up, the closed-loop peak
/// and the open loop at half of it, sending `bodies`.
fn measure(
    label: &str,
    args: &[std::ffi::OsString],
    bodies: Bodies,
    seconds: u64,
    connections: usize,
) {
    if !std::env::var("LOAD_ONLY").map_or(true, |only| label.contains(&only)) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("custody-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca = pki(&dir);
    let port = free_port();
    let admin = free_port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_custody-webhook"))
            .args(["--standalone", "--log-format", "json"])
            .args(args)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
            ])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start custody-webhook"),
    );
    let pid = server.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let ready = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < ready, "the webhook did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tls = connector(&ca);
        let rss_before = rss_kib(pid);
        println!("\n{label}: {} distinct {} B reviews, {connections} TLS keep-alive connections, {seconds}s per phase, 2 cores shared with the generator", bodies.all.len(), bodies.all[0].len());

        let warm = Instant::now() + Duration::from_secs(2);
        let tasks: Vec<_> = (0..connections).map(|i| tokio::spawn(closed_loop(addr, tls.clone(), bodies.for_connection(i), warm))).collect();
        for t in tasks { t.await.expect("warmup"); }

        let until = Instant::now() + Duration::from_secs(seconds);
        let cpu_before = cpu_ticks(pid);
        let tasks: Vec<_> = (0..connections).map(|i| tokio::spawn(closed_loop(addr, tls.clone(), bodies.for_connection(i), until))).collect();
        let mut stats = Vec::new();
        for t in tasks { stats.push(t.await.expect("peak")); }
        let cpu_seconds = (cpu_ticks(pid) - cpu_before) as f64 / 100.0;
        let peak = report("peak (closed loop)", stats, seconds as f64);
        // What the server alone spends per review: the rate two cores of its own would reach.
        let per_review_us = cpu_seconds * 1e6 / (peak * seconds as f64);
        println!("server CPU at peak: {:.2} of 2 cores, {per_review_us:.1} µs per review (2 cores of its own: ~{:.0}/s)", cpu_seconds / seconds as f64, 2e6 / per_review_us);

        let half = peak / 2.0;
        let per_conn = Duration::from_secs_f64(connections as f64 / half);
        let until = Instant::now() + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..connections).map(|i| tokio::spawn(open_loop(addr, tls.clone(), bodies.for_connection(i), per_conn, until))).collect();
        let mut stats = Vec::new();
        for t in tasks { stats.push(t.await.expect("half")); }
        report(&format!("half of peak ({half:.0}/s)"), stats, seconds as f64);

        let rss_after = rss_kib(pid);
        println!("server RSS: {:.1} MiB before load, {:.1} MiB after", rss_before as f64 / 1024.0, rss_after as f64 / 1024.0);
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load bench: run with `cargo bench -p custody-webhook --bench load`");
        return;
    }
    let seconds: u64 = std::env::var("LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: usize = std::env::var("LOAD_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    // The captured bytes as the apiserver sent them (indented: 7.7 KB); the signed bodies are
    // re-serialized compact, which makes them smaller despite the attestation.
    let unsigned = Bytes::from(
        std::fs::read(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../testkit/fixtures/admission/deployment-create-agent-annotated.json"),
        )
        .expect("fixture"),
    );
    measure(
        "unsigned, built-in policy",
        &[],
        Bodies::one(unsigned),
        seconds,
        connections,
    );

    let dir = std::env::temp_dir().join(format!("custody-load-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        serde_saphyr::to_string(&signed::policy()).expect("yaml"),
    )
    .expect("write policy");
    let args = [
        std::ffi::OsString::from("--policy"),
        policy.into_os_string(),
    ];
    for key in ["ed25519", "p256"] {
        measure(
            &format!("{key}-signed, one envelope (cached path)"),
            &args,
            Bodies::one(Bytes::from(signed::signed_review(key, 0))),
            seconds,
            connections,
        );
        // More distinct envelopes than the cache holds, sent in turn: every one is verified.
        let many: Vec<Bytes> = (0..custody_engine::attest::DEFAULT_CACHE_CAPACITY + 1024)
            .map(|i| Bytes::from(signed::signed_review(key, i)))
            .collect();
        measure(
            &format!("{key}-signed, {} envelopes (each verified)", many.len()),
            &args,
            Bodies {
                all: Arc::new(many),
                start: 0,
            },
            seconds,
            connections,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
