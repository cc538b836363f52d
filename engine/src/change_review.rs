//! Admission of writes to CustodyChanges: a proposal is made under the proposer's own name, for
//! a workload some policy's approval protects, with a digest that is what it says; it never
//! changes afterwards. Approvals and rejections are a person's act, under their own name, with a
//! reason, by someone the policy lets approve and never the proposer, and stay as written
//! (the rules of a quarantine lift); what the controller writes (the phase, `applied`) is
//! refused from anyone else.

use std::collections::BTreeMap;

use custody_crds::attestation::subject_name;
use custody_crds::change::{MAX_DIFF_BYTES, MAX_DIFF_LINES, change_digest, is_digest, line_bytes};
use custody_crds::selection::glob_matches;
use custody_crds::{CustodyChangeSpec, CustodyChangeStatus, Lift};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;

use crate::approval::{ChangeEntry, CompiledApproval, Standing, approvers, standing};
use crate::decision::{Decision, Outcome, ViolationCode};
use crate::identity::identity_matches;
use crate::object::WorkloadObject;
use crate::person::person_problem;
use crate::policies::PolicySet;
use crate::record_review::MIN_REASON_CHARS;
use crate::request::{Operation, Request};
use crate::requests::protecting;
use crate::teams::TeamIndex;

/// How far an approval's `at` may be from the webhook's clock: it starts the approval's
/// validity, so it may not be back- or post-dated.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(300);

/// What judging a change write needs besides the request.
#[derive(Clone, Copy, Debug)]
pub struct ChangeReview<'a> {
    /// The policies in force.
    pub policies: &'a PolicySet,
    /// The registered teams, whose members approve by default.
    pub teams: &'a TeamIndex,
    /// The labels of the request's namespace, when known.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The time of the request.
    pub now: Timestamp,
    /// Custody's controller, the only writer of the phase and of `applied` (the webhook's
    /// matchConditions normally keep its writes from coming here at all).
    pub controller: &'a [String],
}

/// Judges a CREATE or UPDATE of a CustodyChange (or of its status).
pub fn validate_change(request: &Request<'_>, review: &ChangeReview<'_>) -> Decision {
    if request.kind.kind != "CustodyChange" {
        return Decision::invalid(format!(
            "the change endpoint judges CustodyChange objects, not {}",
            request.kind.kind
        ));
    }
    let Some(object) = request.object.as_ref() else {
        return Decision::skipped(None);
    };
    let status = request.sub_resource.as_deref() == Some("status");
    let result = match (request.operation, status) {
        (Operation::Create, _) => proposal(request, object, review).map(|_| None),
        (Operation::Update, false) => unchanged_spec(request, object),
        (Operation::Update, true) => decision_write(request, object, review),
        _ => return Decision::skipped(None),
    };
    match result {
        Ok(None) => Decision::skipped(None),
        Ok(Some((key, value))) => {
            let mut d = Decision::skipped(None);
            d.outcome = Outcome::Allowed;
            d.audit_annotations.insert(key, value);
            d
        }
        Err((field, problem, fix)) => refuse(request, field, problem, &fix),
    }
}

