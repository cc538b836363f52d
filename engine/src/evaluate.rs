//! Judging a workload write: `(policies, request, context) -> Decision`, pure.
//!
//! A request is first sorted out ([`triage`](crate::triage): operation, subresource, kind; an
//! object a controller owns, written by kube-controller-manager, is admitted without judgement:
//! see [`ControllerWrite`](crate::ControllerWrite)), then the policies that select the workload,
//! do not exclude the requester and do not name it as a controller writing an object it owns
//! are found, their rules run, and the violations are combined by mode into one decision:
//! Enforce denies, Warn admits with kubectl warnings, Audit admits and records. Rules that
//! concern the revision rather than a policy's vocabulary (stale provenance, quarantine) run
//! once, under the strictest mode among the selecting policies.
//!
//! Each object's pod template is located at most once per request: the revision checks read
//! the new and stored templates, and whether the write is a new revision, the signature check
//! and the freezes, budgets and probation reuse that.

use std::collections::BTreeMap;

use custody_crds::{AnnotationKey, EnforcementMode, OwnershipMode};
use serde_json::value::RawValue;

use crate::approval;
use crate::attest::{claim_from_template, claim_from_view};
use crate::change_freeze::{self, FreezeOutcome};
use crate::context::Context;
use crate::decision::{Decision, Violation, ViolationCode};
use crate::hold;
use crate::identity::identity_matches;
use crate::limits;
use crate::object::templates_differ;
use crate::policies::{CompiledPolicy, PolicySet};
use crate::probation;
use crate::registered::{self, OwnerCheck};
use crate::request::{Operation, Request};
use crate::rules::{self, QuarantineOutcome};
use crate::signatures;
use crate::subject::{Annotations, Subject};
use crate::triage::{Judged, Prepared, prepare};

/// Judges a workload admission request.
pub fn evaluate(policies: &PolicySet, request: &Request<'_>, ctx: &Context<'_>) -> Decision {
    let judged = match prepare(request, ctx) {
        Prepared::Done(decision) => return decision,
        Prepared::Judge(judged) => judged,
    };
    let user = &request.user_info;
    let mut selecting = judged.selecting(policies, request);
    if selecting.is_empty() {
        return Decision::skipped(None);
    }
    // Strictest first, so deduplication keeps the strictest policy's violation.
    selecting.sort_by(|a, b| b.spec.mode.cmp(&a.spec.mode).then(a.name.cmp(&b.name)));
    let strictest = (selecting[0].name.as_str(), selecting[0].spec.mode);
    let object_name = format!(
        "{} {}/{}",
        judged.kind,
        judged.namespace,
        judged.object.display_name()
    );
    let subject = Subject {
        vocabulary: ctx.vocabulary,
        annotations: Annotations::read(ctx.vocabulary, judged.object),
        username: &user.username,
        groups: &user.groups,
    };
    let scope = Scope {
        request,
        judged: &judged,
        subject: &subject,
        selecting: &selecting,
        object_name: &object_name,
        strictest,
        ctx,
    };

    let mut found = Findings::default();
    policy_rules(&scope, &mut found);
    // The revision is read before the signatures are checked so that both use one reading of
    // the pod templates; its violations still come after theirs.
    let revision = match revision_checks(&scope) {
        Ok(revision) => revision,
        Err(decision) => return decision,
    };
    attestation_checks(&scope, revision.template, &mut found);
    found.note_revision(revision.violations, revision.override_note);
    if !ctx.background {
        change_guards(&scope, revision.is_new, &mut found);
        if revision.is_new {
            approval_checks(&scope, revision.template, &mut found);
        }
        found.violations.extend(hold_release(&scope));
    }

    let names: Vec<&str> = selecting.iter().map(|p| p.name.as_str()).collect();
    let mut decision = Decision::judged(&object_name, strictest.1, found.violations, &names);
    decision.warnings.extend(found.warnings);
    decision.audit_annotations.extend(found.audit);
    decision
}

