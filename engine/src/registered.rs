//! `ownership: Registered`: the owner must be a CustodyTeam that may own workloads in the
//! namespace. Whatever the mode, such a team's on-call stands in for a missing `oncall`.

use custody_crds::AnnotationKey;

use crate::decision::{Violation, ViolationCode};
use crate::policies::CompiledPolicy;
use crate::subject::{Subject, shorten};
use crate::teams::{Team, TeamIndex};

/// What the ownership rule found for one policy.
pub(crate) enum OwnerCheck<'t> {
    /// The owner is a registered team of this namespace.
    Resolved(&'t Team),
    /// It is not: why.
    Violation(Violation),
    /// No owner annotation: the annotation rules report it (or the policy does not ask).
    Absent,
}

/// Resolves the workload's owner against the registered teams.
pub(crate) fn registered_owner<'t>(
    policy: &CompiledPolicy,
    subject: &Subject<'_, '_>,
    namespace: &str,
    teams: &'t TeamIndex,
) -> OwnerCheck<'t> {
    let Some(owner) = subject.value(AnnotationKey::Owner) else {
        return OwnerCheck::Absent;
    };
    if let Some(team) = resolve_owner(&owner, namespace, teams) {
        return OwnerCheck::Resolved(team);
    }
    let owner = owner.trim();
    let team = teams.get(owner);
    // Only a denial lists the namespace's teams: the one path that scans them.
    let name = subject.vocabulary.key(AnnotationKey::Owner);
    let owners = teams.owners_of_or_hint(namespace);
    let violation = |code, problem: String, fix: String| Violation {
        code,
        key: Some(AnnotationKey::Owner),
        field: subject.field(AnnotationKey::Owner),
        value: Some(owner.to_string()),
        policy: policy.name.clone(),
        mode: policy.spec.mode,
        message: format!(
            "{problem} (policy {:?} requires ownership: Registered). {} Fix: {fix}",
            policy.name, owners.sentence
        ),
        fix: owners.first.clone().unwrap_or_default(),
    };
    OwnerCheck::Violation(match team {
        Some(team) => violation(
            ViolationCode::NamespaceNotOwned,
            format!(
                "{name} is {:?}, a team that may own workloads in {} but not in namespace {namespace:?}",
                team.name,
                team.namespaces.join(", ")
            ),
            match &owners.first {
                Some(first) => format!(
                    "{name}: {first:?}, or add {namespace:?} to spec.namespaces of CustodyTeam {:?}",
                    team.name
                ),
                None => format!(
                    "add {namespace:?} to spec.namespaces of CustodyTeam {:?}",
                    team.name
                ),
            },
        ),
        None => violation(
            ViolationCode::OwnerNotRegistered,
            format!(
                "{name} is {:?}, which is not a registered CustodyTeam",
                shorten(owner)
            ),
            match &owners.first {
                Some(first) => format!("{name}: {first:?}"),
                None => format!(
                    "register the team (a CustodyTeam named {:?} listing namespace {namespace:?}), then re-apply",
                    shorten(owner)
                ),
            },
        ),
    })
}

/// The registered team `owner` names, when it may own workloads in `namespace`: the one
/// resolution both the Registered check and the on-call stand-in use, so they cannot disagree.
fn resolve_owner<'t>(owner: &str, namespace: &str, teams: &'t TeamIndex) -> Option<&'t Team> {
    teams.get(owner.trim()).filter(|team| team.owns(namespace))
}

/// The team whose on-call stands in for the workload's missing `oncall`, with that on-call as
/// the annotation would carry it. It applies under every policy, whatever its ownership mode:
/// a team registered for the namespace is a contact whether or not the policy insists on
/// registration. `None` when `oncall` is present (a malformed one is judged as written), the
/// owner resolves to no team of the namespace, or the team lists no on-call.
pub(crate) fn oncall_stand_in<'t>(
    subject: &Subject<'_, '_>,
    namespace: &str,
    teams: &'t TeamIndex,
) -> Option<(&'t Team, String)> {
    if subject.annotations.get(AnnotationKey::Oncall).is_some() {
        return None;
    }
    let owner = subject.annotations.get(AnnotationKey::Owner)?;
    let team = resolve_owner(owner, namespace, teams)?;
    Some((team, team.oncall_contact()?))
}

/// The teams of a namespace, in words for a denial.
struct Owners {
    sentence: String,
    first: Option<String>,
}

impl TeamIndex {
    fn owners_of_or_hint(&self, namespace: &str) -> Owners {
        let owners = self.owners_of(namespace);
        const SHOWN: usize = 10;
        let sentence = match owners.len() {
            0 => format!(
                "No registered team owns namespace {namespace:?} (kubectl get custodyteams)."
            ),
            n if n <= SHOWN => format!(
                "Teams that own namespace {namespace:?}: {}.",
                owners.join(", ")
            ),
            n => format!(
                "Teams that own namespace {namespace:?}: {} and {} more (kubectl get custodyteams).",
                owners[..SHOWN].join(", "),
                n - SHOWN
            ),
        };
        Owners {
            sentence,
            first: owners.first().map(|s| s.to_string()),
        }
    }
}
