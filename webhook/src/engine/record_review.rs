//! Admission of a RollbackRecord's lift (`status.lifted`): lifting a quarantine lets a reverted
//! template back in, so it is a person's act, under their own authenticated name, with a reason,
//! and it stays as written. Nothing else about a record is judged here: the apiserver calls this
//! only for status updates that touch `lifted` (the webhook's matchConditions).

use custody_crds::{Lift, RecordAction};
use serde::Deserialize;

use super::decision::{Decision, Outcome, Violation, ViolationCode};
use super::policies::{PolicySet, identity_matches};
use crate::review::{AdmissionRequest, Operation, WorkloadObject};

/// The shortest reason accepted: a word or two says nothing to whoever reads the record later.
pub const MIN_REASON_CHARS: usize = 10;

/// Judges an UPDATE of a RollbackRecord's status.
pub fn validate_record(request: &AdmissionRequest<'_>, policies: &PolicySet) -> Decision {
    if request.kind.kind != "RollbackRecord" {
        return Decision::invalid(format!(
            "the record endpoint judges RollbackRecord objects, not {}",
            request.kind.kind
        ));
    }
    if request.operation != Operation::Update || request.sub_resource.as_deref() != Some("status") {
        return Decision::skipped(None);
    }
    let (Some(object), Some(old)) = (request.object.as_ref(), request.old_object.as_ref()) else {
        return Decision::invalid("the RollbackRecord update has no object or oldObject".into());
    };
    let (new_lift, old_lift) = match (lift_of(object), lift_of(old)) {
        (Ok(n), Ok(o)) => (n, o),
        (Err(e), _) | (_, Err(e)) => {
            return refuse(
                request,
                format!("status.lifted is not a valid lift: {e}"),
                "",
            );
        }
    };
    if new_lift == old_lift {
        return Decision::skipped(None);
    }
    let user = request.user_info.username.as_ref();
    let groups = &request.user_info.groups;
    if let Some(problem) = not_a_person(user, groups, policies) {
        return refuse(
            request,
            problem,
            "run `kubectl custody lift` as yourself, with your own credentials",
        );
    }
    let Some(lift) = new_lift else {
        // A person may take a lift back: the quarantine returns.
        return Decision::skipped(None).with_outcome(Outcome::Allowed);
    };
    if let Some(old) = old_lift {
        return refuse(
            request,
            format!(
                "the record was already lifted by {} ({}); a lift is not rewritten",
                old.by, old.reason
            ),
            "leave the lift as it is, or remove it first to restore the quarantine",
        );
    }
    match action_of(object) {
        Ok(RecordAction::Reverted) => {}
        Ok(action) => {
            return refuse(
                request,
                format!("the record is {action:?}, not Reverted: it quarantines nothing to lift"),
                "lift the record of the revert instead (`kubectl custody records`)",
            );
        }
        Err(e) => return refuse(request, format!("spec.action is unreadable: {e}"), ""),
    }
    if lift.by != user {
        return refuse(
            request,
            format!(
                "status.lifted.by is {:?}, but the request comes from {user:?}",
                lift.by
            ),
            "a lift names who made it: set status.lifted.by to your own user name",
        );
    }
    if lift.reason.trim().chars().count() < MIN_REASON_CHARS {
        return refuse(
            request,
            format!(
                "status.lifted.reason {:?} is shorter than {MIN_REASON_CHARS} characters",
                lift.reason
            ),
            "say why the reverted template may come back, e.g. \"root cause fixed in ConfigMap web-config\"",
        );
    }
    let mut decision = Decision::skipped(None).with_outcome(Outcome::Allowed);
    decision
        .audit_annotations
        .insert("lifted".to_string(), format!("{user}: {}", lift.reason));
    decision
}

/// Why `user` is not a person who may lift a quarantine, if they are not.
fn not_a_person(user: &str, groups: &[impl AsRef<str>], policies: &PolicySet) -> Option<String> {
    if user.starts_with("system:serviceaccount:") {
        return Some(format!(
            "{user} is a service account; only a person lifts a quarantine"
        ));
    }
    if user.starts_with("system:") {
        return Some(format!(
            "{user} is a system identity; only a person lifts a quarantine"
        ));
    }
    policies
        .iter()
        .find(|p| identity_matches(&p.spec.identities.agents, user, groups))
        .map(|p| {
            format!(
                "{user} is an agent identity of CustodyPolicy {:?}; an agent never lifts a quarantine",
                p.name
            )
        })
}

fn lift_of(object: &WorkloadObject<'_>) -> Result<Option<Lift>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        lifted: Option<Lift>,
    }
    match object.status {
        None => Ok(None),
        Some(raw) => Ok(serde_json::from_str::<Option<Status>>(raw.get())?.and_then(|s| s.lifted)),
    }
}

fn action_of(object: &WorkloadObject<'_>) -> Result<RecordAction, serde_json::Error> {
    #[derive(Deserialize)]
    struct Spec {
        action: RecordAction,
    }
    let raw = object.spec.map_or("null", |r| r.get());
    Ok(serde_json::from_str::<Spec>(raw)?.action)
}

