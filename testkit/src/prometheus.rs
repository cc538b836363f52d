//! A real Prometheus (Debian's `prometheus`, which `.ci/tools.sh` installs) as a child process,
//! for the tests and benchmarks that query one: scraping one target every `scrape_seconds`,
//! with a configuration and data folder of its own, on a free port of loopback. It is killed and
//! its folder removed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Debian's `prometheus`, on PATH or where the package puts it; `None` when there is none (the
/// caller prints that it skips).
pub fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    address: SocketAddr,
}

impl Prometheus {
    /// Starts `binary` scraping `target` every `scrape_seconds` (evaluating rules as often),
    /// named `name` in its folder under the system's temporary folder. It answers once its
    /// `/-/ready` does, which is the caller's to wait for.
    pub fn start(
        binary: &Path,
        target: SocketAddr,
        scrape_seconds: u64,
        name: &str,
    ) -> std::io::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("custody-prometheus-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: {scrape_seconds}s, evaluation_interval: {scrape_seconds}s}}\nscrape_configs:\n- job_name: {name}\n  static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )?;
        let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self {
            child,
            dir,
            address,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its base URL, as a policy's provider names it.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
