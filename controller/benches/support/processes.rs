//! The controller benches' processes and what they read of them: the release controller as a
//! child process against the fake API server, a plain HTTP GET of its admin port, expositions,
//! and /proc.
// Shared by both benches; each uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custody_testkit::fake_apiserver::FakeApiServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds between two scrapes of the exporter.
pub const SCRAPE_SECONDS: u64 = 1;

/// A child process, stopped with SIGTERM (so a profiler wrapping the controller writes its
/// output) and killed if it lingers; then its folder goes.
pub struct Process {
    pub child: Child,
    dir: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port on loopback.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
}

/// A folder of this run's own under the system's temporary folder.
fn scratch(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("custody-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// The release `custody-controller` (or CUSTODY_CONTROLLER_BIN) against `api`, without leader
/// election; where its admin port listens.
pub fn start_controller(api: &FakeApiServer, default_log: &str) -> (Process, SocketAddr) {
    let dir = scratch("controller");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: '{}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: c, context: {{cluster: fake, user: u}}}}]\ncurrent-context: c\n",
        api.url()
    )).expect("kubeconfig");
    let admin = free_port();
    let child = Command::new(
        std::env::var("CUSTODY_CONTROLLER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_custody-controller").to_string()),
    )
    .args(["--no-leader-election", "--admin-listen", &admin.to_string()])
    .env("KUBECONFIG", &kubeconfig)
    .env(
        "RUST_LOG",
        std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| default_log.into()),
    )
    .stdout(Stdio::null())
    .spawn()
    .expect("start custody-controller");
    (Process { child, dir }, admin)
}

/// The body of an HTTP/1.0 GET (so no chunked encoding), if it answered 200 within 10 s.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.lines().next()?.split(' ').nth(1)?;
        (status == "200").then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .ok()
        .flatten()
}

/// Waits for `ready` to hold, up to `limit`; whether it did.
pub async fn eventually<F: Future<Output = bool>>(
    limit: Duration,
    mut ready: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The samples of an exposition, as (name, labels, value).
pub fn samples(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            Some((name, labels, value.parse().ok()?))
        })
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text)
        .filter(|(n, l, _)| *n == name && labels.iter().all(|x| l.contains(x)))
        .map(|(_, _, v)| v)
        .sum()
}

/// A histogram's cumulative buckets, as (le, count).
pub fn buckets(text: &str, name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    samples(text)
        .filter(|(n, l, _)| *n == bucket && labels.iter().all(|x| l.contains(x)))
        .filter_map(|(_, l, v)| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            Some((
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                },
                v,
            ))
        })
        .collect()
}

/// User and system CPU seconds of a process.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

/// A memory figure of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in MiB.
pub fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// The sockets a process holds open (its connections, to the API server above all).
pub fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}