/// A refusal: the field, what is wrong, how to fix it.
type Refusal = (&'static str, String, String);

fn part<T: DeserializeOwned + Default>(
    raw: Option<&serde_json::value::RawValue>,
    field: &'static str,
) -> Result<T, Refusal> {
    match raw {
        None => Ok(T::default()),
        Some(raw) => serde_json::from_str::<Option<T>>(raw.get())
            .map(Option::unwrap_or_default)
            .map_err(|e| {
                (
                    field,
                    format!("{field} is not valid: {e}"),
                    "write it as `custody propose` does".to_string(),
                )
            }),
    }
}

fn spec_of(object: &WorkloadObject<'_>) -> Result<CustodyChangeSpec, Refusal> {
    let raw = object.spec.ok_or((
        "spec",
        "the change has no spec".to_string(),
        "create it with `kubectl custody propose -f <manifest>`".to_string(),
    ))?;
    serde_json::from_str(raw.get()).map_err(|e| {
        (
            "spec",
            format!("spec is not valid: {e}"),
            "create it with `kubectl custody propose -f <manifest>`".to_string(),
        )
    })
}

/// A new change request.
fn proposal(
    request: &Request<'_>,
    object: &WorkloadObject<'_>,
    review: &ChangeReview<'_>,
) -> Result<(), Refusal> {
    let spec = spec_of(object)?;
    let user = request.user_info.username.as_ref();
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let propose = "create it with `kubectl custody propose -f <manifest> --reason \"<why>\"`";
    if spec.proposer != user {
        return Err((
            "spec.proposer",
            format!(
                "spec.proposer is {:?}, but the request comes from {user:?}",
                spec.proposer
            ),
            "a proposal names who made it: set spec.proposer to your own user name".to_string(),
        ));
    }
    if !is_digest(&spec.template_digest) || !is_digest(&spec.digest) {
        return Err((
            "spec.digest",
            "spec.digest and spec.templateDigest must each be sha256: and 64 hex digits".into(),
            propose.into(),
        ));
    }
    let subject = subject_name(spec.workload.kind, namespace, &spec.workload.name);
    let expected = change_digest(&subject, &spec.template_digest, &spec.provenance);
    if expected != spec.digest {
        return Err((
            "spec.digest",
            format!(
                "spec.digest {} is not the digest of {subject} with this template digest and provenance ({expected})",
                spec.digest
            ),
            propose.into(),
        ));
    }
    if spec.agent.trim().is_empty() || spec.provenance.get("agent") != Some(&spec.agent) {
        return Err((
            "spec.agent",
            format!(
                "spec.agent {:?} must be the agent annotation the revision declares ({:?})",
                spec.agent,
                spec.provenance
                    .get("agent")
                    .map(String::as_str)
                    .unwrap_or("")
            ),
            propose.into(),
        ));
    }
    if spec.reason.trim().chars().count() < MIN_REASON_CHARS {
        return Err((
            "spec.reason",
            format!(
                "spec.reason {:?} is shorter than {MIN_REASON_CHARS} characters",
                spec.reason
            ),
            "say what the change does and why, for the reviewer".into(),
        ));
    }
    let bytes: usize = spec.diff.iter().map(line_bytes).sum();
    if spec.diff.len() > MAX_DIFF_LINES || bytes > MAX_DIFF_BYTES {
        return Err((
            "spec.diff",
            format!(
                "spec.diff has {} lines and {bytes} bytes; a change stores at most {MAX_DIFF_LINES} lines and {MAX_DIFF_BYTES} bytes",
                spec.diff.len()
            ),
            "cut the diff to the limit and set spec.diffTruncated: true (`custody propose` does); the digest still names the whole change".into(),
        ));
    }
    if protecting(review.policies, &spec, namespace, review.namespace_labels).is_empty() {
        return Err((
            "spec.workload",
            format!(
                "no CustodyPolicy requires approval for agent {:?}'s changes to {} {namespace}/{}: there is nothing to approve",
                spec.agent, spec.workload.kind, spec.workload.name
            ),
            "apply the change directly; it is judged by the usual rules".into(),
        ));
    }
    Ok(())
}

/// A change request never changes after it is proposed.
fn unchanged_spec(
    request: &Request<'_>,
    object: &WorkloadObject<'_>,
) -> Result<Option<(String, String)>, Refusal> {
    let old = request.old_object.as_ref().and_then(|o| o.spec);
    let new = object.spec;
    let parse = |raw: Option<&serde_json::value::RawValue>| {
        raw.and_then(|r| serde_json::from_str::<serde_json::Value>(r.get()).ok())
    };
    if parse(old) != parse(new) {
        return Err((
            "spec",
            "a change request's spec never changes after it is proposed".to_string(),
            "propose the new change as a new request".to_string(),
        ));
    }
    Ok(None)
}

/// A status write: at most one new approval, or a rejection; nothing rewritten.
fn decision_write(
    request: &Request<'_>,
    object: &WorkloadObject<'_>,
    review: &ChangeReview<'_>,
) -> Result<Option<(String, String)>, Refusal> {
    let old_object = request.old_object.as_ref().ok_or((
        "status",
        "the status update has no oldObject".to_string(),
        String::new(),
    ))?;
    let new: CustodyChangeStatus = part(object.status, "status")?;
    let old: CustodyChangeStatus = part(old_object.status, "status")?;
    let user = request.user_info.username.as_ref();
    let controller = review.controller.iter().any(|c| c == user);
    controller_fields(&old, &new, controller)?;
    let added = appended(&old.approvals, &new.approvals)?;
    let rejected = match (&old.rejection, &new.rejection) {
        (None, Some(r)) => Some(r),
        (Some(o), Some(n)) if o == n => None,
        (None, None) => None,
        (Some(o), _) => {
            return Err((
                "status.rejection",
                format!(
                    "status.rejection was written by {} ({}); a rejection is never rewritten or removed",
                    o.by, o.reason
                ),
                "propose the change again instead".into(),
            ));
        }
    };
    let (field, lift, key) = match (added, rejected) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err((
                "status",
                "an approval and a rejection in one write".to_string(),
                "approve or reject, not both".into(),
            ));
        }
        (Some(a), None) => ("status.approvals", a, "approved"),
        (None, Some(r)) => ("status.rejection", r, "rejected"),
    };
    let spec = spec_of(object)?;
    judge_decision(request, old_object, &old, &spec, field, lift, review)?;
    Ok(Some((
        format!("change-{key}"),
        format!("{}: {}", lift.by, lift.reason),
    )))
}

