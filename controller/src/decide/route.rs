//! Where a notice goes: to every target of the owning team, or else to the governing policy's
//! `notify` targets and `notifyUrl`; each target only for the kinds it receives. Pure: the team
//! (already resolved, see [`super::owning_team`]) and the policy's settings are passed in.

use custody_crds::{CustodyTeam, NoticeKind, NotifyTarget, RollbackSettings};
use sha2::{Digest, Sha256};

/// One target to send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The target as written (its URL trimmed).
    pub target: NotifyTarget,
    /// Whose target it is.
    pub via: Via,
}

/// Whose target a destination is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// A target of the named team.
    Team(String),
    /// A target of the named policy (its `notify` or `notifyUrl`).
    Policy(String),
}

impl Destination {
    /// How logs and statuses name the destination: whose it is, its format and its host,
    /// never the whole URL, whose path or query may carry a token. A URL read from a Secret is
    /// named by the Secret.
    pub fn label(&self) -> String {
        let place = match (&self.target.url, &self.target.url_from) {
            (Some(url), _) => url
                .parse::<hyper::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string))
                .unwrap_or_else(|| "an unparsable URL".into()),
            (None, Some(secret)) => format!("the URL in Secret {}", secret.name),
            (None, None) => "the default URL".into(),
        };
        format!("{} {} ({place})", self.via, self.target.format.as_str())
    }

    /// A stable name for the target across restarts, for the record's status and the metrics:
    /// whose it is and a digest of where and how it sends (not of which kinds it receives, so
    /// editing `events` sends nothing again).
    pub fn id(&self) -> String {
        let t = &self.target;
        let mut hash = Sha256::new();
        for part in [
            t.format.as_str(),
            t.url.as_deref().unwrap_or_default(),
            t.url_from
                .as_ref()
                .map_or(String::new(), |s| format!("{}/{}", s.name, s.key))
                .as_str(),
            t.routing_key_from
                .as_ref()
                .map_or(String::new(), |s| format!("{}/{}", s.name, s.key))
                .as_str(),
            t.headers_from.as_ref().map_or("", |s| s.name.as_str()),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let digest = hash.finalize();
        let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let (whose, name) = match &self.via {
            Via::Team(name) => ("team", name),
            Via::Policy(name) => ("policy", name),
        };
        format!("{whose}/{name}/{short}")
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Team(name) => write!(f, "team {name}"),
            Via::Policy(name) => write!(f, "policy {name}"),
        }
    }
}

/// The policy whose targets apply when the owning team lists none.
#[derive(Clone, Copy, Debug)]
pub struct PolicyTargets<'p> {
    /// The policy's name.
    pub name: &'p str,
    /// Its rollback settings (`notify`, `notifyUrl`).
    pub settings: &'p RollbackSettings,
}

/// The destinations of a notice about a workload owned by `team` (its registered CustodyTeam,
/// if any) under `policy`. The team's targets replace the policy's rather than add to them:
/// the team said where its pages go. Unsound targets (which admission refuses) are skipped,
/// and a target listed twice is sent once.
pub fn destinations(
    team: Option<&CustodyTeam>,
    policy: Option<PolicyTargets<'_>>,
) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    if let Some(team) = team {
        let via = Via::Team(team.metadata.name.clone().unwrap_or_default());
        for target in &team.spec.notify {
            add(&mut out, target, &via);
        }
    }
    if out.is_empty()
        && let Some(policy) = policy
    {
        let via = Via::Policy(policy.name.to_string());
        for target in &policy.settings.notify {
            add(&mut out, target, &via);
        }
        if let Some(url) = policy.settings.notify_url.as_deref() {
            add(&mut out, &NotifyTarget::json(url), &via);
        }
    }
    out
}

fn add(out: &mut Vec<Destination>, target: &NotifyTarget, via: &Via) {
    let mut target = target.clone();
    target.url = target.url.map(|u| u.trim().to_string());
    if !target.problems("").is_empty() {
        return;
    }
    let destination = Destination {
        target,
        via: via.clone(),
    };
    if !out.iter().any(|d| d.id() == destination.id()) {
        out.push(destination);
    }
}

