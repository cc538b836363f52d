//! Custody on manifests nobody here wrote: the release manifests of public projects in
//! `e2e/corpus/` (see its README for sources and commits), through every offline part.
//!
//! For both key types, each file is stamped and signed as a pipeline would (`custody stamp
//! --sign`), verified as written (`custody verify`), checked under a policy requiring
//! signatures (`custody check`), and verified *as stored*: each workload as a v1.28 apiserver
//! returned it (`e2e/corpus/stored-v1.28.7.json`, captured by server-side dry runs on the lab)
//! with the stamped annotations on it. Unstamped, every workload is denied with reasons, and
//! nothing is ever an unreadable-input error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cli::{Scratch, custody};

use custody_crds::WorkloadKind;
use custody_engine::files::manifests::{Loaded, load_text};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/corpus")
}

fn read_json(name: &str) -> Value {
    let path = corpus_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The corpus's workloads by file: (kind, name) of each, from `index.json`.
fn index() -> BTreeMap<String, Vec<(String, String)>> {
    let mut by_file: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for w in read_json("index.json").as_array().unwrap() {
        by_file
            .entry(w["file"].as_str().unwrap().to_string())
            .or_default()
            .push((
                w["kind"].as_str().unwrap().to_string(),
                w["name"].as_str().unwrap().to_string(),
            ));
    }
    by_file
}

const GITHUB: [(&str, &str); 7] = [
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_REPOSITORY", "acme/platform"),
    ("GITHUB_SHA", "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f"),
    ("GITHUB_RUN_ID", "4242"),
    ("GITHUB_RUN_ATTEMPT", "1"),
    ("CUSTODY_ACTOR", "automation"),
];

fn signed_policy(public_pem: &str) -> String {
    let indented: String = public_pem
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect();
    format!(
        "apiVersion: custody.dev/v1alpha1\nkind: CustodyPolicy\nmetadata: {{name: signed}}\nspec:\n  signatures:\n    mode: Required\n    keys:\n      - keyId: ci\n        publicKey: |\n{indented}"
    )
}

fn loaded(name: &str, text: &str) -> Loaded {
    let mut loaded = Loaded::default();
    load_text(name, text, &mut loaded);
    assert!(loaded.errors.is_empty(), "{name}: {:?}", loaded.errors);
    loaded
}

fn is_workload(object: &Value) -> bool {
    object["kind"]
        .as_str()
        .is_some_and(|k| WorkloadKind::ALL.iter().any(|w| w.as_str() == k))
}

/// The namespace a stamp run with `-n namespace` gives `object`.
fn namespace_of(object: &Value, default: &str) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or(default)
        .to_string()
}

/// The stored form of each workload of `stamped`, carrying the stamped annotations, as JSON
/// documents `custody verify` reads.
fn as_stored(file: &str, stamped: &str, stored: &Value, namespace: &str) -> String {
    let mut out = String::new();
    for (_, object) in loaded(file, stamped).objects {
        if !is_workload(&object) {
            continue;
        }
        let key = format!(
            "{file}#{}/{}",
            object["kind"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap()
        );
        let mut live = stored["workloads"][&key].clone();
        assert!(live.is_object(), "{key} is not in the stored capture");
        live["metadata"]["annotations"] = object["metadata"]["annotations"].clone();
        live["metadata"]["namespace"] = Value::String(namespace_of(&object, namespace));
        out.push_str(&serde_json::to_string(&live).unwrap());
        out.push('\n');
    }
    out
}

fn verified_count(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("verified ")).count()
}

