//! How to follow a proposed change: wait for a person's approval, then apply the very manifest
//! that was proposed. The same words for `custody propose` (on stderr) and `kubectl custody
//! propose`, and the same command the webhook's denial quotes.

use custody_crds::CustodyChange;

use super::Proposal;

/// How long `kubectl wait` waits: the default `validFor`, after which an unapproved request
/// stops taking approvals.
pub const WAIT_TIMEOUT: &str = "24h";

/// The `kubectl wait` that returns once the change is approved.
pub fn wait_command(change: &CustodyChange) -> String {
    format!(
        "kubectl wait -n {} custodychange/{} --for=jsonpath='{{.status.phase}}'=Approved --timeout={WAIT_TIMEOUT}",
        namespace(change),
        name(change)
    )
}

/// The steps after the request exists, one line each; `manifest` is how the manifest was
/// named on the command line.
pub fn follow_steps(change: &CustodyChange, manifest: &str) -> Vec<String> {
    let (ns, name) = (namespace(change), name(change));
    vec![
        format!("wait until a person approves it: {}", wait_command(change)),
        format!(
            "then apply the same manifest, unchanged: kubectl apply -n {ns} -f {manifest} (any change to its pod template or its provenance annotations makes another digest, which this approval does not admit)"
        ),
        format!(
            "a reviewer reads it with `kubectl custody changes {name} -n {ns}` and decides with `kubectl custody approve {name} -n {ns} --reason \"<what was checked>\"` (or `reject`)"
        ),
        format!(
            "if it is rejected or expires, the wait times out; `kubectl custody changes {name} -n {ns}` says why"
        ),
    ]
}

fn namespace(change: &CustodyChange) -> &str {
    change.metadata.namespace.as_deref().unwrap_or("default")
}

fn name(change: &CustodyChange) -> &str {
    change.metadata.name.as_deref().unwrap_or_default()
}

/// What `custody propose` says on stderr about one change it printed: what it is, and every
/// step from creating it as `proposer` to applying the manifest.
pub fn offline_text(proposal: &Proposal, manifest: &str) -> String {
    let change = &proposal.change;
    let spec = &change.spec;
    let mut out = format!(
        "custody propose: CustodyChange {}/{} for {} (digest {}; {} in its pod template{})\n",
        namespace(change),
        name(change),
        super::reference(spec.workload.kind, &spec.workload.name),
        spec.digest,
        match spec.diff.len() {
            1 => "1 change".to_string(),
            n => format!("{n} changes"),
        },
        if spec.running_template_digest.is_some() {
            " against the running one"
        } else {
            ""
        }
    );
    for note in &proposal.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    let create = format!(
        "create it as {} (spec.proposer: the webhook refuses the request from anyone else): pipe this output to kubectl create -f - (if an earlier request for the same change, spent, rejected or expired, holds the name, kubectl says it already exists: `kubectl custody propose` takes the next free name, {}-2)",
        spec.proposer,
        name(change)
    );
    for (n, step) in std::iter::once(create)
        .chain(follow_steps(change, manifest))
        .enumerate()
    {
        out.push_str(&format!("  {}. {step}\n", n + 1));
    }
    out
}
