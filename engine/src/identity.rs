//! Whether a requester is one of a set of identities: users, groups and service accounts, as
//! globs. A leaf: the policy compiler and every rule that asks "is this an agent?" share it.

use custody_crds::IdentitySet;
use custody_crds::selection::glob_matches;

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

/// Whether a requester is in an identity set.
pub fn identity_matches(set: &IdentitySet, username: &str, groups: &[impl AsRef<str>]) -> bool {
    if set.users.iter().any(|p| glob_matches(p, username)) {
        return true;
    }
    if set
        .groups
        .iter()
        .any(|p| groups.iter().any(|g| glob_matches(p, g.as_ref())))
    {
        return true;
    }
    match username
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, name)) => set.service_accounts.iter().any(|p| {
            p.split_once('/')
                .is_some_and(|(pns, pname)| glob_matches(pns, ns) && glob_matches(pname, name))
        }),
        None => false,
    }
}
