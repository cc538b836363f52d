//! A real Alertmanager for the on-call scenario: Debian's `prometheus-alertmanager` as a
//! `LocalServer`, alone (no cluster gossip), with one route that sends every alert, each in a
//! group of its own, to a webhook in the test process, resolutions included. So the scenario sees
//! what the controller posted (`GET /api/v2/alerts`) and what Alertmanager made of it (the
//! webhook's `firing` and `resolved` notifications).

use std::path::PathBuf;

use custody_e2e::http_get;
use serde_json::Value;

use crate::server::{LocalServer, find_binary};

/// An Alertmanager process, killed when dropped; then its folder goes.
pub struct Alertmanager {
    server: LocalServer,
}

impl Alertmanager {
    /// The binary: `CUSTODY_E2E_ALERTMANAGER` when set, else `prometheus-alertmanager` (Debian's
    /// name) or `alertmanager` on PATH or in /usr/bin; `None` when there is none.
    pub fn binary() -> Option<PathBuf> {
        find_binary(
            "CUSTODY_E2E_ALERTMANAGER",
            &["prometheus-alertmanager", "alertmanager"],
        )
    }

    /// Starts `binary` routing every alert to `webhook` (a URL), and waits until it is ready.
    pub async fn launch(binary: PathBuf, webhook: &str) -> anyhow::Result<Self> {
        let server = LocalServer::prepare("alertmanager", binary)?;
        // Each alert a group of its own (`...`), flushed at once and a second after each
        // change, so a resolution reaches the webhook within a second or two; never repeated
        // within the run.
        std::fs::write(
            server.path("alertmanager.yml"),
            format!(
                "route:\n  receiver: e2e\n  group_by: ['...']\n  group_wait: 0s\n  \
                 group_interval: 1s\n  repeat_interval: 24h\n\
                 receivers:\n- name: e2e\n  webhook_configs:\n  \
                 - url: '{webhook}'\n    send_resolved: true\n"
            ),
        )?;
        let flags = [
            format!(
                "--config.file={}",
                server.path("alertmanager.yml").display()
            ),
            format!("--storage.path={}", server.path("data").display()),
            format!("--web.listen-address={}", server.listen()),
            // Empty: no cluster listener, no gossip with any other Alertmanager on the host.
            "--cluster.listen-address=".to_string(),
        ];
        server.start(&flags).await?;
        Ok(Self { server })
    }

    /// Its base URL, as a notify target's `url` (the controller adds `/api/v2/alerts`).
    pub fn address(&self) -> String {
        self.server.address()
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self) -> String {
        self.server.log_tail()
    }

    /// The alerts it holds that have not ended (`GET /api/v2/alerts`: a resolved alert is not
    /// listed), as it returns them.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Value>> {
        let (status, body) = http_get(&format!("{}/api/v2/alerts", self.address())).await?;
        anyhow::ensure!(status == 200, "alertmanager answered {status}: {body}");
        match serde_json::from_str(&body)? {
            Value::Array(alerts) => Ok(alerts),
            other => anyhow::bail!("alertmanager's alerts are not a list: {other}"),
        }
    }
}
