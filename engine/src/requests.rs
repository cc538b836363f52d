//! Where a change request stands: the policies whose approval protects it, and its standing
//! under the strictest of them. The webhook judges an agent's revision under every selecting
//! policy whose approval covers it, and each must admit; so a request is only as far along as
//! the policy it is least far along under. The webhook (a proposal), the controller (the phase
//! it writes) and `kubectl custody` (what it shows) all ask here.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{CustodyChange, CustodyChangeSpec};
use k8s_openapi::jiff::Timestamp;

use crate::approval::{ChangeEntry, CompiledApproval, Scope, Standing, standing};
use crate::policies::{CompiledPolicy, PolicySet};

/// The policies whose approval covers a change request in `namespace` (whose labels are
/// `namespace_labels`, when known), with their approval: the policy selects the workload
/// (namespace, kind, the proposed labels) and its approval covers the agent, kind, declared
/// owner and labels. The webhook admits a proposal only when some policy protects it; the
/// controller judges where it stands under the same policies.
pub fn protecting<'p>(
    policies: &'p PolicySet,
    spec: &CustodyChangeSpec,
    namespace: &str,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Vec<(&'p CompiledPolicy, &'p CompiledApproval)> {
    let fallback = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())]);
    let target = Target {
        kind: spec.workload.kind,
        namespace,
        namespace_labels: namespace_labels.unwrap_or(&fallback),
        labels: &spec.labels,
    };
    let scope = Scope {
        agent: &spec.agent,
        kind: spec.workload.kind,
        team: spec
            .provenance
            .get("owner")
            .map(|t| t.trim())
            .filter(|t| !t.is_empty()),
        labels: &spec.labels,
    };
    policies
        .iter()
        .filter(|p| p.spec.selects(&target))
        .filter_map(|p| Some((p, p.approval.as_ref()?)))
        .filter(|(_, a)| a.covers(&scope))
        .collect()
}

/// A change request judged under the approval of the policy it is least far along under.
#[derive(Clone, Debug)]
pub struct JudgedChange<'p> {
    /// The policy.
    pub policy: &'p CompiledPolicy,
    /// Its approval.
    pub approval: &'p CompiledApproval,
    /// Where the request stands under it.
    pub standing: Standing,
}

/// The request judged under the strictest protecting policy at `now`; `None` when no policy's
/// approval protects it (any more).
pub fn judge_change<'p>(
    policies: &'p PolicySet,
    change: &CustodyChange,
    namespace_labels: Option<&BTreeMap<String, String>>,
    now: Timestamp,
) -> Option<JudgedChange<'p>> {
    let entry = ChangeEntry::of(change);
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    protecting(policies, &change.spec, namespace, namespace_labels)
        .into_iter()
        .map(|(policy, approval)| JudgedChange {
            policy,
            approval,
            standing: standing(&entry, approval, now),
        })
        // Policies come sorted by name: among equals, the first by name stays.
        .min_by(|a, b| strictness(&a.standing, &b.standing))
}

/// How far along a standing is: less is stricter. Rejected and applied do not depend on the
/// policy; then expired (earliest first), pending (most approvals missing, then the earliest
/// deadline), and admitted (the earliest end).
fn strictness(a: &Standing, b: &Standing) -> Ordering {
    fn rank(s: &Standing) -> u8 {
        match s {
            Standing::Rejected(_) => 0,
            Standing::Applied(_) => 1,
            Standing::Expired(_) => 2,
            Standing::Pending { .. } => 3,
            Standing::Admits { .. } => 4,
        }
    }
    let by_rank = rank(a).cmp(&rank(b));
    if by_rank != Ordering::Equal {
        return by_rank;
    }
    match (a, b) {
        (Standing::Expired(x), Standing::Expired(y)) => x.cmp(y),
        (
            Standing::Pending {
                have: ha,
                need: na,
                until: ua,
            },
            Standing::Pending {
                have: hb,
                need: nb,
                until: ub,
            },
        ) => (nb.saturating_sub(*hb))
            .cmp(&na.saturating_sub(*ha))
            .then_with(|| earliest(*ua, *ub)),
        (Standing::Admits { until: x, .. }, Standing::Admits { until: y, .. }) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// A deadline before none at all.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
