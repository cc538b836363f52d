//! The ValidatingAdmissionPolicy backstop (`custody vap`) on a real apiserver, with no Custody
//! webhook registered at all: the situation of a webhook down under `failurePolicy: Ignore`.
//!
//! Needs `CUSTODY_E2E_KUBECONFIG` (a 1.28+ cluster serving ValidatingAdmissionPolicy; the lab
//! serves v1beta1) and a built `target/debug/custody`; without the kubeconfig it prints one
//! SKIPPED line and passes. The policy it generates selects only its own namespace, and a Drop
//! guard deletes everything it created on every exit path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use custody_e2e::{Settings, deployment, kubectl, provenance, repo_root, run, run_with_input};
use serde_json::{Value, json};

/// Deletes what the test created, whatever happens to it.
struct Cleanup {
    namespace: String,
    vap: String,
    created_crds: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let k = kubectl();
        let quiet = ["--ignore-not-found", "--wait=false"];
        let mut attempts: Vec<Vec<String>> = vec![
            vec!["delete".into(), "namespace".into(), self.namespace.clone()],
            vec![
                "delete".into(),
                "validatingadmissionpolicybinding".into(),
                self.vap.clone(),
            ],
            vec![
                "delete".into(),
                "validatingadmissionpolicy".into(),
                self.vap.clone(),
            ],
        ];
        if self.created_crds {
            let crds = repo_root().join("crds/generated").display().to_string();
            attempts.push(vec!["delete".into(), "-f".into(), crds]);
        }
        for mut args in attempts {
            args.extend(quiet.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Err(e) = run(&k, &args) {
                eprintln!("backstop cleanup: {e}");
            }
        }
    }
}

fn custody_binary() -> String {
    repo_root()
        .join("target/debug/custody")
        .display()
        .to_string()
}

/// Applies `object` with a server-side dry run: Ok when admitted, Err with the apiserver's
/// message when refused.
fn dry_run(object: &Value) -> anyhow::Result<String> {
    run_with_input(
        &kubectl(),
        &["apply", "--dry-run=server", "-f", "-"],
        &object.to_string(),
    )
}

fn denied_by(object: &Value, vap: &str, why: &str) {
    let error = dry_run(object)
        .expect_err("the backstop admitted it")
        .to_string();
    assert!(
        error.contains(&format!("ValidatingAdmissionPolicy '{vap}'")) && error.contains(why),
        "expected a denial by {vap} naming {why:?}, got: {error}"
    );
}