/// The destinations among `all` that receive `kind`.
pub fn receiving(all: &[Destination], kind: NoticeKind) -> Vec<Destination> {
    all.iter()
        .filter(|d| d.target.receives(kind))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::{CustodyTeamSpec, NotifyFormat, SecretKeyRef, SecretRef};

    fn json_target(url: &str, secret: Option<&str>) -> NotifyTarget {
        NotifyTarget {
            headers_from: secret.map(|name| SecretRef { name: name.into() }),
            ..NotifyTarget::json(url)
        }
    }

    fn team(targets: Vec<NotifyTarget>) -> CustodyTeam {
        CustodyTeam::new(
            "team-web",
            CustodyTeamSpec {
                notify: targets,
                ..CustodyTeamSpec::default()
            },
        )
    }

    fn settings(url: Option<&str>, notify: Vec<NotifyTarget>) -> RollbackSettings {
        RollbackSettings {
            notify_url: url.map(str::to_string),
            notify,
            ..RollbackSettings::default()
        }
    }

    fn urls(destinations: &[Destination]) -> Vec<(String, String)> {
        destinations
            .iter()
            .map(|d| {
                (
                    d.via.to_string(),
                    d.target.url.clone().unwrap_or_else(|| "-".into()),
                )
            })
            .collect()
    }

    #[test]
    fn destinations_by_situation() {
        let url_only = settings(Some("https://hooks.example.com/policy"), vec![]);
        let both = settings(
            Some("https://hooks.example.com/policy"),
            vec![NotifyTarget {
                format: NotifyFormat::Alertmanager,
                ..NotifyTarget::json("http://am.example.com:9093")
            }],
        );
        let blank = settings(Some(" "), vec![]);
        let policy = |s| {
            Some(PolicyTargets {
                name: "p",
                settings: s,
            })
        };
        let pair = |via: &str, url: &str| (via.to_string(), url.to_string());
        // (situation, team, policy, expected (via, url))
        type Case<'a> = (
            &'a str,
            Option<CustodyTeam>,
            Option<PolicyTargets<'a>>,
            Vec<(String, String)>,
        );
        let cases: Vec<Case> = vec![
            ("no team, no policy: nowhere", None, None, vec![]),
            (
                "no team: the policy's URL",
                None,
                policy(&url_only),
                vec![pair("policy p", "https://hooks.example.com/policy")],
            ),
            (
                "no team: the policy's targets, then its URL",
                None,
                policy(&both),
                vec![
                    pair("policy p", "http://am.example.com:9093"),
                    pair("policy p", "https://hooks.example.com/policy"),
                ],
            ),
            (
                "a team with targets replaces the policy's",
                Some(team(vec![
                    json_target("https://pager.example.com/a", Some("pager-token")),
                    json_target("http://chat.example.com/b", None),
                ])),
                policy(&both),
                vec![
                    pair("team team-web", "https://pager.example.com/a"),
                    pair("team team-web", "http://chat.example.com/b"),
                ],
            ),
            (
                "a team without targets falls back to the policy's",
                Some(team(vec![])),
                policy(&url_only),
                vec![pair("policy p", "https://hooks.example.com/policy")],
            ),
            (
                "a team whose only target is unsound falls back too",
                Some(team(vec![json_target("  ", None)])),
                policy(&url_only),
                vec![pair("policy p", "https://hooks.example.com/policy")],
            ),
            (
                "a target listed twice is sent once",
                Some(team(vec![
                    json_target("https://a.example.com", None),
                    json_target("https://a.example.com ", None),
                ])),
                None,
                vec![pair("team team-web", "https://a.example.com")],
            ),
            (
                "the same URL with another Secret is another destination",
                Some(team(vec![
                    json_target("https://a.example.com", None),
                    json_target("https://a.example.com", Some("s")),
                ])),
                None,
                vec![
                    pair("team team-web", "https://a.example.com"),
                    pair("team team-web", "https://a.example.com"),
                ],
            ),
            ("a blank policy URL is none", None, policy(&blank), vec![]),
        ];
        for (situation, team, policy, want) in cases {
            let got = destinations(team.as_ref(), policy);
            assert_eq!(urls(&got), want, "{situation}");
        }
    }

    #[test]
    fn each_target_receives_its_kinds() {
        let pager = NotifyTarget {
            format: NotifyFormat::Pagerduty,
            routing_key_from: Some(SecretKeyRef {
                name: "pd".into(),
                key: "routing-key".into(),
            }),
            ..NotifyTarget::default()
        };
        let slack = NotifyTarget {
            format: NotifyFormat::Slack,
            url: None,
            url_from: Some(SecretKeyRef {
                name: "slack".into(),
                key: "url".into(),
            }),
            events: vec![NoticeKind::Reverted, NoticeKind::BreakGlass],
            ..NotifyTarget::default()
        };
        let all = destinations(Some(&team(vec![pager, slack])), None);
        assert_eq!(all.len(), 2);
        let formats = |kind| -> Vec<&str> {
            receiving(&all, kind)
                .iter()
                .map(|d| d.target.format.as_str())
                .collect()
        };
        assert_eq!(formats(NoticeKind::Alerted), vec!["pagerduty"]);
        assert_eq!(formats(NoticeKind::Reverted), vec!["slack"]);
        assert!(formats(NoticeKind::Probation).is_empty());
    }

    #[test]
    fn labels_and_ids_never_show_the_path_or_query() {
        let d = Destination {
            target: json_target(
                "https://hooks.slack.example.com/services/T0/B0/s3cret?token=x",
                None,
            ),
            via: Via::Team("team-web".into()),
        };
        assert_eq!(d.label(), "team team-web json (hooks.slack.example.com)");
        assert!(d.id().starts_with("team/team-web/"), "{}", d.id());
        assert!(!d.id().contains("s3cret"));
        let mut other = d.clone();
        other.target.events = vec![NoticeKind::Reverted];
        assert_eq!(
            other.id(),
            d.id(),
            "the kinds it receives are not its identity"
        );
        other.target.format = NotifyFormat::Slack;
        assert_ne!(other.id(), d.id());
        let p = Destination {
            target: NotifyTarget::json("not a url"),
            via: Via::Policy("p".into()),
        };
        assert_eq!(p.label(), "policy p json (an unparsable URL)");
    }
}
