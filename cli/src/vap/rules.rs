//! A CustodyPolicy's annotation rules as ValidatingAdmissionPolicy validations: presence,
//! presence by actor, the built-in format, allowed values and the rule's own pattern, in the
//! engine's order (custody_engine, rules.rs `check_rule`) and with its wording.

use custody_crds::{AnnotationKey, Vocabulary};

use super::cel;
use super::format::builtin_pattern;
use super::objects::Validation;
use super::re2;
use custody_engine::{CompiledPolicy, CompiledRule, example_for};

/// The object's annotations. No `variables`: 1.28's type checker does not know them.
const ANNOTATIONS: &str = "object.metadata.annotations";

/// `key` is among the object's annotations.
fn present(key: &str) -> String {
    format!("has({ANNOTATIONS}) && {key} in {ANNOTATIONS}")
}

/// The validations of one policy, and the parts left out with why.
#[derive(Debug, Default)]
pub struct RuleChecks {
    /// One validation per check.
    pub validations: Vec<Validation>,
    /// What could not be expressed in CEL, with the reason.
    pub skipped: Vec<String>,
}

/// Translates every annotation rule of `policy`.
pub fn checks(policy: &CompiledPolicy, vocabulary: &Vocabulary) -> RuleChecks {
    let mut out = RuleChecks::default();
    for rule in &policy.rules {
        rule_checks(policy, rule, vocabulary, &mut out);
    }
    out
}

