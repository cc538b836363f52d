//! The vocabulary's built-in formats (`AnnotationKey::check_builtin_format`) as regular
//! expressions over the trimmed value, for CEL `matches()`. Written in the syntax RE2 and the
//! regex crate share, and tested here against the engine's own check.

use custody_crds::AnnotationKey;

/// One character that is not white space in Rust's (and CEL `trim()`'s) sense: RE2's `\s` is
/// ASCII only, so vertical tab, NEL and the Unicode separators are added by hand.
const NON_SPACE: &str = r"[^\s\x{0B}\x{85}\p{Z}]";
/// The same, and not a dot.
const NON_SPACE_DOT: &str = r"[^.\s\x{0B}\x{85}\p{Z}]";
/// The same, and not an `@`.
const NON_SPACE_AT: &str = r"[^@\s\x{0B}\x{85}\p{Z}]";

/// The anchored regular expression the trimmed value must match, or `None` when the built-in
/// format only asks for a non-empty value.
pub fn builtin_pattern(key: AnnotationKey) -> Option<String> {
    match key {
        AnnotationKey::Actor => Some("^(human|agent|automation)$".into()),
        AnnotationKey::Rollback => Some("^(auto|alert|unsafe)$".into()),
        AnnotationKey::SourceCommit => Some("^[0-9a-fA-F]{7,40}$".into()),
        // A URL, a handle, or an email whose domain has an inner dot (vocabulary::is_contact).
        AnnotationKey::Oncall => Some(format!(
            "^(https?://{n}+|@{n}+|{at}+@{nd}{n}*[.]{n}*{nd})$",
            n = NON_SPACE,
            at = NON_SPACE_AT,
            nd = NON_SPACE_DOT,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_agree_with_the_builtin_check() {
        let samples = [
            "agent",
            "human",
            "automation",
            "robot",
            "agents",
            "auto",
            "alert",
            "unsafe",
            "never",
            "3f9c2a7",
            "3F9C2A7",
            "3f9c2a",
            "main",
            &"a".repeat(40),
            &"a".repeat(41),
            "team@acme.dev",
            "a@b.c",
            "a@.bc",
            "a@bc.",
            "a@bc",
            "bob@localhost",
            "a@b@c.d",
            "@payments-oncall",
            "@",
            "@x y",
            "https://pager.acme.dev/x",
            "http://x",
            "https://",
            "https://a b",
            "ftp://x",
            "bob",
            "a\u{a0}b@c.d",
            "a@b.c\u{2003}d",
        ];
        for key in AnnotationKey::ALL {
            let Some(pattern) = builtin_pattern(key) else {
                continue;
            };
            let re = regex::Regex::new(&pattern).unwrap();
            for sample in samples {
                let trimmed = sample.trim();
                let expected = key.check_builtin_format(sample).is_ok();
                assert_eq!(re.is_match(trimmed), expected, "{key} {sample:?}");
            }
        }
    }

    #[test]
    fn patterns_use_only_what_re2_knows() {
        // `\s` is ASCII in RE2 and Unicode here, but always inside a class that adds the rest
        // of Unicode white space, so the class is the same set in both.
        for key in AnnotationKey::ALL {
            if let Some(pattern) = builtin_pattern(key) {
                assert!(super::super::re2::translate(&pattern).is_ok(), "{key}");
            }
        }
    }
}
