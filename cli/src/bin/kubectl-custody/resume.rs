//! `kubectl custody resume`: the release [`resume::plan`] decides, written conditioned on the
//! version read (a conflict reads and decides again, once), then the Deployment's `CustodyHeld`
//! condition and an Event, each best effort.

use anyhow::Context as _;
use custody_cli::plugin::ObjectRef;
use custody_cli::plugin::resume::{self, ResumeReport};
use custody_crds::{Vocabulary, WorkloadKind};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::Value;

use crate::cluster::{publish, read_workload, workload_api};

/// Releases `target`'s hold in `namespace`, then sets the condition and records the Event;
/// a refusal or a failed release is an error.
pub(crate) async fn release(
    client: &Client,
    target: &ObjectRef,
    namespace: &str,
    vocabulary: &Vocabulary,
) -> anyhow::Result<ResumeReport> {
    let api = workload_api(client, namespace, target.kind);
    // The release is conditioned on the version read; one that changed meanwhile (the
    // controller's own release, a person's edit) is read and judged again, once.
    let mut retried = false;
    let (object, mut report) = loop {
        let object = read_workload(&api, target, namespace).await?;
        let plan = resume::plan(target, namespace, &object, vocabulary)?;
        match api
            .patch(
                &target.name,
                &PatchParams::default(),
                &Patch::Merge(&plan.patch),
            )
            .await
        {
            Ok(_) => break (object, plan.report),
            Err(kube::Error::Api(s)) if s.code == 409 && !retried => retried = true,
            Err(kube::Error::Api(s)) if s.code == 409 => anyhow::bail!(
                "{target} changed twice while it was being resumed; look at it again with `kubectl custody why {target} -n {namespace}`"
            ),
            Err(kube::Error::Api(s)) => {
                anyhow::bail!(
                    "cannot resume {target} in namespace {namespace}: {}",
                    s.message
                )
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot resume {target} in namespace {namespace}"));
            }
        }
    };
    if target.kind == WorkloadKind::Deployment {
        report.condition = Some(released_condition(&api, &report).await);
    }
    let regarding = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(target.kind.as_str().into()),
        name: Some(target.name.clone()),
        namespace: Some(namespace.to_string()),
        uid: object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "RolloutResumed".into(),
        note: Some(resume::event_note(&report).chars().take(1000).collect()),
        action: "Resume".into(),
        secondary: None,
    };
    report.event = Some(publish(client, None, &event, &regarding).await);
    Ok(report)
}

/// Sets a resumed Deployment's `CustodyHeld` condition to False, as the controller's own
/// release does; says what became of it (the annotations, already written, are what counts).
async fn released_condition(api: &Api<DynamicObject>, report: &ResumeReport) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": resume::HELD_CONDITION,
        "status": "False",
        "reason": "ResumedByPerson",
        "message": resume::event_note(report),
        "lastUpdateTime": now,
        "lastTransitionTime": now,
    }]}});
    match api
        .patch_status(
            &report.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => "updated".into(),
        Err(kube::Error::Api(status)) => status.message,
        Err(e) => e.to_string(),
    }
}
