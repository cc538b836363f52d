//! The admission engine: `(policies, request, context) -> Decision`, pure.
//!
//! A request is first sorted out (operation, subresource, kind; an object a controller owns,
//! written by kube-controller-manager, is admitted without judgement: see [`Ownership`]), then
//! the policies that select the workload, do not exclude the requester and do not name it as a
//! controller writing an object it owns are found, their rules run, and the violations are
//! combined by mode into one decision: Enforce denies, Warn admits with kubectl warnings, Audit
//! admits and records. Rules that concern the revision rather than a policy's vocabulary (stale
//! provenance, quarantine) run once, under the strictest mode among the selecting policies.

mod controllers;
mod decision;
mod freeze;
mod frozen;
mod limits;
mod policies;
mod policy_review;
mod probation;
mod quarantine;
mod record_review;
mod registered;
mod rules;
mod signatures;
mod teams;

use std::borrow::Cow;
use std::collections::BTreeMap;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{
    AnnotationKey, EnforcementMode, FailurePolicy, OwnershipMode, Vocabulary, WorkloadKind,
};

pub use controllers::{BUILTIN_CONTROLLERS, Ownership};
pub use decision::{Decision, Outcome, Violation, ViolationCode};
pub use freeze::CompiledFreeze;
pub use limits::{AgentActivity, CompiledLimit};
pub use policies::{CompiledPolicy, CompiledRule, PolicyError, PolicySet, identity_matches};
pub use policy_review::validate_policy;
pub use probation::{CompiledProbation, Revert, RevertIndex};
pub use quarantine::{QuarantineEntry, QuarantineIndex};
pub use record_review::{MIN_REASON_CHARS, validate_record};
pub(crate) use rules::example_for;
pub use teams::{Team, TeamError, TeamIndex, check_team};

use k8s_openapi::jiff::Timestamp;

use crate::attest::{AttestationCache, claim_from_view};
use crate::review::{AdmissionRequest, Operation, WorkloadObject, templates_differ};
use frozen::FreezeOutcome;
use registered::OwnerCheck;
use rules::{QuarantineOutcome, Subject};

/// What the engine knows besides the request.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The annotation keys in force.
    pub vocabulary: &'a Vocabulary,
    /// The labels of the request's namespace, when known. When unknown (a namespace created a
    /// moment ago, or the offline CLI), the namespace is judged by the label the apiserver always
    /// sets, `kubernetes.io/metadata.name`.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// Templates the controller reverted.
    pub quarantine: &'a QuarantineIndex,
    /// The time of the request, for signing keys' validity windows and change freezes.
    pub now: Timestamp,
    /// Envelopes already opened, so a re-applied object is not verified twice.
    pub attestations: &'a AttestationCache,
    /// The registered teams, for `ownership: Registered`.
    pub teams: &'a TeamIndex,
    /// A background audit of what runs, not a change: freezes judge changes, so they do not
    /// apply.
    pub background: bool,
    /// The controller's summaries of agents' rollouts and revisions, for `spec.agents.limits`.
    pub activity: &'a AgentActivity,
}

