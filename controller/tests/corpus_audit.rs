//! The background audit on manifests nobody here wrote: every Deployment, StatefulSet and
//! DaemonSet of the public corpus (`e2e/corpus/`), as a v1.28 apiserver stored it
//! (`stored-v1.28.7.json`), read as the controller reads it and audited under the built-in
//! policy. Without provenance each one fails, naming what is missing; with it, each is
//! compliant. Nothing errors, nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};

use custody_controller::audit::judge::{COMPLIANT_RULE, audit};
use custody_controller::cache::observe::{daemon_set_state, deployment_state, stateful_set_state};
use custody_controller::cache::slim::{SlimDaemonSet, SlimDeployment, SlimStatefulSet};
use custody_crds::report::ResultStatus;
use custody_crds::{Vocabulary, WorkloadKind};
use custody_engine::{PolicySet, TeamIndex};
use jiff::Timestamp;
use serde_json::{Value, json};

fn stored() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../e2e/corpus/stored-v1.28.7.json"
    );
    let captured: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    captured["workloads"]
        .as_object()
        .unwrap()
        .values()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "DaemonSet")
            )
        })
        .cloned()
        .collect()
}

fn state(
    object: Value,
    vocabulary: &Vocabulary,
) -> custody_controller::cache::observe::WorkloadState {
    match object["kind"].as_str().unwrap() {
        "Deployment" => deployment_state(
            &serde_json::from_value::<SlimDeployment>(object).unwrap(),
            vocabulary,
        ),
        "StatefulSet" => stateful_set_state(
            &serde_json::from_value::<SlimStatefulSet>(object).unwrap(),
            vocabulary,
        ),
        _ => daemon_set_state(
            &serde_json::from_value::<SlimDaemonSet>(object).unwrap(),
            vocabulary,
        ),
    }
}

fn with_provenance(mut object: Value) -> Value {
    object["metadata"]["annotations"] = json!({
        "custody.dev/actor": "automation",
        "custody.dev/source-repo": "https://github.com/acme/platform",
        "custody.dev/source-commit": "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f",
        "custody.dev/pipeline-run": "https://ci.example.com/runs/1",
        "custody.dev/owner": "team-platform",
        "custody.dev/oncall": "@platform-oncall"
    });
    object
}

#[test]
fn every_corpus_workload_is_audited_with_reasons() {
    let vocabulary = Vocabulary::default();
    let policies = PolicySet::builtin_default();
    let objects = stored();
    assert!(objects.len() >= 45, "{} workloads", objects.len());
    for (label, annotate) in [("without provenance", false), ("with provenance", true)] {
        let workloads: Vec<_> = objects
            .iter()
            .cloned()
            .map(|o| if annotate { with_provenance(o) } else { o })
            .map(|o| state(o, &vocabulary))
            .collect();
        let kinds: Vec<WorkloadKind> = workloads.iter().map(|w| w.kind).collect();
        assert!(
            kinds.contains(&WorkloadKind::StatefulSet) && kinds.contains(&WorkloadKind::DaemonSet)
        );
        let findings = audit(
            &policies,
            &vocabulary,
            &HashMap::<String, BTreeMap<String, String>>::new(),
            &workloads,
            &TeamIndex::default(),
            Timestamp::now(),
        );
        for w in &workloads {
            let mine: Vec<_> = findings
                .iter()
                .filter(|f| f.workload.name == w.name && f.workload.kind == w.kind)
                .collect();
            assert!(
                !mine.is_empty(),
                "{label}: no finding for {} {}",
                w.kind,
                w.name
            );
            assert!(
                mine.iter()
                    .all(|f| !matches!(f.result, ResultStatus::Error | ResultStatus::Skip)),
                "{label}: {mine:?}"
            );
            if annotate {
                assert!(
                    mine.iter()
                        .all(|f| f.rule == COMPLIANT_RULE && f.result == ResultStatus::Pass),
                    "{label}: {} {}: {mine:?}",
                    w.kind,
                    w.name
                );
            } else {
                assert!(
                    mine.iter().any(|f| f.result == ResultStatus::Fail
                        && f.message.contains("custody.dev/actor")),
                    "{label}: {} {}: {mine:?}",
                    w.kind,
                    w.name
                );
            }
        }
    }
}