fn refuse(request: &AdmissionRequest<'_>, problem: String, fix: &str) -> Decision {
    let name = request.name.as_deref().unwrap_or("<unnamed>");
    let mut message = format!("Custody refused the lift of RollbackRecord {name:?}: {problem}");
    if !fix.is_empty() {
        message.push_str("\n  fix: ");
        message.push_str(fix);
    }
    Decision {
        allowed: false,
        code: 403,
        message: Some(message),
        violations: vec![Violation {
            code: ViolationCode::LiftRefused,
            key: None,
            field: "status.lifted".to_string(),
            value: None,
            policy: String::new(),
            mode: custody_crds::EnforcementMode::Enforce,
            message: problem,
            fix: fix.to_string(),
        }],
        warnings: Vec::new(),
        audit_annotations: Default::default(),
        outcome: Outcome::Denied,
        mode: Some(custody_crds::EnforcementMode::Enforce),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::CustodyPolicy;
    use serde_json::{Value, json};

    fn status_update(action: &str, old: Option<Value>, new: Option<Value>, user: &str) -> String {
        let record = |lifted: Option<Value>| {
            let mut o = json!({
                "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
                "metadata": {"name": "web-r2", "namespace": "shop"},
                "spec": {"action": action, "workload": {"kind": "Deployment", "name": "web"}},
                "status": {"notified": true}
            });
            if let Some(l) = lifted {
                o["status"]["lifted"] = l;
            }
            o
        };
        json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "custody.dev", "version": "v1alpha1", "kind": "RollbackRecord"},
                "resource": {"group": "custody.dev", "version": "v1alpha1", "resource": "rollbackrecords"},
                "subResource": "status",
                "operation": "UPDATE", "namespace": "shop", "name": "web-r2",
                "userInfo": {"username": user, "groups": ["system:authenticated", "ai-agents-if-agent"]},
                "object": record(new), "oldObject": record(old)
            }
        })
        .to_string()
    }

    fn lift(by: &str, reason: &str) -> Value {
        json!({"by": by, "reason": reason, "at": "2026-12-03T06:00:00Z"})
    }

    fn judge(body: &str) -> Decision {
        let request = crate::review::decode(body.as_bytes()).unwrap();
        let mut policy = CustodyPolicy::new("default", Default::default());
        policy.spec.identities.agents.users = vec!["claude@acme.dev".into()];
        let (policies, errors) = PolicySet::compile([policy]);
        assert!(errors.is_empty());
        validate_record(&request, &policies)
    }

    #[test]
    fn who_may_lift_what() {
        let reason = "root cause fixed in ConfigMap web-config";
        let ann = lift("ann@acme.dev", reason);
        let cases: Vec<(&str, String, bool, &str)> = vec![
            (
                "a person lifts a revert under their own name",
                status_update("Reverted", None, Some(ann.clone()), "ann@acme.dev"),
                true,
                "",
            ),
            (
                "a status write that leaves the lift alone is not judged",
                status_update(
                    "Reverted",
                    Some(ann.clone()),
                    Some(ann.clone()),
                    "system:serviceaccount:custody-system:custody-controller",
                ),
                true,
                "",
            ),
            (
                "under someone else's name",
                status_update(
                    "Reverted",
                    None,
                    Some(lift("bob@acme.dev", reason)),
                    "ann@acme.dev",
                ),
                false,
                "but the request comes from \"ann@acme.dev\"",
            ),
            (
                "without a real reason",
                status_update(
                    "Reverted",
                    None,
                    Some(lift("ann@acme.dev", "ok")),
                    "ann@acme.dev",
                ),
                false,
                "shorter than 10 characters",
            ),
            (
                "by a service account",
                status_update(
                    "Reverted",
                    None,
                    Some(lift("system:serviceaccount:agents:claude", reason)),
                    "system:serviceaccount:agents:claude",
                ),
                false,
                "is a service account",
            ),
            (
                "by an agent identity of a policy",
                status_update(
                    "Reverted",
                    None,
                    Some(lift("claude@acme.dev", reason)),
                    "claude@acme.dev",
                ),
                false,
                "is an agent identity of CustodyPolicy \"default\"",
            ),
            (
                "an alert has nothing to lift",
                status_update("Alerted", None, Some(ann.clone()), "ann@acme.dev"),
                false,
                "is Alerted, not Reverted",
            ),
            (
                "a lift is not rewritten",
                status_update(
                    "Reverted",
                    Some(ann.clone()),
                    Some(lift("ann@acme.dev", "another reason entirely")),
                    "ann@acme.dev",
                ),
                false,
                "already lifted by ann@acme.dev",
            ),
            (
                "a person may take a lift back",
                status_update("Reverted", Some(ann.clone()), None, "bob@acme.dev"),
                true,
                "",
            ),
            (
                "an agent may not take a lift back either",
                status_update("Reverted", Some(ann), None, "claude@acme.dev"),
                false,
                "agent identity",
            ),
        ];
        for (name, body, allowed, needle) in cases {
            let d = judge(&body);
            assert_eq!(d.allowed, allowed, "{name}: {:?}", d.message);
            if !allowed {
                let message = d.message.unwrap_or_default();
                assert!(message.contains(needle), "{name}: {message}");
                assert_eq!(d.violations[0].code, ViolationCode::LiftRefused, "{name}");
            }
        }
    }

    #[test]
    fn the_lift_goes_to_the_audit_log_and_malformed_lifts_are_refused() {
        let reason = "root cause fixed in ConfigMap web-config";
        let d = judge(&status_update(
            "Reverted",
            None,
            Some(lift("ann@acme.dev", reason)),
            "ann@acme.dev",
        ));
        assert_eq!(
            d.audit_annotations.get("lifted").map(String::as_str),
            Some(format!("ann@acme.dev: {reason}").as_str())
        );
        let d = judge(&status_update(
            "Reverted",
            None,
            Some(json!({"by": "ann@acme.dev"})),
            "ann@acme.dev",
        ));
        assert!(!d.allowed);
        assert!(
            d.message.unwrap_or_default().contains("not a valid lift"),
            "a lift without reason and time"
        );
    }
}
