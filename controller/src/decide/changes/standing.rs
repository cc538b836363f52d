//! Which policies' approvals protect a change request, and where it stands under the strictest
//! of them. The webhook judges an agent's revision under every selecting policy whose approval
//! covers it, and each must admit; so the request is only as far along as the policy it is
//! least far along under.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use custody_crds::CustodyChange;
use custody_engine::{
    ChangeEntry, CompiledApproval, CompiledPolicy, PolicySet, Standing, standing,
};
use jiff::Timestamp;

/// A change request judged under the approval of the policy it is least far along under.
#[derive(Clone, Debug)]
pub struct Judged<'p> {
    /// The policy.
    pub policy: &'p CompiledPolicy,
    /// Its approval.
    pub approval: &'p CompiledApproval,
    /// Where the request stands under it.
    pub standing: Standing,
}

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
    let entry = entry(change);
    protecting(policies, change, namespace_labels)
        .into_iter()
        .map(|(policy, approval)| Judged {
            policy,
            approval,
            standing: standing(&entry, approval, now),
        })
        // Policies come sorted by name: among equals, the first by name stays.
        .min_by(|a, b| strictness(&a.standing, &b.standing))
}

/// How far along a standing is: less is stricter. Rejected and applied do not depend on the
/// policy; then expired (earliest first), pending (most approvals missing, then the earliest
/// deadline), and admitted (the earliest end).
fn strictness(a: &Standing, b: &Standing) -> Ordering {
    fn rank(s: &Standing) -> u8 {
        match s {
            Standing::Rejected(_) => 0,
            Standing::Applied(_) => 1,
            Standing::Expired(_) => 2,
            Standing::Pending { .. } => 3,
            Standing::Admits { .. } => 4,
        }
    }
    let by_rank = rank(a).cmp(&rank(b));
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    match (a, b) {
        (Standing::Expired(x), Standing::Expired(y)) => x.cmp(y),
        (
            Standing::Pending {
                have: ha,
                need: na,
                until: ua,
            },
            Standing::Pending {
                have: hb,
                need: nb,
                until: ub,
            },
        ) => (nb.saturating_sub(*hb))
            .cmp(&na.saturating_sub(*ha))
            .then_with(|| earliest(*ua, *ub)),
        (Standing::Admits { until: x, .. }, Standing::Admits { until: y, .. }) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// A deadline before none at all.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::changes::tests::{approved, change, policies, t};

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
