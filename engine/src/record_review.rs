//! Admission of a RollbackRecord's lifts: `status.lifted` lets a reverted template back in,
//! `status.probationLifted` ends its agent's probation. Both are a person's act, under their own
//! authenticated name, with a reason, and stay as written. Nothing else about a record is judged
//! here: the apiserver calls this only for status updates that touch a lift (the webhook's
//! matchConditions).

use custody_crds::{Lift, RecordAction};
use serde::Deserialize;

use crate::decision::{Decision, Outcome, ViolationCode};
use crate::object::WorkloadObject;
use crate::person::person_problem;
use crate::policies::PolicySet;
use crate::request::{Operation, Request};

/// The shortest reason accepted: a word or two says nothing to whoever reads the record later.
pub const MIN_REASON_CHARS: usize = 10;

/// The two lifts a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Quarantine,
    Probation,
}

impl Which {
    const fn field(self) -> &'static str {
        match self {
            Which::Quarantine => "status.lifted",
            Which::Probation => "status.probationLifted",
        }
    }

    const fn what(self) -> &'static str {
        match self {
            Which::Quarantine => "a quarantine",
            Which::Probation => "a probation",
        }
    }

    const fn example(self) -> &'static str {
        match self {
            Which::Quarantine => {
                "say why the reverted template may come back, e.g. \"root cause fixed in ConfigMap web-config\""
            }
            Which::Probation => {
                "say what was checked, e.g. \"reviewed the agent's last three changes with its owner\""
            }
        }
    }
}

/// Judges an UPDATE of a RollbackRecord's status.
pub fn validate_record(request: &Request<'_>, policies: &PolicySet) -> Decision {
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
    let (new, old) = match (lifts_of(object), lifts_of(old)) {
        (Ok(n), Ok(o)) => (n, o),
        (Err(e), _) | (_, Err(e)) => {
            return refuse(
                request,
                Which::Quarantine,
                format!(
                    "its status is not valid (status.lifted and status.probationLifted take by, reason and at): {e}"
                ),
                "",
            );
        }
    };
    let mut admitted = Decision::skipped(None);
    for (which, new_lift, old_lift) in [
        (Which::Quarantine, new.lifted, old.lifted),
        (Which::Probation, new.probation_lifted, old.probation_lifted),
    ] {
        if new_lift == old_lift {
            continue;
        }
        match judge_lift(request, object, which, new_lift, old_lift, policies) {
            Ok(Some((key, value))) => {
                admitted.outcome = Outcome::Allowed;
                admitted.audit_annotations.insert(key, value);
            }
            Ok(None) => admitted.outcome = Outcome::Allowed,
            Err(refused) => return refused,
        }
    }
    admitted
}

/// One changed lift: refused, or admitted with what goes to the audit log.
fn judge_lift(
    request: &Request<'_>,
    object: &WorkloadObject<'_>,
    which: Which,
    new_lift: Option<Lift>,
    old_lift: Option<Lift>,
    policies: &PolicySet,
) -> Result<Option<(String, String)>, Decision> {
    let field = which.field();
    let user = request.user_info.username.as_ref();
    let groups = &request.user_info.groups;
    if let Some(problem) = not_a_person(user, groups, policies, which) {
        return Err(refuse(
            request,
            which,
            problem,
            "run `kubectl custody lift` as yourself, with your own credentials",
        ));
    }
    let Some(lift) = new_lift else {
        // A person may take a lift back: the quarantine (or the count) returns.
        return Ok(None);
    };
    if let Some(old) = old_lift {
        return Err(refuse(
            request,
            which,
            format!(
                "{field} was already written by {} ({}); a lift is not rewritten",
                old.by, old.reason
            ),
            "leave the lift as it is, or remove it first",
        ));
    }
    match action_of(object) {
        Ok(RecordAction::Reverted) => {}
        Ok(action) => {
            return Err(refuse(
                request,
                which,
                format!("the record is {action:?}, not Reverted: there is nothing to lift"),
                "lift the record of the revert instead (`kubectl custody records`)",
            ));
        }
        Err(e) => {
            return Err(refuse(
                request,
                which,
                format!("spec.action is unreadable: {e}"),
                "",
            ));
        }
    }
    if lift.by != user {
        return Err(refuse(
            request,
            which,
            format!(
                "{field}.by is {:?}, but the request comes from {user:?}",
                lift.by
            ),
            &format!("a lift names who made it: set {field}.by to your own user name"),
        ));
    }
    if lift.reason.trim().chars().count() < MIN_REASON_CHARS {
        return Err(refuse(
            request,
            which,
            format!(
                "{field}.reason {:?} is shorter than {MIN_REASON_CHARS} characters",
                lift.reason
            ),
            which.example(),
        ));
    }
    let key = match which {
        Which::Quarantine => "lifted",
        Which::Probation => "probation-lifted",
    };
    Ok(Some((key.to_string(), format!("{user}: {}", lift.reason))))
}

