//! What each agent has in flight and has shipped lately, for the webhook's blast-radius budgets
//! (`spec.agents.limits`). Pure: a workload and its revisions in, its contribution out; the
//! contributions of all workloads summed per agent, at most [`MAX_LISTED`] of each list, newest
//! kept. [`crate::act::agent_status`] writes the sums as CustodyAgent objects.

use std::collections::BTreeMap;

use custody_crds::record::marks;
use custody_crds::{Actor, AgentRevision, AnnotationKey, Vocabulary};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::cache::observe::{Revision, WorkloadState};
use crate::keys::mark;

/// The most rollouts in flight, and revisions, listed per agent: keeps a CustodyAgent far below
/// etcd's object size limit whatever an agent does. Budgets above it are refused when a policy
/// is applied.
pub const MAX_LISTED: usize = custody_crds::guardrails::MAX_BUDGET as usize;

/// How far back revisions are summarized: the longest `maxRevisions` window a budget can use
/// here.
pub const REVISION_HORIZON: SignedDuration = SignedDuration::from_hours(24);

/// An agent rollout older than this that was never marked healthy nor reverted (its workload
/// scaled to zero, say) stops counting as in flight, so a forgotten one does not hold the
/// agent's budget for ever.
pub const IN_FLIGHT_HORIZON: SignedDuration = SignedDuration::from_hours(1);

/// One workload's part of the agents' summaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contribution {
    /// Agent revisions of the workload within [`REVISION_HORIZON`], by agent.
    pub revisions: Vec<(String, AgentRevision)>,
    /// The current revision, when it is an agent's and is still rolling out.
    pub in_flight: Option<(String, AgentRevision)>,
}

impl Contribution {
    /// True when the workload adds nothing.
    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty() && self.in_flight.is_none()
    }
}

/// What one agent has in flight and has shipped, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rollouts in flight.
    pub in_flight: Vec<AgentRevision>,
    /// Revisions within the horizon, oldest first.
    pub revisions: Vec<AgentRevision>,
}

