//! `custody keygen`, `custody stamp` and `custody verify` as a pipeline runs them: a key made,
//! manifests stamped from the environment and `.custody.yaml`, signed, verified; other objects
//! and comments left as they were.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;

use std::process::Command;

use cli::{Scratch, custody};

const MANIFESTS: &str = "\
# rendered by helm
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config   # not a workload
data:
  zeta: \"1\"
  alpha: \"2\"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: \"nginx:1.27\"}]
";

fn policy(public_pem: &str) -> String {
    let indented: String = public_pem
        .lines()
        .map(|l| format!("          {l}\n"))
        .collect();
    format!(
        "apiVersion: custody.dev/v1alpha1\nkind: CustodyPolicy\nmetadata: {{name: signed}}\nspec:\n  signatures:\n    keys:\n      - keyId: ci\n        publicKey: |\n{indented}        scope: {{actors: [automation], sourceRepos: [\"https://github.com/acme/*\"]}}\n"
    )
}

#[test]
fn keygen_stamp_sign_verify_in_github_actions() {
    for algorithm in ["ed25519", "p256"] {
        let scratch = Scratch::new(&format!("stamp-{algorithm}"));
        let dir = &scratch.0;
        let (code, out, err) = custody(dir, &["keygen", "--algorithm", algorithm, "ci"], &[], "");
        assert_eq!(code, 0, "{out}{err}");
        let (code, _, err) = custody(dir, &["keygen", "ci"], &[], "");
        assert_eq!(code, 2, "keygen never overwrites a key: {err}");
        std::fs::write(
            dir.join(".custody.yaml"),
            "owner: team-shop\noncall: \"@shop-oncall\"\n",
        )
        .unwrap();
        let public = std::fs::read_to_string(dir.join("ci.pub")).unwrap();
        std::fs::write(dir.join("policy.yaml"), policy(&public)).unwrap();
        let github = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/shop"),
            ("GITHUB_SHA", "3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f"),
            ("GITHUB_RUN_ID", "4242"),
            ("GITHUB_RUN_ATTEMPT", "1"),
            ("CUSTODY_ACTOR", "automation"),
        ];
        let (code, stamped, err) = custody(
            dir,
            &[
                "stamp", "--sign", "ci.key", "--key-id", "ci", "-n", "shop", "-",
            ],
            &github,
            MANIFESTS,
        );
        assert_eq!(code, 0, "{err}");
        let (first, rest) = stamped.split_once("\n---\n").unwrap();
        assert_eq!(
            format!("{first}\n"),
            format!("---\n{}", MANIFESTS.split("---\n").next().unwrap()),
            "the ConfigMap and its comments pass through unchanged"
        );
        for expected in [
            "custody.dev/actor: \"automation\"",
            "custody.dev/source-repo: \"https://github.com/acme/shop\"",
            "custody.dev/source-commit: \"3f9c2a7e0b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f\"",
            "custody.dev/pipeline-run: \"https://github.com/acme/shop/actions/runs/4242/attempts/1\"",
            "custody.dev/owner: \"team-shop\"",
            "custody.dev/attestation: ",
        ] {
            assert!(rest.contains(expected), "missing {expected:?} in\n{rest}");
        }
        assert!(
            rest.find("  name: web").unwrap() > rest.find("annotations:").unwrap()
                && rest.find("spec:").unwrap() > rest.find("  labels:").unwrap(),
            "keys stay in their order:\n{rest}"
        );
        let (code, out, err) = custody(
            dir,
            &["verify", "-p", "policy.yaml", "-n", "shop", "-"],
            &[],
            &stamped,
        );
        assert_eq!(code, 0, "{algorithm}: {out}{err}");
        assert!(out.contains("verified Deployment shop/web"), "{out}");

        let tampered = stamped.replace("nginx:1.27", "nginx:1.28");
        let (code, out, _) = custody(
            dir,
            &["verify", "-p", "policy.yaml", "-n", "shop", "-"],
            &[],
            &tampered,
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("SubjectMismatch"), "{out}");
        let (code, out, _) = custody(
            dir,
            &["check", "-p", "policy.yaml", "-n", "shop", "-"],
            &[],
            &tampered,
        );
        assert_eq!(code, 1, "custody check reports the same: {out}");
        assert!(
            out.contains("`spec.template.spec.containers[0].image` is \"nginx:1.28\" on the object but was signed as \"nginx:1.27\""),
            "{out}"
        );
    }
}

#[test]
fn a_stamp_needs_an_actor_and_a_clean_checkout() {
    let scratch = Scratch::new("stamp-refusals");
    let dir = &scratch.0;
    let (code, _, err) = custody(dir, &["stamp", "-"], &[], MANIFESTS);
    assert_eq!(code, 2);
    assert!(err.contains("no actor value"), "{err}");
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["remote", "add", "origin", "git@github.com:acme/shop.git"]);
    std::fs::write(dir.join("app.yaml"), MANIFESTS).unwrap();
    git(&["add", "app.yaml"]);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "-m",
        "app",
    ]);
    let (code, out, err) = custody(dir, &["stamp", "--actor", "human", "app.yaml"], &[], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("custody.dev/source-repo: \"https://github.com/acme/shop\""),
        "{out}"
    );
    std::fs::write(dir.join("app.yaml"), MANIFESTS.replace("1.27", "1.28")).unwrap();
    let (code, _, err) = custody(dir, &["stamp", "--actor", "human", "app.yaml"], &[], "");
    assert_eq!(code, 2);
    assert!(err.contains("uncommitted changes"), "{err}");
    let (code, _, err) = custody(
        dir,
        &["stamp", "--actor", "human", "--allow-dirty", "app.yaml"],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("--allow-dirty"), "{err}");
}
