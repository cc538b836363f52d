//! The rules a workload is judged by. Each returns violations; none performs I/O.

use std::borrow::Cow;

use custody_crds::fingerprint::code_fingerprint;
use custody_crds::{Actor, AnnotationKey, EnforcementMode};
use serde_json::value::RawValue;

use crate::decision::{Violation, ViolationCode};
use crate::identity::identity_matches;
use crate::object::{WorkloadObject, templates_differ};
use crate::policies::{CompiledPolicy, CompiledRule};
use crate::quarantine::QuarantineEntry;
use crate::subject::{Annotations, Subject, shorten};

/// The policy's annotation rules.
pub(crate) fn annotation_rules(
    policy: &CompiledPolicy,
    subject: &Subject<'_, '_>,
) -> Vec<Violation> {
    let actor = subject.actor();
    policy
        .rules
        .iter()
        .filter_map(|rule| check_rule(policy, rule, actor, subject))
        .collect()
}

fn check_rule(
    policy: &CompiledPolicy,
    compiled: &CompiledRule,
    actor: Option<Actor>,
    subject: &Subject<'_, '_>,
) -> Option<Violation> {
    let rule = &compiled.rule;
    let name = subject.vocabulary.key(rule.key);
    let example = example_for(compiled);
    let violation = |code, value: Option<&str>, problem: String| Violation {
        code,
        key: Some(rule.key),
        field: subject.field(rule.key),
        value: value.map(str::to_string),
        policy: policy.name.clone(),
        mode: policy.spec.mode,
        message: format!(
            "{problem}. It records {} (policy {:?}). Fix: {name}: {example:?}",
            rule.key.purpose(),
            policy.name,
        ),
        fix: example.clone(),
    };
    let Some(value) = subject.value(rule.key) else {
        let applies =
            rule.when_actor.is_empty() || actor.is_some_and(|a| rule.when_actor.contains(&a));
        if !rule.required || !applies {
            return None;
        }
        let when = if rule.when_actor.is_empty() {
            String::new()
        } else {
            let actors: Vec<&str> = rule.when_actor.iter().map(|a| a.as_str()).collect();
            format!(", required when the actor is {}", actors.join(" or "))
        };
        return Some(violation(
            ViolationCode::MissingAnnotation,
            None,
            format!("{name} is missing{when}"),
        ));
    };
    let shown = shorten(&value);
    if let Err(error) = rule.key.check_builtin_format(&value) {
        return Some(violation(
            ViolationCode::InvalidValue,
            Some(&value),
            format!("{name} is {shown:?}, {error}"),
        ));
    }
    if !rule.allowed_values.is_empty() && !rule.allowed_values.iter().any(|a| a == value.trim()) {
        return Some(violation(
            ViolationCode::ValueNotAllowed,
            Some(&value),
            format!("{name} is {shown:?}, not one of {:?}", rule.allowed_values),
        ));
    }
    if let Some(re) = &compiled.pattern
        && !re.is_match(&value)
    {
        return Some(violation(
            ViolationCode::PatternMismatch,
            Some(&value),
            format!(
                "{name} is {shown:?}, which does not match {:?}",
                re.as_str()
            ),
        ));
    }
    None
}

/// An example that satisfies the rule: the rule's own, its first allowed value, or the key's.
pub fn example_for(compiled: &CompiledRule) -> String {
    let rule = &compiled.rule;
    if let Some(example) = &rule.example {
        return example.clone();
    }
    if let Some(first) = rule.allowed_values.first() {
        return first.clone();
    }
    let builtin = rule.key.example();
    match &compiled.pattern {
        Some(re) if !re.is_match(builtin) => format!("<a value matching {}>", re.as_str()),
        _ => builtin.to_string(),
    }
}

/// A request from one of the policy's agent identities must say so.
pub(crate) fn actor_cross_check(
    policy: &CompiledPolicy,
    subject: &Subject<'_, '_>,
) -> Option<Violation> {
    let ids = &policy.spec.identities;
    if !identity_matches(&ids.agents, subject.username, subject.groups)
        || identity_matches(&ids.delivery, subject.username, subject.groups)
    {
        return None;
    }
    if subject.actor() == Some(Actor::Agent) {
        return None;
    }
    let name = subject.vocabulary.key(AnnotationKey::Actor);
    let declared = subject
        .value(AnnotationKey::Actor)
        .map(|v| format!("{:?}", shorten(&v)))
        .unwrap_or_else(|| "missing".to_string());
    Some(Violation {
        code: ViolationCode::ActorMismatch,
        key: Some(AnnotationKey::Actor),
        field: subject.field(AnnotationKey::Actor),
        value: subject.value(AnnotationKey::Actor).map(Cow::into_owned),
        policy: policy.name.clone(),
        mode: policy.spec.mode,
        message: format!(
            "{name} is {declared}, but the request comes from {:?}, an agent identity (policy {:?}); fix: set {name}: \"agent\" and {}: \"<agent name/version>\"",
            subject.username,
            policy.name,
            subject.vocabulary.key(AnnotationKey::Agent),
        ),
        fix: "agent".to_string(),
    })
}

