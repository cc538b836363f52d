//! `ownership: Registered`: the owner must be a CustodyTeam that may own workloads in the
//! namespace, and its on-call stands in for a missing `oncall`.

use custody_crds::AnnotationKey;

use super::decision::{Violation, ViolationCode};
use super::policies::CompiledPolicy;
use super::rules::{Subject, shorten};
use super::teams::{Team, TeamIndex};

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
    let owner = owner.trim();
    let team = match teams.get(owner) {
        Some(team) if team.owns(namespace) => return OwnerCheck::Resolved(team),
        other => other,
    };
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