/// Everything the steps of one evaluation share.
struct Scope<'s, 'r, 'a> {
    request: &'r Request<'a>,
    judged: &'s Judged<'r, 'a>,
    subject: &'s Subject<'s, 'a>,
    selecting: &'s [&'s CompiledPolicy],
    object_name: &'s str,
    strictest: (&'s str, EnforcementMode),
    ctx: &'s Context<'s>,
}

/// What the steps found so far.
#[derive(Default)]
struct Findings {
    violations: Vec<Violation>,
    warnings: Vec<String>,
    audit: BTreeMap<String, String>,
}

impl Findings {
    /// Adds `v` unless a violation of the same code on the same field is already there.
    fn add_distinct(&mut self, v: Violation) {
        if !self
            .violations
            .iter()
            .any(|seen| seen.code == v.code && seen.field == v.field)
        {
            self.violations.push(v);
        }
    }

    fn audit(&mut self, key: &str, value: String) {
        self.audit.insert(key.to_string(), value);
    }

    fn note_revision(
        &mut self,
        violations: Vec<Violation>,
        override_note: Option<(String, String)>,
    ) {
        self.violations.extend(violations);
        if let Some((record, reason)) = override_note {
            self.warnings.push(format!(
                "custody: re-admitting a quarantined template (RollbackRecord {record:?}) on a human override: {reason}"
            ));
            self.audit("quarantine-override", format!("{record}: {reason}"));
        }
    }
}

/// Each selecting policy's own rules: annotations, the actor cross-check and registered owners.
fn policy_rules(scope: &Scope<'_, '_, '_>, found: &mut Findings) {
    let subject = scope.subject;
    let namespace: &str = &scope.judged.namespace;
    let teams = scope.ctx.teams;
    // Resolved once, not per policy: a FreeForm policy installed next to a Registered one
    // must not deny for a missing `oncall` the team already answers.
    let stand_in = registered::oncall_stand_in(subject, namespace, teams);
    if let Some((team, oncall)) = &stand_in {
        found.audit("team", team.name.clone());
        found.audit("oncall", oncall.clone());
        // Says where the on-call came from: the workload declared none.
        found.audit("oncall-from", format!("CustodyTeam/{}", team.name));
    }
    for policy in scope.selecting {
        let mut own = rules::annotation_rules(policy, subject);
        if stand_in.is_some() {
            own.retain(|v| {
                !(v.code == ViolationCode::MissingAnnotation
                    && v.key == Some(AnnotationKey::Oncall))
            });
        }
        own.extend(rules::actor_cross_check(policy, subject));
        if policy.spec.ownership == OwnershipMode::Registered {
            match registered::registered_owner(policy, subject, namespace, teams) {
                OwnerCheck::Resolved(team) => {
                    let declared = subject.annotations.get(AnnotationKey::Oncall);
                    let team_oncall = team.oncall_contact();
                    found.audit("team", team.name.clone());
                    if let Some(oncall) = declared.map(str::to_string).or(team_oncall) {
                        found.audit("oncall", oncall);
                    }
                }
                OwnerCheck::Violation(v) => own.push(v),
                OwnerCheck::Absent => {}
            }
        }
        for v in own {
            found.add_distinct(v);
        }
    }
}

