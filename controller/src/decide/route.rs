//! Where a notification goes: to every target of the owning team, or else to the governing
//! policy's `notifyUrl`. Pure: the team (already resolved, see [`super::owning_team`]) and the
//! URL are passed in.

use custody_crds::CustodyTeam;

/// One endpoint to POST to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The URL.
    pub url: String,
    /// The Secret, in the controller's own namespace, whose keys become request headers.
    pub headers_from: Option<String>,
    /// Why this endpoint.
    pub via: Via,
}

/// Whose endpoint a destination is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A target of the named team.
    Team(String),
    /// The governing policy's `notifyUrl`.
    Policy,
}

impl Destination {
    /// How logs and statuses name the destination: whose it is and its host, never the whole
    /// URL, whose path or query may carry a token.
    pub fn label(&self) -> String {
        let host = self
            .url
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_string))
            .unwrap_or_else(|| "an unparsable URL".into());
        format!("{} ({host})", self.via)
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Team(name) => write!(f, "team {name}"),
            Via::Policy => f.write_str("policy notifyUrl"),
        }
    }
}

/// The destinations of a notification about a workload owned by `team` (its registered
/// CustodyTeam, if any) under a policy whose `notifyUrl` is `policy_url`. The team's targets
/// replace the policy's URL rather than add to it: the team said where its pages go. Blank URLs
/// are skipped and a target listed twice is sent once.
pub fn destinations(team: Option<&CustodyTeam>, policy_url: Option<&str>) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    if let Some(team) = team {
        let name = team.metadata.name.clone().unwrap_or_default();
        for target in &team.spec.notify {
            let url = target.url.trim();
            if url.is_empty() {
                continue;
            }
            let destination = Destination {
                url: url.to_string(),
                headers_from: target.headers_from.as_ref().map(|s| s.name.clone()),
                via: Via::Team(name.clone()),
            };
            if !out.contains(&destination) {
                out.push(destination);
            }
        }
    }
    if out.is_empty()
        && let Some(url) = policy_url.map(str::trim).filter(|u| !u.is_empty())
    {
        out.push(Destination {
            url: url.to_string(),
            headers_from: None,
            via: Via::Policy,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{CustodyTeamSpec, NotifyTarget, SecretRef};

    fn team(targets: &[(&str, Option<&str>)]) -> CustodyTeam {
        CustodyTeam::new(
            "team-web",
            CustodyTeamSpec {
                notify: targets
                    .iter()
                    .map(|(url, secret)| NotifyTarget {
                        url: url.to_string(),
                        headers_from: secret.map(|name| SecretRef { name: name.into() }),
                    })
                    .collect(),
                ..CustodyTeamSpec::default()
            },
        )
    }

    #[test]
    fn destinations_by_situation() {
        let policy = Some("https://hooks.example.com/policy");
        let via_team = Via::Team("team-web".into());
        // (situation, team, policy URL, expected (url, secret, via))
        type Case<'a> = (
            &'a str,
            Option<CustodyTeam>,
            Option<&'a str>,
            Vec<(&'a str, Option<&'a str>, Via)>,
        );
        let cases: Vec<Case> = vec![
            ("no team, no policy URL: nowhere", None, None, vec![]),
            (
                "no team: the policy's URL",
                None,
                policy,
                vec![("https://hooks.example.com/policy", None, Via::Policy)],
            ),
            (
                "a team with targets replaces the policy's URL",
                Some(team(&[
                    ("https://pager.example.com/a", Some("pager-token")),
                    ("http://chat.example.com/b", None),
                ])),
                policy,
                vec![
                    (
                        "https://pager.example.com/a",
                        Some("pager-token"),
                        via_team.clone(),
                    ),
                    ("http://chat.example.com/b", None, via_team.clone()),
                ],
            ),
            (
                "a team without targets falls back to the policy's URL",
                Some(team(&[])),
                policy,
                vec![("https://hooks.example.com/policy", None, Via::Policy)],
            ),
            (
                "a team whose only target is blank falls back too",
                Some(team(&[("  ", None)])),
                policy,
                vec![("https://hooks.example.com/policy", None, Via::Policy)],
            ),
            (
                "a target listed twice is sent once",
                Some(team(&[
                    ("https://a.example.com", None),
                    ("https://a.example.com ", None),
                ])),
                None,
                vec![("https://a.example.com", None, via_team.clone())],
            ),
            (
                "the same URL with another Secret is another destination",
                Some(team(&[
                    ("https://a.example.com", None),
                    ("https://a.example.com", Some("s")),
                ])),
                None,
                vec![
                    ("https://a.example.com", None, via_team.clone()),
                    ("https://a.example.com", Some("s"), via_team.clone()),
                ],
            ),
            ("a blank policy URL is none", None, Some(" "), vec![]),
        ];
        for (situation, team, policy_url, want) in cases {
            let got = destinations(team.as_ref(), policy_url);
            let want: Vec<Destination> = want
                .into_iter()
                .map(|(url, secret, via)| Destination {
                    url: url.into(),
                    headers_from: secret.map(str::to_string),
                    via,
                })
                .collect();
            assert_eq!(got, want, "{situation}");
        }
    }

    #[test]
    fn a_label_never_shows_the_path_or_query() {
        let d = Destination {
            url: "https://hooks.slack.example.com/services/T0/B0/s3cret?token=x".into(),
            headers_from: None,
            via: Via::Team("team-web".into()),
        };
        assert_eq!(d.label(), "team team-web (hooks.slack.example.com)");
        let p = Destination {
            url: "not a url".into(),
            headers_from: None,
            via: Via::Policy,
        };
        assert_eq!(p.label(), "policy notifyUrl (an unparsable URL)");
    }
}
