//! From the regex crate's syntax to RE2's, for CEL `matches()`.
//!
//! Policy validation (custody_engine, policies.rs) already restricts `pattern` to what the regex crate
//! compiles, and the two syntaxes mostly agree. Where they differ the pattern is rewritten to an
//! exact equivalent (`\d` is Unicode in the regex crate and ASCII in RE2, so it becomes
//! `\p{Nd}`), or, when no exact equivalent exists (`\w`, `\b`, class set operations, the `x`
//! flag...), refused with the reason: a backstop that was stricter than the webhook would deny
//! what the webhook admits, so an inexpressible pattern is left out rather than approximated.

use regex_syntax::ast::{
    self, AssertionKind, Ast, ClassPerl, ClassPerlKind, ClassSet, ClassSetItem, ClassUnicode,
    ClassUnicodeKind, Flag, Flags, FlagsItemKind, GroupKind, LiteralKind, RepetitionKind,
    RepetitionRange,
};

/// RE2's (Go's) largest repetition count.
const MAX_REPEAT: u32 = 1000;

/// Unicode white space as RE2 can spell it: its `\s` is ASCII only.
const SPACE_ITEMS: &str = r"\s\x{0B}\x{85}\p{Z}";

/// Unicode class names Go's regexp knows by these exact spellings (general categories and a
/// few scripts); the regex crate also accepts binary properties and loose spellings.
const UNICODE_NAMES: [&str; 50] = [
    "Any",
    "C",
    "Cc",
    "Cf",
    "Co",
    "Cs",
    "L",
    "Ll",
    "Lm",
    "Lo",
    "Lt",
    "Lu",
    "M",
    "Mc",
    "Me",
    "Mn",
    "N",
    "Nd",
    "Nl",
    "No",
    "P",
    "Pc",
    "Pd",
    "Pe",
    "Pf",
    "Pi",
    "Po",
    "Ps",
    "S",
    "Sc",
    "Sk",
    "Sm",
    "So",
    "Z",
    "Zl",
    "Zp",
    "Zs",
    "Latin",
    "Greek",
    "Cyrillic",
    "Han",
    "Hiragana",
    "Katakana",
    "Arabic",
    "Hebrew",
    "Hangul",
    "Thai",
    "Devanagari",
    "Armenian",
    "Georgian",
];

/// The pattern in RE2 syntax, or why it has no exact RE2 equivalent.
pub fn translate(pattern: &str) -> Result<String, String> {
    let ast = ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| format!("not a valid pattern: {e}"))?;
    let mut edits = Vec::new();
    walk(&ast, &mut edits)?;
    // Edits never overlap (each replaces one leaf); apply them from the end.
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out = pattern.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    Ok(out)
}

type Edits = Vec<(usize, usize, String)>;

fn edit(span: &ast::Span, replacement: String, edits: &mut Edits) {
    edits.push((span.start.offset, span.end.offset, replacement));
}