/// Judges a workload admission request.
pub fn evaluate(
    policies: &PolicySet,
    request: &AdmissionRequest<'_>,
    ctx: &Context<'_>,
) -> Decision {
    let prepared = match prepare(request) {
        Prepared::Done(decision) => return decision,
        Prepared::Judge(p) => p,
    };
    let Prepared2 {
        kind,
        object,
        namespace,
        ownership,
    } = prepared;
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let fallback_labels;
    let namespace_labels = match ctx.namespace_labels {
        Some(labels) => labels,
        None => {
            fallback_labels =
                BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())]);
            &fallback_labels
        }
    };
    let target = Target {
        kind,
        namespace: &namespace,
        namespace_labels,
        labels: &labels,
    };
    let user = &request.user_info;
    let mut selecting = policies.selecting(&target, &user.username, &user.groups, ownership);
    if selecting.is_empty() {
        return Decision::skipped(None);
    }
    // Strictest first, so deduplication keeps the strictest policy's violation.
    selecting.sort_by(|a, b| b.spec.mode.cmp(&a.spec.mode).then(a.name.cmp(&b.name)));
    let strictest = (selecting[0].name.as_str(), selecting[0].spec.mode);
    let object_name = format!("{kind} {namespace}/{}", object.display_name());
    let subject = Subject {
        vocabulary: ctx.vocabulary,
        annotations: rules::Annotations::read(ctx.vocabulary, object),
        username: &user.username,
        groups: &user.groups,
    };

    let mut violations: Vec<Violation> = Vec::new();
    let mut extra_warnings = Vec::new();
    let mut extra_audit = BTreeMap::new();
    // Resolved once, not per policy: a FreeForm policy installed next to a Registered one
    // must not deny for a missing `oncall` the team already answers.
    let stand_in = registered::oncall_stand_in(&subject, &namespace, ctx.teams);
    if let Some((team, oncall)) = &stand_in {
        extra_audit.insert("team".to_string(), team.name.clone());
        extra_audit.insert("oncall".to_string(), oncall.clone());
        // Says where the on-call came from: the workload declared none.
        extra_audit.insert(
            "oncall-from".to_string(),
            format!("CustodyTeam/{}", team.name),
        );
    }
    for policy in &selecting {
        let mut found = rules::annotation_rules(policy, &subject);
        if stand_in.is_some() {
            found.retain(|v| {
                !(v.code == ViolationCode::MissingAnnotation
                    && v.key == Some(AnnotationKey::Oncall))
            });
        }
        found.extend(rules::actor_cross_check(policy, &subject));
        if policy.spec.ownership == OwnershipMode::Registered {
            match registered::registered_owner(policy, &subject, &namespace, ctx.teams) {
                OwnerCheck::Resolved(team) => {
                    let declared = subject.annotations.get(AnnotationKey::Oncall);
                    let team_oncall = team.oncall_contact();
                    extra_audit.insert("team".to_string(), team.name.clone());
                    if let Some(oncall) = declared.map(str::to_string).or(team_oncall) {
                        extra_audit.insert("oncall".to_string(), oncall);
                    }
                }
                OwnerCheck::Violation(v) => found.push(v),
                OwnerCheck::Absent => {}
            }
        }
        for v in found {
            if !violations
                .iter()
                .any(|seen| seen.code == v.code && seen.field == v.field)
            {
                violations.push(v);
            }
        }
    }

    let (found, vouched) = attestation_checks(&selecting, kind, &namespace, object, ctx);
    for v in found {
        if !violations
            .iter()
            .any(|seen| seen.code == v.code && seen.field == v.field)
        {
            violations.push(v);
        }
    }
    if !vouched.is_empty() {
        extra_audit.insert("attestation-key".to_string(), vouched.join(","));
    }
    match revision_checks(
        request,
        kind,
        object,
        &subject,
        &object_name,
        ctx,
        &selecting,
        strictest,
    ) {
        Ok(RevisionFindings {
            violations: found,
            override_note,
        }) => {
            violations.extend(found);
            if let Some((record, reason)) = override_note {
                extra_warnings.push(format!(
                    "custody: re-admitting a quarantined template (RollbackRecord {record:?}) on a human override: {reason}"
                ));
                extra_audit.insert(
                    "quarantine-override".to_string(),
                    format!("{record}: {reason}"),
                );
            }
        }
        Err(decision) => return decision,
    }
    if !ctx.background {
        // Freezes and probation judge new revisions only; whether this is one is worked out
        // (the templates parsed and compared) only when one of them could deny it.
        let mut is_new: Option<bool> = None;
        let mut is_new_revision = || -> Result<bool, Decision> {
            if let Some(known) = is_new {
                return Ok(known);
            }
            let known = new_revision(request, kind, object, &object_name)?;
            is_new = Some(known);
            Ok(known)
        };
        let open = frozen::open(&selecting, ctx.now);
        if !open.is_empty() && frozen::concerns(&open, &subject) {
            match is_new_revision() {
                Ok(false) => {}
                Ok(true) => match frozen::judge(&open, &subject) {
                    FreezeOutcome::Violations(found) => violations.extend(found),
                    FreezeOutcome::BrokeGlass { reason, windows } => {
                        extra_warnings.push(format!(
                            "custody: break-glass during change freeze {}: {reason}. Custody records it as a Warning Event and notifies the owning team.",
                            windows.join(", ")
                        ));
                        extra_audit.insert("break-glass".to_string(), reason);
                        extra_audit.insert("break-glass-freezes".to_string(), windows.join(","));
                    }
                },
                Err(decision) => return decision,
            }
        }
        // Budgets and probation bind new revisions only: their findings count once that is
        // known, each code once.
        let mut guarded: Vec<Violation> = Vec::new();
        if !ctx.activity.is_empty() {
            let workload = limits::Workload {
                namespace: &namespace,
                kind,
                name: object.metadata.name.as_deref().unwrap_or_default(),
            };
            guarded.extend(
                selecting
                    .iter()
                    .flat_map(|p| limits::judge(p, &subject, &workload, ctx.activity, ctx.now)),
            );
        }
        let reverts = ctx.quarantine.reverts();
        if reverts.agents() > 0 {
            guarded.extend(
                selecting
                    .iter()
                    .filter_map(|p| probation::judge(p, &subject, &namespace, reverts, ctx.now)),
            );
        }
        if !guarded.is_empty() {
            match is_new_revision() {
                Ok(false) => {}
                Ok(true) => {
                    for v in guarded {
                        if !violations.iter().any(|seen| seen.code == v.code) {
                            violations.push(v);
                        }
                    }
                }
                Err(decision) => return decision,
            }
        }
    }

    let names: Vec<&str> = selecting.iter().map(|p| p.name.as_str()).collect();
    let mut decision = Decision::judged(&object_name, strictest.1, violations, &names);
    decision.warnings.extend(extra_warnings);
    decision.audit_annotations.extend(extra_audit);
    decision
}

