//! The policy reports the controller's background audit writes: `openreports.io/v1alpha1`
//! `Report`, or `wgpolicyk8s.io/v1alpha2` `PolicyReport` for Policy Reporter installs that read
//! only that. Both APIs belong to other projects (the openreports project and the Kubernetes
//! policy working group); the types here carry the fields Custody writes, with the same names
//! and shapes, and [`report_crd`] renders a CRD for clusters that have neither installed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceValidation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which report API the audit writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// `openreports.io/v1alpha1` `Report`: what Kyverno 1.15 and later and Policy Reporter read.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`, its predecessor.
    PolicyReport,
}

impl ReportFormat {
    /// The API group.
    pub const fn group(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "openreports.io",
            ReportFormat::PolicyReport => "wgpolicyk8s.io",
        }
    }

    /// The API version within the group.
    pub const fn version(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "v1alpha1",
            ReportFormat::PolicyReport => "v1alpha2",
        }
    }

    /// `group/version`.
    pub const fn api_version(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "openreports.io/v1alpha1",
            ReportFormat::PolicyReport => "wgpolicyk8s.io/v1alpha2",
        }
    }

    /// The kind.
    pub const fn kind(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "Report",
            ReportFormat::PolicyReport => "PolicyReport",
        }
    }

    /// The REST plural.
    pub const fn plural(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "reports",
            ReportFormat::PolicyReport => "policyreports",
        }
    }

    const fn short_name(self) -> &'static str {
        match self {
            ReportFormat::OpenReports => "reps",
            ReportFormat::PolicyReport => "polr",
        }
    }

    /// Whether the report carries a top-level `source` (v1alpha2 has it per result only).
    pub const fn has_report_source(self) -> bool {
        matches!(self, ReportFormat::OpenReports)
    }
}

/// A report's content: everything besides `apiVersion`, `kind` and `metadata`, which sit beside
/// it at the top level (these APIs have no `spec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportBody {
    /// The engine that produced every result (openreports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Counts of results by outcome.
    #[serde(default)]
    pub summary: ReportSummary,
    /// The results.
    #[serde(default)]
    pub results: Vec<ReportResult>,
}

/// Counts of results by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportSummary {
    /// Requirements met.
    #[serde(default)]
    pub pass: i64,
    /// Requirements not met.
    #[serde(default)]
    pub fail: i64,
    /// Requirements not met, not scored.
    #[serde(default)]
    pub warn: i64,
    /// Could not be evaluated.
    #[serde(default)]
    pub error: i64,
    /// Not evaluated.
    #[serde(default)]
    pub skip: i64,
}

impl ReportSummary {
    /// Counts `results`.
    pub fn of(results: &[ReportResult]) -> Self {
        let mut s = Self::default();
        for r in results {
            match r.result {
                Some(ResultStatus::Pass) => s.pass += 1,
                Some(ResultStatus::Fail) => s.fail += 1,
                Some(ResultStatus::Warn) => s.warn += 1,
                Some(ResultStatus::Error) => s.error += 1,
                Some(ResultStatus::Skip) => s.skip += 1,
                None => {}
            }
        }
        s
    }
}

/// The outcome of one rule for one resource.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// Met.
    Pass,
    /// Not met.
    Fail,
    /// Not met, not scored.
    Warn,
    /// Could not be evaluated.
    Error,
    /// Not evaluated.
    Skip,
}

impl ResultStatus {
    /// The status as written.
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Pass => "pass",
            ResultStatus::Fail => "fail",
            ResultStatus::Warn => "warn",
            ResultStatus::Error => "error",
            ResultStatus::Skip => "skip",
        }
    }
}

/// How much a result matters.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational.
    Info,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One rule's outcome for one resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// The engine: `custody`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The policy.
    pub policy: String,
    /// The rule within the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultStatus>,
    /// How much it matters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Whether the result is scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<bool>,
    /// One line for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The policy's category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// When the result was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<ResultTimestamp>,
    /// The resources checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    /// Details as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// A protobuf-style timestamp, as these APIs write one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResultTimestamp {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// A CRD for `format`, for clusters that have neither Kyverno nor Policy Reporter's CRDs: the
/// fields Custody writes, with the upstream names, so the upstream CRD can replace it later.
pub fn report_crd(format: ReportFormat) -> Result<CustomResourceDefinition, serde_json::Error> {
    let generate = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        .into_generator();
    let mut schema = serde_json::to_value(generate.into_root_schema_for::<ReportBody>())?;
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        let string = serde_json::json!({"type": "string"});
        properties.insert("apiVersion".into(), string.clone());
        properties.insert("kind".into(), string);
        properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
        if !format.has_report_source() {
            properties.remove("source");
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("title");
        object.insert(
            "description".into(),
            format!(
                "{}: policy results for the resources of a namespace.",
                format.kind()
            )
            .into(),
        );
    }
    let column = |name: &str, type_: &str, path: &str| CustomResourceColumnDefinition {
        name: name.into(),
        type_: type_.into(),
        json_path: path.into(),
        ..CustomResourceColumnDefinition::default()
    };
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{}", format.plural(), format.group())),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: format.group().into(),
            names: CustomResourceDefinitionNames {
                kind: format.kind().into(),
                list_kind: Some(format!("{}List", format.kind())),
                plural: format.plural().into(),
                singular: Some(format.kind().to_lowercase()),
                short_names: Some(vec![format.short_name().into()]),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Namespaced".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: format.version().into(),
                served: true,
                storage: true,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(serde_json::from_value(schema)?),
                }),
                additional_printer_columns: Some(vec![
                    column("Pass", "integer", ".summary.pass"),
                    column("Fail", "integer", ".summary.fail"),
                    column("Warn", "integer", ".summary.warn"),
                    column("Error", "integer", ".summary.error"),
                    column("Skip", "integer", ".summary.skip"),
                    column("Age", "date", ".metadata.creationTimestamp"),
                ]),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialize_with_the_upstream_field_names() {
        let result = ReportResult {
            source: Some("custody".into()),
            policy: "require-provenance".into(),
            rule: Some("MissingAnnotation".into()),
            result: Some(ResultStatus::Fail),
            severity: Some(Severity::High),
            scored: Some(true),
            timestamp: Some(ResultTimestamp {
                seconds: 10,
                nanos: 0,
            }),
            properties: [("owner".to_string(), "payments".to_string())].into(),
            ..ReportResult::default()
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "source": "custody", "policy": "require-provenance", "rule": "MissingAnnotation",
                "result": "fail", "severity": "high", "scored": true,
                "timestamp": {"seconds": 10, "nanos": 0}, "properties": {"owner": "payments"}
            })
        );
        assert_eq!(
            ReportSummary::of(&[result.clone(), result]),
            ReportSummary {
                fail: 2,
                ..ReportSummary::default()
            }
        );
    }

    #[test]
    fn each_format_gets_its_own_crd() {
        for format in [ReportFormat::OpenReports, ReportFormat::PolicyReport] {
            let crd = report_crd(format).unwrap();
            let json = serde_json::to_value(&crd).unwrap();
            let props = &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
            assert_eq!(props["metadata"]["type"], "object");
            assert_eq!(
                props["results"]["items"]["properties"]["result"]["enum"],
                serde_json::json!(["pass", "fail", "warn", "error", "skip"])
            );
            assert_eq!(
                props.get("source").is_some(),
                format == ReportFormat::OpenReports
            );
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(format!("{}.{}", format.plural(), format.group()).as_str())
            );
        }
    }
}