fn walk(ast: &Ast, edits: &mut Edits) -> Result<(), String> {
    match ast {
        Ast::Empty(_) | Ast::Dot(_) => Ok(()),
        Ast::Flags(set) => flags(&set.flags),
        Ast::Literal(lit) => literal(lit, edits),
        Ast::Assertion(a) => match a.kind {
            AssertionKind::StartLine
            | AssertionKind::EndLine
            | AssertionKind::StartText
            | AssertionKind::EndText => Ok(()),
            _ => {
                Err("word boundaries are Unicode-aware in the webhook and ASCII-only in CEL".into())
            }
        },
        Ast::ClassUnicode(class) => unicode(class),
        Ast::ClassPerl(class) => {
            let replacement = match (&class.kind, class.negated) {
                (ClassPerlKind::Digit, false) => r"\p{Nd}".to_string(),
                (ClassPerlKind::Digit, true) => r"\P{Nd}".to_string(),
                (ClassPerlKind::Space, false) => format!("[{SPACE_ITEMS}]"),
                (ClassPerlKind::Space, true) => format!("[^{SPACE_ITEMS}]"),
                (ClassPerlKind::Word, _) => return Err(word()),
            };
            edit(&class.span, replacement, edits);
            Ok(())
        }
        Ast::ClassBracketed(class) => class_set(&class.kind, edits),
        Ast::Repetition(rep) => {
            if let RepetitionKind::Range(
                RepetitionRange::Exactly(n)
                | RepetitionRange::AtLeast(n)
                | RepetitionRange::Bounded(_, n),
            ) = rep.op.kind
                && n > MAX_REPEAT
            {
                return Err(format!("RE2 repeats at most {MAX_REPEAT} times, not {n}"));
            }
            walk(&rep.ast, edits)
        }
        Ast::Group(group) => {
            match &group.kind {
                GroupKind::CaptureName {
                    starts_with_p: false,
                    ..
                } => return Err("write named groups as (?P<name>...)".into()),
                GroupKind::NonCapturing(f) => flags(f)?,
                _ => {}
            }
            walk(&group.ast, edits)
        }
        Ast::Alternation(alt) => alt.asts.iter().try_for_each(|a| walk(a, edits)),
        Ast::Concat(cat) => cat.asts.iter().try_for_each(|a| walk(a, edits)),
    }
}

fn word() -> String {
    r"\w is Unicode-aware in the webhook and ASCII-only in CEL".into()
}

fn flags(flags: &Flags) -> Result<(), String> {
    for item in &flags.items {
        match item.kind {
            FlagsItemKind::Flag(Flag::Unicode) => {
                return Err("the u flag changes \\d, \\s and \\w in ways CEL cannot follow".into());
            }
            FlagsItemKind::Flag(Flag::CRLF | Flag::IgnoreWhitespace) => {
                return Err("RE2 has no R or x flag".into());
            }
            _ => {}
        }
    }
    Ok(())
}

fn literal(lit: &ast::Literal, edits: &mut Edits) -> Result<(), String> {
    match lit.kind {
        // \u0041 and \U00000041 are the regex crate's; RE2 spells every code point \x{41}.
        LiteralKind::HexFixed(_) | LiteralKind::HexBrace(_) => {
            edit(&lit.span, format!(r"\x{{{:X}}}", lit.c as u32), edits);
            Ok(())
        }
        LiteralKind::Octal => Err("RE2 has no octal escapes".into()),
        // `\ ` (an escaped space) is only meaningful in the x mode refused above.
        _ => Ok(()),
    }
}

fn unicode(class: &ClassUnicode) -> Result<(), String> {
    match &class.kind {
        ClassUnicodeKind::OneLetter(c) if "CLMNPSZ".contains(*c) => Ok(()),
        ClassUnicodeKind::Named(name) if UNICODE_NAMES.contains(&name.as_str()) => Ok(()),
        _ => Err(format!(
            "RE2 does not know the Unicode class {:?}",
            class_name(class)
        )),
    }
}

fn class_name(class: &ClassUnicode) -> String {
    match &class.kind {
        ClassUnicodeKind::OneLetter(c) => c.to_string(),
        ClassUnicodeKind::Named(n) => n.clone(),
        ClassUnicodeKind::NamedValue { name, value, .. } => format!("{name}={value}"),
    }
}

fn class_set(set: &ClassSet, edits: &mut Edits) -> Result<(), String> {
    match set {
        ClassSet::BinaryOp(_) => Err("RE2 has no class set operations (&&, --, ~~)".into()),
        ClassSet::Item(item) => class_item(item, edits),
    }
}