/// On UPDATE: the template changed while the revision-identifying provenance did not.
pub(crate) fn stale_provenance(
    subject: &Subject<'_, '_>,
    old: &WorkloadObject<'_>,
    template: Option<&RawValue>,
    old_template: Option<&RawValue>,
    (policy, mode): (&str, EnforcementMode),
) -> Option<Violation> {
    const REVISION_KEYS: [AnnotationKey; 2] =
        [AnnotationKey::SourceCommit, AnnotationKey::PipelineRun];
    let vocabulary = subject.vocabulary;
    let old_annotations = Annotations::read(vocabulary, old);
    let old_values = REVISION_KEYS.map(|k| old_annotations.get(k).map(Cow::Borrowed));
    if old_values.iter().all(Option::is_none) {
        // No provenance to go stale; the annotation rules report what is missing.
        return None;
    }
    let unchanged = REVISION_KEYS
        .iter()
        .zip(&old_values)
        .all(|(k, old)| subject.value(*k).as_deref() == old.as_deref());
    if !unchanged || !templates_differ(template, old_template) {
        return None;
    }
    let commit = vocabulary.key(AnnotationKey::SourceCommit);
    let run = vocabulary.key(AnnotationKey::PipelineRun);
    let shown = |v: &Option<Cow<'_, str>>| {
        v.as_deref()
            .map_or("unset".to_string(), |v| format!("{v:?}"))
    };
    Some(Violation {
        code: ViolationCode::StaleProvenance,
        key: Some(AnnotationKey::SourceCommit),
        field: subject.field(AnnotationKey::SourceCommit),
        value: old_values[0].as_deref().map(str::to_string),
        policy: policy.to_string(),
        mode,
        message: format!(
            "the pod template changed but {commit} ({}) and {run} ({}) did not, so the provenance would describe the previous revision (policy {policy:?}); fix: in the same change, set {commit} to the commit this template was built from and {run} to the run that delivered it",
            shown(&old_values[0]),
            shown(&old_values[1]),
        ),
        fix: AnnotationKey::SourceCommit.example().to_string(),
    })
}

/// The template is one the controller reverted, and no human overrides the quarantine.
pub(crate) fn quarantine(
    subject: &Subject<'_, '_>,
    object_name: &str,
    entries: &[QuarantineEntry],
    template: Option<&RawValue>,
    agent_requester: bool,
    (policy, mode): (&str, EnforcementMode),
) -> QuarantineOutcome {
    let Some(template) = template else {
        return QuarantineOutcome::Clear;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(template.get()) else {
        return QuarantineOutcome::Clear;
    };
    // The code it runs: the records keep it without the restart annotation, so neither a
    // restart of a reverted template nor Git's copy of it without one slips by.
    let fingerprint = code_fingerprint(&value);
    let Some(entry) = entries
        .iter()
        .find(|e| e.fingerprint == fingerprint.as_str())
    else {
        return QuarantineOutcome::Clear;
    };
    let override_reason = subject
        .value(AnnotationKey::QuarantineOverride)
        .filter(|r| !r.trim().is_empty());
    if let Some(reason) = override_reason
        && subject.actor() == Some(Actor::Human)
        && !agent_requester
    {
        return QuarantineOutcome::Overridden {
            record: entry.record.clone(),
            reason: reason.into_owned(),
        };
    }
    let actor = subject.vocabulary.key(AnnotationKey::Actor);
    let over = subject.vocabulary.key(AnnotationKey::QuarantineOverride);
    QuarantineOutcome::Denied(Violation {
        code: ViolationCode::Quarantined,
        key: Some(AnnotationKey::QuarantineOverride),
        field: "spec.template".to_string(),
        value: Some(fingerprint.to_string()),
        policy: policy.to_string(),
        mode,
        message: format!(
            "this pod template ({fingerprint}) is revision {} of {object_name}, which Custody reverted after it regressed ({}); see RollbackRecord {:?}. Re-applying it (a GitOps re-sync, say) is refused (policy {policy:?}); fix: commit a template that differs from the reverted one, or, as a human, set {actor}: \"human\" and {over}: \"<why this is safe now>\"",
            entry.revision, entry.reason, entry.record,
        ),
        fix: "change the pod template, or set a quarantine-override reason as a human".to_string(),
    })
}

/// What the quarantine rule found.
pub(crate) enum QuarantineOutcome {
    /// Not a quarantined template.
    Clear,
    /// Quarantined, and denied.
    Denied(Violation),
    /// Quarantined, but a human set an override.
    Overridden {
        /// The record that quarantined it.
        record: String,
        /// The human's reason.
        reason: String,
    },
}
