//! What each agent has in flight and has shipped lately, for the webhook's blast-radius budgets
//! (`spec.agents.limits`). Pure: a workload's observed state in, its contribution out; the
//! contributions of all workloads summed per agent. [`crate::agents_publish`] writes the sums
//! as CustodyAgent objects.

use std::collections::BTreeMap;

use custody_crds::record::marks;
use custody_crds::{Actor, AgentRevision, AnnotationKey, Vocabulary};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::decide::mark;
use crate::observe::{Observed, Revision};

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
pub fn contribution(observed: &Observed, vocabulary: &Vocabulary, now: Timestamp) -> Contribution {
    let w = &observed.workload;
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
    for revision in &observed.revisions {
        let (Some(agent), Some(created)) = (agent_of(revision, vocabulary), revision.created)
        else {
            continue;
        };
        if created > now - REVISION_HORIZON {
            out.revisions.push((agent, entry(revision, created)));
        }
    }
    let current = observed
        .revisions
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

/// Sums contributions per agent.
pub fn summarize<'a>(
    contributions: impl IntoIterator<Item = &'a Contribution>,
) -> BTreeMap<String, Summary> {
    let mut out: BTreeMap<String, Summary> = BTreeMap::new();
    for c in contributions {
        for (agent, r) in &c.revisions {
            out.entry(agent.clone())
                .or_default()
                .revisions
                .push(r.clone());
        }
        if let Some((agent, r)) = &c.in_flight {
            out.entry(agent.clone())
                .or_default()
                .in_flight
                .push(r.clone());
        }
    }
    let key = |r: &AgentRevision| {
        (
            r.at.0,
            r.namespace.clone(),
            r.name.clone(),
            r.revision.clone(),
        )
    };
    for s in out.values_mut() {
        s.in_flight.sort_by_key(key);
        s.revisions.sort_by_key(key);
    }
    out
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
    use crate::observe::WorkloadState;
    use custody_crds::WorkloadKind;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn revision(name: &str, fp: &str, created: &str, annotations: &[(&str, &str)]) -> Revision {
        Revision {
            name: name.into(),
            number: 1,
            pod_key: name.into(),
            fingerprint: fp.into(),
            images: vec![],
            annotations: annotations
                .iter()
                .map(|(k, v)| (format!("custody.dev/{k}"), v.to_string()))
                .collect(),
            created: Some(at(created)),
        }
    }

    fn observed(current: &str, revisions: Vec<Revision>) -> Observed {
        Observed {
            workload: WorkloadState {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
                namespace: "shop".into(),
                uid: "uid-web".into(),
                resource_version: "1".into(),
                generation: 1,
                observed_generation: 1,
                paused: false,
                replicas: 1,
                updated_replicas: 1,
                available_replicas: 1,
                total_replicas: 1,
                max_unavailable: 0,
                partition: 0,
                progress_deadline_exceeded_since: None,
                unavailable_since: None,
                template_fingerprint: current.into(),
                annotations: Default::default(),
                any_annotations: false,
                labels: Default::default(),
                managed_by: String::new(),
            },
            revisions,
            pods: vec![],
            nodes: vec![],
        }
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
            let c = contribution(&o, &v, now);
            assert_eq!(c.in_flight.is_some(), in_flight, "{case}");
            assert_eq!(c.revisions.len(), revisions, "{case}");
        }
        let c = contribution(
            &observed(
                "b",
                vec![revision("web-b", "b", "2026-12-03T11:59:00Z", AGENT)],
            ),
            &v,
            now,
        );
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
        let one = contribution(
            &observed(
                "b",
                vec![revision("web-b", "b", "2026-12-03T11:59:00Z", AGENT)],
            ),
            &v,
            now,
        );
        let two = contribution(
            &observed(
                "c",
                vec![revision("web-c", "c", "2026-12-03T11:58:00Z", AGENT)],
            ),
            &v,
            now,
        );
        let sums = summarize([&one, &two]);
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
}
