//! Registered teams (`CustodyTeam`): checked when applied, indexed by name for admission.
//!
//! A lookup by name is a hash probe, whatever the number of teams. Only a denial lists the
//! teams that own a namespace, and it is the one path that scans.

use std::collections::HashMap;

use custody_crds::selection::glob_matches;
use custody_crds::{AnnotationKey, CustodyTeam, TeamMembers};

/// A team ready to answer "may it own this namespace?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Team {
    /// Its name: what `owner` refers to.
    pub name: String,
    /// Its on-call contacts, in order.
    pub oncall: Vec<String>,
    /// The namespaces it may own, as globs.
    pub namespaces: Vec<String>,
    /// Its people, who approve its workloads' changes unless a policy names approvers.
    pub members: TeamMembers,
}

impl Team {
    /// Whether the team may own workloads in `namespace`.
    pub fn owns(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|g| glob_matches(g, namespace))
    }

    /// Its on-call contacts as one value, as the `oncall` annotation would carry them.
    pub fn oncall_contact(&self) -> Option<String> {
        (!self.oncall.is_empty()).then(|| self.oncall.join(", "))
    }
}

/// The registered teams.
#[derive(Clone, Debug, Default)]
pub struct TeamIndex {
    by_name: HashMap<String, Team>,
}

/// A CustodyTeam that failed its checks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CustodyTeam {team:?} is invalid: {}", problems.join("; "))]
pub struct TeamError {
    /// The team's name.
    pub team: String,
    /// One sentence per problem, naming the field.
    pub problems: Vec<String>,
}

impl TeamIndex {
    /// Indexes the valid teams; the invalid ones are returned with their problems and left
    /// out, so a workload naming one is told the team is not registered.
    pub fn compile<'a>(teams: impl IntoIterator<Item = &'a CustodyTeam>) -> (Self, Vec<TeamError>) {
        let mut index = Self::default();
        let mut errors = Vec::new();
        for team in teams {
            match check_team(team) {
                Ok(t) => {
                    index.by_name.insert(t.name.clone(), t);
                }
                Err(e) => errors.push(e),
            }
        }
        (index, errors)
    }

    /// The team named `name`.
    pub fn get(&self, name: &str) -> Option<&Team> {
        self.by_name.get(name)
    }

    /// The names of the teams that may own workloads in `namespace`, sorted.
    pub fn owners_of(&self, namespace: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .by_name
            .values()
            .filter(|t| t.owns(namespace))
            .map(|t| t.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// How many teams are registered.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no team is registered.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Every check a CustodyTeam must pass, for its admission and for the index.
pub fn check_team(team: &CustodyTeam) -> Result<Team, TeamError> {
    let name = team.metadata.name.clone().unwrap_or_default();
    let spec = &team.spec;
    let mut problems = Vec::new();
    if name.is_empty() {
        problems.push("metadata.name is empty".to_string());
    }
    if let Err(error) = AnnotationKey::Owner.check_builtin_format(&name) {
        problems.push(format!("metadata.name cannot be an owner value: {error}"));
    }
    if spec.namespaces.is_empty() {
        problems.push(
            "spec.namespaces is empty: list the namespaces the team may own (globs such as payments-*)"
                .to_string(),
        );
    }
    if spec.namespaces.iter().any(|g| g.trim().is_empty()) {
        problems.push("spec.namespaces: an empty pattern matches nothing; remove it".to_string());
    }
    for (i, contact) in spec.oncall.iter().enumerate() {
        if let Err(error) = AnnotationKey::Oncall.check_builtin_format(contact) {
            problems.push(format!("spec.oncall[{i}] {contact:?}: {error}"));
        }
    }
    for (i, target) in spec.notify.iter().enumerate() {
        problems.extend(target.problems(&format!("spec.notify[{i}]")));
    }
    if problems.is_empty() {
        Ok(Team {
            name,
            oncall: spec.oncall.clone(),
            namespaces: spec.namespaces.clone(),
            members: spec.members.clone(),
        })
    } else {
        Err(TeamError {
            team: name,
            problems,
        })
    }
}