fn rule_checks(
    policy: &CompiledPolicy,
    compiled: &CompiledRule,
    vocabulary: &Vocabulary,
    out: &mut RuleChecks,
) {
    let rule = &compiled.rule;
    let name = vocabulary.key(rule.key);
    let key = cel::string(name);
    let message = |problem: String| {
        format!(
            "{problem}. It records {} (policy {:?}). Fix: {name}: {:?}",
            rule.key.purpose(),
            policy.name,
            example_for(compiled),
        )
    };
    let is_present = present(&key);
    let value = format!("{ANNOTATIONS}[{key}]");
    // Every value check holds when the annotation is absent: presence is checked on its own.
    let when_present = |check: String| format!("!({is_present}) || {check}");

    if rule.required {
        if rule.when_actor.is_empty() {
            out.validations.push(Validation {
                expression: is_present.clone(),
                message: message(format!("{name} is missing")),
            });
        } else {
            let actors: Vec<&str> = rule.when_actor.iter().map(|a| a.as_str()).collect();
            // The declared actor, trimmed as the engine parses it.
            let actor = cel::string(vocabulary.key(AnnotationKey::Actor));
            out.validations.push(Validation {
                expression: format!(
                    "!({} && {ANNOTATIONS}[{actor}].trim() in {}) || {is_present}",
                    present(&actor),
                    cel::list(&actors)
                ),
                message: message(format!(
                    "{name} is missing, required when the actor is {}",
                    actors.join(" or ")
                )),
            });
        }
    }

    let format_check = match builtin_pattern(rule.key) {
        Some(pattern) => format!("{value}.trim().matches({})", cel::regex(&pattern)),
        None => format!("{value}.trim() != ''"),
    };
    out.validations.push(Validation {
        expression: when_present(format_check),
        message: message(format!("{name} must be {}", rule.key.format_description())),
    });

    if !rule.allowed_values.is_empty() {
        let shown: Vec<String> = rule
            .allowed_values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect();
        out.validations.push(Validation {
            expression: when_present(format!(
                "{value}.trim() in {}",
                cel::list(&rule.allowed_values)
            )),
            message: message(format!("{name} must be one of {}", shown.join(", "))),
        });
    }

    if let Some(pattern) = &rule.pattern {
        // Policy validation already restricts patterns to the regex crate's syntax; re2
        // rewrites the few constructs RE2 spells differently and refuses the rest.
        match re2::translate(pattern) {
            Ok(re) => out.validations.push(Validation {
                // Unanchored, like the engine's is_match: a pattern anchors itself.
                expression: when_present(format!("{value}.matches({})", cel::regex(&re))),
                message: message(format!("{name} must match {pattern:?}")),
            }),
            Err(why) => out.skipped.push(format!(
                "annotations[{}].pattern {pattern:?} is not checked: {why}",
                rule.key
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{Actor, AnnotationRule, CustodyPolicy, CustodyPolicySpec};

    fn compile(rules: Vec<AnnotationRule>) -> CompiledPolicy {
        let spec = CustodyPolicySpec {
            annotations: rules,
            ..CustodyPolicySpec::default()
        };
        CompiledPolicy::compile(&CustodyPolicy::new("p", spec)).unwrap()
    }

    fn rule(key: AnnotationKey) -> AnnotationRule {
        AnnotationRule {
            key,
            ..AnnotationRule::default()
        }
    }

    #[test]
    fn rules_become_validations() {
        let v = Vocabulary::default();
        // (situation, rule, expected expressions, skipped count)
        let cases: Vec<(&str, AnnotationRule, Vec<&str>, usize)> = vec![
            (
                "a required key: present, then non-empty",
                rule(AnnotationKey::Owner),
                vec![
                    "has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations",
                    "!(has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations) || object.metadata.annotations['custody.dev/owner'].trim() != ''",
                ],
                0,
            ),
            (
                "an optional key is only format-checked",
                AnnotationRule {
                    required: false,
                    ..rule(AnnotationKey::SourceCommit)
                },
                vec![
                    "!(has(object.metadata.annotations) && 'custody.dev/source-commit' in object.metadata.annotations) || object.metadata.annotations['custody.dev/source-commit'].trim().matches(r'^[0-9a-fA-F]{7,40}$')",
                ],
                0,
            ),
            (
                "required by actor",
                AnnotationRule {
                    when_actor: vec![Actor::Agent, Actor::Automation],
                    ..rule(AnnotationKey::PipelineRun)
                },
                vec![
                    "!(has(object.metadata.annotations) && 'custody.dev/actor' in object.metadata.annotations && object.metadata.annotations['custody.dev/actor'].trim() in ['agent', 'automation']) || has(object.metadata.annotations) && 'custody.dev/pipeline-run' in object.metadata.annotations",
                    "!(has(object.metadata.annotations) && 'custody.dev/pipeline-run' in object.metadata.annotations) || object.metadata.annotations['custody.dev/pipeline-run'].trim() != ''",
                ],
                0,
            ),
            (
                "allowed values and a pattern",
                AnnotationRule {
                    allowed_values: vec!["team-a".into(), "team-b".into()],
                    pattern: Some(r"^team-\d?[a-z]$".into()),
                    ..rule(AnnotationKey::Owner)
                },
                vec![
                    "has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations",
                    "!(has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations) || object.metadata.annotations['custody.dev/owner'].trim() != ''",
                    "!(has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations) || object.metadata.annotations['custody.dev/owner'].trim() in ['team-a', 'team-b']",
                    r"!(has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations) || object.metadata.annotations['custody.dev/owner'].matches(r'^team-\p{Nd}?[a-z]$')",
                ],
                0,
            ),
            (
                "an inexpressible pattern is left out, not approximated",
                AnnotationRule {
                    pattern: Some(r"^[\w-]+$".into()),
                    ..rule(AnnotationKey::Owner)
                },
                vec![
                    "has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations",
                    "!(has(object.metadata.annotations) && 'custody.dev/owner' in object.metadata.annotations) || object.metadata.annotations['custody.dev/owner'].trim() != ''",
                ],
                1,
            ),
        ];
        for (situation, rule, expected, skipped) in cases {
            let checks = checks(&compile(vec![rule]), &v);
            let got: Vec<&str> = checks
                .validations
                .iter()
                .map(|c| c.expression.as_str())
                .collect();
            assert_eq!(got, expected, "{situation}");
            assert_eq!(
                checks.skipped.len(),
                skipped,
                "{situation}: {:?}",
                checks.skipped
            );
        }
    }

    #[test]
    fn messages_name_the_key_and_the_fix() {
        let checks = checks(
            &compile(vec![rule(AnnotationKey::Owner)]),
            &Vocabulary::default(),
        );
        assert_eq!(
            checks.validations[0].message,
            r#"custody.dev/owner is missing. It records the team that owns the workload (policy "p"). Fix: custody.dev/owner: "team-payments""#
        );
    }
}
