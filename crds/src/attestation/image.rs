//! An image reference as the apiserver's `SetDefaults_Container` reads it to choose
//! `imagePullPolicy`: `parsers.ParseImageName`, which is distribution's
//! `reference.ParseNormalizedNamed`. Only a reference that parses and names the tag `latest`
//! (or no tag and no digest, which means `latest`) pulls `Always`; one that does not parse
//! (an upper-case letter in the path, a placeholder like `PROJECT_ID`) is `IfNotPresent`,
//! because the apiserver ignores the parse error.

use std::sync::LazyLock;

use regex::Regex;

/// distribution/reference's grammar: `[domain/]path[:tag][@digest]`.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = "[a-z0-9]+";
    let separator = "(?:[_.]|__|[-]+)";
    let path_component = format!("{alnum}(?:{separator}{alnum})*");
    let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    let domain = format!("(?:{domain_component}(?:\\.{domain_component})*|{ipv6})(?::[0-9]+)?");
    let name = format!("(?:{domain}/)?{path_component}(?:/{path_component})*");
    let tag = r"[\w][\w.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let pattern = format!("^(?P<name>{name})(?::(?P<tag>{tag}))?(?:@(?P<digest>{digest}))?$");
    // The pattern is a constant; a test compiles it.
    Regex::new(&pattern).unwrap_or_else(|e| panic!("image reference pattern: {e}"))
});

/// Longest repository name distribution accepts.
const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// `Always` or `IfNotPresent`, as `SetDefaults_Container` chooses for `image`.
pub fn default_pull_policy(image: &str) -> &'static str {
    match parse(image) {
        Some(Parsed { tag, digest })
            if tag.as_deref() == Some("latest") || tag.is_none() && !digest =>
        {
            "Always"
        }
        _ => "IfNotPresent",
    }
}

struct Parsed {
    tag: Option<String>,
    digest: bool,
}

fn parse(image: &str) -> Option<Parsed> {
    // ParseNormalizedNamed: a 64-hex string is an image id, not a name.
    if image.len() == 64 && image.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // splitDockerDomain: the first component is a domain only if it looks like one (an
    // upper-case one counts); the rest, up to a tag, must be lower case.
    let (domain, remainder) = match image.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first, rest)
        }
        _ => ("docker.io", image),
    };
    let remote = remainder.split(':').next().unwrap_or_default();
    if remote.to_lowercase() != remote {
        return None;
    }
    let image = format!("{domain}/{remainder}");
    let captures = REFERENCE.captures(&image)?;
    let name = captures.name("name")?.as_str();
    if name.len() > NAME_TOTAL_LENGTH_MAX {
        return None;
    }
    Some(Parsed {
        tag: captures.name("tag").map(|t| t.as_str().to_string()),
        digest: captures.name("digest").is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_as_the_apiserver_chooses_them() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry:5000/team/web", "Always"),
            ("registry:5000/team/web:v2", "IfNotPresent"),
            ("localhost/web", "Always"),
            (
                "web@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "IfNotPresent",
            ),
            (
                "web:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "Always",
            ),
            // Does not parse, so the apiserver's error-ignoring default applies.
            (
                "us-central1-docker.pkg.dev/PROJECT_ID/scheduled-autoscaler/exporter",
                "IfNotPresent",
            ),
            ("Nginx", "IfNotPresent"),
            ("nginx:V1", "IfNotPresent"),
            ("team/Web:1", "IfNotPresent"),
            ("web@sha256:abc", "IfNotPresent"),
            ("", "IfNotPresent"),
            ("MyRegistry.example.com/team/web", "Always"),
            ("[::1]:5000/web", "Always"),
        ];
        for (image, expected) in cases {
            assert_eq!(default_pull_policy(image), expected, "{image:?}");
        }
    }
}
