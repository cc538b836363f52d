//! Small CEL builders: string literals, globs as regular expressions, and who-is-asking
//! conditions over `request.userInfo`, matching the engine's `identity_matches`.

use custody_crds::IdentitySet;

/// A CEL string literal for `s`: single-quoted, with quotes, backslashes and control
/// characters escaped, so any annotation prefix or allowed value is safe to embed.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A CEL string literal for a regular expression: raw (`r'...'`, backslashes as written) when
/// it can be, so patterns read as they were written.
pub fn regex(pattern: &str) -> String {
    if pattern.contains(['\'', '\n', '\r']) || pattern.chars().any(char::is_control) {
        string(pattern)
    } else {
        format!("r'{pattern}'")
    }
}

/// A CEL list of string literals.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    let items: Vec<String> = items.iter().map(|s| string(s.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// Whether a glob has wildcards (`*`, `?`); without, it is compared for equality.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// The unanchored body of a regular expression matching what `glob_matches` matches:
/// `*` any run, `?` one character, everything else literally. `any` is the class a wildcard
/// ranges over (`.` in general, `[^:]` for a namespace inside a user name).
pub fn glob_body(pattern: &str, any: &str) -> String {
    let mut out = String::new();
    for c in pattern.chars() {
        match c {
            '*' => {
                out.push_str(any);
                out.push('*');
            }
            '?' => out.push_str(any),
            // The metacharacters RE2 and the regex crate share (Go's `regexp.QuoteMeta` set).
            c if r"\.+*?()|[]{}^$".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `subject` is one of `patterns` (globs): exact names with `in`, globs with `matches()`.
pub fn name_in(subject: &str, patterns: &[String]) -> Vec<String> {
    let exact: Vec<&String> = patterns.iter().filter(|p| !is_glob(p)).collect();
    let mut terms = Vec::new();
    if !exact.is_empty() {
        terms.push(format!("{subject} in {}", list(&exact)));
    }
    for glob in patterns.iter().filter(|p| is_glob(p)) {
        terms.push(format!(
            "{subject}.matches({})",
            regex(&format!("^{}$", glob_body(glob, ".")))
        ));
    }
    terms
}

/// The requester is in `set`, as the engine decides it: a user glob on the user name, a group
/// glob on any group, a `namespace/name` service-account glob on
/// `system:serviceaccount:<namespace>:<name>`. `None` for an empty set (nobody).
pub fn requester_in(set: &IdentitySet) -> Option<String> {
    const USER: &str = "request.userInfo.username";
    let mut terms = name_in(USER, &set.users);
    if !set.groups.is_empty() {
        let inner = name_in("g", &set.groups).join(" || ");
        terms.push(format!(
            "(has(request.userInfo.groups) && request.userInfo.groups.exists(g, {inner}))"
        ));
    }
    let (mut exact, mut globs) = (Vec::new(), Vec::new());
    for sa in &set.service_accounts {
        let Some((ns, name)) = sa.split_once('/') else {
            continue; // policy validation refuses these
        };
        if is_glob(sa) {
            // The engine splits the user name at the first `:` after the prefix, so a
            // namespace wildcard never spans a colon while a name wildcard may.
            globs.push(format!(
                "^system:serviceaccount:{}:{}$",
                glob_body(ns, "[^:]"),
                glob_body(name, ".")
            ));
        } else {
            exact.push(format!("system:serviceaccount:{ns}:{name}"));
        }
    }
    if !exact.is_empty() {
        terms.push(format!("{USER} in {}", list(&exact)));
    }
    for re in globs {
        terms.push(format!("{USER}.matches({})", regex(&re)));
    }
    (!terms.is_empty()).then(|| terms.join(" || "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::selection::glob_matches;

    #[test]
    fn string_literals_escape() {
        let cases = [
            ("plain", "custody.dev/owner", "'custody.dev/owner'"),
            ("quote", "it's", r"'it\'s'"),
            ("backslash", r"a\b", r"'a\\b'"),
            ("newline", "a\nb", r"'a\nb'"),
            ("control", "a\u{1}b", r"'a\u0001b'"),
        ];
        for (situation, input, expected) in cases {
            assert_eq!(string(input), expected, "{situation}");
        }
        assert_eq!(regex(r"^a\.b$"), r"r'^a\.b$'", "a regex is raw");
        assert_eq!(
            regex(r"^it's\.$"),
            r"'^it\'s\\.$'",
            "unless it holds a quote"
        );
    }

    #[test]
    fn globs_become_regexes_that_agree_with_the_engine() {
        let cases = [
            ("shop-*", "shop-web", true),
            ("shop-*", "shop-", true),
            ("shop-*", "myshop-web", false),
            ("kube-?", "kube-a", true),
            ("kube-?", "kube-ab", false),
            ("a.b", "axb", false),
            ("a.b", "a.b", true),
            ("*", "", true),
            ("x+(y)", "x+(y)", true),
        ];
        for (glob, text, expected) in cases {
            assert_eq!(glob_matches(glob, text), expected, "engine: {glob} {text}");
            let re = regex::Regex::new(&format!("^{}$", glob_body(glob, "."))).unwrap();
            assert_eq!(re.is_match(text), expected, "regex: {glob} {text}");
        }
    }

    #[test]
    fn requester_conditions() {
        let set = |users: &[&str], groups: &[&str], sas: &[&str]| IdentitySet {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            service_accounts: sas.iter().map(|s| s.to_string()).collect(),
        };
        let cases = [
            ("nobody", set(&[], &[], &[]), None),
            (
                "an exact group",
                set(&[], &["platform:break-glass"], &[]),
                Some(
                    "(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ['platform:break-glass']))",
                ),
            ),
            (
                "an exact service account",
                set(&[], &[], &["argo-rollouts/argo-rollouts"]),
                Some(
                    "request.userInfo.username in ['system:serviceaccount:argo-rollouts:argo-rollouts']",
                ),
            ),
            (
                "a service-account glob and a user glob",
                set(&["bot-*"], &[], &["agents/*"]),
                Some(
                    r"request.userInfo.username.matches(r'^bot-.*$') || request.userInfo.username.matches(r'^system:serviceaccount:agents:.*$')",
                ),
            ),
            (
                "a namespace wildcard stops at the colon",
                set(&[], &[], &["team-*/deployer"]),
                Some(
                    r"request.userInfo.username.matches(r'^system:serviceaccount:team-[^:]*:deployer$')",
                ),
            ),
        ];
        for (situation, set, expected) in cases {
            assert_eq!(requester_in(&set).as_deref(), expected, "{situation}");
        }
    }
}