/// Why `user` is not a person who may lift, if they are not.
fn not_a_person(
    user: &str,
    groups: &[impl AsRef<str>],
    policies: &PolicySet,
    which: Which,
) -> Option<String> {
    person_problem(user, groups, policies, &format!("lifts {}", which.what()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lifts {
    #[serde(default)]
    lifted: Option<Lift>,
    #[serde(default)]
    probation_lifted: Option<Lift>,
}

fn lifts_of(object: &WorkloadObject<'_>) -> Result<Lifts, serde_json::Error> {
    match object.status {
        None => Ok(Lifts::default()),
        Some(raw) => Ok(serde_json::from_str::<Option<Lifts>>(raw.get())?.unwrap_or_default()),
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

fn refuse(request: &Request<'_>, which: Which, problem: String, fix: &str) -> Decision {
    let name = request.name.as_deref().unwrap_or("<unnamed>");
    let what = match which {
        Which::Quarantine => "the lift",
        Which::Probation => "the probation lift",
    };
    let message = format!("Custody refused {what} of RollbackRecord {name:?}: {problem}");
    Decision::refused(
        ViolationCode::LiftRefused,
        which.field(),
        message,
        problem,
        fix,
    )
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
        let request = crate::request::from_review(body);
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
                "status.lifted was already written by ann@acme.dev",
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
            d.message
                .unwrap_or_default()
                .contains("its status is not valid"),
            "a lift without reason and time"
        );
    }

    #[test]
    fn a_probation_lift_follows_the_same_rules() {
        let reason = "reviewed the agent's last three changes with its owner";
        let body = |old: Option<Value>, new: Option<Value>, user: &str| {
            let mut v: Value =
                serde_json::from_str(&status_update("Reverted", None, None, user)).unwrap();
            for (key, lift) in [("oldObject", old), ("object", new)] {
                if let Some(l) = lift {
                    v["request"][key]["status"]["probationLifted"] = l;
                }
            }
            v.to_string()
        };
        let d = judge(&body(
            None,
            Some(lift("ann@acme.dev", reason)),
            "ann@acme.dev",
        ));
        assert!(d.allowed, "{:?}", d.message);
        assert_eq!(
            d.audit_annotations
                .get("probation-lifted")
                .map(String::as_str),
            Some(format!("ann@acme.dev: {reason}").as_str())
        );
        for (name, b, needle) in [
            (
                "an agent",
                body(
                    None,
                    Some(lift("claude@acme.dev", reason)),
                    "claude@acme.dev",
                ),
                "an agent never lifts a probation",
            ),
            (
                "another's name",
                body(None, Some(lift("bob@acme.dev", reason)), "ann@acme.dev"),
                "status.probationLifted.by is \"bob@acme.dev\"",
            ),
            (
                "a short reason",
                body(None, Some(lift("ann@acme.dev", "fine")), "ann@acme.dev"),
                "status.probationLifted.reason",
            ),
            (
                "rewritten",
                body(
                    Some(lift("ann@acme.dev", reason)),
                    Some(lift("ann@acme.dev", "a different reason here")),
                    "ann@acme.dev",
                ),
                "status.probationLifted was already written",
            ),
        ] {
            let d = judge(&b);
            assert!(!d.allowed, "{name}");
            let message = d.message.unwrap_or_default();
            assert!(message.contains(needle), "{name}: {message}");
            assert!(message.contains("the probation lift"), "{name}: {message}");
            assert_eq!(d.violations[0].field, "status.probationLifted", "{name}");
        }
    }
}
