//! Writing the controller's marks on a revision (healthy since, reverted, alerted, break-glass
//! noticed): the marks are how the decision remembers, across restarts and leader changes.

use std::collections::BTreeMap;

use custody_crds::WorkloadKind;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::cache::observe::{Revision, WorkloadState};
use crate::cache::slim::{SlimControllerRevision, SlimReplicaSet};
use crate::keys::{OWNERSHIP, PROVENANCE, mark as mark_key};
use crate::signed::fetch::Envelopes;
use crate::signed::vouch::Attestation;

use super::context::{Context, Error};

/// Writes one of the controller's marks on a revision. A ControllerRevision also gets the
/// provenance of the workload that ran it: unlike a ReplicaSet it does not copy the workload's
/// annotations, and a later revert to it restores them from there. Its attestation comes from
/// `envelopes`, which reads it only if this decision has not yet.
pub async fn mark(
    ctx: &Context,
    envelopes: &mut Envelopes<'_>,
    workload: &WorkloadState,
    revision: &Revision,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let mut annotations = BTreeMap::from([(mark_key(&ctx.vocabulary, key), value.to_string())]);
    if workload.kind != WorkloadKind::Deployment {
        let signed = PROVENANCE
            .iter()
            .chain(OWNERSHIP.iter())
            .map(|k| ctx.vocabulary.key(*k));
        for name in signed {
            if let Some(v) = revision.annotations.get(name) {
                annotations.insert(name.to_string(), v.clone());
            }
        }
        // The cache has only the attestation's digest: the envelope is read to be copied. A
        // revision marked without it could not be restored verifiable, so the mark waits.
        match envelopes.attestation_of(workload, revision).await {
            Attestation::Read(envelope) => {
                annotations.insert(ctx.vocabulary.attestation().to_string(), envelope);
            }
            Attestation::Absent => {}
            Attestation::Unreadable(_) => return Err(Error::AttestationUnreadable),
        }
    }
    let patch = serde_json::json!({"metadata": {"annotations": annotations}});
    let params = PatchParams::default();
    let result = if workload.kind == WorkloadKind::Deployment {
        Api::<SlimReplicaSet>::namespaced(ctx.client.clone(), &workload.namespace)
            .patch(&revision.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    } else {
        Api::<SlimControllerRevision>::namespaced(ctx.client.clone(), &workload.namespace)
            .patch(&revision.name, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    };
    result.map_err(Error::Api)
}
