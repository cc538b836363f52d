//! Who owns a revision and whom to page: the revision's `owner` annotation names the team; its
//! `oncall` annotation, or else the registered team's on-call contacts, says whom to reach.
//! Pure: the team is looked up by the caller's function, from the controller's team store.

use std::collections::BTreeMap;
use std::sync::Arc;

use custody_crds::selection::glob_matches;
use custody_crds::{AnnotationKey, CustodyTeam, Vocabulary};

/// The team and on-call of one revision.
#[derive(Clone, Debug, Default)]
pub struct OwningTeam {
    /// The `owner` annotation, as declared (registered or not): the record's `spec.team`.
    pub team: Option<String>,
    /// The `oncall` annotation, else the registered team's contacts joined with ", ".
    pub oncall: Option<String>,
    /// The CustodyTeam the owner names, when it exists and lists the workload's namespace:
    /// whose notification targets apply.
    pub registered: Option<Arc<CustodyTeam>>,
}

/// A non-blank annotation of `annotations`, trimmed.
fn declared<'a>(
    annotations: &'a BTreeMap<String, String>,
    vocabulary: &Vocabulary,
    key: AnnotationKey,
) -> Option<&'a str> {
    annotations
        .get(vocabulary.key(key))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}

/// Whether `team` may own workloads in `namespace`. A team speaks only for the namespaces it
/// lists: otherwise any namespace could route its notices to another team's pager by naming it.
pub fn covers(team: &CustodyTeam, namespace: &str) -> bool {
    team.spec
        .namespaces
        .iter()
        .any(|pattern| glob_matches(pattern, namespace))
}

/// Resolves the ownership of a revision of a workload in `namespace`, from its annotations;
/// `lookup` finds a CustodyTeam by name.
pub fn resolve(
    annotations: &BTreeMap<String, String>,
    namespace: &str,
    vocabulary: &Vocabulary,
    lookup: impl FnOnce(&str) -> Option<Arc<CustodyTeam>>,
) -> OwningTeam {
    let owner = declared(annotations, vocabulary, AnnotationKey::Owner);
    let registered = owner
        .and_then(lookup)
        .filter(|team| covers(team, namespace));
    let oncall = declared(annotations, vocabulary, AnnotationKey::Oncall)
        .map(str::to_string)
        .or_else(|| {
            let contacts: Vec<&str> = registered
                .as_ref()?
                .spec
                .oncall
                .iter()
                .map(|c| c.trim())
                .filter(|c| !c.is_empty())
                .collect();
            (!contacts.is_empty()).then(|| contacts.join(", "))
        });
    OwningTeam {
        team: owner.map(str::to_string),
        oncall,
        registered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::CustodyTeamSpec;

    fn team(name: &str, namespaces: &[&str], oncall: &[&str]) -> Arc<CustodyTeam> {
        Arc::new(CustodyTeam::new(
            name,
            CustodyTeamSpec {
                oncall: oncall.iter().map(|s| s.to_string()).collect(),
                namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
                ..CustodyTeamSpec::default()
            },
        ))
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn ownership_by_situation() {
        let payments = team(
            "team-payments",
            &["payments-*"],
            &["@pay-oncall", " pay@acme.dev "],
        );
        let silent = team("team-silent", &["payments-*"], &[]);
        let teams = [payments, silent];
        let lookup = |name: &str| {
            teams
                .iter()
                .find(|t| t.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        // (situation, annotations, namespace, team, oncall, registered)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            bool,
        );
        let cases: &[Case] = &[
            ("nothing declared", &[], "payments-eu", None, None, false),
            (
                "the revision's own on-call wins over the team's",
                &[("owner", "team-payments"), ("oncall", "me@acme.dev")],
                "payments-eu",
                Some("team-payments"),
                Some("me@acme.dev"),
                true,
            ),
            (
                "a registered team's contacts, joined and trimmed",
                &[("owner", "team-payments")],
                "payments-eu",
                Some("team-payments"),
                Some("@pay-oncall, pay@acme.dev"),
                true,
            ),
            (
                "an unregistered owner is still the record's team",
                &[("owner", "team-ghost")],
                "payments-eu",
                Some("team-ghost"),
                None,
                false,
            ),
            (
                "a team outside its namespaces is not registered for the workload",
                &[("owner", "team-payments")],
                "shop",
                Some("team-payments"),
                None,
                false,
            ),
            (
                "a registered team without contacts leaves on-call unset",
                &[("owner", "team-silent")],
                "payments-eu",
                Some("team-silent"),
                None,
                true,
            ),
            (
                "blank annotations count as absent",
                &[("owner", "  "), ("oncall", "")],
                "payments-eu",
                None,
                None,
                false,
            ),
            (
                "an on-call without an owner",
                &[("oncall", "@solo")],
                "payments-eu",
                None,
                Some("@solo"),
                false,
            ),
        ];
        for (situation, pairs, namespace, want_team, want_oncall, want_registered) in cases {
            let got = resolve(
                &annotations(pairs),
                namespace,
                &Vocabulary::default(),
                lookup,
            );
            assert_eq!(got.team.as_deref(), *want_team, "{situation}: team");
            assert_eq!(got.oncall.as_deref(), *want_oncall, "{situation}: oncall");
            assert_eq!(
                got.registered.is_some(),
                *want_registered,
                "{situation}: registered"
            );
        }
    }

    #[test]
    fn the_vocabulary_prefix_is_honoured() {
        let acme = Vocabulary::with_prefix("acme.io/");
        let a: BTreeMap<String, String> =
            [("acme.io/owner".to_string(), "team-a".to_string())].into();
        assert_eq!(
            resolve(&a, "ns", &acme, |_| None).team.as_deref(),
            Some("team-a")
        );
        assert_eq!(
            resolve(&a, "ns", &Vocabulary::default(), |_| None).team,
            None
        );
    }
}
