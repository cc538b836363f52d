//! Which policies' approvals protect a change request, and where it stands under the strictest
//! of them, as the engine judges it (`custody_engine::judge_change`), for the controller's
//! writes.

use std::collections::BTreeMap;

use custody_crds::CustodyChange;
pub use custody_engine::JudgedChange as Judged;
use custody_engine::{ChangeEntry, CompiledApproval, CompiledPolicy, PolicySet};
use jiff::Timestamp;

/// The request as the engine reads it.
pub fn entry(change: &CustodyChange) -> ChangeEntry {
    ChangeEntry::of(change)
}

/// The owning team the request declares (its signed `owner` annotation), trimmed.
pub fn team(change: &CustodyChange) -> Option<&str> {
    change
        .spec
        .provenance
        .get("owner")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
}

/// The policies whose approval covers the request, as the webhook found them when it
/// admitted the proposal.
pub fn protecting<'p>(
    policies: &'p PolicySet,
    change: &CustodyChange,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Vec<(&'p CompiledPolicy, &'p CompiledApproval)> {
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    custody_engine::protecting(policies, &change.spec, namespace, namespace_labels)
}

/// The request judged under the strictest protecting policy at `now`; `None` when no policy's
/// approval protects it (any more).
pub fn judge<'p>(
    policies: &'p PolicySet,
    change: &CustodyChange,
    namespace_labels: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> Option<Judged<'p>> {
    custody_engine::judge_change(policies, change, namespace_labels, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::changes::tests::{approved, change, policies, t};
    use custody_engine::Standing;

    #[test]
    fn the_strictest_protecting_policy_is_the_one_judged() {
        let set = policies(&[
            ("one-approver", "required: 1\nvalidFor: 24h"),
            ("two-approvers", "required: 2\nvalidFor: 1h"),
            ("elsewhere", "required: 2\nvalidFor: 1h\nteams: [growth]"),
        ]);
        // (situation, approvers, now (s after creation), expected policy and standing kind)
        type Case<'a> = (&'a str, &'a [&'a str], i64, Option<(&'a str, &'a str)>);
        let cases: [Case; 4] = [
            (
                "no approval yet: the policy that needs the most",
                &[],
                60,
                Some(("two-approvers", "Pending")),
            ),
            (
                "one approval admits under one policy, not the other",
                &["alice"],
                60,
                Some(("two-approvers", "Pending")),
            ),
            (
                "two approvals admit under both: the earliest end",
                &["alice", "bob"],
                60,
                Some(("two-approvers", "Admits")),
            ),
            (
                "the short window passed: expired under it",
                &[],
                2 * 3600,
                Some(("two-approvers", "Expired")),
            ),
        ];
        for (situation, by, at, want) in cases {
            let c = approved(change("web"), by);
            let got = judge(&set, &c, None, t(at)).map(|j| {
                let kind = match j.standing {
                    Standing::Admits { .. } => "Admits",
                    Standing::Pending { .. } => "Pending",
                    Standing::Expired(_) => "Expired",
                    Standing::Rejected(_) => "Rejected",
                    Standing::Applied(_) => "Applied",
                };
                (j.policy.name.as_str(), kind)
            });
            assert_eq!(got, want, "{situation}");
        }
    }

    #[test]
    fn a_request_no_approval_covers_is_unprotected() {
        let set = policies(&[("growth-only", "teams: [growth]")]);
        assert!(judge(&set, &change("web"), None, t(60)).is_none());
        let other_namespace = policies(&[("shop", "required: 1")]);
        let mut c = change("web");
        c.metadata.namespace = Some("billing".into());
        // The fixture's policies select namespace `shop` only.
        assert!(judge(&other_namespace, &c, None, t(60)).is_none());
        assert!(judge(&other_namespace, &change("web"), None, t(60)).is_some());
    }
}