/// Each selecting policy's signature requirement: its violations, and the key ids that
/// vouched. `template` is the new pod template when the revision checks already located it.
fn attestation_checks(
    scope: &Scope<'_, '_, '_>,
    template: Option<Option<&RawValue>>,
    found: &mut Findings,
) {
    if !scope.selecting.iter().any(|p| p.spec.signatures.is_some()) {
        return;
    }
    let Judged {
        kind,
        object,
        namespace,
        ..
    } = scope.judged;
    let ctx = scope.ctx;
    let envelope = object.annotation(ctx.vocabulary.attestation());
    // The template is parsed and digested only when there is an attestation to compare it with.
    let claim = match (&envelope, template) {
        (None, _) => Err("no attestation".to_string()),
        (Some(_), Some(template)) => {
            claim_from_template(*kind, namespace, object, template, ctx.vocabulary)
                .map_err(|e| e.to_string())
        }
        (Some(_), None) => {
            claim_from_view(*kind, namespace, object, ctx.vocabulary).map_err(|e| e.to_string())
        }
    };
    let mut vouched: Vec<String> = Vec::new();
    for policy in scope.selecting {
        match signatures::judge(
            policy.head(),
            &policy.keys,
            envelope.as_deref(),
            &claim,
            ctx,
        ) {
            signatures::Finding::None => {}
            signatures::Finding::Verified(v) => {
                if !vouched.contains(&v.key_id) {
                    vouched.push(v.key_id);
                }
            }
            signatures::Finding::Violation(v) => found.add_distinct(v),
        }
    }
    if !vouched.is_empty() {
        found.audit("attestation-key", vouched.join(","));
    }
}

/// What the revision checks found.
struct Revision<'a> {
    violations: Vec<Violation>,
    override_note: Option<(String, String)>,
    /// Whether the request makes a new revision: a CREATE, or an UPDATE that changes the pod
    /// template (not a scale, not a metadata-only change).
    is_new: bool,
    /// The new pod template, when it was located.
    template: Option<Option<&'a RawValue>>,
}

/// Stale provenance (UPDATE) and quarantine, which concern the revision rather than a policy.
/// An UPDATE's two templates are located and compared here, once, for every later step.
fn revision_checks<'a>(scope: &Scope<'_, '_, 'a>) -> Result<Revision<'a>, Decision> {
    let Scope {
        request,
        judged,
        subject,
        selecting,
        object_name,
        strictest,
        ctx,
    } = scope;
    let mut revision = Revision {
        violations: Vec::new(),
        override_note: None,
        is_new: true,
        template: None,
    };
    let (kind, object) = (judged.kind, judged.object);
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let entries = ctx.quarantine.entries(namespace, kind, name);
    let is_update = request.operation == Operation::Update;
    if !is_update && entries.is_empty() {
        return Ok(revision);
    }
    let invalid = |e: serde_json::Error| {
        Decision::invalid(format!(
            "cannot read the pod template of {object_name}: {e}"
        ))
    };
    let template = object.pod_template(kind).map_err(invalid)?;
    revision.template = Some(template);
    if is_update && let Some(old) = request.old_object.as_ref() {
        let old_template = old.pod_template(kind).map_err(invalid)?;
        revision.is_new = templates_differ(template, old_template);
        revision.violations.extend(rules::stale_provenance(
            subject,
            old,
            template,
            old_template,
            *strictest,
        ));
    }
    if revision.is_new && !entries.is_empty() {
        let agent_requester = selecting
            .iter()
            .any(|p| identity_matches(&p.spec.identities.agents, subject.username, subject.groups));
        match rules::quarantine(
            subject,
            object_name,
            entries,
            template,
            agent_requester,
            *strictest,
        ) {
            QuarantineOutcome::Clear => {}
            QuarantineOutcome::Denied(v) => revision.violations.push(v),
            QuarantineOutcome::Overridden { record, reason } => {
                revision.override_note = Some((record, reason));
            }
        }
    }
    Ok(revision)
}