/// Each selecting policy's signature requirement: the violations, and the key ids that vouched.
fn attestation_checks(
    selecting: &[&CompiledPolicy],
    kind: WorkloadKind,
    namespace: &str,
    object: &WorkloadObject<'_>,
    ctx: &Context<'_>,
) -> (Vec<Violation>, Vec<String>) {
    let mut violations = Vec::new();
    let mut vouched: Vec<String> = Vec::new();
    if !selecting.iter().any(|p| p.spec.signatures.is_some()) {
        return (violations, vouched);
    }
    let envelope = object.annotation(ctx.vocabulary.attestation());
    // The template is parsed and digested only when there is an attestation to compare it with.
    let claim = match envelope {
        Some(_) => {
            claim_from_view(kind, namespace, object, ctx.vocabulary).map_err(|e| e.to_string())
        }
        None => Err("no attestation".to_string()),
    };
    for policy in selecting {
        match signatures::judge(policy, envelope.as_deref(), &claim, ctx) {
            signatures::Finding::None => {}
            signatures::Finding::Verified(v) => {
                if !vouched.contains(&v.key_id) {
                    vouched.push(v.key_id);
                }
            }
            signatures::Finding::Violation(v) => violations.push(v),
        }
    }
    (violations, vouched)
}

/// Whether the request makes a new revision: a CREATE, or an UPDATE that changes the pod
/// template (not a scale, not a metadata-only change).
fn new_revision(
    request: &AdmissionRequest<'_>,
    kind: WorkloadKind,
    object: &WorkloadObject<'_>,
    object_name: &str,
) -> Result<bool, Decision> {
    let Some(old) = request
        .old_object
        .as_ref()
        .filter(|_| request.operation == Operation::Update)
    else {
        return Ok(true);
    };
    let invalid = |e: serde_json::Error| {
        Decision::invalid(format!(
            "cannot read the pod template of {object_name}: {e}"
        ))
    };
    let template = object.pod_template(kind).map_err(invalid)?;
    let old_template = old.pod_template(kind).map_err(invalid)?;
    Ok(templates_differ(template, old_template))
}

struct RevisionFindings {
    violations: Vec<Violation>,
    override_note: Option<(String, String)>,
}

