//! A CustodyPolicy's reach as ValidatingAdmissionPolicy matching: the chart's workload
//! resource rules narrowed to the policy's kinds, the system namespaces left alone, namespace
//! globs and excluded requesters as match conditions, controllers writing what they own
//! skipped exactly as the chart's webhook matchConditions skip them, and the label selectors
//! on the binding.

use custody_crds::selection::NAMESPACE_NAME_LABEL;
use custody_crds::{CustodyPolicySpec, WorkloadKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::VapOptions;
use super::cel;
use super::objects::{MatchResources, NamedExpression, ResourceRule};
use custody_engine::BUILTIN_CONTROLLERS;

/// Never judged, so the cluster can always recover (the chart's webhook excludes them too).
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The policy's matchConstraints: CREATE and UPDATE of its kinds (never subresources), outside
/// the system namespaces and `options.exclude_namespaces`.
pub fn constraints(spec: &CustodyPolicySpec, options: &VapOptions) -> MatchResources {
    let kinds: Vec<WorkloadKind> = if spec.match_rules.kinds.is_empty() {
        WorkloadKind::ALL.to_vec()
    } else {
        spec.match_rules.kinds.clone()
    };
    let mut resource_rules = Vec::new();
    for group in ["apps", "batch", ""] {
        let resources: Vec<String> = kinds
            .iter()
            .filter(|k| k.group() == group)
            .map(|k| k.plural().to_string())
            .collect();
        if resources.is_empty() {
            continue;
        }
        resource_rules.push(ResourceRule {
            api_groups: vec![group.into()],
            api_versions: vec!["v1".into()],
            operations: vec!["CREATE".into(), "UPDATE".into()],
            resources,
            scope: "Namespaced".into(),
        });
    }
    let mut excluded: Vec<String> = SYSTEM_NAMESPACES.iter().map(|s| s.to_string()).collect();
    for ns in &options.exclude_namespaces {
        if !excluded.contains(ns) {
            excluded.push(ns.clone());
        }
    }
    MatchResources {
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: NAMESPACE_NAME_LABEL.into(),
                operator: "NotIn".into(),
                values: Some(excluded),
            }]),
            match_labels: None,
        }),
        object_selector: None,
        resource_rules,
    }
}

/// The CEL the chart's webhook matchConditions use for "carries a controller ownerReference".
fn owned_by_controller(object: &str) -> String {
    format!(
        "{o} != null && has({o}.metadata) && has({o}.metadata.ownerReferences) && {o}.metadata.ownerReferences.exists(r, has(r.controller) && r.controller)",
        o = object
    )
}

/// The policy's matchConditions, all of which must hold for the validations to run.
pub fn conditions(spec: &CustodyPolicySpec, options: &VapOptions) -> Vec<NamedExpression> {
    let mut out = Vec::new();
    if !options.exclude_users.is_empty() {
        out.push(NamedExpression {
            name: "not-an-excluded-user".into(),
            expression: format!(
                "!(request.userInfo.username in {})",
                cel::list(&options.exclude_users)
            ),
        });
    }
    // custody_engine::ControllerWrite, as the chart's not-a-controller-writing-what-it-owns.
    let mut controllers = format!(
        "request.userInfo.username in {}",
        cel::list(&BUILTIN_CONTROLLERS)
    );
    if let Some(named) = cel::requester_in(&spec.identities.controllers) {
        controllers = format!("{controllers}\n    || {named}");
    }
    out.push(NamedExpression {
        name: "not-a-controller-writing-what-it-owns".into(),
        expression: format!(
            "!(\n  (\n    ({})\n    || ({})\n  )\n  && (\n    {controllers}\n  )\n)",
            owned_by_controller("object"),
            owned_by_controller("oldObject"),
        ),
    });
    if let Some(excluded) = cel::requester_in(&spec.exclude) {
        out.push(NamedExpression {
            name: "not-an-excluded-requester".into(),
            expression: format!("!({excluded})"),
        });
    }
    let namespaces = &spec.match_rules.namespaces;
    if !namespaces.include.is_empty() {
        out.push(NamedExpression {
            name: "namespace-included".into(),
            expression: cel::name_in("request.namespace", &namespaces.include).join(" || "),
        });
    }
    if !namespaces.exclude.is_empty() {
        out.push(NamedExpression {
            name: "namespace-not-excluded".into(),
            expression: format!(
                "!({})",
                cel::name_in("request.namespace", &namespaces.exclude).join(" || ")
            ),
        });
    }
    out
}

