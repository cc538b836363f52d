//! Admission of CustodyPolicy and CustodyTeam objects themselves: a policy that would fail to
//! compile, an update that weakens a policy without saying so, or a team the index would leave
//! out, is refused when it is applied.

use custody_crds::policy::ACKNOWLEDGE_WEAKENING;
use custody_crds::{CustodyPolicy, CustodyTeam};

use crate::decision::{Decision, Outcome, Violation, ViolationCode};
use crate::object::WorkloadObject;
use crate::policies::CompiledPolicy;
use crate::request::{Operation, Request};
use crate::teams::check_team;

/// Judges a CustodyPolicy or CustodyTeam CREATE or UPDATE.
pub fn validate_policy(request: &Request<'_>) -> Decision {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Decision::skipped(None);
    }
    match request.kind.kind.as_ref() {
        "CustodyPolicy" => {}
        "CustodyTeam" => return validate_team(request),
        other => {
            return Decision::invalid(format!(
                "the policy endpoint judges CustodyPolicy and CustodyTeam objects, not {other}"
            ));
        }
    }
    let Some(object) = request.object.as_ref() else {
        return Decision::invalid("the CustodyPolicy request has no object".to_string());
    };
    let policy = match read_policy(object) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                request,
                vec![format!("the object is not a valid CustodyPolicy: {e}")],
                ViolationCode::InvalidPolicy,
            );
        }
    };
    if let Err(error) = CompiledPolicy::compile(&policy) {
        return refuse(request, error.problems, ViolationCode::InvalidPolicy);
    }
    if request.operation == Operation::Update
        && let Some(old) = request.old_object.as_ref()
        && let Ok(old) = read_policy(old)
        && let Some(problem) = unacknowledged_weakening(&old, &policy)
    {
        return refuse(
            request,
            vec![problem],
            ViolationCode::UnacknowledgedWeakening,
        );
    }
    Decision::skipped(None).with_outcome(Outcome::Allowed)
}

fn validate_team(request: &Request<'_>) -> Decision {
    let Some(object) = request.object.as_ref() else {
        return Decision::invalid("the CustodyTeam request has no object".to_string());
    };
    let spec = match object.spec {
        Some(raw) => serde_json::from_str(raw.get()),
        None => serde_json::from_str("null"),
    };
    let team = match spec {
        Ok(spec) => CustodyTeam::new(object.metadata.name.as_deref().unwrap_or_default(), spec),
        Err(e) => {
            return refuse(
                request,
                vec![format!("the object is not a valid CustodyTeam: {e}")],
                ViolationCode::InvalidTeam,
            );
        }
    };
    match check_team(&team) {
        Ok(_) => Decision::skipped(None).with_outcome(Outcome::Allowed),
        Err(error) => refuse(request, error.problems, ViolationCode::InvalidTeam),
    }
}

/// Rebuilds the policy from the borrowed view: its name, the acknowledgement annotation (the only
/// annotation the rules read) and its spec.
fn read_policy(object: &WorkloadObject<'_>) -> Result<CustodyPolicy, serde_json::Error> {
    let spec = match object.spec {
        Some(raw) => serde_json::from_str(raw.get())?,
        None => serde_json::from_str("null")?,
    };
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let mut policy = CustodyPolicy::new(name, spec);
    if let Some(ack) = object.annotation(ACKNOWLEDGE_WEAKENING) {
        policy.metadata.annotations =
            Some([(ACKNOWLEDGE_WEAKENING.to_string(), ack.into_owned())].into());
    }
    Ok(policy)
}

/// Whether `new` lowers the mode, the failure policy or the approval requirement of `old`
/// without a fresh acknowledgement.
fn unacknowledged_weakening(old: &CustodyPolicy, new: &CustodyPolicy) -> Option<String> {
    let mut weakened = Vec::new();
    if new.spec.mode < old.spec.mode {
        weakened.push(format!("mode {} -> {}", old.spec.mode, new.spec.mode));
    }
    if new.spec.failure_policy < old.spec.failure_policy {
        weakened.push(format!(
            "failurePolicy {} -> {}",
            old.spec.failure_policy.as_str(),
            new.spec.failure_policy.as_str()
        ));
    }
    // Dropping the review of agents' changes is as much a weakening as lowering the mode: an
    // agent identity allowed to edit policies could otherwise wave its own changes through.
    match (&old.spec.agents.approval, &new.spec.agents.approval) {
        (Some(_), None) => weakened.push("agents.approval removed".to_string()),
        (Some(o), Some(n)) if n.required < o.required => {
            weakened.push(format!(
                "agents.approval.required {} -> {}",
                o.required, n.required
            ));
        }
        _ => {}
    }
    if weakened.is_empty() {
        return None;
    }
    let ack = |p: &CustodyPolicy| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ACKNOWLEDGE_WEAKENING))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match (ack(old), ack(new)) {
        (old_ack, Some(new_ack)) if old_ack.as_deref() != Some(new_ack.as_str()) => None,
        _ => Some(format!(
            "this update weakens the policy ({}); to confirm, set the annotation {ACKNOWLEDGE_WEAKENING}: \"<why>\" in the same update, with a reason not used before",
            weakened.join(", ")
        )),
    }
}

fn refuse(request: &Request<'_>, problems: Vec<String>, code: ViolationCode) -> Decision {
    let name = request.name.as_deref().unwrap_or("<unnamed>");
    let mut message = format!("Custody refused {} {name:?}:", request.kind.kind);
    for p in &problems {
        message.push_str("\n- ");
        message.push_str(p);
    }
    let violations = problems
        .into_iter()
        .map(|p| Violation {
            code,
            key: None,
            field: p
                .split(':')
                .next()
                .filter(|f| f.starts_with("spec.") || f.starts_with("metadata."))
                .unwrap_or("spec")
                .to_string(),
            value: None,
            policy: name.to_string(),
            mode: custody_crds::EnforcementMode::Enforce,
            message: p,
            fix: String::new(),
        })
        .collect();
    Decision {
        allowed: false,
        code: 422,
        message: Some(message),
        violations,
        warnings: Vec::new(),
        audit_annotations: Default::default(),
        outcome: Outcome::Denied,
        mode: Some(custody_crds::EnforcementMode::Enforce),
    }
}
