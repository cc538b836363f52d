//! Builders of observed rollouts for the decision's situation tables: a Deployment `web` of
//! three replicas whose revision 1 is healthy and marked, and whose revision 2 rolls out.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod receiver;
pub mod running;
pub mod signing;

use std::collections::BTreeMap;

use custody_controller::cache::observe::{
    ContainerState, Observed, PodState, Revision, WorkloadState,
};
use custody_controller::decide::{Action, decide};
use custody_crds::{RollbackSettings, SignalReason, Vocabulary, WorkloadKind};
use jiff::Timestamp;
use serde_json::{Value, json};

pub fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

pub const NOW: i64 = 1000;

pub fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}})
}

pub fn rs_template(image: &str, hash: &str) -> Value {
    let mut t = template(image);
    t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
    t
}

pub fn annotations(actor: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut a: BTreeMap<String, String> = [
        ("custody.dev/actor", actor),
        ("custody.dev/agent", "claude-code/1.0"),
        ("custody.dev/source-commit", "abcdef1"),
        ("deployment.kubernetes.io/revision", "x"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        a.insert(k.to_string(), v.to_string());
    }
    a
}

pub fn revision(n: i64, image: &str, actor: &str, extra: &[(&str, &str)]) -> Revision {
    Revision::new(
        format!("web-{n}"),
        n,
        &rs_template(image, &format!("h{n}")),
        annotations(actor, extra),
        Some(t(0)),
    )
}

pub fn fingerprint(image: &str) -> String {
    custody_crds::template_fingerprint(&template(image)).to_string()
}

pub fn healthy_mark() -> (&'static str, &'static str) {
    ("custody.dev/healthy-since", "2027-01-15T08:00:00Z")
}

pub fn pod(rs: &str, i: u32, ready: bool, since: i64) -> PodState {
    PodState {
        name: format!("{rs}-pod{i}"),
        revision: rs.to_string(),
        started: Some(t(since)),
        ready,
        ready_changed: Some(t(since)),
        terminating: false,
        disrupted: false,
        readiness_withdrawn: false,
        node: None,
        containers: vec![ContainerState {
            name: "web".into(),
            restarts: 0,
            waiting: None,
        }],
    }
}

/// A Deployment of 3 replicas at `image`, the rollout state given.
pub fn deployment(image: &str, updated: i32, available: i32, total: i32) -> WorkloadState {
    WorkloadState {
        kind: WorkloadKind::Deployment,
        name: "web".into(),
        namespace: "shop".into(),
        uid: "uid-web".into(),
        resource_version: "42".into(),
        generation: 2,
        observed_generation: 2,
        paused: false,
        replicas: 3,
        updated_replicas: updated,
        available_replicas: available,
        total_replicas: total,
        max_unavailable: 0,
        progress_deadline_exceeded_since: None,
        unavailable_since: None,
        partition: 0,
        template_fingerprint: fingerprint(image),
        annotations: BTreeMap::new(),
        any_annotations: true,
        labels: BTreeMap::new(),
        managed_by: String::new(),
    }
}

pub fn run(observed: &Observed) -> Action {
    decide(
        observed,
        &RollbackSettings::default(),
        &Vocabulary::default(),
        false,
        t(NOW),
    )
}

/// v1 healthy and marked, v2 by `actor` rolling out with `pods`.
pub fn rollout(actor: &str, v2_extra: &[(&str, &str)], pods: Vec<PodState>) -> Observed {
    Observed {
        workload: deployment("web:2", 1, 3, 4),
        revisions: vec![
            revision(2, "web:2", actor, v2_extra),
            revision(1, "web:1", "human", &[healthy_mark()]),
        ],
        pods: [
            vec![
                pod("web-1", 1, true, 0),
                pod("web-1", 2, true, 0),
                pod("web-1", 3, true, 0),
            ],
            pods,
        ]
        .concat(),
        nodes: Vec::new(),
    }
}

pub fn reverts_to(action: &Action) -> Option<(i64, SignalReason)> {
    match action {
        Action::Revert(v) => Some((v.to.as_ref().unwrap().number, v.reason)),
        _ => None,
    }
}