fn class_item(item: &ClassSetItem, edits: &mut Edits) -> Result<(), String> {
    match item {
        ClassSetItem::Empty(_) | ClassSetItem::Ascii(_) => Ok(()),
        ClassSetItem::Literal(lit) => literal(lit, edits),
        ClassSetItem::Range(range) => {
            literal(&range.start, edits)?;
            literal(&range.end, edits)
        }
        ClassSetItem::Unicode(class) => unicode(class),
        ClassSetItem::Perl(ClassPerl {
            span,
            kind,
            negated,
        }) => {
            let replacement = match (kind, negated) {
                (ClassPerlKind::Digit, false) => r"\p{Nd}".to_string(),
                (ClassPerlKind::Digit, true) => r"\P{Nd}".to_string(),
                (ClassPerlKind::Space, false) => SPACE_ITEMS.to_string(),
                (ClassPerlKind::Space, true) => {
                    return Err(r"\S inside a class has no RE2 equivalent".into());
                }
                (ClassPerlKind::Word, _) => return Err(word()),
            };
            edit(span, replacement, edits);
            Ok(())
        }
        ClassSetItem::Bracketed(_) => Err("RE2 has no nested classes".into()),
        ClassSetItem::Union(union) => union.items.iter().try_for_each(|i| class_item(i, edits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_translate_or_say_why_not() {
        // (situation, pattern, RE2 pattern or a fragment of the reason)
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("plain", "^team-[a-z0-9-]+$", Ok("^team-[a-z0-9-]+$")),
            (
                "escaped dot",
                r"^https://git\.example\.com/",
                Ok(r"^https://git\.example\.com/"),
            ),
            ("unicode digit", r"^v\d+$", Ok(r"^v\p{Nd}+$")),
            ("digit in a class", r"^[\d.]+$", Ok(r"^[\p{Nd}.]+$")),
            ("not a digit", r"\D", Ok(r"\P{Nd}")),
            ("space", r"a\sb", Ok(r"a[\s\x{0B}\x{85}\p{Z}]b")),
            ("not space", r"^\S+$", Ok(r"^[^\s\x{0B}\x{85}\p{Z}]+$")),
            ("space in a class", r"[\s-]", Ok(r"[\s\x{0B}\x{85}\p{Z}-]")),
            ("hex escapes", r"\u0041\x42", Ok(r"\x{41}\x{42}")),
            ("case-insensitive", "(?i)^team-", Ok("(?i)^team-")),
            ("named group with P", "(?P<v>[0-9]+)", Ok("(?P<v>[0-9]+)")),
            ("general category", r"\p{Lu}\pL", Ok(r"\p{Lu}\pL")),
            ("ascii class", "[[:alpha:]]", Ok("[[:alpha:]]")),
            ("word", r"^[\w-]+$", Err("Unicode-aware")),
            ("word boundary", r"\bteam\b", Err("word boundaries")),
            ("set operation", "[a-z&&[^x]]", Err("set operations")),
            ("nested class", "[a[b]]", Err("nested")),
            ("x flag", "(?x) a b", Err("x flag")),
            ("u flag", r"(?-u)\d", Err("u flag")),
            ("named group without P", "(?<v>a)", Err("(?P<name>")),
            ("huge repeat", "a{1001}", Err("at most 1000")),
            ("binary property", r"\p{Alphabetic}", Err("Alphabetic")),
            ("not a space inside a class", r"[\S]", Err(r"\S inside")),
        ];
        for (situation, pattern, expected) in cases {
            match (translate(pattern), expected) {
                (Ok(got), Ok(want)) => assert_eq!(&got, want, "{situation}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{situation}: {got}"),
                (got, want) => panic!("{situation}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn translations_mean_the_same_to_the_regex_crate() {
        let samples = ["v12", "v١٢", "a b", "a\u{a0}b", "1.2", "AB", "x"];
        for pattern in [r"^v\d+$", r"a\sb", r"^[\d.]+$", r"\u0041\x42", r"^\S+$"] {
            let original = regex::Regex::new(pattern).unwrap();
            let translated = regex::Regex::new(&translate(pattern).unwrap()).unwrap();
            for s in samples {
                assert_eq!(
                    original.is_match(s),
                    translated.is_match(s),
                    "{pattern} {s:?}"
                );
            }
        }
    }
}