/// The fields only the controller writes.
fn controller_fields(
    old: &CustodyChangeStatus,
    new: &CustodyChangeStatus,
    controller: bool,
) -> Result<(), Refusal> {
    if old.applied.is_some() && old.applied != new.applied {
        return Err((
            "status.applied",
            "status.applied is written once and never changed: the approval was spent".into(),
            "propose the change again".into(),
        ));
    }
    if controller {
        return Ok(());
    }
    let theirs = [
        ("status.applied", old.applied != new.applied),
        ("status.phase", old.phase != new.phase),
        ("status.expiresAt", old.expires_at != new.expires_at),
        ("status.message", old.message != new.message),
        (
            "status.proposalNotified",
            old.proposal_notified != new.proposal_notified,
        ),
        (
            "status.decisionNotified",
            old.decision_notified != new.decision_notified,
        ),
    ];
    match theirs.into_iter().find(|(_, changed)| *changed) {
        Some((field, _)) => Err((
            field,
            format!("{field} is written by Custody's controller only"),
            "write status.approvals or status.rejection (kubectl custody approve, reject)".into(),
        )),
        None => Ok(()),
    }
}

/// The one approval `new` appends to `old`, if any; anything else is refused.
fn appended<'n>(old: &[Lift], new: &'n [Lift]) -> Result<Option<&'n Lift>, Refusal> {
    if new.len() < old.len() || new[..old.len()] != *old {
        return Err((
            "status.approvals",
            "approvals are never rewritten or removed".into(),
            "append your approval to the list (kubectl custody approve)".into(),
        ));
    }
    match &new[old.len()..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        more => Err((
            "status.approvals",
            format!(
                "{} approvals in one write; each person approves in their own write",
                more.len()
            ),
            "append one approval, your own".into(),
        )),
    }
}

/// Whether the requester may write this approval or rejection.
fn judge_decision(
    request: &Request<'_>,
    old_object: &WorkloadObject<'_>,
    old: &CustodyChangeStatus,
    spec: &CustodyChangeSpec,
    field: &'static str,
    lift: &Lift,
    review: &ChangeReview<'_>,
) -> Result<(), Refusal> {
    the_deciders_own(request, old, spec, field, lift, review)?;
    may_decide(request, old_object, old, spec, field, review)
}

/// A decision is a person's, under their own name, with a reason, dated now, and not the
/// proposer's or a repeat of their own.
fn the_deciders_own(
    request: &Request<'_>,
    old: &CustodyChangeStatus,
    spec: &CustodyChangeSpec,
    field: &'static str,
    lift: &Lift,
    review: &ChangeReview<'_>,
) -> Result<(), Refusal> {
    let user = request.user_info.username.as_ref();
    let groups = &request.user_info.groups;
    let own_name = "run `kubectl custody approve` or `reject` as yourself".to_string();
    if let Some(problem) = person_problem(
        user,
        groups,
        review.policies,
        "approves or rejects a change",
    ) {
        return Err((field, problem, own_name));
    }
    if lift.by != user {
        return Err((
            field,
            format!(
                "{field}: by is {:?}, but the request comes from {user:?}",
                lift.by
            ),
            "a decision names who made it: set by to your own user name".to_string(),
        ));
    }
    if user == spec.proposer {
        return Err((
            field,
            format!("{user} proposed this change; the proposer never approves or rejects it"),
            "ask another person to review it".into(),
        ));
    }
    if lift.reason.trim().chars().count() < MIN_REASON_CHARS {
        return Err((
            field,
            format!(
                "the reason {:?} is shorter than {MIN_REASON_CHARS} characters",
                lift.reason
            ),
            "say what was reviewed, e.g. \"checked the image bump and the new memory limit\""
                .into(),
        ));
    }
    let at = lift.at.0;
    if at < review.now - CLOCK_SKEW || at > review.now + CLOCK_SKEW {
        return Err((
            field,
            format!(
                "its time {} is more than 5 minutes from now; a decision is dated when it is made",
                at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ),
            "write the current time (kubectl custody approve does)".into(),
        ));
    }
    if field == "status.approvals" && old.approvals.iter().any(|a| a.by == user) {
        return Err((
            field,
            format!(
                "{user} approved this change already; a second approval must come from someone else"
            ),
            String::new(),
        ));
    }
    Ok(())
}

