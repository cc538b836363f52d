//! Writing reports: server-side apply of what changed, deletion of what is gone, at a bounded
//! rate. What was last written is remembered by digest (listed once from the cluster, then kept),
//! so an audit that finds what the last one found costs no write.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use custody_crds::report::ReportFormat;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};

use super::report::{MANAGED_BY_LABEL, ReportObject, SOURCE};
use crate::metrics::{Label, Metrics, ReportWrite, ReportWriteLabels};

/// The field manager of report writes.
const FIELD_MANAGER: &str = "custody-controller";

/// Whether the report API is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Its CRD is installed.
    Served,
    /// It is not: the audit goes to metrics alone.
    Missing,
}

fn count(metrics: &Metrics, outcome: ReportWrite) {
    metrics
        .audit_report_writes
        .get_or_create(&ReportWriteLabels {
            outcome: Label(outcome),
        })
        .inc();
}

/// Why reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Discovery or the first list failed.
    #[error("cannot read the report API: {0}")]
    Api(#[from] kube::Error),
}

/// Writes one format's reports.
pub struct Publisher {
    client: Client,
    format: ReportFormat,
    resource: ApiResource,
    digest_annotation: String,
    /// What the cluster holds, by (namespace, name): its digest. `None` until listed.
    written: Option<BTreeMap<(String, String), String>>,
    pace: Duration,
    next_write: Option<tokio::time::Instant>,
    availability: Option<Availability>,
}

impl Publisher {
    /// A publisher that writes at most `writes_per_second` reports a second.
    pub fn new(
        client: Client,
        format: ReportFormat,
        digest_annotation: String,
        writes_per_second: u32,
    ) -> Self {
        let gvk = GroupVersionKind::gvk(format.group(), format.version(), format.kind());
        Self {
            client,
            format,
            resource: ApiResource::from_gvk_with_plural(&gvk, format.plural()),
            digest_annotation,
            written: None,
            pace: Duration::from_secs(1) / writes_per_second.max(1),
            next_write: None,
            availability: None,
        }
    }

    /// Forgets what was written: another replica may have written since (after a leadership
    /// change), so the next publish lists again.
    pub fn forget(&mut self) {
        self.written = None;
    }

    /// Whether the report API is served; logs when that changes (once at start when missing).
    pub async fn check(&mut self) -> Result<Availability, PublishError> {
        let served = match self
            .client
            .list_api_group_resources(self.format.api_version())
            .await
        {
            Ok(list) => list
                .resources
                .iter()
                .any(|r| r.name == self.format.plural()),
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(e) => return Err(e.into()),
        };
        let now = if served {
            Availability::Served
        } else {
            Availability::Missing
        };
        if self.availability != Some(now) {
            match now {
                Availability::Served => tracing::info!(
                    api = self.format.api_version(),
                    kind = self.format.kind(),
                    "policy reports enabled"
                ),
                Availability::Missing => tracing::warn!(
                    api = self.format.api_version(),
                    kind = self.format.kind(),
                    "the report CRD is not installed; the audit goes to metrics only (install it, or set audit.installReportCRDs in the chart)"
                ),
            }
            self.availability = Some(now);
            self.written = None;
        }
        Ok(now)
    }

    /// Starts a pass over every namespace: learns what the cluster holds, once.
    pub async fn begin(&mut self) -> Result<(), PublishError> {
        if self.written.is_some() {
            return Ok(());
        }
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.resource);
        let listed = all
            .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={SOURCE}")))
            .await?;
        let digest_annotation = &self.digest_annotation;
        self.written = Some(
            listed
                .items
                .iter()
                .filter_map(|o| {
                    let key = (o.metadata.namespace.clone()?, o.metadata.name.clone()?);
                    let digest = o
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(digest_annotation))
                        .cloned()
                        .unwrap_or_default();
                    Some((key, digest))
                })
                .collect(),
        );
        Ok(())
    }

    /// Writes one report if its results changed (server-side apply). A failed write is counted
    /// and retried at the next audit.
    pub async fn write(&mut self, report: &ReportObject, metrics: &Metrics) {
        let key = (report.namespace.clone(), report.name.clone());
        let written = self.written.get_or_insert_with(BTreeMap::new);
        if written.get(&key) == Some(&report.digest) {
            count(metrics, ReportWrite::Unchanged);
            return;
        }
        self.pace().await;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &report.namespace, &self.resource);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let result = api
            .patch(&report.name, &params, &Patch::Apply(&report.object))
            .await;
        let written = self.written.get_or_insert_with(BTreeMap::new);
        match result {
            Ok(_) => {
                count(metrics, ReportWrite::Written);
                written.insert(key, report.digest.clone());
            }
            Err(error) => {
                count(metrics, ReportWrite::Failed);
                written.remove(&key);
                tracing::warn!(%error, namespace = %report.namespace, name = %report.name, "cannot write a policy report; retrying at the next audit");
            }
        }
    }

    /// Ends a pass: deletes Custody's reports that the pass did not write or confirm.
    pub async fn finish(&mut self, wanted: &BTreeSet<(String, String)>, metrics: &Metrics) {
        let stale: Vec<(String, String)> = self
            .written
            .iter()
            .flat_map(|w| w.keys())
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in stale {
            self.pace().await;
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &key.0, &self.resource);
            let deleted = match api.delete(&key.1, &DeleteParams::default()).await {
                Ok(_) => {
                    count(metrics, ReportWrite::Deleted);
                    true
                }
                Err(kube::Error::Api(status)) if status.code == 404 => true,
                Err(error) => {
                    count(metrics, ReportWrite::Failed);
                    tracing::warn!(%error, namespace = %key.0, name = %key.1, "cannot delete a stale policy report; retrying at the next audit");
                    false
                }
            };
            if deleted && let Some(w) = self.written.as_mut() {
                w.remove(&key);
            }
        }
    }

    /// Waits for the next write slot.
    async fn pace(&mut self) {
        let now = tokio::time::Instant::now();
        if let Some(next) = self.next_write
            && next > now
        {
            tokio::time::sleep_until(next).await;
        }
        self.next_write = Some(tokio::time::Instant::now() + self.pace);
    }
}
