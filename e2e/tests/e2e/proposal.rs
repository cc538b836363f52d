//! What an agent harness does through the API when its change needs a person's approval: the
//! digest the webhook will compute for the manifest, and the CustodyChange that proposes it,
//! built from the committed library functions (the same ones `custody propose` uses), so the
//! scenario also proves that a harness without the CLI computes the webhook's digest.

use std::collections::BTreeMap;

use custody_crds::attestation::Claim;
use custody_crds::change::{change_name, claim_digest, review_diff};
use custody_crds::{ChangeWorkload, CustodyChange, CustodyChangeSpec, Vocabulary, WorkloadKind};
use custody_engine::attest::claim_from_value;
use serde_json::Value;

/// A manifest's claim, its change digest and the name of the request that proposes it (the name
/// the webhook's denial quotes).
pub struct Digested {
    pub claim: Claim,
    pub digest: String,
    pub name: String,
}

fn strings(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// The claim and change digest of a workload manifest in `namespace`.
pub fn digest(namespace: &str, manifest: &Value) -> anyhow::Result<Digested> {
    let kind: WorkloadKind = serde_json::from_value(manifest["kind"].clone())
        .map_err(|e| anyhow::anyhow!("the manifest's kind: {e}"))?;
    Ok(digest_as(kind, namespace, manifest))
}

/// The same of an object of `kind` (a live object read by a typed client may omit it).
fn digest_as(kind: WorkloadKind, namespace: &str, object: &Value) -> Digested {
    let annotations = strings(&object["metadata"]["annotations"]);
    let claim = claim_from_value(
        kind,
        namespace,
        object,
        &annotations,
        &Vocabulary::default(),
    );
    let digest = claim_digest(&claim);
    let name = change_name(&claim.name, &digest);
    Digested {
        claim,
        digest,
        name,
    }
}

/// The CustodyChange proposing `manifest` under `proposer`'s own name, with the readable diff
/// against `running` (the live object, if the workload exists).
pub fn proposal(
    namespace: &str,
    manifest: &Value,
    running: Option<&Value>,
    proposer: &str,
    reason: &str,
) -> anyhow::Result<CustodyChange> {
    let proposed = digest(namespace, manifest)?;
    let running = running.map(|r| digest_as(proposed.claim.kind, namespace, r));
    let after = proposed.claim.template.clone().unwrap_or(Value::Null);
    let before = running.as_ref().and_then(|r| r.claim.template.as_ref());
    let (diff, diff_truncated) = review_diff(before, &after);
    let provenance = proposed.claim.annotation_map();
    let spec = CustodyChangeSpec {
        workload: ChangeWorkload {
            kind: proposed.claim.kind,
            name: proposed.claim.name.clone(),
        },
        digest: proposed.digest.clone(),
        template_digest: proposed.claim.template_digest.as_str().to_string(),
        agent: provenance.get("agent").cloned().unwrap_or_default(),
        provenance,
        labels: strings(&manifest["metadata"]["labels"]),
        proposer: proposer.to_string(),
        reason: reason.to_string(),
        diff,
        diff_truncated,
        running_template_digest: running.map(|r| r.claim.template_digest.as_str().to_string()),
    };
    let mut change = CustodyChange::new(&proposed.name, spec);
    change.metadata.namespace = Some(namespace.to_string());
    Ok(change)
}