/// Whether the change is in a state to decide, and the requester one who may decide it.
fn may_decide(
    request: &Request<'_>,
    old_object: &WorkloadObject<'_>,
    old: &CustodyChangeStatus,
    spec: &CustodyChangeSpec,
    field: &'static str,
    review: &ChangeReview<'_>,
) -> Result<(), Refusal> {
    let user = request.user_info.username.as_ref();
    let groups = &request.user_info.groups;
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let policies = protecting(review.policies, spec, namespace, review.namespace_labels);
    if policies.is_empty() {
        return Err((
            field,
            format!(
                "no CustodyPolicy requires approval for this change any more ({} {namespace}/{})",
                spec.workload.kind, spec.workload.name
            ),
            "nothing to decide: the change is judged by the usual rules".into(),
        ));
    }
    let team = spec.provenance.get("owner").map(String::as_str);
    let allowed = policies
        .iter()
        .any(|(_, a)| may_approve(a, team, review.teams, user, groups));
    if !allowed {
        let who: Vec<String> = policies
            .iter()
            .map(|(p, a)| format!("{} (policy {:?})", a.approvers_text(team), p.name))
            .collect();
        return Err((
            field,
            format!(
                "{user} may not decide this change; it is for {}",
                who.join(" or ")
            ),
            "ask one of them to review it".into(),
        ));
    }
    let created = old_object
        .metadata
        .creation_timestamp
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let entry = ChangeEntry {
        name: request.name.as_deref().unwrap_or_default().to_string(),
        digest: spec.digest.clone(),
        template_digest: spec.template_digest.clone(),
        provenance: spec.provenance.clone(),
        proposer: spec.proposer.clone(),
        created,
        approvals: old.approvals.clone(),
        rejection: old.rejection.clone(),
        applied: old.applied.as_ref().map(|a| a.revision.clone()),
    };
    let (_, strictest) = policies[0];
    let stamp = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    match standing(&entry, strictest, review.now) {
        Standing::Rejected(r) => Err((
            field,
            format!("the change was rejected by {} ({})", r.by, r.reason),
            "propose it again".into(),
        )),
        Standing::Applied(revision) => Err((
            field,
            format!("the change was already applied as revision {revision}; its approval is spent"),
            "propose the next change as a new request".into(),
        )),
        Standing::Expired(at) => Err((
            field,
            format!("the change expired at {}", stamp(at)),
            "ask the agent to propose it again".into(),
        )),
        Standing::Admits { .. } if field == "status.approvals" => {
            let have = approvers(&spec.proposer, &old.approvals).len();
            let need = strictest.spec.required as usize;
            // Under two policies another may need a second approver; more than two never helps.
            if have >= 2
                || have >= need
                    && policies
                        .iter()
                        .all(|(_, a)| a.spec.required as usize <= have)
            {
                return Err((
                    field,
                    format!("the change already has the {have} approval(s) it needs"),
                    String::new(),
                ));
            }
            Ok(())
        }
        Standing::Admits { .. } | Standing::Pending { .. } => Ok(()),
    }
}

/// Whether `user` may approve under `approval`: its approvers, or else the owning team's members.
pub fn may_approve(
    approval: &CompiledApproval,
    team: Option<&str>,
    teams: &TeamIndex,
    user: &str,
    groups: &[impl AsRef<str>],
) -> bool {
    let listed = &approval.spec.approvers;
    let members = if listed.is_empty() {
        match team.and_then(|t| teams.get(t)) {
            Some(team) => &team.members,
            None => return false,
        }
    } else {
        listed
    };
    members.users.iter().any(|g| glob_matches(g, user))
        || members
            .groups
            .iter()
            .any(|p| groups.iter().any(|g| glob_matches(p, g.as_ref())))
}

/// Whether a user is one of a policy's agent identities (for callers outside the engine).
pub fn is_agent_identity(policies: &PolicySet, user: &str, groups: &[impl AsRef<str>]) -> bool {
    policies
        .iter()
        .any(|p| identity_matches(&p.spec.identities.agents, user, groups))
}

fn refuse(request: &Request<'_>, field: &str, problem: String, fix: &str) -> Decision {
    let name = request.name.as_deref().unwrap_or("<unnamed>");
    let message = format!("Custody refused the write of CustodyChange {name:?}: {problem}");
    Decision::refused(ViolationCode::ChangeRefused, field, message, problem, fix)
}
