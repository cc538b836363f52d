//! A person's review of an agent's change (`spec.agents.approval`): an agent's new revision of
//! a workload in scope is admitted only when a CustodyChange with its exact digest was approved
//! by enough people, is not expired, was not rejected and has not admitted a revision before.
//!
//! The index of change requests is built from the webhook's watch, like the quarantine; a
//! request is only digested when a policy's approval covers it, so everything outside that
//! scope costs one test per selecting policy.

use std::collections::{BTreeMap, HashMap};

use custody_crds::attestation::{Claim, template_path};
use custody_crds::change::{claim_digest, next_change_name};
use custody_crds::selection::{check_label_selector, glob_matches, label_selector_matches};
use custody_crds::{Actor, AnnotationKey, Approval, CustodyChange, Lift, WorkloadKind};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::decision::{Violation, ViolationCode};
use crate::identity::identity_matches;
use crate::policy_ref::PolicyRef;
use crate::probation::parse_window;
use crate::subject::Subject;

/// `spec.agents.approval`, checked and parsed.
#[derive(Clone, Debug)]
pub struct CompiledApproval {
    /// As written.
    pub spec: Approval,
    /// How long a request takes approvals, and an approval admits.
    pub valid_for: SignedDuration,
}

impl CompiledApproval {
    /// Checks and compiles `spec.agents.approval`; problems name their field.
    pub fn compile(spec: &Approval, problems: &mut Vec<String>) -> Option<Self> {
        let before = problems.len();
        if !(1..=2).contains(&spec.required) {
            problems.push(format!(
                "spec.agents.approval.required is {}; it must be 1 or 2",
                spec.required
            ));
        }
        for (field, globs) in [
            ("agents", &spec.agents),
            ("teams", &spec.teams),
            ("approvers.users", &spec.approvers.users),
            ("approvers.groups", &spec.approvers.groups),
        ] {
            if globs.iter().any(|g| g.trim().is_empty()) {
                problems.push(format!(
                    "spec.agents.approval.{field}: an empty pattern matches nothing; remove it"
                ));
            }
        }
        if spec.agents.is_empty() {
            problems.push(
                "spec.agents.approval.agents is empty: no agent would need approval; omit approval or list agents (\"*\" for all)"
                    .to_string(),
            );
        }
        for pattern in spec.approvers.users.iter().chain(&spec.approvers.groups) {
            if pattern.starts_with("system:") {
                problems.push(format!(
                    "spec.agents.approval.approvers: {pattern:?} names system identities, which never approve; name people or their groups"
                ));
            }
        }
        if let Some(selector) = &spec.object_selector {
            check_label_selector("spec.agents.approval.objectSelector", selector, problems);
            for expr in selector.match_expressions.iter().flatten() {
                if matches!(expr.operator.as_str(), "NotIn" | "DoesNotExist") {
                    problems.push(format!(
                        "spec.agents.approval.objectSelector: operator {} on {:?} would let an agent escape review by setting a label on its own workload; select by In, Exists or matchLabels",
                        expr.operator, expr.key
                    ));
                }
            }
        }
        let valid_for = parse_window("spec.agents.approval.validFor", &spec.valid_for, problems);
        match valid_for {
            Some(valid_for) if problems.len() == before => Some(Self {
                spec: spec.clone(),
                valid_for,
            }),
            _ => None,
        }
    }

    /// Whether an agent's change to this workload needs approval.
    pub fn covers(&self, scope: &Scope<'_>) -> bool {
        let spec = &self.spec;
        spec.agents.iter().any(|g| glob_matches(g, scope.agent))
            && (spec.kinds.is_empty() || spec.kinds.contains(&scope.kind))
            && (spec.teams.is_empty()
                || scope
                    .team
                    .is_some_and(|t| spec.teams.iter().any(|g| glob_matches(g, t))))
            && spec
                .object_selector
                .as_ref()
                .is_none_or(|s| label_selector_matches(s, scope.labels))
    }

