//! Change freezes at admission: which open windows bind this revision, and whether a person
//! broke glass.

use custody_crds::{Actor, AnnotationKey};
use jiff::Timestamp;

use crate::decision::{Violation, ViolationCode};
use crate::freeze_window::CompiledFreeze;
use crate::identity::identity_matches;
use crate::policies::CompiledPolicy;
use crate::subject::{Subject, shorten};

/// One open window that binds the revision, and its policy.
pub(crate) struct OpenFreeze<'p> {
    pub policy: &'p CompiledPolicy,
    pub window: &'p CompiledFreeze,
    pub closes: Timestamp,
}

/// What the freezes decide about a new revision.
pub(crate) enum FreezeOutcome {
    /// Denied (or warned, audited: each policy's mode) by these violations.
    Violations(Vec<Violation>),
    /// A person broke glass: admitted, with the reason and the windows it passed.
    BrokeGlass {
        reason: String,
        windows: Vec<String>,
    },
}

/// Whether the requester is one of the policy's agent identities (and not a delivery system
/// passing a manifest through).
fn agent_requester(policy: &CompiledPolicy, subject: &Subject<'_, '_>) -> bool {
    let ids = &policy.spec.identities;
    identity_matches(&ids.agents, subject.username, subject.groups)
        && !identity_matches(&ids.delivery, subject.username, subject.groups)
}

/// The actor a policy's freezes see: an agent identity is an agent whatever it declares, and a
/// revision that declares no actor cannot show it is not an agent's.
fn bound_actor(policy: &CompiledPolicy, subject: &Subject<'_, '_>) -> Actor {
    if agent_requester(policy, subject) {
        return Actor::Agent;
    }
    subject.actor().unwrap_or(Actor::Agent)
}

/// The windows open at `now`. Cheap: a remembered answer per window, so it runs before
/// anything parses the template.
pub(crate) fn open<'p>(selecting: &[&'p CompiledPolicy], now: Timestamp) -> Vec<OpenFreeze<'p>> {
    let mut open = Vec::new();
    for &policy in selecting {
        for window in &policy.freezes {
            if let Some(closes) = window.closes_after(now) {
                open.push(OpenFreeze {
                    policy,
                    window,
                    closes,
                });
            }
        }
    }
    open
}

/// Whether an open window binds the revision's actor, or a person asks to break glass (which
/// is recorded whenever a freeze is open, bound or not, so every use is visible).
pub(crate) fn concerns(open: &[OpenFreeze<'_>], subject: &Subject<'_, '_>) -> bool {
    subject.annotations.get(AnnotationKey::BreakGlass).is_some()
        || open
            .iter()
            .any(|o| o.window.binds(bound_actor(o.policy, subject)))
}

/// Judges a new revision (a CREATE, or an UPDATE that changes the template) against the open
/// windows.
pub(crate) fn judge(open: &[OpenFreeze<'_>], subject: &Subject<'_, '_>) -> FreezeOutcome {
    let reason = subject
        .value(AnnotationKey::BreakGlass)
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let mut violations = Vec::new();
    let mut policies: Vec<&CompiledPolicy> = Vec::new();
    for o in open {
        if !policies.iter().any(|p| p.name == o.policy.name) {
            policies.push(o.policy);
        }
    }
    for policy in policies {
        let actor = bound_actor(policy, subject);
        let binding: Vec<&OpenFreeze<'_>> = open
            .iter()
            .filter(|o| o.policy.name == policy.name && o.window.binds(actor))
            .collect();
        if binding.is_empty() {
            continue;
        }
        match &reason {
            None => violations.push(frozen(policy, &binding, subject)),
            Some(reason) => {
                if let Some(why) = refusal(policy, subject) {
                    violations.push(break_glass_refused(policy, subject, reason, &why));
                }
            }
        }
    }
    match reason {
        Some(reason) if violations.is_empty() && refusal_anywhere(open, subject).is_none() => {
            FreezeOutcome::BrokeGlass {
                reason,
                windows: open
                    .iter()
                    .map(|o| format!("{}/{}", o.policy.name, o.window.window.name))
                    .collect(),
            }
        }
        _ => FreezeOutcome::Violations(violations),
    }
}

/// A break-glass nobody was bound to need is still only recorded as a person's.
fn refusal_anywhere(open: &[OpenFreeze<'_>], subject: &Subject<'_, '_>) -> Option<String> {
    open.iter().find_map(|o| refusal(o.policy, subject))
}

/// Why this request may not break glass, if it may not. Checked against the authenticated
/// identity, as the actor cross-check is: a declaration proves nothing.
fn refusal(policy: &CompiledPolicy, subject: &Subject<'_, '_>) -> Option<String> {
    if agent_requester(policy, subject) {
        return Some(format!(
            "the request comes from {:?}, an agent identity, and agents can never break glass",
            subject.username
        ));
    }
    match subject.actor() {
        Some(Actor::Human) => None,
        Some(other) => Some(format!(
            "break-glass is for a person's revision, and this one declares actor {:?}",
            other.as_str()
        )),
        None => Some(
            "break-glass is for a person's revision, and this one declares no actor".to_string(),
        ),
    }
}

/// When a window closes, in its own zone and in UTC.
pub(crate) fn until(window: &CompiledFreeze, closes: Timestamp) -> String {
    let local = closes.to_zoned(window.tz.clone());
    format!(
        "{} ({})",
        local.strftime("%Y-%m-%d %H:%M %Z"),
        closes.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
}

fn frozen(
    policy: &CompiledPolicy,
    open: &[&OpenFreeze<'_>],
    subject: &Subject<'_, '_>,
) -> Violation {
    let windows: Vec<String> = open
        .iter()
        .map(|o| {
            let note = o
                .window
                .window
                .message
                .as_deref()
                .map(|m| format!(": {}", m.trim().trim_end_matches('.')))
                .unwrap_or_default();
            format!(
                "{:?} until {}{note}",
                o.window.window.name,
                until(o.window, o.closes)
            )
        })
        .collect();
    let actor = bound_actor(policy, subject);
    let bg = subject.vocabulary.key(AnnotationKey::BreakGlass);
    let fix = "<incident and reason>".to_string();
    Violation {
        code: ViolationCode::Frozen,
        key: Some(AnnotationKey::BreakGlass),
        field: subject.field(AnnotationKey::BreakGlass),
        value: None,
        policy: policy.name.clone(),
        mode: policy.spec.mode,
        message: format!(
            "a change freeze of policy {:?} is in effect for {} revisions: {}. New revisions wait until it ends; scaling and metadata-only changes pass. Fix: ship after the freeze, or have a person ship it with {}: \"human\" and {bg}: {fix:?}",
            policy.name,
            actor.as_str(),
            windows.join("; "),
            subject.vocabulary.key(AnnotationKey::Actor),
        ),
        fix,
    }
}

fn break_glass_refused(
    policy: &CompiledPolicy,
    subject: &Subject<'_, '_>,
    reason: &str,
    why: &str,
) -> Violation {
    let bg = subject.vocabulary.key(AnnotationKey::BreakGlass);
    Violation {
        code: ViolationCode::BreakGlassRefused,
        key: Some(AnnotationKey::BreakGlass),
        field: subject.field(AnnotationKey::BreakGlass),
        value: Some(reason.to_string()),
        policy: policy.name.clone(),
        mode: policy.spec.mode,
        message: format!(
            "{bg} is {:?}, but {why} (policy {:?} has a change freeze in effect). Fix: hand the change to a person, or ship it after the freeze",
            shorten(reason),
            policy.name
        ),
        fix: "hand over to a person".to_string(),
    }
}
