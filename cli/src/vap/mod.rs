//! `custody vap`: a ValidatingAdmissionPolicy backstop generated from CustodyPolicies.
//!
//! Compiled policies and options go in, one ValidatingAdmissionPolicy and one binding per
//! policy come out, with no I/O: the apiserver then enforces, by itself and without the
//! webhook, what CEL can express of each policy (required keys, keys required by actor, the
//! built-in formats, allowed values and patterns), with the webhook's reach (resources, kinds,
//! namespace globs and selectors, excluded requesters, controllers writing what they own). So
//! with the webhook down under `failurePolicy: Ignore`, unannotated workloads are still
//! refused. The backstop is never stricter than the webhook: what it cannot express exactly,
//! it leaves out and says so in the object's annotations.

mod cel;
mod format;
mod matching;
pub mod objects;
mod re2;
mod rules;

use std::collections::BTreeMap;

use custody_crds::{EnforcementMode, FailurePolicy, Vocabulary};

use custody_engine::{CompiledPolicy, PolicySet};
use objects::{Binding, BindingSpec, Metadata, Policy, PolicySpec};

/// What the backstop leaves to the webhook, in the annotation and the header comment.
pub const NOT_COVERED: &str = "signatures, registered teams, quarantine, stale provenance, freezes, limits, probation, approvals, and the actor cross-check against identities.agents stay with the webhook";

/// Annotations on the generated objects.
pub const POLICY_ANNOTATION: &str = "custody.dev/policy";
/// What the backstop does not enforce.
pub const NOT_COVERED_ANNOTATION: &str = "custody.dev/backstop-not-covered";
/// The parts of the policy the backstop could not express, if any.
pub const SKIPPED_ANNOTATION: &str = "custody.dev/backstop-skipped";

/// The API version of ValidatingAdmissionPolicy to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// `admissionregistration.k8s.io/v1beta1`: Kubernetes 1.28 and 1.29 (not served by default
    /// there: the cluster must enable the group version and the feature gate).
    V1beta1,
    /// `admissionregistration.k8s.io/v1`: Kubernetes 1.30 and later.
    V1,
}

impl ApiVersion {
    /// The version for a Kubernetes version written `1.28`, `v1.29` or `1.30.2`.
    pub fn for_kube_version(version: &str) -> Result<Self, VapError> {
        let bad = || VapError::KubeVersion(version.to_string());
        let mut parts = version.trim().trim_start_matches('v').split('.');
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        match (major, minor) {
            (1, 28..=29) => Ok(ApiVersion::V1beta1),
            (1, 30..) | (2.., _) => Ok(ApiVersion::V1),
            _ => Err(bad()),
        }
    }

    /// The apiVersion field.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApiVersion::V1beta1 => "admissionregistration.k8s.io/v1beta1",
            ApiVersion::V1 => "admissionregistration.k8s.io/v1",
        }
    }
}

/// Why nothing could be generated.
#[derive(Debug, thiserror::Error)]
pub enum VapError {
    /// The Kubernetes version is not one with ValidatingAdmissionPolicy.
    #[error(
        "--kube-version {0:?}: expected 1.28 or later (ValidatingAdmissionPolicy is beta in 1.28 and 1.29, GA from 1.30)"
    )]
    KubeVersion(String),
    /// The objects did not serialize.
    #[error("cannot write the objects as YAML: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct VapOptions {
    /// The API version to write.
    pub api_version: ApiVersion,
    /// The annotation keys.
    pub vocabulary: Vocabulary,
    /// Namespaces never judged besides kube-system, kube-public and kube-node-lease (Custody's
    /// own, as the chart's webhook configuration does).
    pub exclude_namespaces: Vec<String>,
    /// Users never judged (Custody's controller, whose reverts the webhook never sees).
    pub exclude_users: Vec<String>,
}

/// The backstop of one CustodyPolicy.
#[derive(Clone, Debug, PartialEq)]
pub struct Backstop {
    /// The ValidatingAdmissionPolicy.
    pub policy: Policy,
    /// Its binding.
    pub binding: Binding,
}

/// Everything generated, and the policies that gave nothing to enforce.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    /// One per policy with at least one check.
    pub backstops: Vec<Backstop>,
    /// Policies without any annotation rule, for which no object is written.
    pub empty: Vec<String>,
}

/// The backstops of `policies`, in name order.
pub fn generate(policies: &PolicySet, options: &VapOptions) -> Generated {
    let mut out = Generated::default();
    for policy in policies.iter() {
        match backstop(policy, options) {
            Some(b) => out.backstops.push(b),
            None => out.empty.push(policy.name.clone()),
        }
    }
    out
}