#[tokio::test]
async fn backstop_refuses_unannotated_workloads_without_the_webhook() {
    if std::env::var_os("CUSTODY_E2E_KUBECONFIG").is_none() {
        eprintln!(
            "SKIPPED: the backstop e2e needs a cluster: set CUSTODY_E2E_KUBECONFIG (see e2e/lab.sh)"
        );
        return;
    }
    let k = kubectl();
    // No Custody webhook may answer: the backstop must refuse on its own.
    let webhooks = run(
        &k,
        &["get", "validatingwebhookconfigurations", "-o", "json"],
    )
    .unwrap();
    let webhooks: Value = serde_json::from_str(&webhooks).unwrap();
    let custody_webhooks: Vec<String> = webhooks["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["webhooks"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w["name"].as_str().map(str::to_string))
        .filter(|n| n.ends_with("custody.dev"))
        .collect();
    assert!(
        custody_webhooks.is_empty(),
        "a Custody webhook is registered ({custody_webhooks:?}); this test needs none"
    );

    let id = std::process::id();
    let namespace = format!("custody-backstop-{id}");
    let policy_name = format!("backstop-e2e-{id}");
    let vap = format!("custody-{policy_name}");
    let created_crds = run(
        &k,
        &[
            "get",
            "crd",
            "custodypolicies.custody.dev",
            "--ignore-not-found",
            "-o",
            "name",
        ],
    )
    .unwrap()
    .trim()
    .is_empty();
    let _cleanup = Cleanup {
        namespace: namespace.clone(),
        vap: vap.clone(),
        created_crds,
    };

    let crds = repo_root().join("crds/generated").display().to_string();
    run(&k, &["apply", "-f", &crds]).unwrap();
    run(&k, &["create", "namespace", &namespace]).unwrap();

    // The policy selects only this test's namespace, so other users of the cluster are untouched.
    let policy = json!({
        "apiVersion": "custody.dev/v1alpha1",
        "kind": "CustodyPolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "mode": "Enforce",
            "match": {"namespaces": {"include": [namespace]}},
            "annotations": [
                {"key": "actor"},
                {"key": "agent", "whenActor": ["agent"]},
                {"key": "source-repo", "pattern": "^https://git\\.example\\.com/"},
                {"key": "source-commit"},
                {"key": "owner", "allowedValues": ["team-e2e", "team-search"]},
                {"key": "oncall"}
            ]
        }
    });
    // The CRDs accept it: the policy file is a real CustodyPolicy.
    run_with_input(
        &k,
        &["apply", "--dry-run=server", "-f", "-"],
        &policy.to_string(),
    )
    .unwrap();
    let generated = run_with_input(
        &custody_binary(),
        &["vap", "--kube-version", "1.28", "--policy", "-"],
        &policy.to_string(),
    )
    .unwrap();
    assert!(generated.contains("admissionregistration.k8s.io/v1beta1"));
    run_with_input(&k, &["apply", "-f", "-"], &generated).unwrap();

    // The apiserver type-checks the CEL against the matched kinds: no warnings.
    let status = custody_e2e::wait_for("the policy's type check", Duration::from_secs(30), || {
        let vap = vap.clone();
        let k = k.clone();
        async move {
            let out = run(
                &k,
                &["get", "validatingadmissionpolicy", &vap, "-o", "json"],
            )?;
            let v: Value = serde_json::from_str(&out)?;
            Ok(v["status"]["observedGeneration"]
                .is_number()
                .then(|| v["status"].clone()))
        }
    })
    .await
    .unwrap();
    assert!(
        status["typeChecking"]["expressionWarnings"]
            .as_array()
            .is_none_or(|w| w.is_empty()),
        "type-check warnings: {status}"
    );

    let settings = Settings::from_env().unwrap();
    let in_ns = |mut object: Value| {
        object["metadata"]["namespace"] = json!(namespace);
        object
    };
    let unannotated = in_ns(deployment(&settings, "unannotated", json!({}), "v1", false));
    // The policy takes effect once the apiserver's policy informer has it.
    custody_e2e::wait_for("the backstop to deny", Duration::from_secs(60), || {
        let unannotated = unannotated.clone();
        async move { Ok(dry_run(&unannotated).is_err().then_some(())) }
    })
    .await
    .unwrap();
    denied_by(&unannotated, &vap, "custody.dev/actor is missing");

    let mut human = provenance("human", "3f9c2a7", "run-1");
    human["custody.dev/source-repo"] = json!("https://git.example.com/e2e/app");
    let annotated = in_ns(deployment(
        &settings,
        "annotated",
        human.clone(),
        "v1",
        false,
    ));
    dry_run(&annotated).expect("a fully annotated Deployment is admitted");

    let mut agent = provenance("agent", "3f9c2a7", "run-2");
    agent["custody.dev/source-repo"] = json!("https://git.example.com/e2e/app");
    agent.as_object_mut().unwrap().remove("custody.dev/agent");
    let nameless_agent = in_ns(deployment(&settings, "nameless-agent", agent, "v1", false));
    denied_by(
        &nameless_agent,
        &vap,
        "custody.dev/agent is missing, required when the actor is agent",
    );

    let mut stranger = human.clone();
    stranger["custody.dev/owner"] = json!("team-unknown");
    let disallowed = in_ns(deployment(&settings, "disallowed", stranger, "v1", false));
    denied_by(&disallowed, &vap, "custody.dev/owner must be one of");

    let mut elsewhere = human.clone();
    elsewhere["custody.dev/source-repo"] = json!("https://github.com/e2e/app");
    let wrong_repo = in_ns(deployment(&settings, "wrong-repo", elsewhere, "v1", false));
    denied_by(&wrong_repo, &vap, "custody.dev/source-repo must match");

    // The ReplicaSet and its Pods carry none of the Deployment's annotations: they appear only
    // because writes by controllers of what they own are not matched.
    run_with_input(&k, &["apply", "-f", "-"], &annotated.to_string()).unwrap();
    let pods = custody_e2e::wait_for(
        "the ReplicaSet controller's pods",
        Duration::from_secs(60),
        || {
            let k = k.clone();
            let namespace = namespace.clone();
            async move {
                let out = run(
                    &k,
                    &[
                        "get",
                        "pods",
                        "-n",
                        &namespace,
                        "-l",
                        "app=annotated",
                        "-o",
                        "name",
                    ],
                )?;
                let n = out.lines().filter(|l| !l.trim().is_empty()).count();
                Ok((n > 0).then_some(n))
            }
        },
    )
    .await
    .unwrap();
    eprintln!("backstop: {pods} pod(s) created by the ReplicaSet controller");

    let (admitted, refused) = corpus_through_the_backstop(&namespace, &vap);
    eprintln!(
        "backstop: public corpus: {admitted} stamped workloads admitted, {refused} unstamped ones refused"
    );
}

/// The public corpus (`e2e/corpus/`): stamped, every workload passes the backstop's CEL on the
/// apiserver; unstamped, every one is refused by it, naming the missing key. Real manifests
/// (KYAML, host networking, every kind) never make the generated expressions error.
fn corpus_through_the_backstop(namespace: &str, vap: &str) -> (usize, usize) {
    use custody_e2e::corpus::{json_stream, name_of, projects};
    let k = kubectl();
    let mut admitted = 0;
    let mut refused = 0;
    for project in projects().expect("the corpus") {
        let stamped = run_with_input(
            &custody_binary(),
            &[
                "stamp",
                "--actor",
                "human",
                "--source-repo",
                "https://git.example.com/corpus/app",
                "--source-commit",
                "3f9c2a7",
                "--pipeline-run",
                "run-corpus",
                "--owner",
                "team-e2e",
                "--oncall",
                "@e2e-oncall",
                "-n",
                namespace,
                "-",
            ],
            &json_stream(&project.workloads),
        )
        .unwrap_or_else(|e| panic!("{}: custody stamp: {e}", project.name));
        run_with_input(
            &k,
            &["apply", "--dry-run=server", "-n", namespace, "-f", "-"],
            &stamped,
        )
        .unwrap_or_else(|e| {
            panic!(
                "{}: the backstop refused a stamped workload: {e}",
                project.name
            )
        });
        admitted += project.workloads.len();
        for workload in &project.workloads {
            let error = run_with_input(
                &k,
                &["apply", "--dry-run=server", "-n", namespace, "-f", "-"],
                &workload.to_string(),
            )
            .expect_err("the backstop admitted an unstamped workload")
            .to_string();
            assert!(
                error.contains(&format!("ValidatingAdmissionPolicy '{vap}'"))
                    && error.contains("custody.dev/actor is missing"),
                "{} {}: {error}",
                project.name,
                name_of(workload)
            );
            refused += 1;
        }
    }
    (admitted, refused)
}
