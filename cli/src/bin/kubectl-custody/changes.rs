//! `kubectl custody propose`, `approve`, `reject` and `changes`: the reads and writes of
//! CustodyChanges around the pure halves in `custody_cli::propose` and
//! `custody_cli::plugin::{changes, decide}`. Every write is the caller's own (the webhook checks
//! the proposer and each approver against the authenticated user); a refusal by the webhook is
//! shown as the apiserver returned it.

use std::io::Write as _;

use anyhow::Context as _;
use custody_cli::plugin::changes::{self, ProposeReport, Taken};
use custody_cli::plugin::decide::{self, DecidePlan, DecideReport, Verdict};
use custody_cli::plugin::format;
use custody_cli::propose::{self, Proposer, Workload};
use custody_crds::change::next_change_name;
use custody_crds::{CustodyChange, Vocabulary};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::cluster::{list_custom, whoami, workload_api};

/// What `propose` was asked.
pub(crate) struct ProposeRequest<'a> {
    /// How the manifest was named (`-` for stdin).
    pub manifest: &'a str,
    /// Its text.
    pub text: &'a str,
    /// `--namespace`.
    pub namespace: Option<&'a str>,
    /// `--reason`.
    pub reason: &'a str,
    /// The annotation keys.
    pub vocabulary: &'a Vocabulary,
}

/// Creates a CustodyChange for each workload of the manifest, as the caller.
pub(crate) async fn propose(
    client: &Client,
    request: &ProposeRequest<'_>,
) -> anyhow::Result<Vec<ProposeReport>> {
    let manifest = propose::read_workloads(
        request.manifest,
        request.text,
        request.namespace,
        client.default_namespace(),
    )?;
    propose::check_reason(request.reason)?;
    let user = whoami(client).await?;
    let mut reports = Vec::new();
    let mut notes = manifest.notes;
    for workload in &manifest.workloads {
        let running = running(client, workload, &mut notes).await;
        let proposal = propose::build(
            workload,
            Proposer {
                user: &user,
                reason: request.reason,
            },
            running.as_ref(),
            request.vocabulary,
        )?;
        notes.extend(proposal.notes);
        let mut report = create(client, proposal.change).await?;
        report.notes = std::mem::take(&mut notes);
        report.follow = propose::follow_steps(&report.change, request.manifest);
        reports.push(report);
    }
    Ok(reports)
}

/// The live workload, to take the diff against; `None` when it does not exist yet, or cannot
/// be read (then a note says the diff lists the whole template).
async fn running(client: &Client, workload: &Workload, notes: &mut Vec<String>) -> Option<Value> {
    let api = workload_api(client, &workload.namespace, workload.kind);
    let found = match api.get_opt(&workload.name).await {
        Ok(found) => found,
        Err(e) => {
            notes.push(format!(
                "cannot read the running {} in namespace {} ({}); the diff lists the whole template",
                workload.reference(),
                workload.namespace,
                api_message(&e)
            ));
            return None;
        }
    };
    found.and_then(|o| serde_json::to_value(o).ok())
}

/// The most names `create` tries: the base name and `-2` ... `-20`.
const MAX_NAMES: usize = 20;

