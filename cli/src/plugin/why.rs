//! `kubectl custody why`: one live object judged as the webhook would judge it being created by
//! the caller, with its provenance, its revisions and the records that name it.

use std::collections::BTreeMap;

use custody_crds::fingerprint::code_fingerprint;
use custody_crds::{
    AnnotationKey, CustodyChange, CustodyPolicy, CustodyTeam, RollbackRecord, Vocabulary,
};
use serde::Serialize;
use serde_json::Value;

use super::ObjectRef;
use super::changes::{self as change_requests, WorkloadChange};
use super::records::{self, RecordRow};
use super::resume::{self, RESUME_KINDS};
use custody_engine::{
    AgentActivity, ChangeIndex, Context, Decision, GroupVersionKind, PolicySet, QuarantineIndex,
    Request, TeamIndex, UserInfo, ViolationCode, WorkloadObject, evaluate,
};

/// The provenance keys shown, in the order Custody reports them: every key but the two that
/// steer the controller and the quarantine (`rollback`, `quarantine-override`).
pub const PROVENANCE: &[AnnotationKey] = AnnotationKey::ALL.split_at(8).0;

pub use super::revisions::{CurrentAnalysis, REVISION_ANNOTATION, RevisionRow};
pub use custody_crds::record::marks;

/// Everything read from the cluster for one `why`.
#[derive(Clone, Debug)]
pub struct WhyInput<'a> {
    /// What was asked about.
    pub target: &'a ObjectRef,
    /// Its namespace.
    pub namespace: &'a str,
    /// The live object, as the apiserver returned it.
    pub object: &'a Value,
    /// Every CustodyPolicy in the cluster (none: the webhook judges nothing).
    pub policies: &'a [CustodyPolicy],
    /// The namespace's labels, when they could be read.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The RollbackRecords of the namespace.
    pub records: &'a [RollbackRecord],
    /// The CustodyTeams of the cluster.
    pub teams: &'a [CustodyTeam],
    /// The CustodyChanges of the namespace, which the webhook admits agents' revisions by.
    pub changes: &'a [CustodyChange],
    /// The revisions the workload may own: a Deployment's ReplicaSets, a StatefulSet's or
    /// DaemonSet's ControllerRevisions (none for other kinds).
    pub revisions: &'a [Value],
    /// The requester the object is judged as.
    pub user: &'a str,
    /// Its groups.
    pub groups: &'a [String],
    /// The annotation keys.
    pub vocabulary: &'a Vocabulary,
    /// The time to judge signing keys' validity windows at.
    pub now: k8s_openapi::jiff::Timestamp,
}

/// What `why` found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhyReport {
    /// `Kind`.
    pub kind: String,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// Who the object was judged as.
    pub judged_as: String,
    /// The policies in force (compiled, by name).
    pub policies: Vec<String>,
    /// Policies in the cluster the webhook leaves out because they are invalid.
    pub invalid_policies: Vec<String>,
    /// The engine's decision on a CREATE of the object as it stands.
    pub decision: Decision,
    /// Provenance annotations: key -> value, absent keys included as null.
    pub provenance: Vec<ProvenanceEntry>,
    /// The pod template's fingerprint, if the object has a template.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_fingerprint: Option<String>,
    /// The record that quarantines the current template, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_by: Option<RecordRow>,
    /// The workload's revisions (ReplicaSets or ControllerRevisions), newest first.
    pub revisions: Vec<RevisionRow>,
    /// The metric analysis of the current revision, as the controller last wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CurrentAnalysis>,
    /// The controller's hold on the rollout after its first step, if it holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldRollout>,
    /// The RollbackRecords naming this workload, newest first.
    pub records: Vec<RecordRow>,
    /// Its change requests: the one that admitted its current revision, and those still open.
    pub changes: Vec<WorkloadChange>,
    /// How many of its other change requests (spent, rejected, expired) are left out.
    pub closed_changes: usize,
    /// Things an on-call engineer should know to read the above right.
    pub notes: Vec<String>,
}

/// One provenance annotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProvenanceEntry {
    /// The full annotation name.
    pub annotation: String,
    /// Its value, if set.
    pub value: Option<String>,
}

/// A rollout the controller holds after its first step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRollout {
    /// The held revision: a ReplicaSet or a ControllerRevision.
    pub revision: String,
    /// Its number, when it is among the revisions read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// A StatefulSet's partition before the hold, restored on release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restores_partition: Option<i32>,
    /// The command that releases it.
    pub resume: String,
}