/// Each selecting policy's `spec.agents.approval` that covers an agent's new revision: admitted
/// by an approved change request with its digest, or denied. The digest is taken only when some
/// policy's approval covers the request.
fn approval_checks(
    scope: &Scope<'_, '_, '_>,
    template: Option<Option<&RawValue>>,
    found: &mut Findings,
) {
    let Scope {
        judged,
        subject,
        selecting,
        ctx,
        ..
    } = scope;
    let labels = judged.object.metadata.labels.as_ref();
    let no_labels = BTreeMap::new();
    let covering: Vec<_> = selecting
        .iter()
        .filter_map(|p| {
            let approval = p.approval.as_ref()?;
            let agent = approval::agent_in_scope(p.head(), subject)?;
            let covered = approval::Scope {
                agent,
                kind: judged.kind,
                team: subject.annotations.get(AnnotationKey::Owner).map(str::trim),
                labels: labels.unwrap_or(&no_labels),
            };
            approval.covers(&covered).then_some((*p, approval, covered))
        })
        .collect();
    if covering.is_empty() {
        return;
    }
    let (kind, object, namespace) = (judged.kind, judged.object, &judged.namespace);
    let claim = match template {
        Some(t) => claim_from_template(kind, namespace, object, t, ctx.vocabulary),
        None => claim_from_view(kind, namespace, object, ctx.vocabulary),
    }
    .map_err(|e| e.to_string());
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let entries = ctx.changes.entries(namespace, kind, name);
    for (policy, approval, covered) in covering {
        match approval::judge(policy.head(), approval, &covered, &claim, entries, ctx.now) {
            approval::Verdict::Admitted { change, approvers } => {
                let by = approvers.join(", ");
                found.warnings.push(format!(
                    "custody: admitted as the change CustodyChange {change:?} approved by {by}"
                ));
                found.audit("approved-change", format!("{change}: {by}"));
            }
            approval::Verdict::Denied(v) => found.add_distinct(v),
        }
    }
}

/// An agent's update that would release the controller's hold on a first step.
fn hold_release(scope: &Scope<'_, '_, '_>) -> Option<Violation> {
    let old = scope.request.old_object.as_ref()?;
    if scope.request.operation != Operation::Update {
        return None;
    }
    let heads: Vec<_> = scope.selecting.iter().map(|p| p.head()).collect();
    hold::judge(
        &heads,
        scope.subject,
        &hold::Update {
            kind: scope.judged.kind,
            namespace: &scope.judged.namespace,
            old,
            new: scope.judged.object,
            display: scope.object_name,
        },
    )
}

/// Freezes, budgets and probation, which judge new revisions only.
fn change_guards(scope: &Scope<'_, '_, '_>, is_new: bool, found: &mut Findings) {
    let Scope {
        judged,
        subject,
        selecting,
        ctx,
        ..
    } = scope;
    if !is_new {
        return;
    }
    let open = change_freeze::open(selecting, ctx.now);
    if !open.is_empty() && change_freeze::concerns(&open, subject) {
        match change_freeze::judge(&open, subject) {
            FreezeOutcome::Violations(v) => found.violations.extend(v),
            FreezeOutcome::BrokeGlass { reason, windows } => {
                found.warnings.push(format!(
                    "custody: break-glass during change freeze {}: {reason}. Custody records it as a Warning Event and notifies the owning team.",
                    windows.join(", ")
                ));
                found.audit("break-glass", reason);
                found.audit("break-glass-freezes", windows.join(","));
            }
        }
    }
    // Budgets and probation count each code once.
    let mut guarded: Vec<Violation> = Vec::new();
    if !ctx.activity.is_empty() {
        let workload = limits::Workload {
            namespace: &judged.namespace,
            kind: judged.kind,
            name: judged.object.metadata.name.as_deref().unwrap_or_default(),
        };
        guarded.extend(selecting.iter().flat_map(|p| {
            limits::judge(
                p.head(),
                &p.limits,
                subject,
                &workload,
                ctx.activity,
                ctx.now,
            )
        }));
    }
    let reverts = ctx.quarantine.reverts();
    if reverts.agents() > 0 {
        guarded.extend(selecting.iter().filter_map(|p| {
            let compiled = p.probation.as_ref()?;
            probation::judge(
                p.head(),
                compiled,
                subject,
                &judged.namespace,
                reverts,
                ctx.now,
            )
        }));
    }
    for v in guarded {
        if !found.violations.iter().any(|seen| seen.code == v.code) {
            found.violations.push(v);
        }
    }
}
