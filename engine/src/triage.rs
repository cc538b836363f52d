//! Sorting a request out before any rule runs: operations, subresources and kinds Custody does
//! not judge, and controllers writing what they own, are answered here; for the rest, what the
//! policies select on (kind, namespace and its labels, the object's labels, the requester) is
//! read once, and both [`evaluate`](crate::evaluate) and
//! [`PolicySet::failure_policy_for`] find the selecting policies through [`Judged::selecting`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{FailurePolicy, WorkloadKind};

use crate::context::Context;
use crate::controllers::ControllerWrite;
use crate::decision::{Decision, Outcome};
use crate::object::WorkloadObject;
use crate::policies::{CompiledPolicy, PolicySet};
use crate::request::{Operation, Request};

/// Labels of an object that has none: the selectors see an empty map, and nothing is cloned.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Whether a request is judged: the answer already, or what the policies select it by.
pub(crate) enum Prepared<'r, 'a> {
    Done(Decision),
    Judge(Judged<'r, 'a>),
}

/// A request that is judged, sorted out: what the policies select on.
pub(crate) struct Judged<'r, 'a> {
    pub kind: WorkloadKind,
    pub object: &'r WorkloadObject<'a>,
    pub namespace: Cow<'a, str>,
    write: ControllerWrite,
    /// The namespace's labels, or the one label the apiserver always sets when they are unknown.
    namespace_labels: Cow<'r, BTreeMap<String, String>>,
}

impl Judged<'_, '_> {
    /// The policies that select this workload for this requester, in the set's order.
    pub(crate) fn selecting<'p>(
        &self,
        policies: &'p PolicySet,
        request: &Request<'_>,
    ) -> Vec<&'p CompiledPolicy> {
        let target = Target {
            kind: self.kind,
            namespace: &self.namespace,
            namespace_labels: &self.namespace_labels,
            labels: self.object.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
        };
        let user = &request.user_info;
        policies.selecting(&target, &user.username, &user.groups, self.write)
    }
}

/// Sorts out requests that are not judged, and reads what the others are selected by.
pub(crate) fn prepare<'r, 'a>(request: &'r Request<'a>, ctx: &Context<'r>) -> Prepared<'r, 'a> {
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
    let write = ControllerWrite::of(request);
    if write == ControllerWrite::BuiltinController {
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
    let namespace_labels = match ctx.namespace_labels {
        Some(labels) => Cow::Borrowed(labels),
        None => Cow::Owned(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_string(),
            namespace.to_string(),
        )])),
    };
    Prepared::Judge(Judged {
        kind,
        object,
        namespace,
        write,
        namespace_labels,
    })
}

impl PolicySet {
    /// The strictest failure policy among the policies that would judge `request`: what to
    /// answer when the webhook cannot decide. `Ignore` when no policy selects it.
    pub fn failure_policy_for(&self, request: &Request<'_>, ctx: &Context<'_>) -> FailurePolicy {
        let strictest = |it: &mut dyn Iterator<Item = &CompiledPolicy>| {
            it.map(|p| p.spec.failure_policy)
                .max()
                .unwrap_or(FailurePolicy::Ignore)
        };
        match prepare(request, ctx) {
            Prepared::Done(d) if d.outcome == Outcome::Invalid => strictest(&mut self.iter()),
            Prepared::Done(_) => FailurePolicy::Ignore,
            Prepared::Judge(judged) => strictest(&mut judged.selecting(self, request).into_iter()),
        }
    }
}