/// The agent that made `revision`, if an agent did.
fn agent_of(revision: &Revision, vocabulary: &Vocabulary) -> Option<String> {
    let get = |k| revision.annotations.get(vocabulary.key(k));
    let actor: Option<Actor> = get(AnnotationKey::Actor).and_then(|a| a.parse().ok());
    if actor != Some(Actor::Agent) {
        return None;
    }
    get(AnnotationKey::Agent)
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// The workload's contribution at `now`.
pub fn contribution(
    w: &WorkloadState,
    revisions: &[Revision],
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Contribution {
    let entry = |revision: &Revision, at: Timestamp| AgentRevision {
        namespace: w.namespace.clone(),
        kind: w.kind,
        name: w.name.clone(),
        revision: revision.name.clone(),
        team: revision
            .annotations
            .get(vocabulary.key(AnnotationKey::Owner))
            .cloned(),
        at: Time(at),
    };
    let mut out = Contribution::default();
    for revision in revisions {
        let (Some(agent), Some(created)) = (agent_of(revision, vocabulary), revision.created)
        else {
            continue;
        };
        if created > now - REVISION_HORIZON {
            out.revisions.push((agent, entry(revision, created)));
        }
    }
    let current = revisions
        .iter()
        .find(|r| r.fingerprint == w.template_fingerprint);
    if let Some(current) = current
        && let Some(agent) = agent_of(current, vocabulary)
    {
        let marked = |name| current.annotations.contains_key(&mark(vocabulary, name));
        let created = current.created.unwrap_or(now);
        if !marked(marks::HEALTHY_SINCE)
            && !marked(marks::REVERTED)
            && created > now - IN_FLIGHT_HORIZON
        {
            out.in_flight = Some((agent, entry(current, created)));
        }
    }
    out
}

/// The per-agent sums, built one contribution at a time, each list bounded.
#[derive(Debug, Default)]
pub struct Sums(BTreeMap<String, Summary>);

impl Sums {
    /// Adds a workload's contribution.
    pub fn add(&mut self, c: Contribution) {
        for (agent, r) in c.revisions {
            let s = self.0.entry(agent).or_default();
            s.revisions.push(r);
            bound(&mut s.revisions);
        }
        if let Some((agent, r)) = c.in_flight {
            let s = self.0.entry(agent).or_default();
            s.in_flight.push(r);
            bound(&mut s.in_flight);
        }
    }

    /// The sums, each list sorted oldest first and at most [`MAX_LISTED`] long.
    pub fn finish(mut self) -> BTreeMap<String, Summary> {
        for s in self.0.values_mut() {
            for list in [&mut s.in_flight, &mut s.revisions] {
                keep_newest(list, MAX_LISTED);
                list.sort_by_key(order);
            }
        }
        self.0
    }
}

fn order(r: &AgentRevision) -> (Timestamp, String, String, String) {
    (
        r.at.0,
        r.namespace.clone(),
        r.name.clone(),
        r.revision.clone(),
    )
}

/// Lets a list grow to twice the cap before trimming, so adding stays cheap.
fn bound(list: &mut Vec<AgentRevision>) {
    if list.len() >= 2 * MAX_LISTED {
        keep_newest(list, MAX_LISTED);
    }
}

fn keep_newest(list: &mut Vec<AgentRevision>, n: usize) {
    if list.len() > n {
        list.sort_by_key(|r| std::cmp::Reverse(order(r)));
        list.truncate(n);
    }
}

/// Sums contributions per agent.
pub fn summarize(
    contributions: impl IntoIterator<Item = Contribution>,
) -> BTreeMap<String, Summary> {
    let mut sums = Sums::default();
    for c in contributions {
        sums.add(c);
    }
    sums.finish()
}

/// A fingerprint of a contribution, to tell cheaply whether a workload's changed.
pub fn digest(c: &Contribution) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    fn feed(h: &mut DefaultHasher, agent: &str, r: &AgentRevision) {
        (
            agent,
            &r.namespace,
            &r.name,
            &r.revision,
            &r.team,
            r.at.0.as_nanosecond(),
        )
            .hash(h);
    }
    let mut h = DefaultHasher::new();
    for (agent, r) in &c.revisions {
        feed(&mut h, agent, r);
    }
    if let Some((agent, r)) = &c.in_flight {
        "in flight".hash(&mut h);
        feed(&mut h, agent, r);
    }
    h.finish()
}

/// The CustodyAgent object's name for `agent`: a DNS subdomain, readable, and unique through a
/// hash of the id (`claude-code/1.0` and `claude-code-1.0` must not share one).
pub fn object_name(agent: &str) -> String {
    use sha2::Digest;
    let mut readable: String = agent
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    readable.truncate(40);
    let readable = readable.trim_matches('-');
    let digest = sha2::Sha256::digest(agent.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    if readable.is_empty() {
        format!("agent-{hash}")
    } else {
        format!("{readable}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn revision(name: &str, fp: &str, created: &str, annotations: &[(&str, &str)]) -> Revision {
        Revision {
            name: name.into(),
            number: 1,
            pod_key: name.into(),
            fingerprint: fp.into(),
            restart_free: None,
            images: vec![],
            annotations: annotations
                .iter()
                .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
                .collect(),
            created: Some(at(created)),
        }
    }

    fn observed(current: &str, revisions: Vec<Revision>) -> (WorkloadState, Vec<Revision>) {
        (WorkloadState::sample(current), revisions)
    }

    const AGENT: &[(&str, &str)] = &[
        ("actor", "agent"),
        ("agent", "claude-code/1.0"),
        ("owner", "team-web"),
    ];

    #[test]
    fn what_a_workload_contributes() {
        let v = Vocabulary::default();
        let now = at("2026-12-03T12:00:00Z");
        let mut healthy = AGENT.to_vec();
        healthy.push(("healthy-since", "2026-12-03T11:00:00Z"));
        let mut reverted = AGENT.to_vec();
        reverted.push(("reverted-by", "web-r2"));
        let human = [("actor", "human"), ("owner", "team-web")];
        // (case, observed, in flight?, revisions counted)
        let cases = vec![
            (
                "a new agent revision rolling out",
                observed(
                    "b",
                    vec![revision("web-b", "b", "2026-12-03T11:59:00Z", AGENT)],
                ),
                true,
                1,
            ),
            (
                "marked healthy",
                observed(
                    "b",
                    vec![revision("web-b", "b", "2026-12-03T11:59:00Z", &healthy)],
                ),
                false,
                1,
            ),
            (
                "reverted: the workload is back on the healthy one",
                observed(
                    "a",
                    vec![
                        revision("web-b", "b", "2026-12-03T11:59:00Z", &reverted),
                        revision("web-a", "a", "2026-12-03T10:00:00Z", &healthy),
                    ],
                ),
                false,
                2,
            ),
            (
                "a person's revision",
                observed(
                    "b",
                    vec![revision("web-b", "b", "2026-12-03T11:59:00Z", &human)],
                ),
                false,
                0,
            ),
            (
                "older than the horizons",
                observed(
                    "b",
                    vec![revision("web-b", "b", "2026-12-02T11:59:59Z", AGENT)],
                ),
                false,
                0,
            ),
            (
                "never marked, past the in-flight horizon",
                observed(
                    "b",
                    vec![revision("web-b", "b", "2026-12-03T10:59:00Z", AGENT)],
                ),
                false,
                1,
            ),
        ];
        for (case, o, in_flight, revisions) in cases {
            let c = contribution(&o.0, &o.1, &v, now);
            assert_eq!(c.in_flight.is_some(), in_flight, "{case}");
            assert_eq!(c.revisions.len(), revisions, "{case}");
        }
        let (w, revs) = observed(
            "b",
            vec![revision("web-b", "b", "2026-12-03T11:59:00Z", AGENT)],
        );
        let c = contribution(&w, &revs, &v, now);
        let (agent, r) = c.in_flight.unwrap();
        assert_eq!(agent, "claude-code/1.0");
        assert_eq!(
            (r.namespace.as_str(), r.name.as_str(), r.revision.as_str()),
            ("shop", "web", "web-b")
        );
        assert_eq!(r.team.as_deref(), Some("team-web"));
    }

    #[test]
    fn summaries_sum_per_agent_and_names_are_distinct() {
        let v = Vocabulary::default();
        let now = at("2026-12-03T12:00:00Z");
        let (w1, r1) = observed(
            "b",
            vec![revision("web-b", "b", "2026-12-03T11:59:00Z", AGENT)],
        );
        let (w2, r2) = observed(
            "c",
            vec![revision("web-c", "c", "2026-12-03T11:58:00Z", AGENT)],
        );
        let one = contribution(&w1, &r1, &v, now);
        let two = contribution(&w2, &r2, &v, now);
        assert_ne!(digest(&one), digest(&two));
        let sums = summarize([one, two]);
        let s = &sums["claude-code/1.0"];
        assert_eq!(s.in_flight.len(), 2);
        assert_eq!(s.revisions[0].revision, "web-c", "oldest first");
        let a = object_name("claude-code/1.0");
        let b = object_name("claude-code-1.0");
        assert_ne!(a, b);
        assert!(a.starts_with("claude-code-1-0-"), "{a}");
        assert!(object_name("///").starts_with("agent-"));
        assert!(object_name(&"x".repeat(300)).len() <= 49);
    }

    #[test]
    fn lists_are_capped_keeping_the_newest() {
        let v = Vocabulary::default();
        let now = at("2026-12-03T12:00:00Z");
        let contributions = (0..2_500).map(|i| {
            let (w, revs) = observed(
                &format!("f{i}"),
                vec![revision(
                    &format!("web-{i}"),
                    &format!("f{i}"),
                    &(now - SignedDuration::from_secs(i)).to_string(),
                    AGENT,
                )],
            );
            contribution(&w, &revs, &v, now)
        });
        let sums = summarize(contributions);
        let s = &sums["claude-code/1.0"];
        assert_eq!(s.revisions.len(), MAX_LISTED);
        assert_eq!(s.in_flight.len(), MAX_LISTED);
        assert_eq!(
            s.revisions.last().unwrap().revision,
            "web-0",
            "the newest kept"
        );
        assert_eq!(s.revisions[0].revision, format!("web-{}", MAX_LISTED - 1));
    }
}
