//! `custody check` as a user runs it: the binary on the bundled examples, stdin, JSON output and
//! exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn custody(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        // A command that answers before reading all its input closes the pipe: not a failure.
        let written = child.stdin.take().unwrap().write_all(input.as_bytes());
        if let Err(e) = written
            && e.kind() != std::io::ErrorKind::BrokenPipe
        {
            panic!("writing stdin: {e}");
        }
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
    (out.status.code().unwrap(), text)
}

#[test]
fn good_examples_pass() {
    let (code, out) = custody(
        &["check", "--policy", "examples/policy.yaml", "examples/good"],
        None,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 denied"), "{out}");
}

#[test]
fn bad_examples_are_denied_with_positions() {
    let (code, out) = custody(
        &["check", "--policy", "examples/policy.yaml", "examples/bad"],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "DENY   Deployment shop/checkout  [examples/bad/unannotated.yaml:2 (document 1)]"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "DENY   Pod shop/debug-shell  [examples/bad/agent-incomplete.yaml:27 (document 2)]"
        ),
        "{out}"
    );
    assert!(out.contains("WARN   Job staging-shop/migrate"), "{out}");
    assert!(
        out.contains("custody.dev/source-commit is \"main\""),
        "{out}"
    );
}

#[test]
fn teams_and_freezes_come_from_policy_files_and_the_time_from_at() {
    let (code, out) = custody(
        &[
            "check",
            "--policy",
            "examples/policy.yaml",
            "examples/bad/unregistered-owner.yaml",
        ],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\"team-growth\", which is not a registered CustodyTeam")
            && out.contains("Teams that own namespace \"shop\": team-ledger, team-payments"),
        "{out}"
    );
    let during = |path: &str| {
        custody(
            &[
                "check",
                "--policy",
                "examples/policy.yaml",
                "--at",
                "2026-12-28T10:00:00Z",
                path,
            ],
            None,
        )
    };
    let (code, out) = during("examples/freeze/checkout-agent.yaml");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\"year-end\" until 2027-01-04 08:00 CET (2027-01-04T07:00:00Z)"),
        "{out}"
    );
    let (code, out) = during("examples/freeze/checkout-break-glass.yaml");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("break-glass during change freeze checkout-freezes/year-end"),
        "{out}"
    );
    let (code, out) = custody(&["check", "--at", "yesterday", "examples/good"], None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--at"), "{out}");
}

#[test]
fn a_bad_team_in_a_policy_file_is_reported() {
    let dir = std::env::temp_dir().join(format!("custody-team-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("teams.yaml");
    std::fs::write(
        &file,
        "apiVersion: custody.dev/v1alpha1\nkind: CustodyTeam\nmetadata: {name: team-x}\nspec:\n  namespaces: []\n  oncall: [\"not a contact\"]\n",
    )
    .unwrap();
    let (code, out) = custody(
        &[
            "check",
            "--policy",
            file.to_str().unwrap(),
            "examples/good/ledger-human.yaml",
        ],
        None,
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("CustodyTeam \"team-x\" is invalid: spec.namespaces is empty"),
        "{out}"
    );
    assert!(out.contains("spec.oncall[0] \"not a contact\""), "{out}");
}

#[test]
fn json_output_is_machine_readable() {
    let (code, out) = custody(
        &[
            "check",
            "-o",
            "json",
            "--policy",
            "examples/policy.yaml",
            "examples/bad/unannotated.yaml",
        ],
        None,
    );
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["summary"]["denied"], 1);
    let violations = report["results"][0]["decision"]["violations"]
        .as_array()
        .unwrap();
    let fields: Vec<&str> = violations
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "metadata.annotations[custody.dev/actor]",
            "metadata.annotations[custody.dev/source-repo]",
            "metadata.annotations[custody.dev/source-commit]",
            "metadata.annotations[custody.dev/owner]",
            "metadata.annotations[custody.dev/oncall]",
        ]
    );
    assert_eq!(violations[0]["code"], "MissingAnnotation");
}

#[test]
fn stdin_and_the_builtin_policy() {
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template: {spec: {containers: [{name: c, image: web:1}]}}\n";
    let (code, out) = custody(&["check", "-"], Some(manifest));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Deployment default/web"), "{out}");
    assert!(out.contains("custody-builtin-default"), "{out}");
}

#[test]
fn a_controller_owner_reference_is_judged_unless_checked_as_a_controller() {
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug-shell\n  ownerReferences:\n  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f9c7b6, uid: u, controller: true}\nspec: {containers: [{name: c, image: web:1}]}\n";
    let (code, out) = custody(&["check", "-"], Some(manifest));
    assert_eq!(
        code, 1,
        "checked as a normal user, the ownerReference exempts nothing: {out}"
    );
    assert!(out.contains("custody.dev/owner is missing"), "{out}");

    let (code, out) = custody(
        &[
            "check",
            "--user",
            "system:serviceaccount:kube-system:replicaset-controller",
            "-",
        ],
        Some(manifest),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 skipped"), "{out}");
}

#[test]
fn unreadable_input_and_bad_policies_exit_2() {
    let (code, out) = custody(&["check", "-"], Some("kind: [unclosed\n"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid YAML"), "{out}");

    let (code, out) = custody(&["check", "does-not-exist.yaml"], None);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("does-not-exist.yaml: cannot read"), "{out}");

    let dir = std::env::temp_dir().join(format!("custody-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("bad-policy.yaml");
    std::fs::write(&policy, "apiVersion: custody.dev/v1alpha1\nkind: CustodyPolicy\nmetadata: {name: broken}\nspec:\n  annotations:\n  - {key: owner, pattern: '('}\n").unwrap();
    let (code, out) = custody(
        &[
            "check",
            "--policy",
            policy.to_str().unwrap(),
            "examples/good",
        ],
        None,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("CustodyPolicy \"broken\" is invalid"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();

    let (code, out) = custody(&["check"], None);
    assert_eq!(code, 2, "usage errors exit 2: {out}");
}

#[test]
fn strict_mode_fails_on_warnings_too() {
    let (code, _) = custody(
        &[
            "check",
            "--policy",
            "examples/policy.yaml",
            "examples/bad/staging-warned.yaml",
        ],
        None,
    );
    assert_eq!(code, 0);
    let (code, _) = custody(
        &[
            "check",
            "--strict",
            "--policy",
            "examples/policy.yaml",
            "examples/bad/staging-warned.yaml",
        ],
        None,
    );
    assert_eq!(code, 1);
}
