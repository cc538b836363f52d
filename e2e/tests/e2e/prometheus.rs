//! A real Prometheus for the metric-analysis scenarios: Debian's `prometheus` (which
//! `.ci/tools.sh` installs) as a child process on 127.0.0.1, scraping the suite's exporter every
//! second into a data folder of its own. It can be stopped and started again on the same port
//! and data, as an outage. Whatever ends the run, it does not outlive the test process: `Drop`
//! kills it, and a janitor in a session of its own does when the process dies without
//! unwinding.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use custody_e2e::local::{free_port, tail, terminate};
use custody_e2e::{http_get, wait_for};
use serde_json::Value;

/// Closes every file descriptor above stderr of the shell it runs in.
const CLOSE_INHERITED: &str =
    r#"for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done"#;

/// A Prometheus process, killed when dropped; then its folder goes.
pub struct Prometheus {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Mutex<Option<Child>>,
    janitor: Option<Child>,
}

impl Prometheus {
    /// The `prometheus` binary: `CUSTODY_E2E_PROMETHEUS` when set, else on PATH or in
    /// /usr/bin; `None` when there is none.
    pub fn binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("CUSTODY_E2E_PROMETHEUS").filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return path.is_file().then_some(path);
        }
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    }

    /// Starts `binary` scraping `exporter` every second and waits until it is ready.
    pub async fn launch(binary: PathBuf, exporter: SocketAddr) -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("custody-e2e-prometheus-{}", std::process::id()));
        // A run that died with this pid left its data: start empty.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data"))?;
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n\
                 - job_name: e2e-exporter\n  static_configs: [{{targets: ['{exporter}']}}]\n"
            ),
        )?;
        let mut prometheus = Self {
            binary,
            port: free_port()?,
            dir,
            child: Mutex::new(None),
            janitor: None,
        };
        prometheus.spawn_janitor()?;
        prometheus.start().await?;
        Ok(prometheus)
    }

    /// The base URL of its HTTP API, as a policy's `provider.prometheus.address`.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        tail(&self.log())
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts the process (again: same port, same data) and waits for `/-/ready`.
    pub async fn start(&self) -> anyhow::Result<()> {
        if !self.running() {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.log())?;
            // Through a shell that closes every descriptor above stderr first: what the test
            // process inherited without close-on-exec (a CI runner's pipe) must not be held
            // open by a server.
            let child = Command::new("bash")
                // Then the server in place of the shell (same pid).
                .args([
                    "-c",
                    &format!("{CLOSE_INHERITED}; exec \"$@\""),
                    "prometheus",
                ])
                .arg(&self.binary)
                .arg(format!(
                    "--config.file={}",
                    self.dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    self.dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", self.binary.display()))?;
            std::fs::write(self.dir.join("pid"), child.id().to_string())?;
            *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        }
        let ready = format!("{}/-/ready", self.address());
        wait_for("prometheus ready", Duration::from_secs(60), || async {
            anyhow::ensure!(self.running(), "prometheus exited; {}", self.log_tail());
            Ok(http_get(&ready)
                .await
                .is_ok_and(|(code, _)| code == 200)
                .then_some(()))
        })
        .await
    }

    /// Stops the process (SIGTERM, then SIGKILL) and waits for it to exit: an outage.
    pub fn stop(&self) -> anyhow::Result<()> {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            terminate(&mut child)?;
        }
        Ok(())
    }

    /// Runs an instant query: its one value, `None` for an empty result (no data). Fails when
    /// Prometheus is away or answers with an error or several series.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.address(),
            percent_encode(promql)
        );
        let (status, body) = http_get(&url).await?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| {
            anyhow::anyhow!("prometheus answered {status} with no JSON ({e}): {body}")
        })?;
        anyhow::ensure!(
            status == 200 && answer["status"] == "success",
            "prometheus refused {promql}: {status} {body}"
        );
        let result = answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match result.as_slice() {
            [] => Ok(None),
            [one] => {
                let text = one["value"][1].as_str().unwrap_or_default();
                Ok(Some(text.parse().map_err(|e| {
                    anyhow::anyhow!("prometheus answered {text:?} for {promql}: {e}")
                })?))
            }
            many => anyhow::bail!("{promql} returned {} series: {body}", many.len()),
        }
    }

    /// The janitor: when this process is gone, kills the Prometheus it started last (its pid
    /// is in a file, since a restart changes it) and removes the folder. Its own session keeps
    /// it out of a Ctrl-C.
    fn spawn_janitor(&mut self) -> anyhow::Result<()> {
        let script = format!(
            "{CLOSE_INHERITED}\n\
             while kill -0 {me} 2>/dev/null; do sleep 1; done\n\
             kill -9 \"$(cat '{pid}' 2>/dev/null)\" 2>/dev/null\n\
             rm -rf '{dir}'\n",
            me = std::process::id(),
            pid = self.dir.join("pid").display(),
            dir = self.dir.display(),
        );
        let child = Command::new("setsid")
            .args(["bash", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start prometheus's janitor (setsid bash): {e}"))?;
        self.janitor = Some(child);
        Ok(())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // Nothing is left for the janitor to do.
        if let Some(mut j) = self.janitor.take() {
            let _ = j.kill();
            let _ = j.wait();
        }
    }
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved characters).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn a_query_survives_the_url() {
        assert_eq!(
            percent_encode(r#"sum(rate(x{a="b c"}[10s]))/2"#),
            "sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B10s%5D%29%29%2F2"
        );
    }
}
