//! The controller's hold on an agent's first step (`spec.agents.canary`) binds agents: an agent
//! identity may not release it. The controller marks a held workload (`held`) and pauses it (a
//! Deployment) or raises its partition (a StatefulSet); an UPDATE by an agent that drops or
//! rewrites the mark, unpauses the Deployment or lowers the partition is refused. Only the
//! controller (whose writes the webhook does not see) or a person (`kubectl custody resume`)
//! releases a hold. Anything else about a held workload is judged as usual.

use custody_crds::WorkloadKind;
use custody_crds::record::marks;
use serde_json::Value;

use crate::decision::{Violation, ViolationCode};
use crate::identity::identity_matches;
use crate::object::WorkloadObject;
use crate::policy_ref::PolicyRef;
use crate::subject::Subject;

/// How an update would release the hold, in words; `None` when it keeps it.
fn released_by(
    kind: WorkloadKind,
    held: &str,
    old: &WorkloadObject<'_>,
    new: &WorkloadObject<'_>,
    key: &str,
) -> Option<String> {
    match new.annotation(key) {
        None => return Some(format!("removes the annotation {key}")),
        Some(value) if value != held => {
            return Some(format!("rewrites the annotation {key} to {value:?}"));
        }
        Some(_) => {}
    }
    let spec = |o: &WorkloadObject<'_>| {
        o.spec
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .unwrap_or(Value::Null)
    };
    let (old_spec, new_spec) = (spec(old), spec(new));
    match kind {
        WorkloadKind::Deployment => {
            let paused = |s: &Value| s["paused"].as_bool().unwrap_or(false);
            (paused(&old_spec) && !paused(&new_spec)).then(|| "unpauses the Deployment".into())
        }
        WorkloadKind::StatefulSet => {
            let partition = |s: &Value| {
                s["updateStrategy"]["rollingUpdate"]["partition"]
                    .as_i64()
                    .unwrap_or(0)
            };
            let (was, now) = (partition(&old_spec), partition(&new_spec));
            (now < was).then(|| format!("lowers the partition from {was} to {now}"))
        }
        _ => None,
    }
}

/// The workload an update is about.
pub(crate) struct Update<'u, 'a> {
    pub kind: WorkloadKind,
    pub namespace: &'u str,
    pub old: &'u WorkloadObject<'a>,
    pub new: &'u WorkloadObject<'a>,
    /// How denials name it.
    pub display: &'u str,
}

/// The violation of an agent's update that releases the controller's hold, under the first of
/// `policies` that guards agents' first steps.
pub(crate) fn judge(
    policies: &[PolicyRef<'_>],
    subject: &Subject<'_, '_>,
    update: &Update<'_, '_>,
) -> Option<Violation> {
    let Update {
        kind,
        namespace,
        old,
        new,
        display,
    } = *update;
    let key = format!("{}{}", subject.vocabulary.prefix(), marks::HELD);
    let held = old.annotation(&key)?;
    let policy = policies.iter().find(|p| p.spec.agents.canary.is_some())?;
    let agent = policies
        .iter()
        .any(|p| identity_matches(&p.spec.identities.agents, subject.username, subject.groups));
    if !agent {
        return None;
    }
    let how = released_by(kind, &held, old, new, &key)?;
    let resume = format!(
        "kubectl custody resume {}/{} -n {}",
        kind.as_str().to_lowercase(),
        new.metadata.name.as_deref().unwrap_or_default(),
        namespace
    );
    Some(Violation {
        code: ViolationCode::HoldReleaseRefused,
        key: None,
        field: format!("metadata.annotations[{key}]"),
        value: Some(held.to_string()),
        policy: policy.name.to_string(),
        mode: policy.spec.mode,
        message: format!(
            "{display} is held after the first step of revision {held} until that step proves healthy (policy {:?}, agents.canary); this update {how}, and an agent may not release the hold. Fix: leave the hold to Custody's controller, which resumes the rollout once the first step passes; or ask a person to review it and run: {resume}",
            policy.name
        ),
        fix: "wait for the controller, or hand over to a person".to_string(),
    })
}
