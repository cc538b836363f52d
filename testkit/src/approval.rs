//! Test data for `spec.agents.approval`: the reviewed policy over namespace `shop`, the team
//! whose members approve, an agent's Deployment with the provenance of its revision, and the
//! change request `custody propose` makes for it. The engine's tables, the webhook's HTTPS
//! tests and its bench, and the CLI's tests share these.

use std::collections::BTreeMap;

use custody_crds::change::{change_name, claim_digest, review_diff};
use custody_crds::{
    AgentGuardrails, Approval, ChangeWorkload, CustodyChange, CustodyChangeSpec, CustodyPolicy,
    CustodyPolicySpec, CustodyTeam, CustodyTeamSpec, IdentitySet, TeamMembers, Vocabulary,
    WorkloadKind,
};
use custody_engine::PolicySet;
use custody_engine::attest::claim_from_value;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use crate::admission::{agent_annotations, deployment};

/// The agents' service account that proposes in these tests.
pub const AGENT_SA: &str = "system:serviceaccount:agents:claude";

/// A policy over namespace `shop` whose agent identities are the `agents/*` service accounts,
/// with `approval` (none when `None`).
pub fn reviewed_policy(approval: Option<Approval>) -> CustodyPolicy {
    let mut spec = CustodyPolicySpec {
        agents: AgentGuardrails {
            approval,
            ..AgentGuardrails::default()
        },
        ..CustodyPolicySpec::default()
    };
    spec.match_rules.namespaces.include = vec!["shop".into()];
    spec.identities.agents = IdentitySet {
        service_accounts: vec!["agents/*".into()],
        ..IdentitySet::default()
    };
    CustodyPolicy::new("reviewed", spec)
}

/// [`reviewed_policy`], compiled; panics on a problem, as a test should.
pub fn reviewed(approval: Option<Approval>) -> PolicySet {
    let (set, errors) = PolicySet::compile([reviewed_policy(approval)]);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

/// `team-web` (the owner the agent annotations name), owning `shop`, with these members.
pub fn team_web(users: &[&str], groups: &[&str]) -> CustodyTeam {
    CustodyTeam::new(
        "team-web",
        CustodyTeamSpec {
            namespaces: vec!["shop".into()],
            members: TeamMembers {
                users: users.iter().map(|u| u.to_string()).collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            ..CustodyTeamSpec::default()
        },
    )
}

/// The agent's Deployment `name` in `namespace` running `image`, with the provenance of the
/// revision that built it: a new template always comes with a new commit and pipeline run.
pub fn agent_deployment(name: &str, namespace: &str, image: &str) -> Value {
    let tag = image.rsplit(':').next().unwrap_or("0");
    let mut annotations = agent_annotations();
    annotations["custody.dev/source-commit"] = json!(tag.repeat(7));
    annotations["custody.dev/pipeline-run"] = json!(format!("run-{tag}"));
    let mut object = deployment(name, annotations, image);
    object["metadata"]["namespace"] = json!(namespace);
    object
}

/// The change request `custody propose` makes for the Deployment `object`, by `proposer`,
/// created at `created`, with no status.
pub fn proposal(object: &Value, proposer: &str, created: Timestamp) -> CustodyChange {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"].as_str().unwrap_or("shop");
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(object["metadata"]["annotations"].clone()).unwrap_or_default();
    let claim = claim_from_value(
        WorkloadKind::Deployment,
        namespace,
        object,
        &annotations,
        &Vocabulary::default(),
    );
    let digest = claim_digest(&claim);
    let (diff, diff_truncated) = match claim.template.as_ref() {
        Some(template) => review_diff(None, template),
        None => (Vec::new(), false),
    };
    let provenance = claim.annotation_map();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default();
    let mut change = CustodyChange::new(
        &change_name(name, &digest),
        CustodyChangeSpec {
            workload: ChangeWorkload {
                kind: WorkloadKind::Deployment,
                name: name.into(),
            },
            digest,
            template_digest: claim.template_digest.to_string(),
            agent: provenance.get("agent").cloned().unwrap_or_default(),
            provenance,
            labels,
            proposer: proposer.into(),
            reason: "bump the image to fix CVE-2026-1234".into(),
            diff,
            diff_truncated,
            running_template_digest: None,
        },
    );
    change.metadata.namespace = Some(namespace.into());
    change.metadata.creation_timestamp = Some(Time(created));
    change
}
