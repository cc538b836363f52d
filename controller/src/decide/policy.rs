//! Which policies govern a workload: the one whose rollback settings apply and the one whose
//! `spec.signatures` judges its attestation. Pure: the policies and the namespace's labels come
//! from the caller's stores. The selecting policies are found once per decision.

use std::collections::BTreeMap;
use std::sync::Arc;

use custody_crds::selection::{NAMESPACE_NAME_LABEL, Target};
use custody_crds::{Canary, CustodyPolicy, RollbackSettings, SignatureMode};
use kube::ResourceExt;

use crate::cache::observe::WorkloadState;

/// The policies a decision about one workload answers to.
#[derive(Clone, Debug)]
pub struct Governing {
    /// The governing policy's name, or the built-in policy's without one.
    pub name: String,
    /// Its rollback settings, or the defaults.
    pub settings: RollbackSettings,
    /// Its guarded first step for agents' rollouts, if it has one.
    pub canary: Option<Canary>,
    /// The policy whose `spec.signatures` judges the workload's attestation, if any.
    pub signing: Option<Arc<CustodyPolicy>>,
}

/// The policies that govern `workload`: the first selecting policy by name, so the choice is
/// stable (without one, the default settings and the built-in policy's name); and among the
/// selecting policies with `spec.signatures`, a `Required` one first, then by name. The
/// webhook demanded a signature if any selecting policy did, so the controller believes the
/// actor on the same terms.
pub fn governing(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Governing {
    let selecting = selecting(policies, workload, namespace_labels);
    let (name, settings, canary) = match selecting.first() {
        Some(p) => (
            p.name_any(),
            p.spec.rollback.clone(),
            p.spec.agents.canary.clone(),
        ),
        None => (
            custody_crds::policy::BUILTIN_POLICY_NAME.to_string(),
            RollbackSettings::default(),
            None,
        ),
    };
    let mut signing: Vec<&Arc<CustodyPolicy>> = selecting
        .iter()
        .filter(|p| p.spec.signatures.is_some())
        .collect();
    // Stable: among equals, the order by name stays.
    signing.sort_by_key(|p| {
        p.spec
            .signatures
            .as_ref()
            .is_some_and(|s| s.mode != SignatureMode::Required)
    });
    Governing {
        name,
        settings,
        canary,
        signing: signing.first().map(|p| Arc::clone(p)),
    }
}

/// The policies that select the workload, by name.
fn selecting(
    policies: &[Arc<CustodyPolicy>],
    workload: &WorkloadState,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> Vec<Arc<CustodyPolicy>> {
    let fallback = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), workload.namespace.clone())]);
    let target = Target {
        kind: workload.kind,
        namespace: &workload.namespace,
        namespace_labels: namespace_labels.unwrap_or(&fallback),
        labels: &workload.labels,
    };
    let mut selecting: Vec<Arc<CustodyPolicy>> = policies
        .iter()
        .filter(|p| p.spec.selects(&target))
        .cloned()
        .collect();
    selecting.sort_by_key(|p| p.name_any());
    selecting
}
