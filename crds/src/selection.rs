//! Which workloads a policy selects: kinds, namespace globs, namespace and object label
//! selectors. Pure, and shared by the webhook (admission) and the controller (which policy
//! governs a rollout), so that both always agree on a policy's reach.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::policy::{CustodyPolicySpec, WorkloadKind};

/// The label the apiserver sets on every namespace to its own name (Kubernetes 1.21+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A workload as a policy's match rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its namespace (empty for cluster-scoped objects, which Custody does not judge).
    pub namespace: &'a str,
    /// The labels of its namespace.
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// Its own labels.
    pub labels: &'a BTreeMap<String, String>,
}

impl CustodyPolicySpec {
    /// Whether the policy's match rules select `target`.
    pub fn selects(&self, target: &Target<'_>) -> bool {
        let rules = &self.match_rules;
        (rules.kinds.is_empty() || rules.kinds.contains(&target.kind))
            && namespace_name_selected(
                &rules.namespaces.include,
                &rules.namespaces.exclude,
                target.namespace,
            )
            && rules
                .namespace_selector
                .as_ref()
                .is_none_or(|s| label_selector_matches(s, target.namespace_labels))
            && rules
                .object_selector
                .as_ref()
                .is_none_or(|s| label_selector_matches(s, target.labels))
    }
}

fn namespace_name_selected(include: &[String], exclude: &[String], namespace: &str) -> bool {
    (include.is_empty() || include.iter().any(|g| glob_matches(g, namespace)))
        && !exclude.iter().any(|g| glob_matches(g, namespace))
}

/// The problems of a label selector a policy names: operators Kubernetes does not know, and
/// values where the operator takes none (or none where it needs some); each names `field`.
pub fn check_label_selector(field: &str, selector: &LabelSelector, problems: &mut Vec<String>) {
    for expr in selector.match_expressions.iter().flatten() {
        let has_values = expr.values.as_ref().is_some_and(|v| !v.is_empty());
        match expr.operator.as_str() {
            "In" | "NotIn" if !has_values => problems.push(format!(
                "{field}: operator {} on {:?} needs at least one value",
                expr.operator, expr.key
            )),
            "Exists" | "DoesNotExist" if has_values => problems.push(format!(
                "{field}: operator {} on {:?} takes no values",
                expr.operator, expr.key
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => problems.push(format!(
                "{field}: unknown operator {other:?} (use In, NotIn, Exists or DoesNotExist)"
            )),
        }
    }
}

/// Label-selector semantics as Kubernetes defines them: every `matchLabels` pair and every
/// expression must hold; an empty selector selects everything. An unknown operator selects
/// nothing (policy validation rejects it before it gets here).
pub fn label_selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    pairs_hold
        && selector.match_expressions.iter().flatten().all(|expr| {
            let value = labels.get(&expr.key);
            let values = expr.values.as_deref().unwrap_or_default();
            match expr.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Shell-style glob over a whole string: `*` matches any run of characters, `?` one character,
/// everything else itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    if pattern.is_ascii() && text.is_ascii() {
        // Bytes are characters here: match without allocating (this runs on every admission).
        glob_match_units(pattern.as_bytes(), text.as_bytes())
    } else {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        glob_match_units(&p, &t)
    }
}

fn glob_match_units<T: Copy + PartialEq + From<u8>>(p: &[T], t: &[T]) -> bool {
    let star = T::from(b'*');
    let any = T::from(b'?');
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it has swallowed so far.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(&c) if c == star => {
                backtrack = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == any || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match backtrack {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    backtrack = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{MatchRules, NamespaceMatch};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "tea", false),
            ("*-prod", "shop-prod", true),
            ("*-prod", "shop-prod-2", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("kube-system", "kube-system", true),
            ("kube-system", "kube-systemx", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("", "", true),
            ("", "x", false),
            ("é*", "ecole", false),
            ("é*", "étude", true),
            ("?cole", "école", true),
            ("team-?", "team-é", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(glob_matches(pattern, text), want, "{pattern} vs {text}");
        }
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("env", "prod"), ("team", "pay")]);
        let sel = |exprs: Vec<LabelSelectorRequirement>| LabelSelector {
            match_expressions: Some(exprs),
            match_labels: None,
        };
        assert!(label_selector_matches(&LabelSelector::default(), &l));
        assert!(label_selector_matches(
            &sel(vec![expr("env", "In", &["prod", "stage"])]),
            &l
        ));
        assert!(!label_selector_matches(
            &sel(vec![expr("env", "In", &["dev"])]),
            &l
        ));
        assert!(label_selector_matches(
            &sel(vec![expr("env", "NotIn", &["dev"])]),
            &l
        ));
        assert!(label_selector_matches(
            &sel(vec![expr("x", "NotIn", &["dev"])]),
            &l
        ));
        assert!(label_selector_matches(
            &sel(vec![expr("team", "Exists", &[])]),
            &l
        ));
        assert!(!label_selector_matches(
            &sel(vec![expr("team", "DoesNotExist", &[])]),
            &l
        ));
        assert!(!label_selector_matches(
            &sel(vec![expr("team", "Bogus", &[])]),
            &l
        ));
        let pairs = LabelSelector {
            match_labels: Some(labels(&[("env", "prod")])),
            match_expressions: None,
        };
        assert!(label_selector_matches(&pairs, &l));
        assert!(!label_selector_matches(&pairs, &labels(&[("env", "dev")])));
    }

    #[test]
    fn policy_selection() {
        let spec = CustodyPolicySpec {
            match_rules: MatchRules {
                kinds: vec![WorkloadKind::Deployment],
                namespaces: NamespaceMatch {
                    include: vec!["shop-*".into()],
                    exclude: vec!["shop-sandbox".into()],
                },
                namespace_selector: None,
                object_selector: Some(LabelSelector {
                    match_labels: Some(labels(&[("tier", "web")])),
                    match_expressions: None,
                }),
            },
            ..CustodyPolicySpec::default()
        };
        let web = labels(&[("tier", "web")]);
        let none = BTreeMap::new();
        let target = |kind, namespace, labels| Target {
            kind,
            namespace,
            namespace_labels: &none,
            labels,
        };
        assert!(spec.selects(&target(WorkloadKind::Deployment, "shop-eu", &web)));
        assert!(!spec.selects(&target(WorkloadKind::Job, "shop-eu", &web)));
        assert!(!spec.selects(&target(WorkloadKind::Deployment, "shop-sandbox", &web)));
        assert!(!spec.selects(&target(WorkloadKind::Deployment, "billing", &web)));
        assert!(!spec.selects(&target(WorkloadKind::Deployment, "shop-eu", &none)));
        assert!(CustodyPolicySpec::default().selects(&target(WorkloadKind::Pod, "x", &none)));
    }
}
