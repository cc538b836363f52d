//! Whether a requester is a person, for the acts only a person may take: lifting a quarantine
//! or a probation, approving or rejecting a change. Above [`identity`](crate::identity) and
//! [`policies`](crate::policies), since the agent identities come from the policies.

use crate::identity::identity_matches;
use crate::policies::PolicySet;

/// Why `user` is not a person who may take a person's decision (`what`, e.g. "lifts a
/// quarantine"), if they are not: a service account, a `system:` identity, or an agent identity
/// of any policy.
pub(crate) fn person_problem(
    user: &str,
    groups: &[impl AsRef<str>],
    policies: &PolicySet,
    what: &str,
) -> Option<String> {
    if user.starts_with("system:serviceaccount:") {
        return Some(format!("{user} is a service account; only a person {what}"));
    }
    if user.starts_with("system:") {
        return Some(format!("{user} is a system identity; only a person {what}"));
    }
    policies
        .iter()
        .find(|p| identity_matches(&p.spec.identities.agents, user, groups))
        .map(|p| {
            format!(
                "{user} is an agent identity of CustodyPolicy {:?}; an agent never {what}",
                p.name
            )
        })
}
