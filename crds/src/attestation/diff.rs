//! Where a stored pod template differs from the signed one, field by field, so a
//! `SubjectMismatch` names the fields instead of two digests.
//!
//! Both sides are compared as digested (after [`super::normalized_template`]), so every
//! difference found here is one the digest saw: a field someone changed, or one the apiserver
//! set that Custody does not know as a default. Lists are compared by position, as the digest
//! does.

use std::fmt;

use serde_json::Value;

use crate::policy::WorkloadKind;

/// How one field differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// On the object, not in the signed template.
    Added(Value),
    /// In the signed template, not on the object.
    Removed(Value),
    /// Both have it, with other values.
    Changed {
        /// The signed value.
        signed: Value,
        /// The value on the object.
        stored: Value,
    },
}

/// One differing field: its path in the workload object (`spec.template.spec.…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The field path, e.g. `spec.template.spec.containers[0].livenessProbe.grpc.service`.
    pub path: String,
    /// How it differs.
    pub change: Change,
}

/// How many differences a message lists before it says how many more there are.
pub const LISTED_DIFFERENCES: usize = 5;

/// The longest value a message quotes in full.
const QUOTED_VALUE_CHARS: usize = 80;

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.change {
            Change::Added(v) => write!(
                f,
                "the object has `{path}` = {}, which the signed manifest did not have",
                quote(v)
            ),
            Change::Removed(v) => write!(
                f,
                "the signed manifest has `{path}` = {}, which the object does not have",
                quote(v)
            ),
            Change::Changed { signed, stored } => write!(
                f,
                "`{path}` is {} on the object but was signed as {}",
                quote(stored),
                quote(signed)
            ),
        }
    }
}

fn quote(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= QUOTED_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(QUOTED_VALUE_CHARS).collect();
    format!("{cut}…")
}

/// The field path of a workload's pod template inside the workload object.
pub fn template_path(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Pod => "spec",
        WorkloadKind::CronJob => "spec.jobTemplate.spec.template",
        _ => "spec.template",
    }
}

/// Every field where `stored` differs from `signed`, both normalized templates of `kind`.
pub fn differences(kind: WorkloadKind, signed: &Value, stored: &Value) -> Vec<Difference> {
    let mut found = Vec::new();
    walk(template_path(kind).to_string(), signed, stored, &mut found);
    found
}

fn walk(path: String, signed: &Value, stored: &Value, found: &mut Vec<Difference>) {
    match (signed, stored) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, av) in a {
                let at = format!("{path}.{key}");
                match b.get(key) {
                    Some(bv) => walk(at, av, bv, found),
                    None if !av.is_null() => found.push(Difference {
                        path: at,
                        change: Change::Removed(av.clone()),
                    }),
                    None => {}
                }
            }
            for (key, bv) in b {
                if !a.contains_key(key) && !bv.is_null() {
                    found.push(Difference {
                        path: format!("{path}.{key}"),
                        change: Change::Added(bv.clone()),
                    });
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                walk(format!("{path}[{i}]"), av, bv, found);
            }
            for (i, av) in a.iter().enumerate().skip(b.len()) {
                found.push(Difference {
                    path: format!("{path}[{i}]"),
                    change: Change::Removed(av.clone()),
                });
            }
            for (i, bv) in b.iter().enumerate().skip(a.len()) {
                found.push(Difference {
                    path: format!("{path}[{i}]"),
                    change: Change::Added(bv.clone()),
                });
            }
        }
        _ if signed == stored => {}
        _ => found.push(Difference {
            path,
            change: Change::Changed {
                signed: signed.clone(),
                stored: stored.clone(),
            },
        }),
    }
}

/// The differences in words, the first [`LISTED_DIFFERENCES`] of them.
pub fn describe(found: &[Difference]) -> String {
    let mut listed: Vec<String> = found
        .iter()
        .take(LISTED_DIFFERENCES)
        .map(ToString::to_string)
        .collect();
    if found.len() > LISTED_DIFFERENCES {
        listed.push(format!(
            "and {} more differences",
            found.len() - LISTED_DIFFERENCES
        ));
    }
    listed.join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_each_field_and_how_it_differs() {
        let signed = json!({"spec": {"containers": [
            {"name": "web", "image": "web:1", "livenessProbe": {"grpc": {"port": 9000}}},
            {"name": "side", "image": "side:1"}
        ]}});
        let stored = json!({"spec": {"containers": [
            {"name": "web", "image": "web:2", "livenessProbe": {"grpc": {"port": 9000, "service": ""}}}
        ], "nodeName": "n1"}});
        let found = differences(WorkloadKind::Deployment, &signed, &stored);
        let paths: Vec<&str> = found.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.template.spec.containers[0].image",
                "spec.template.spec.containers[0].livenessProbe.grpc.service",
                "spec.template.spec.containers[1]",
                "spec.template.spec.nodeName",
            ]
        );
        assert_eq!(
            found[1].to_string(),
            "the object has `spec.template.spec.containers[0].livenessProbe.grpc.service` = \"\", which the signed manifest did not have"
        );
        assert_eq!(
            found[0].to_string(),
            "`spec.template.spec.containers[0].image` is \"web:2\" on the object but was signed as \"web:1\""
        );
        assert!(found[2].to_string().starts_with("the signed manifest has"));
    }

    #[test]
    fn identical_templates_have_no_difference() {
        let t = json!({"spec": {"containers": [{"name": "web", "image": "web:1"}]}});
        assert!(differences(WorkloadKind::Pod, &t, &t).is_empty());
    }

    #[test]
    fn paths_start_where_the_template_lives() {
        let a = json!({"restartPolicy": "Always"});
        let b = json!({"restartPolicy": "Never"});
        assert_eq!(
            differences(WorkloadKind::Pod, &a, &b)[0].path,
            "spec.restartPolicy"
        );
        assert_eq!(
            differences(WorkloadKind::CronJob, &a, &b)[0].path,
            "spec.jobTemplate.spec.template.restartPolicy"
        );
    }

    #[test]
    fn a_long_list_is_cut_with_a_count() {
        let signed = json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7});
        let stored = json!({});
        let text = describe(&differences(WorkloadKind::Pod, &signed, &stored));
        assert!(text.ends_with("and 2 more differences"), "{text}");
        let long = json!({"command": ["x".repeat(200)]});
        let text = describe(&differences(WorkloadKind::Pod, &json!({}), &long));
        assert!(text.contains('…') && text.len() < 200, "{text}");
    }
}
