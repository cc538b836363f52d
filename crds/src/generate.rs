//! The CRD manifests, rendered from the Rust types. The committed copies under
//! `crds/generated/` are checked against this by a test, and the chart reuses them.

use kube::CustomResourceExt;

use crate::report::{ReportFormat, report_crd};
use crate::{CustodyAgent, CustodyChange, CustodyPolicy, CustodyTeam, RollbackRecord};

/// The file name and YAML text of every Custody CRD.
pub fn crd_documents() -> Result<Vec<(&'static str, String)>, GenerateError> {
    let header = "# Generated from the Rust types in crds/ by `cargo run -p custody-crds --example crdgen`.\n# Do not edit by hand.\n";
    Ok(vec![
        (
            "custodyagents.custody.dev.yaml",
            format!("{header}{}", to_yaml(&CustodyAgent::crd())?),
        ),
        (
            "custodychanges.custody.dev.yaml",
            format!("{header}{}", to_yaml(&CustodyChange::crd())?),
        ),
        (
            "custodypolicies.custody.dev.yaml",
            format!("{header}{}", to_yaml(&CustodyPolicy::crd())?),
        ),
        (
            "custodyteams.custody.dev.yaml",
            format!("{header}{}", to_yaml(&CustodyTeam::crd())?),
        ),
        (
            "rollbackrecords.custody.dev.yaml",
            format!("{header}{}", to_yaml(&RollbackRecord::crd())?),
        ),
    ])
}

/// The file name and YAML text of the report CRDs the chart installs when asked
/// (`audit.installReportCRDs`): they belong to other projects, so they are not in `crds/`.
pub fn report_crd_documents() -> Result<Vec<(&'static str, String)>, GenerateError> {
    let header = "# Generated from the Rust types in crds/src/report.rs by `cargo run -p custody-crds --example crdgen`.\n# Installed only with audit.installReportCRDs; the upstream CRD may replace it.\n";
    [
        ("reports.openreports.io.yaml", ReportFormat::OpenReports),
        (
            "policyreports.wgpolicyk8s.io.yaml",
            ReportFormat::PolicyReport,
        ),
    ]
    .into_iter()
    .map(|(name, format)| Ok((name, format!("{header}{}", to_yaml(&report_crd(format)?)?))))
    .collect()
}

fn to_yaml(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, GenerateError> {
    // Through serde_json's Value first, so keys come out sorted and the output is stable.
    let value = serde_json::to_value(crd)?;
    Ok(serde_saphyr::to_string(&value)?)
}

/// Why the CRD manifests could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The CRD did not serialize to JSON.
    #[error("cannot serialize the CRD: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON did not serialize to YAML.
    #[error("cannot write the CRD as YAML: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}