/// Judges the object and gathers the report. Pure: everything comes from `input`.
pub fn explain(input: &WhyInput<'_>) -> WhyReport {
    let kind = input.target.kind;
    let (policies, errors) = PolicySet::compile(input.policies.iter().cloned());
    let quarantine = QuarantineIndex::from_records(input.records);
    let attestations = custody_engine::attest::AttestationCache::with_capacity(1);
    let (teams, _invalid) = TeamIndex::compile(input.teams);
    let change_index = ChangeIndex::from_changes(input.changes);
    let ctx = Context {
        vocabulary: input.vocabulary,
        namespace_labels: input.namespace_labels,
        quarantine: &quarantine,
        now: input.now,
        attestations: &attestations,
        teams: &teams,
        background: false,
        activity: &AgentActivity::default(),
        changes: &change_index,
    };
    let decision = judge(input, &policies, &ctx);
    let (changes, closed_changes) =
        change_requests::for_workload(&change_requests::WorkloadInput {
            kind,
            namespace: input.namespace,
            object: input.object,
            changes: input.changes,
            policies: &policies,
            namespace_labels: input.namespace_labels,
            vocabulary: input.vocabulary,
            now: input.now,
        });

    let annotation = |v: &Value, name: &str| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let provenance = PROVENANCE
        .iter()
        .map(|k| {
            let name = input.vocabulary.key(*k);
            ProvenanceEntry {
                annotation: name.to_string(),
                value: annotation(input.object, name),
            }
        })
        .collect();

    let fingerprint = pod_template(input.object, kind).map(|t| code_fingerprint(t).to_string());
    let records = records::for_workload(input.records, input.namespace, kind, &input.target.name);
    let quarantined_by = fingerprint.as_ref().and_then(|f| {
        records
            .iter()
            .find(|r| r.quarantines && &r.from_fingerprint == f)
            .cloned()
    });

    let revisions =
        super::revisions::revisions(kind, input.object, input.revisions, input.vocabulary);
    let analysis =
        super::revisions::current_analysis(&revisions, input.revisions, input.vocabulary);
    let held = held(input, &revisions);

    let mut notes = notes(input, &decision, quarantined_by.is_some(), &changes);
    let analysis = analysis.unwrap_or_else(|why| {
        notes.push(why);
        None
    });

    WhyReport {
        kind: kind.as_str().to_string(),
        namespace: input.namespace.to_string(),
        name: input.target.name.clone(),
        judged_as: input.user.to_string(),
        policies: policies.iter().map(|p| p.name.clone()).collect(),
        invalid_policies: errors.iter().map(ToString::to_string).collect(),
        decision,
        provenance,
        template_fingerprint: fingerprint,
        quarantined_by,
        revisions,
        analysis,
        held,
        records,
        changes,
        closed_changes,
        notes,
    }
}

/// What the reader should know besides the verdict: missing inputs, a controller's writes, a
/// quarantine that does not apply, a spent change request.
fn notes(
    input: &WhyInput<'_>,
    decision: &Decision,
    quarantined: bool,
    changes: &[change_requests::WorkloadChange],
) -> Vec<String> {
    let mut notes = Vec::new();
    if input.policies.is_empty() {
        notes
            .push("no CustodyPolicy exists in the cluster: the webhook judges nothing".to_string());
    }
    if input.namespace_labels.is_none() {
        notes.push(format!(
            "the labels of namespace {} could not be read: policies were matched on its name alone",
            input.namespace
        ));
    }
    if let Some(owner) = controller_owner(input.object) {
        notes.push(format!(
            "controlled by {owner}: in the cluster its controller writes it and the webhook does not judge that write; the verdict above is for {} creating it",
            input.user
        ));
    }
    if quarantined && decision.violations.is_empty() {
        notes.push(
            "the template is quarantined, but no policy selecting this object applies the quarantine to this requester".to_string(),
        );
    }
    if decision
        .violations
        .iter()
        .any(|v| v.code == ViolationCode::ApprovalRequired)
        && changes
            .iter()
            .any(|c| c.current && c.phase == custody_crds::ChangePhase::Applied)
    {
        notes.push(
            "the change request that admitted the current revision is spent: an approval admits one new revision, and the verdict above is for creating the object anew; updates that keep its pod template (scaling, a restart) never need approval".to_string(),
        );
    }
    notes
}

/// Builds the CREATE the webhook would see for the object and runs the engine on it, the way
/// `custody check` does for a manifest.
fn judge(input: &WhyInput<'_>, policies: &PolicySet, ctx: &Context<'_>) -> Decision {
    let kind = input.target.kind;
    let raw = match serde_json::value::to_raw_value(input.object) {
        Ok(raw) => raw,
        Err(e) => return Decision::invalid(format!("cannot read the object: {e}")),
    };
    let view = match WorkloadObject::parse(&raw) {
        Ok(view) => view,
        Err(e) => return Decision::invalid(format!("cannot read the object: {e}")),
    };
    let request = Request::create(
        GroupVersionKind::new(kind.group(), "v1", kind.as_str()),
        Some(input.namespace),
        input.target.name.as_str(),
        UserInfo::named(input.user, input.groups),
        view,
    );
    evaluate(policies, &request, ctx)
}

/// The pod template that defines a revision (as the engine reads it).
fn pod_template(object: &Value, kind: custody_crds::WorkloadKind) -> Option<&Value> {
    use custody_crds::WorkloadKind as K;
    let path = match kind {
        K::Pod => "/spec",
        K::CronJob => "/spec/jobTemplate/spec/template",
        _ => "/spec/template",
    };
    object.pointer(path).filter(|v| !v.is_null())
}

fn controller_owner(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            format!(
                "{}/{}",
                r.get("kind").and_then(Value::as_str).unwrap_or_default(),
                r.get("name").and_then(Value::as_str).unwrap_or_default()
            )
        })
}

/// The controller's hold on the workload's rollout, with the command that releases it.
fn held(input: &WhyInput<'_>, revisions: &[RevisionRow]) -> Option<HeldRollout> {
    if !RESUME_KINDS.contains(&input.target.kind) {
        return None;
    }
    let hold = resume::hold(input.target.kind, input.object, input.vocabulary)?;
    Some(HeldRollout {
        number: revisions
            .iter()
            .find(|r| r.name == hold.revision)
            .and_then(|r| r.revision),
        resume: resume::command(input.target, input.namespace, input.vocabulary),
        revision: hold.revision,
        restores_partition: hold.restores_partition,
    })
}