fn backstop(policy: &CompiledPolicy, options: &VapOptions) -> Option<Backstop> {
    let checks = rules::checks(policy, &options.vocabulary);
    if checks.validations.is_empty() {
        return None;
    }
    let name = if policy.name.starts_with("custody-") {
        policy.name.clone()
    } else {
        format!("custody-{}", policy.name)
    };
    let mut annotations = BTreeMap::from([
        (POLICY_ANNOTATION.to_string(), policy.name.clone()),
        (NOT_COVERED_ANNOTATION.to_string(), NOT_COVERED.to_string()),
    ]);
    if !checks.skipped.is_empty() {
        annotations.insert(SKIPPED_ANNOTATION.to_string(), checks.skipped.join("; "));
    }
    let metadata = Metadata {
        name: name.clone(),
        labels: BTreeMap::from([
            (
                "app.kubernetes.io/part-of".to_string(),
                "custody".to_string(),
            ),
            (
                "app.kubernetes.io/component".to_string(),
                "backstop".to_string(),
            ),
        ]),
        annotations,
    };
    let api_version = options.api_version.as_str().to_string();
    let actions = match policy.spec.mode {
        EnforcementMode::Enforce => "Deny",
        EnforcementMode::Warn => "Warn",
        EnforcementMode::Audit => "Audit",
    };
    let failure_policy = match policy.spec.failure_policy {
        FailurePolicy::Fail => "Fail",
        FailurePolicy::Ignore => "Ignore",
    };
    Some(Backstop {
        policy: Policy {
            api_version: api_version.clone(),
            kind: "ValidatingAdmissionPolicy".into(),
            metadata: metadata.clone(),
            spec: PolicySpec {
                failure_policy: failure_policy.into(),
                match_constraints: matching::constraints(&policy.spec, options),
                match_conditions: matching::conditions(&policy.spec, options),
                validations: checks.validations,
            },
        },
        binding: Binding {
            api_version,
            kind: "ValidatingAdmissionPolicyBinding".into(),
            metadata,
            spec: BindingSpec {
                policy_name: name,
                validation_actions: vec![actions.into()],
                match_resources: matching::binding_resources(&policy.spec),
            },
        },
    })
}

/// The objects as multi-document YAML, under a comment saying what they do not cover.
pub fn to_yaml(generated: &Generated) -> Result<String, VapError> {
    let mut out = String::from(
        "# Generated by `custody vap`: a ValidatingAdmissionPolicy backstop per CustodyPolicy, which the\n\
         # apiserver enforces by itself, so unannotated workloads are refused even while the webhook is\n\
         # down under failurePolicy Ignore. It checks required keys (also by actor), built-in formats,\n\
         # allowed values and patterns. It does NOT cover signatures, registered teams, quarantine,\n\
         # stale provenance, freezes, limits, probation, approvals, or the actor cross-check against\n\
         # identities.agents: those stay with the webhook.\n",
    );
    for b in &generated.backstops {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&b.policy)?);
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&b.binding)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_by_kube_version() {
        let cases = [
            ("1.28", Some(ApiVersion::V1beta1)),
            ("v1.29.3", Some(ApiVersion::V1beta1)),
            ("1.30", Some(ApiVersion::V1)),
            ("1.37", Some(ApiVersion::V1)),
            ("1.27", None),
            ("latest", None),
            ("1", None),
        ];
        for (version, expected) in cases {
            assert_eq!(
                ApiVersion::for_kube_version(version).ok(),
                expected,
                "{version}"
            );
        }
    }

    #[test]
    fn modes_become_validation_actions() {
        let options = VapOptions {
            api_version: ApiVersion::V1,
            vocabulary: Vocabulary::default(),
            exclude_namespaces: Vec::new(),
            exclude_users: Vec::new(),
        };
        for (mode, action) in [
            (EnforcementMode::Enforce, "Deny"),
            (EnforcementMode::Warn, "Warn"),
            (EnforcementMode::Audit, "Audit"),
        ] {
            let mut p = custody_crds::CustodyPolicy::builtin_default();
            p.spec.mode = mode;
            let (set, errors) = PolicySet::compile([p]);
            assert!(errors.is_empty());
            let generated = generate(&set, &options);
            assert_eq!(
                generated.backstops[0].binding.spec.validation_actions,
                vec![action.to_string()],
                "{mode}"
            );
        }
    }

    #[test]
    fn a_policy_without_rules_yields_nothing() {
        let mut p = custody_crds::CustodyPolicy::builtin_default();
        p.spec.annotations.clear();
        let (set, _) = PolicySet::compile([p]);
        let options = VapOptions {
            api_version: ApiVersion::V1,
            vocabulary: Vocabulary::default(),
            exclude_namespaces: Vec::new(),
            exclude_users: Vec::new(),
        };
        let generated = generate(&set, &options);
        assert!(generated.backstops.is_empty());
        assert_eq!(generated.empty, vec!["custody-builtin-default".to_string()]);
    }
}
