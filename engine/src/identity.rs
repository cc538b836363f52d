//! Whether a requester is one of a set of identities: users, groups and service accounts, as
//! globs. A leaf: the policy compiler and every rule that asks "is this an agent?" share it.

use custody_crds::IdentitySet;
use custody_crds::selection::glob_matches;

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
