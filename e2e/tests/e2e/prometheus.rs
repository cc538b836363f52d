//! A real Prometheus for the metric-analysis scenarios: Debian's `prometheus` as a
//! `LocalServer`, scraping the suite's exporter every second into its data folder. It can be
//! stopped and started again on the same port and data, as an outage.

use std::net::SocketAddr;
use std::path::PathBuf;

use custody_e2e::http_get;
use serde_json::Value;

use crate::server::{LocalServer, find_binary};

/// A Prometheus process, killed when dropped; then its folder goes.
pub struct Prometheus {
    server: LocalServer,
}

impl Prometheus {
    /// The `prometheus` binary: `CUSTODY_E2E_PROMETHEUS` when set, else on PATH or in
    /// /usr/bin; `None` when there is none.
    pub fn binary() -> Option<PathBuf> {
        find_binary("CUSTODY_E2E_PROMETHEUS", &["prometheus"])
    }

    /// Starts `binary` scraping `exporter` every second and waits until it is ready.
    pub async fn launch(binary: PathBuf, exporter: SocketAddr) -> anyhow::Result<Self> {
        let server = LocalServer::prepare("prometheus", binary)?;
        std::fs::write(
            server.path("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n\
                 - job_name: e2e-exporter\n  static_configs: [{{targets: ['{exporter}']}}]\n"
            ),
        )?;
        let prometheus = Self { server };
        prometheus.start().await?;
        Ok(prometheus)
    }

    /// The base URL of its HTTP API, as a policy's `provider.prometheus.address`.
    pub fn address(&self) -> String {
        self.server.address()
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.server.running()
    }

    /// Starts the process (again: same port, same data) and waits until it is ready.
    pub async fn start(&self) -> anyhow::Result<()> {
        let flags = [
            format!(
                "--config.file={}",
                self.server.path("prometheus.yml").display()
            ),
            format!("--storage.tsdb.path={}", self.server.path("data").display()),
            format!("--web.listen-address={}", self.server.listen()),
        ];
        self.server.start(&flags).await
    }

    /// Stops the process (SIGTERM, then SIGKILL) and waits for it to exit: an outage.
    pub fn stop(&self) -> anyhow::Result<()> {
        self.server.stop()
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
