//! Fills a metric's PromQL template in for one revision, so that one query selects the new
//! revision alone and the same query, filled in for the previous revision, selects that one.

use custody_crds::analysis::placeholders;

/// The revision a query is filled in for.
#[derive(Clone, Debug)]
pub struct Subject<'a> {
    /// The workload's namespace.
    pub namespace: &'a str,
    /// The workload's name.
    pub name: &'a str,
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: &'a str,
    /// The pod-template-hash or controller-revision-hash of the revision's Pods.
    pub revision: &'a str,
    /// The names of the revision's Pods.
    pub pods: &'a [String],
    /// Seconds of data a check reads.
    pub window_seconds: u32,
}

/// Why a template cannot be filled in.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The template is malformed (a policy with it is refused; this is the second line).
    #[error("{0}")]
    Template(String),
    /// `{{pods}}` is used and the revision has no Pods: a regex of nothing would select
    /// everything without a `pod` label, so there is nothing to measure yet.
    #[error("the revision has no Pods yet")]
    NoPods,
}

/// The query for `subject`.
pub fn render(template: &str, subject: &Subject<'_>) -> Result<String, RenderError> {
    let used = placeholders(template).map_err(RenderError::Template)?;
    if used.contains(&"pods") && subject.pods.is_empty() {
        return Err(RenderError::NoPods);
    }
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // `placeholders` found every `{{` closed.
        let end = after.find("}}").unwrap_or(after.len());
        match after[..end].trim() {
            "namespace" => out.push_str(&label_value(subject.namespace)),
            "name" => out.push_str(&label_value(subject.name)),
            "kind" => out.push_str(&label_value(subject.kind)),
            "revision" => out.push_str(&label_value(subject.revision)),
            "pods" => out.push_str(&pods_regex(subject.pods)),
            "window" => out.push_str(&format!("{}s", subject.window_seconds)),
            other => {
                return Err(RenderError::Template(format!(
                    "unknown placeholder {other}"
                )));
            }
        }
        rest = after.get(end + 2..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// A value for the inside of a PromQL double-quoted string.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A regex matching exactly the given Pod names (PromQL anchors `=~` at both ends), escaped for
/// the inside of a PromQL double-quoted string: a regex `\.` is written `\\.` there.
fn pods_regex(pods: &[String]) -> String {
    const META: &str = r".+*?()|[]{}^$\";
    let mut out = String::new();
    for (i, pod) in pods.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in pod.chars() {
            if META.contains(c) {
                out.push_str("\\\\");
            }
            if c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(pods: &[String]) -> Subject<'_> {
        Subject {
            namespace: "shop",
            name: "web",
            kind: "Deployment",
            revision: "7f9c6d8b5",
            pods,
            window_seconds: 120,
        }
    }

    #[test]
    fn every_placeholder_is_filled_in() {
        let pods = vec![
            "web-7f9c6d8b5-abcde".to_string(),
            "web-7f9c6d8b5-fghij".to_string(),
        ];
        let q = render(
            r#"sum(rate(http_requests_total{namespace="{{namespace}}",pod=~"{{pods}}",code=~"5.."}[{{window}}])) / sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{pods}}"}[{{window}}])) + 0*up{workload="{{name}}",kind="{{kind}}",hash="{{revision}}"}"#,
            &subject(&pods),
        )
        .unwrap();
        assert_eq!(
            q,
            r#"sum(rate(http_requests_total{namespace="shop",pod=~"web-7f9c6d8b5-abcde|web-7f9c6d8b5-fghij",code=~"5.."}[120s])) / sum(rate(http_requests_total{namespace="shop",pod=~"web-7f9c6d8b5-abcde|web-7f9c6d8b5-fghij"}[120s])) + 0*up{workload="web",kind="Deployment",hash="7f9c6d8b5"}"#
        );
    }

    #[test]
    fn pod_names_are_matched_literally() {
        let pods = vec!["db.0".to_string()];
        assert_eq!(
            render(r#"x{pod=~"{{pods}}"}"#, &subject(&pods)).unwrap(),
            r#"x{pod=~"db\\.0"}"#
        );
    }

    #[test]
    fn a_revision_without_pods_has_nothing_to_measure() {
        assert_eq!(
            render(r#"x{pod=~"{{pods}}"}"#, &subject(&[])),
            Err(RenderError::NoPods)
        );
        assert!(render(r#"x{hash="{{revision}}"}"#, &subject(&[])).is_ok());
        assert!(matches!(
            render("x{{oops}}", &subject(&[])),
            Err(RenderError::Template(_))
        ));
    }
}