    /// Who may approve, in words, for messages.
    pub fn approvers_text(&self, team: Option<&str>) -> String {
        let a = &self.spec.approvers;
        let mut who: Vec<String> = a.users.iter().map(|u| format!("user {u}")).collect();
        who.extend(a.groups.iter().map(|g| format!("group {g}")));
        if who.is_empty() {
            return match team {
                Some(team) => format!("a member of CustodyTeam {team:?}"),
                None => "a member of the owning CustodyTeam".to_string(),
            };
        }
        who.join(", ")
    }
}

/// What decides whether an approval covers a change: the agent, the workload and its labels.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The agent id (`agent` annotation); empty when an agent declared none.
    pub agent: &'a str,
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// Its `owner` annotation.
    pub team: Option<&'a str>,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// The agent a revision is attributed to under `policy`, if it is an agent's (declared
/// `actor: agent`, or sent by one of the policy's agent identities): its `agent` annotation,
/// or empty when it declares none (which only `"*"` covers).
pub(crate) fn agent_in_scope<'s>(
    policy: PolicyRef<'_>,
    subject: &'s Subject<'_, '_>,
) -> Option<&'s str> {
    let ids = &policy.spec.identities;
    let agent_identity = identity_matches(&ids.agents, subject.username, subject.groups)
        && !identity_matches(&ids.delivery, subject.username, subject.groups);
    if subject.actor() != Some(Actor::Agent) && !agent_identity {
        return None;
    }
    Some(
        subject
            .annotations
            .get(AnnotationKey::Agent)
            .map_or("", str::trim),
    )
}

/// One change request, as admission reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEntry {
    /// Its name.
    pub name: String,
    /// The change's digest.
    pub digest: String,
    /// The proposed template's subject digest.
    pub template_digest: String,
    /// The signed provenance annotations it declares.
    pub provenance: BTreeMap<String, String>,
    /// Who proposed it.
    pub proposer: String,
    /// When it was proposed.
    pub created: Option<Timestamp>,
    /// The approvals, in order.
    pub approvals: Vec<Lift>,
    /// The rejection, if any.
    pub rejection: Option<Lift>,
    /// The revision it admitted, once the controller saw it.
    pub applied: Option<String>,
}

/// Change requests by workload (namespace, kind, name).
#[derive(Clone, Debug, Default)]
pub struct ChangeIndex {
    by_workload: HashMap<(String, WorkloadKind, String), Vec<ChangeEntry>>,
}

impl ChangeEntry {
    /// A CustodyChange as admission reads it.
    pub fn of(change: &CustodyChange) -> Self {
        let spec = &change.spec;
        let status = change.status.clone().unwrap_or_default();
        Self {
            name: change.metadata.name.clone().unwrap_or_default(),
            digest: spec.digest.clone(),
            template_digest: spec.template_digest.clone(),
            provenance: spec.provenance.clone(),
            proposer: spec.proposer.clone(),
            created: change.metadata.creation_timestamp.as_ref().map(|t| t.0),
            approvals: status.approvals,
            rejection: status.rejection,
            applied: status.applied.map(|a| a.revision),
        }
    }
}

