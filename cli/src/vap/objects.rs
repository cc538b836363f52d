//! The ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding fields the backstop
//! uses, identical in `admissionregistration.k8s.io/v1beta1` (1.28, 1.29) and `v1` (1.30+).
//! Own types rather than k8s-openapi's, whose v1beta1 module depends on the feature version.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Serialize;

/// Object metadata: a name, labels and annotations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metadata {
    /// The object's name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations: which CustodyPolicy, what is not covered, what was left out.
    pub annotations: BTreeMap<String, String>,
}

/// A ValidatingAdmissionPolicy.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    /// `admissionregistration.k8s.io/v1` or `/v1beta1`.
    pub api_version: String,
    /// `ValidatingAdmissionPolicy`.
    pub kind: String,
    /// Metadata.
    pub metadata: Metadata,
    /// Spec.
    pub spec: PolicySpec,
}

/// What a ValidatingAdmissionPolicy matches and checks.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// What a CEL error (or a misconfigured binding) answers: `Fail` or `Ignore`.
    pub failure_policy: String,
    /// The resources and namespaces the policy can ever apply to.
    pub match_constraints: MatchResources,
    /// CEL conditions that must all hold for the validations to run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_conditions: Vec<NamedExpression>,
    /// The checks; each false one is a violation.
    pub validations: Vec<Validation>,
}

/// Resource rules and selectors.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResources {
    /// `Equivalent`: a request through another API version of the same kind matches too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_policy: Option<String>,
    /// Namespaces by label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Objects by label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// Resources and operations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_rules: Vec<ResourceRule>,
}

/// One group's resources and operations.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRule {
    /// API groups.
    pub api_groups: Vec<String>,
    /// API versions.
    pub api_versions: Vec<String>,
    /// Operations.
    pub operations: Vec<String>,
    /// Resources (never subresources).
    pub resources: Vec<String>,
    /// `Namespaced`.
    pub scope: String,
}

/// A named CEL expression: a match condition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NamedExpression {
    /// The name.
    pub name: String,
    /// The CEL expression.
    pub expression: String,
}

/// One check.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Validation {
    /// CEL that must be true.
    pub expression: String,
    /// What the requester reads when it is false.
    pub message: String,
}

/// A ValidatingAdmissionPolicyBinding.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// Same as the policy's.
    pub api_version: String,
    /// `ValidatingAdmissionPolicyBinding`.
    pub kind: String,
    /// Metadata.
    pub metadata: Metadata,
    /// Spec.
    pub spec: BindingSpec,
}

/// Which policy, where, and what a violation does.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingSpec {
    /// The ValidatingAdmissionPolicy's name.
    pub policy_name: String,
    /// `Deny`, `Warn` or `Audit`.
    pub validation_actions: Vec<String>,
    /// The CustodyPolicy's namespace and object selectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_resources: Option<MatchResources>,
}