/// Stamps, signs and verifies each file of `files` (see the test below); the failures.
fn one_file_each(
    dir: &Path,
    algorithm: &str,
    files: &[(&String, &Vec<(String, String)>)],
    stored: &Value,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (file, workloads) in files {
        let namespace = format!("corpus-{}", file.split('/').next().unwrap());
        let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
        let (code, stamped, err) = custody(
            dir,
            &[
                "stamp", "--sign", "ci.key", "--key-id", "ci", "-n", &namespace, "-",
            ],
            &GITHUB,
            &text,
        );
        if code != 0 {
            failures.push(format!("{algorithm} {file}: stamp: {err}"));
            continue;
        }
        let verify = ["verify", "-p", "policy.yaml", "-n", &namespace, "-"];
        let (code, out, err) = custody(dir, &verify, &[], &stamped);
        if code != 0 || verified_count(&out) != workloads.len() {
            failures.push(format!("{algorithm} {file} as written: {out}{err}"));
        }
        let check = ["check", "-p", "policy.yaml", "-n", &namespace, "-"];
        let (code, out, err) = custody(dir, &check, &[], &stamped);
        if code != 0 {
            failures.push(format!("{algorithm} {file}: check: {out}{err}"));
        }
        let live = as_stored(file, &stamped, stored, &namespace);
        let (code, out, err) = custody(dir, &verify, &[], &live);
        if code != 0 || verified_count(&out) != workloads.len() {
            failures.push(format!("{algorithm} {file} as stored: {out}{err}"));
        }
    }
    failures
}

#[test]
fn the_corpus_has_every_kind_and_enough_workloads() {
    let index = index();
    let kinds: BTreeSet<&str> = index
        .values()
        .flatten()
        .map(|(kind, _)| kind.as_str())
        .collect();
    // Every kind but ReplicationController, which no project ships any more.
    let expected: BTreeSet<&str> = WorkloadKind::ALL
        .iter()
        .filter(|k| **k != WorkloadKind::ReplicationController)
        .map(|k| k.as_str())
        .collect();
    assert_eq!(kinds, expected);
    let total: usize = index.values().map(Vec::len).sum();
    assert!(total >= 60, "{total} workloads");
    let projects: BTreeSet<&str> = index.keys().filter_map(|f| f.split('/').next()).collect();
    assert!(projects.len() >= 6, "{projects:?}");
    // Every workload the index names is in its file, and the other way round.
    for (file, workloads) in &index {
        let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
        let found: Vec<(String, String)> = loaded(file, &text)
            .objects
            .into_iter()
            .filter(|(_, o)| is_workload(o))
            .map(|(_, o)| {
                (
                    o["kind"].as_str().unwrap().to_string(),
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(&found, workloads, "{file}");
    }
}

#[test]
fn signed_as_written_verified_as_written_and_as_stored() {
    let index = index();
    let stored = read_json("stored-v1.28.7.json");
    for algorithm in ["ed25519", "p256"] {
        let scratch = Scratch::new(&format!("corpus-{algorithm}"));
        let dir = &scratch.0;
        let (code, out, err) = custody(dir, &["keygen", "--algorithm", algorithm, "ci"], &[], "");
        assert_eq!(code, 0, "{out}{err}");
        std::fs::write(
            dir.join(".custody.yaml"),
            "owner: team-platform\noncall: \"@platform-oncall\"\n",
        )
        .unwrap();
        let public = std::fs::read_to_string(dir.join("ci.pub")).unwrap();
        std::fs::write(dir.join("policy.yaml"), signed_policy(&public)).unwrap();
        // Two files at a time: each step is a process, and the machine has two cores.
        let files: Vec<(&String, &Vec<(String, String)>)> = index.iter().collect();
        let half = files.len().div_ceil(2);
        let failures: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = files
                .chunks(half)
                .map(|chunk| scope.spawn(|| one_file_each(dir, algorithm, chunk, &stored)))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn unstamped_every_workload_is_denied_with_reasons_and_nothing_is_unreadable() {
    let index = index();
    let scratch = Scratch::new("corpus-unstamped");
    for (file, workloads) in &index {
        let text = std::fs::read_to_string(corpus_dir().join(file)).unwrap();
        let (code, out, err) = custody(&scratch.0, &["check", "-o", "json", "-"], &[], &text);
        assert_eq!(code, 1, "{file}: {out}{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let denied = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["decision"]["allowed"] == Value::Bool(false))
            .count();
        assert_eq!(denied, workloads.len(), "{file}: {out}");
        assert!(
            report["errors"].as_array().is_none_or(Vec::is_empty),
            "{file}: {out}"
        );
    }
}