impl ChangeIndex {
    /// Builds the index from the cluster's CustodyChanges.
    pub fn from_changes<'c>(changes: impl IntoIterator<Item = &'c CustodyChange>) -> Self {
        let mut by_workload: HashMap<_, Vec<ChangeEntry>> = HashMap::new();
        for change in changes {
            let spec = &change.spec;
            let key = (
                change.metadata.namespace.clone().unwrap_or_default(),
                spec.workload.kind,
                spec.workload.name.clone(),
            );
            by_workload
                .entry(key)
                .or_default()
                .push(ChangeEntry::of(change));
        }
        Self { by_workload }
    }

    /// How many workloads have change requests.
    pub fn len(&self) -> usize {
        self.by_workload.len()
    }

    /// Whether there is no change request.
    pub fn is_empty(&self) -> bool {
        self.by_workload.is_empty()
    }

    /// The change requests of one workload.
    pub fn entries(&self, namespace: &str, kind: WorkloadKind, name: &str) -> &[ChangeEntry] {
        if self.by_workload.is_empty() {
            return &[];
        }
        self.by_workload
            .get(&(namespace.to_string(), kind, name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Where one change request stands under one policy's approval, at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It admits its change: approved by these people, until then.
    Admits {
        /// The approvers that make the quorum.
        approvers: Vec<String>,
        /// When the approval stops admitting.
        until: Timestamp,
    },
    /// It has `have` of the `need` approvals; it takes approvals until `until`.
    Pending {
        /// Approvals so far.
        have: usize,
        /// Approvals needed.
        need: usize,
        /// When the request stops taking approvals.
        until: Option<Timestamp>,
    },
    /// A person rejected it.
    Rejected(Lift),
    /// It admitted a revision already.
    Applied(String),
    /// It was not approved, or not applied, in time.
    Expired(Timestamp),
}

/// The distinct approvers of a change, in order, leaving out the proposer.
pub fn approvers(entry_proposer: &str, approvals: &[Lift]) -> Vec<Lift> {
    let mut seen: Vec<Lift> = Vec::new();
    for a in approvals {
        if a.by != entry_proposer && !seen.iter().any(|s| s.by == a.by) {
            seen.push(a.clone());
        }
    }
    seen
}

/// Where `entry` stands under `approval` at `now`.
pub fn standing(entry: &ChangeEntry, approval: &CompiledApproval, now: Timestamp) -> Standing {
    if let Some(rejection) = &entry.rejection {
        return Standing::Rejected(rejection.clone());
    }
    if let Some(revision) = &entry.applied {
        return Standing::Applied(revision.clone());
    }
    let need = approval.spec.required.clamp(1, 2) as usize;
    let approved = approvers(&entry.proposer, &entry.approvals);
    let window = entry.created.map(|c| c + approval.valid_for);
    if approved.len() >= need {
        let until = approved[need - 1].at.0 + approval.valid_for;
        // An approval given after the request stopped taking them does not count.
        let in_time = window.is_none_or(|w| approved[need - 1].at.0 <= w);
        if until > now && in_time {
            return Standing::Admits {
                approvers: approved[..need].iter().map(|a| a.by.clone()).collect(),
                until,
            };
        }
        return Standing::Expired(if in_time {
            until
        } else {
            window.unwrap_or(until)
        });
    }
    match window {
        Some(w) if w <= now => Standing::Expired(w),
        _ => Standing::Pending {
            have: approved.len(),
            need,
            until: window,
        },
    }
}

/// What the approval rule concluded about one request under one policy.
pub(crate) enum Verdict {
    /// A change request admits it.
    Admitted {
        change: String,
        approvers: Vec<String>,
    },
    /// It needs approval it does not have.
    Denied(Violation),
}

/// Judges an agent's new revision under a policy whose approval covers it.
pub(crate) fn judge(
    policy: PolicyRef<'_>,
    approval: &CompiledApproval,
    scope: &Scope<'_>,
    claim: &Result<Claim, String>,
    entries: &[ChangeEntry],
    now: Timestamp,
) -> Verdict {
    let claim = match claim {
        Ok(claim) => claim,
        Err(error) => {
            return Verdict::Denied(denial(
                policy,
                approval,
                scope,
                "",
                &format!("its change digest cannot be computed ({error})"),
                "fix the pod template",
            ));
        }
    };
    let digest = claim_digest(claim);
    let mut why = Vec::new();
    let mut open = None;
    for entry in entries.iter().filter(|e| e.digest == digest) {
        match standing(entry, approval, now) {
            Standing::Admits { approvers, .. } => {
                return Verdict::Admitted {
                    change: entry.name.clone(),
                    approvers,
                };
            }
            other => {
                if matches!(other, Standing::Pending { .. }) {
                    open = Some(entry.name.as_str());
                }
                why.push(explain(entry, &other, approval, scope.team));
            }
        }
    }
    for entry in entries.iter().filter(|e| e.digest != digest) {
        if matches!(
            standing(entry, approval, now),
            Standing::Admits { .. } | Standing::Pending { .. }
        ) {
            why.push(format!(
                "CustodyChange {:?} is for another change: {}",
                entry.name,
                how_it_differs(entry, claim)
            ));
        }
    }
    let found = if why.is_empty() {
        format!(
            "no CustodyChange in namespace {:?} carries this change's digest {digest}",
            claim.namespace
        )
    } else {
        why.join("; ")
    };
    let ns = &claim.namespace;
    let wait = |name: &str| {
        format!(
            "wait until a person approves it (kubectl wait -n {ns} custodychange/{name} --for=jsonpath='{{.status.phase}}'=Approved), then apply the same manifest unchanged"
        )
    };
    let fix = match open {
        // A request for this very change is open: proposing again would only add another.
        Some(name) => wait(name),
        None => {
            let name = next_change_name(&claim.name, &digest, |n| {
                entries.iter().any(|e| e.name == n)
            });
            format!(
                "propose it: kubectl custody propose -f <manifest> --reason \"<why>\" (creates CustodyChange {name}); {}",
                wait(&name)
            )
        }
    };
    Verdict::Denied(denial(policy, approval, scope, &digest, &found, &fix))
}

fn denial(
    policy: PolicyRef<'_>,
    approval: &CompiledApproval,
    scope: &Scope<'_>,
    digest: &str,
    found: &str,
    fix: &str,
) -> Violation {
    let need = approval.spec.required;
    let agent = if scope.agent.is_empty() {
        "an agent".to_string()
    } else {
        format!("agent {:?}", scope.agent)
    };
    Violation {
        code: ViolationCode::ApprovalRequired,
        key: None,
        field: template_path(scope.kind).to_string(),
        value: (!digest.is_empty()).then(|| digest.to_string()),
        policy: policy.name.to_string(),
        mode: policy.spec.mode,
        message: format!(
            "{agent}'s change needs a person's approval under policy {:?} ({need} approval{} by {}, valid for {}): {found}. Fix: {fix}",
            policy.name,
            if need == 1 { "" } else { "s" },
            approval.approvers_text(scope.team),
            approval.spec.valid_for,
        ),
        fix: "kubectl custody propose -f <manifest> --reason \"<why>\"".to_string(),
    }
}

/// Why a request with this digest does not admit the change, in words.
fn explain(
    entry: &ChangeEntry,
    standing: &Standing,
    approval: &CompiledApproval,
    team: Option<&str>,
) -> String {
    let name = &entry.name;
    let stamp = |t: &Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    match standing {
        Standing::Pending { have, need, until } => format!(
            "CustodyChange {name:?} has {have} of {need} approvals; it waits for {}{}",
            approval.approvers_text(team),
            until.map_or(String::new(), |u| format!(" until {}", stamp(&u)))
        ),
        Standing::Rejected(r) => format!(
            "CustodyChange {name:?} was rejected by {} ({}); change the proposal and propose again",
            r.by, r.reason
        ),
        Standing::Applied(revision) => format!(
            "CustodyChange {name:?} was spent on revision {revision}: an approval admits one revision; propose again"
        ),
        Standing::Expired(at) => format!(
            "CustodyChange {name:?} expired at {}; propose again",
            stamp(at)
        ),
        Standing::Admits { .. } => String::new(),
    }
}

/// How a request for another digest differs from the claim, in words.
fn how_it_differs(entry: &ChangeEntry, claim: &Claim) -> String {
    let mut parts = Vec::new();
    if entry.template_digest != claim.template_digest.as_str() {
        parts.push(format!(
            "the pod template differs (approved {}, applied {})",
            entry.template_digest, claim.template_digest
        ));
    }
    let declared = claim.annotation_map();
    let keys: std::collections::BTreeSet<&String> =
        entry.provenance.keys().chain(declared.keys()).collect();
    for key in keys {
        let (was, is) = (entry.provenance.get(key), declared.get(key));
        if was != is {
            parts.push(format!(
                "{key} differs ({:?} proposed, {:?} applied)",
                was.map(String::as_str).unwrap_or(""),
                is.map(String::as_str).unwrap_or("")
            ));
        }
    }
    if parts.is_empty() {
        "its workload name differs".to_string()
    } else {
        parts.join(", ")
    }
}