/// Stale provenance (UPDATE) and quarantine, which concern the revision rather than a policy.
#[allow(clippy::too_many_arguments)]
fn revision_checks(
    request: &AdmissionRequest<'_>,
    kind: WorkloadKind,
    object: &WorkloadObject<'_>,
    subject: &Subject<'_, '_>,
    object_name: &str,
    ctx: &Context<'_>,
    selecting: &[&CompiledPolicy],
    strictest: (&str, EnforcementMode),
) -> Result<RevisionFindings, Decision> {
    let mut findings = RevisionFindings {
        violations: Vec::new(),
        override_note: None,
    };
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let entries = ctx.quarantine.entries(namespace, kind, name);
    let is_update = request.operation == Operation::Update;
    if !is_update && entries.is_empty() {
        return Ok(findings);
    }
    let invalid = |e: serde_json::Error| {
        Decision::invalid(format!(
            "cannot read the pod template of {object_name}: {e}"
        ))
    };
    let template = object.pod_template(kind).map_err(invalid)?;
    let mut template_changed = true;
    if is_update && let Some(old) = request.old_object.as_ref() {
        let old_template = old.pod_template(kind).map_err(invalid)?;
        template_changed = templates_differ(template, old_template);
        findings.violations.extend(rules::stale_provenance(
            subject,
            old,
            template,
            old_template,
            strictest,
        ));
    }
    if template_changed && !entries.is_empty() {
        let agent_requester = selecting
            .iter()
            .any(|p| identity_matches(&p.spec.identities.agents, subject.username, subject.groups));
        match rules::quarantine(
            subject,
            object_name,
            entries,
            template,
            agent_requester,
            strictest,
        ) {
            QuarantineOutcome::Clear => {}
            QuarantineOutcome::Denied(v) => findings.violations.push(v),
            QuarantineOutcome::Overridden { record, reason } => {
                findings.override_note = Some((record, reason));
            }
        }
    }
    Ok(findings)
}

enum Prepared<'r, 'a> {
    Done(Decision),
    Judge(Prepared2<'r, 'a>),
}

struct Prepared2<'r, 'a> {
    kind: WorkloadKind,
    object: &'r WorkloadObject<'a>,
    namespace: Cow<'a, str>,
    ownership: Ownership,
}

/// Sorts out requests that are not judged, and parses the object of those that are.
fn prepare<'r, 'a>(request: &'r AdmissionRequest<'a>) -> Prepared<'r, 'a> {
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Prepared::Done(Decision::skipped(None));
    }
    if request
        .sub_resource
        .as_deref()
        .is_some_and(|s| !s.is_empty())
    {
        // scale and status change no template and no provenance.
        return Prepared::Done(Decision::skipped(None));
    }
    let Some(kind) = WorkloadKind::from_group_kind(&request.kind.group, &request.kind.kind) else {
        let gk = if request.kind.group.is_empty() {
            request.kind.kind.to_string()
        } else {
            format!("{}.{}", request.kind.kind, request.kind.group)
        };
        return Prepared::Done(Decision::skipped(Some(format!(
            "custody: {gk} is not a workload kind Custody judges; admitted without checks"
        ))));
    };
    let Some(object) = request.object.as_ref() else {
        return Prepared::Done(Decision::invalid(format!(
            "the {} request for {kind} has no object",
            request.operation.as_str()
        )));
    };
    let ownership = Ownership::of(request);
    if ownership == Ownership::BuiltinController {
        // Written by its controller (a Deployment's ReplicaSet, a Job's Pod): the owner was
        // judged when it was applied, and blocking here would wedge the rollout. The
        // ownerReference alone proves nothing (anyone may write one); the identity does.
        return Prepared::Done(Decision::skipped(None));
    }
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or(Cow::Borrowed("default"));
    Prepared::Judge(Prepared2 {
        kind,
        object,
        namespace,
        ownership,
    })
}

impl PolicySet {
    /// The strictest failure policy among the policies that would judge `request`: what to
    /// answer when the webhook cannot decide. `Ignore` when no policy selects it.
    pub fn failure_policy_for(
        &self,
        request: &AdmissionRequest<'_>,
        ctx: &Context<'_>,
    ) -> FailurePolicy {
        let strictest = |it: &mut dyn Iterator<Item = &CompiledPolicy>| {
            it.map(|p| p.spec.failure_policy)
                .max()
                .unwrap_or(FailurePolicy::Ignore)
        };
        match prepare(request) {
            Prepared::Done(d) if d.outcome == Outcome::Invalid => strictest(&mut self.iter()),
            Prepared::Done(_) => FailurePolicy::Ignore,
            Prepared::Judge(p) => {
                let labels = p.object.metadata.labels.clone().unwrap_or_default();
                let fallback =
                    BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), p.namespace.to_string())]);
                let target = Target {
                    kind: p.kind,
                    namespace: &p.namespace,
                    namespace_labels: ctx.namespace_labels.unwrap_or(&fallback),
                    labels: &labels,
                };
                let user = &request.user_info;
                strictest(
                    &mut self
                        .selecting(&target, &user.username, &user.groups, p.ownership)
                        .into_iter(),
                )
            }
        }
    }
}
