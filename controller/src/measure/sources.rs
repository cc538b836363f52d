//! The metric sources the policies name, built once and shared by every analysis that names
//! the same one, so its concurrency bound and answer cache are per server, not per rollout. A
//! source's CA and headers come from Secrets in the controller's own namespace, read when it
//! is built; it is built again after [`REBUILD_AFTER`], so a rotated credential is picked up
//! without a restart and without keeping a watch on every Secret of the namespace.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_crds::analysis::PrometheusSpec;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tokio::sync::Mutex;

use crate::headers;

use super::prometheus::{MetricSource, Prometheus, Settings};

/// How long a built source is used before its Secrets are read again.
pub const REBUILD_AFTER: Duration = Duration::from_secs(300);

/// Queries in flight at once, per server.
pub const CONCURRENCY: usize = 32;

/// Each source built, by its spec as JSON, with when.
type Built = HashMap<String, (Instant, Arc<dyn MetricSource>)>;

/// The sources, by the spec that names them.
pub struct Sources {
    secrets: Option<Api<Secret>>,
    built: Mutex<Built>,
    fixed: Option<Arc<dyn MetricSource>>,
}

impl Sources {
    /// Sources whose Secrets are read through `secrets` (the controller's own namespace), if
    /// it may read them.
    pub fn new(secrets: Option<Api<Secret>>) -> Self {
        Self {
            secrets,
            built: Mutex::default(),
            fixed: None,
        }
    }

    /// One source answering for every spec: for tests and benchmarks.
    pub fn fixed(source: Arc<dyn MetricSource>) -> Self {
        Self {
            secrets: None,
            built: Mutex::default(),
            fixed: Some(source),
        }
    }

    /// The source `spec` names; why not, in words a report can carry.
    pub async fn get(&self, spec: &PrometheusSpec) -> Result<Arc<dyn MetricSource>, String> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let key = serde_json::to_string(spec).map_err(|e| e.to_string())?;
        let mut built = self.built.lock().await;
        if let Some((at, source)) = built.get(&key)
            && at.elapsed() < REBUILD_AFTER
        {
            return Ok(source.clone());
        }
        let source: Arc<dyn MetricSource> = Arc::new(self.build(spec).await?);
        built.insert(key, (Instant::now(), source.clone()));
        Ok(source)
    }

    async fn build(&self, spec: &PrometheusSpec) -> Result<Prometheus, String> {
        let ca = match &spec.ca_from {
            Some(secret) => Some(self.secret_key(&secret.name, "ca.crt").await?),
            None => None,
        };
        let headers = match &spec.headers_from {
            Some(secret) => {
                let data = self.secret_data(&secret.name).await?;
                headers::from_secret_data(&data)
                    .map_err(|e| format!("the Secret {:?}: {e}", secret.name))?
            }
            None => Vec::new(),
        };
        Prometheus::new(Settings {
            address: &spec.address,
            ca_pem: ca.as_deref(),
            headers,
            timeout: Duration::from_secs(u64::from(spec.timeout_seconds.max(1))),
            concurrency: CONCURRENCY,
        })
        .map_err(|e| format!("the provider {}: {e}", spec.address))
    }

    async fn secret_data(
        &self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, k8s_openapi::ByteString>, String> {
        let secrets = self.secrets.as_ref().ok_or_else(|| {
            format!("the provider's Secret {name:?} is not readable: no namespace to read it from")
        })?;
        let secret = secrets
            .get(name)
            .await
            .map_err(|e| format!("cannot read the Secret {name:?}: {e}"))?;
        Ok(secret.data.unwrap_or_default())
    }

    async fn secret_key(&self, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let mut data = self.secret_data(name).await?;
        data.remove(key)
            .map(|b| b.0)
            .ok_or_else(|| format!("the Secret {name:?} has no key {key:?}"))
    }
}