/// The binding's matchResources: the policy's namespace and object label selectors, if any.
pub fn binding_resources(spec: &CustodyPolicySpec) -> Option<MatchResources> {
    let rules = &spec.match_rules;
    (rules.namespace_selector.is_some() || rules.object_selector.is_some()).then(|| {
        MatchResources {
            namespace_selector: rules.namespace_selector.clone(),
            object_selector: rules.object_selector.clone(),
            ..MatchResources::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vap::ApiVersion;
    use custody_crds::{IdentitySet, MatchRules, NamespaceMatch, Vocabulary};

    fn options() -> VapOptions {
        VapOptions {
            api_version: ApiVersion::V1,
            vocabulary: Vocabulary::default(),
            exclude_namespaces: vec!["custody-system".into()],
            exclude_users: Vec::new(),
        }
    }

    #[test]
    fn kinds_narrow_the_resource_rules() {
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Vec<WorkloadKind>, Vec<(&str, Vec<&str>)>)> = vec![
            (
                "every kind, as the chart's webhook",
                vec![],
                vec![
                    (
                        "apps",
                        vec!["deployments", "statefulsets", "daemonsets", "replicasets"],
                    ),
                    ("batch", vec!["jobs", "cronjobs"]),
                    ("", vec!["replicationcontrollers", "pods"]),
                ],
            ),
            (
                "deployments and cronjobs only",
                vec![WorkloadKind::CronJob, WorkloadKind::Deployment],
                vec![("apps", vec!["deployments"]), ("batch", vec!["cronjobs"])],
            ),
        ];
        for (situation, kinds, expected) in cases {
            let spec = CustodyPolicySpec {
                match_rules: MatchRules {
                    kinds,
                    ..MatchRules::default()
                },
                ..CustodyPolicySpec::default()
            };
            let got: Vec<(String, Vec<String>)> = constraints(&spec, &options())
                .resource_rules
                .into_iter()
                .map(|r| (r.api_groups[0].clone(), r.resources))
                .collect();
            let expected: Vec<(String, Vec<String>)> = expected
                .into_iter()
                .map(|(g, r)| (g.to_string(), r.into_iter().map(String::from).collect()))
                .collect();
            assert_eq!(got, expected, "{situation}");
        }
    }

    #[test]
    fn system_and_extra_namespaces_are_never_matched() {
        let c = constraints(&CustodyPolicySpec::default(), &options());
        let values = c.namespace_selector.unwrap().match_expressions.unwrap()[0]
            .values
            .clone()
            .unwrap();
        assert_eq!(
            values,
            [
                "kube-system",
                "kube-public",
                "kube-node-lease",
                "custody-system"
            ]
        );
    }

    #[test]
    fn reach_becomes_match_conditions() {
        let spec = CustodyPolicySpec {
            match_rules: MatchRules {
                namespaces: NamespaceMatch {
                    include: vec!["shop-*".into(), "payments".into()],
                    exclude: vec!["shop-sandbox".into()],
                },
                ..MatchRules::default()
            },
            exclude: IdentitySet {
                groups: vec!["platform:break-glass".into()],
                ..IdentitySet::default()
            },
            ..CustodyPolicySpec::default()
        };
        let got: Vec<(String, String)> = conditions(&spec, &options())
            .into_iter()
            .map(|c| (c.name, c.expression))
            .filter(|(n, _)| n != "not-a-controller-writing-what-it-owns")
            .collect();
        let expected = [
            (
                "not-an-excluded-requester",
                "!((has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ['platform:break-glass'])))",
            ),
            (
                "namespace-included",
                "request.namespace in ['payments'] || request.namespace.matches(r'^shop-.*$')",
            ),
            (
                "namespace-not-excluded",
                "!(request.namespace in ['shop-sandbox'])",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, e)| (n.to_string(), e.to_string()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn controllers_are_the_builtin_ones_and_the_policys() {
        let spec = CustodyPolicySpec {
            identities: custody_crds::Identities {
                controllers: IdentitySet {
                    service_accounts: vec!["argo-rollouts/argo-rollouts".into()],
                    ..IdentitySet::default()
                },
                ..Default::default()
            },
            ..CustodyPolicySpec::default()
        };
        let conditions = conditions(&spec, &options());
        let c = &conditions[0];
        assert_eq!(c.name, "not-a-controller-writing-what-it-owns");
        for user in BUILTIN_CONTROLLERS {
            assert!(c.expression.contains(&format!("'{user}'")), "{user}");
        }
        assert!(c.expression.contains(
            "|| request.userInfo.username in ['system:serviceaccount:argo-rollouts:argo-rollouts']"
        ));
        assert!(
            c.expression
                .contains("(oldObject != null && has(oldObject.metadata)")
        );
    }

    #[test]
    fn selectors_go_on_the_binding() {
        let selector = LabelSelector {
            match_labels: Some([("env".to_string(), "prod".to_string())].into()),
            match_expressions: None,
        };
        let spec = CustodyPolicySpec {
            match_rules: MatchRules {
                namespace_selector: Some(selector.clone()),
                ..MatchRules::default()
            },
            ..CustodyPolicySpec::default()
        };
        assert_eq!(binding_resources(&CustodyPolicySpec::default()), None);
        let got = binding_resources(&spec).unwrap();
        assert_eq!(got.namespace_selector, Some(selector));
        assert_eq!(got.object_selector, None);
    }
}