/// Creates the request under the first free name; the same change still open under one is
/// found, not an error.
async fn create(client: &Client, mut change: CustodyChange) -> anyhow::Result<ProposeReport> {
    let namespace = change.metadata.namespace.clone().unwrap_or_default();
    let api: Api<CustodyChange> = Api::namespaced(client.clone(), &namespace);
    let report = |change: CustodyChange, created: bool| ProposeReport {
        workload: changes::workload_of(&change),
        phase: (!created).then(|| changes::phase(&change)),
        change,
        created,
        notes: Vec::new(),
        follow: Vec::new(),
    };
    let mut tried: Vec<String> = Vec::new();
    while tried.len() < MAX_NAMES {
        let name = next_change_name(&change.spec.workload.name, &change.spec.digest, |n| {
            tried.iter().any(|t| t == n)
        });
        change.metadata.name = Some(name.clone());
        match api.create(&PostParams::default(), &change).await {
            Ok(created) => return Ok(report(created, true)),
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
                let existing = api
                    .get(&name)
                    .await
                    .with_context(|| format!("cannot read CustodyChange {name}, which exists"))?;
                match changes::taken(existing, &change) {
                    Taken::Open(existing) => return Ok(report(*existing, false)),
                    Taken::Next => tried.push(name),
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
                "the custodychanges.{} CRD is not installed in this cluster (upgrade Custody, or `custody crds | kubectl apply --server-side -f -`)",
                custody_crds::GROUP
            ),
            Err(e) => {
                return Err(anyhow::anyhow!("{}", api_message(&e))).with_context(|| {
                    format!("CustodyChange {name} was not created in namespace {namespace}")
                });
            }
        }
    }
    anyhow::bail!(
        "{} earlier requests in namespace {namespace} hold the names of this change ({}...); delete the stale ones",
        tried.len(),
        tried.first().map(String::as_str).unwrap_or_default()
    )
}

/// Approves or rejects `name` as the caller. The write is conditioned on the version read; one
/// that changed meanwhile (another approval) is read and planned again, twice at most. With
/// `preview`, the change is printed before it is written.
pub(crate) async fn decide(
    client: &Client,
    name: &str,
    namespace: &str,
    reason: &str,
    verdict: Verdict,
    preview: bool,
) -> anyhow::Result<DecideReport> {
    decide::check_reason(reason)?;
    let api: Api<CustodyChange> = Api::namespaced(client.clone(), namespace);
    let user = whoami(client).await?;
    for attempt in 0..3 {
        let change = get(&api, name, namespace).await?;
        let (patch, report) = match decide::plan(&change, &user, reason, now(), verdict)? {
            DecidePlan::Already(report) => return Ok(report),
            DecidePlan::Write { patch, report } => (patch, report),
        };
        if preview && attempt == 0 {
            let text = format::change_text(&change, Timestamp::now()) + "\n";
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(report),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => {
                return Err(anyhow::anyhow!("{}", api_message(&e))).with_context(|| {
                    format!(
                        "cannot {} CustodyChange {name} in namespace {namespace}",
                        verdict.command()
                    )
                });
            }
        }
    }
    anyhow::bail!(
        "CustodyChange {name} changed three times while it was being written; read it again with `kubectl custody changes {name} -n {namespace}`"
    )
}

/// `changes`: one change in full, or the table.
pub(crate) async fn show(
    client: &Client,
    name: Option<&str>,
    namespace: Option<&str>,
    json: bool,
) -> anyhow::Result<String> {
    let now = Timestamp::now();
    if let Some(name) = name {
        let namespace = namespace.unwrap_or(client.default_namespace());
        let api: Api<CustodyChange> = Api::namespaced(client.clone(), namespace);
        let change = get(&api, name, namespace).await?;
        return Ok(if json {
            format::json(&change)
        } else {
            format::change_text(&change, now)
        });
    }
    let api: Api<CustodyChange> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let rows = changes::rows(&list_custom(api).await?, now);
    Ok(if json {
        format::json(&rows)
    } else {
        format::changes_text(&rows, namespace.is_none())
    })
}

/// The namespace's CustodyChanges, for `why`; none when the CRD is not installed (an older
/// release) or cannot be listed.
pub(crate) async fn for_why(client: &Client, namespace: &str) -> Vec<CustodyChange> {
    list_custom::<CustodyChange>(Api::namespaced(client.clone(), namespace))
        .await
        .unwrap_or_default()
}

async fn get(
    api: &Api<CustodyChange>,
    name: &str,
    namespace: &str,
) -> anyhow::Result<CustodyChange> {
    api.get_opt(name)
        .await
        .map_err(|e| anyhow::anyhow!("{}", api_message(&e)))
        .with_context(|| format!("cannot read CustodyChange {name} in namespace {namespace}"))?
        .with_context(|| {
            format!(
                "CustodyChange {name} not found in namespace {namespace} (`kubectl custody changes -n {namespace}` lists them)"
            )
        })
}

/// The apiserver's message as it is (a webhook's refusal included), or the client's error.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}
