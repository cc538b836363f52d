//! `kubectl custody propose`, `approve`, `reject`, `changes` and `why`, and `custody propose`,
//! run as binaries against the fake API server, whose front answers SelfSubjectReviews and
//! judges CustodyChange writes with the engine as the webhook does: an agent proposes, people
//! approve or reject under their own names, refusals come back as the apiserver sends them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/cluster.rs"]
mod cluster;
mod support;

use axum::http::{Method, StatusCode};
use cluster::{CHANGES, Cluster, WEBHOOK};
use custody_crds::{Approval, CustodyPolicy, CustodyTeam};
use custody_testkit::approval::{reviewed_policy, team_web};
use serde_json::{Value, json};

const AGENT: &str = "system:serviceaccount:agents:claude";
const ANN: &str = "ann@acme.dev";
const BOB: &str = "bob@acme.dev";
const CAROL: &str = "carol@acme.dev";
const REASON: &str = "bump nginx to 1.28 for CVE-2026-1234";
const REVIEW: &str = "checked the image bump and its limits";

/// Agents under `agents/*` in `shop` need two approvals by members of team-web.
fn policy() -> CustodyPolicy {
    reviewed_policy(Some(Approval {
        required: 2,
        ..Approval::default()
    }))
}

fn team() -> CustodyTeam {
    team_web(&[ANN, BOB, CAROL], &[])
}

/// The agent's manifest of `web` in `namespace`.
fn manifest(image: &str, namespace: &str) -> String {
    format!(
        "\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec: {{selector: {{app: web}}, ports: [{{port: 80}}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
  labels: {{app: web}}
  annotations:
    custody.dev/actor: agent
    custody.dev/agent: claude-code/1.0
    custody.dev/source-repo: https://github.com/acme/shop
    custody.dev/source-commit: 3f9c2a7
    custody.dev/owner: team-web
    custody.dev/oncall: '@web-oncall'
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: {image}
          resources: {{limits: {{cpu: 500m, memory: 64Mi}}}}
"
    )
}

/// The Deployment of `manifest(image, "shop")`, as stored.
fn deployment(image: &str) -> Value {
    let text = manifest(image, "shop");
    let doc = text.split("---\n").nth(1).unwrap();
    custody_crds::yaml::from_manifest_yaml(doc).unwrap()
}

async fn cluster(name: &str) -> Cluster {
    let cluster = Cluster::start(name, &[policy()], &[team()]).await;
    cluster
        .fake
        .upsert("apis/apps/v1/deployments", deployment("nginx:1.27"));
    cluster
}

/// Proposes `manifest(image, "shop")` as the agent; returns the change's name.
async fn propose(cluster: &Cluster, image: &str) -> String {
    let file = cluster.file(&format!("web-{image}.yaml"), &manifest(image, "shop"));
    let (code, out, err) = cluster
        .kubectl_custody(
            AGENT,
            &["propose", "-f", &file, "--reason", REASON, "-o", "json"],
        )
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let reports: Value = serde_json::from_str(&out).unwrap();
    reports[0]["change"]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn stored(cluster: &Cluster, name: &str) -> Value {
    cluster.fake.get(CHANGES, "shop", name).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_proposes_as_itself_with_the_diff_against_what_runs() {
    let cluster = cluster("propose").await;
    let file = cluster.file("web.yaml", &manifest("nginx:1.28", "shop"));
    let (code, out, err) = cluster
        .kubectl_custody(AGENT, &["propose", "-f", &file, "--reason", REASON])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let changes = cluster.fake.list(CHANGES);
    assert_eq!(changes.len(), 1, "one change, for the Deployment only");
    let change = &changes[0];
    let name = change["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        change["spec"]["proposer"], AGENT,
        "the proposer is who the apiserver says"
    );
    assert_eq!(change["spec"]["agent"], "claude-code/1.0");
    let digest = change["spec"]["digest"].as_str().unwrap();
    for line in [
        format!("Proposed CustodyChange {name} in namespace shop for deployment/web."),
        format!("  digest:   {digest}"),
        format!("  proposer: {AGENT}"),
        "  containers[web].image: nginx:1.27 → nginx:1.28".to_string(),
        format!(
            "  1. wait until a person approves it: kubectl wait -n shop custodychange/{name} --for=jsonpath='{{.status.phase}}'=Approved --timeout=24h"
        ),
        format!("  2. then apply the same manifest, unchanged: kubectl apply -n shop -f {file} (any change to its pod template or its provenance annotations makes another digest, which this approval does not admit)"),
        "note: web.yaml:1 (document 1): Service \"web\" is not a workload; it needs no approval and is left out".replace("web.yaml", &file),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    assert!(
        out.contains("Changes (against the running template sha256:"),
        "{out}"
    );

    // The same change again: found, not an error.
    let (code, out, err) = cluster
        .kubectl_custody(AGENT, &["propose", "-f", &file, "--reason", REASON])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("CustodyChange {name} in namespace shop already proposes this change to deployment/web (phase Pending); nothing created.\n")),
        "{out}"
    );

    // Offline, the same manifest makes the same request, digest and all.
    let (code, yaml, err) = cli::custody(
        &cluster.dir.0,
        &[
            "propose",
            "-f",
            &file,
            "--reason",
            REASON,
            "--proposer",
            AGENT,
        ],
        &[],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let offline: Value = custody_crds::yaml::from_manifest_yaml(&yaml).unwrap();
    assert_eq!(offline["metadata"]["name"], name);
    assert_eq!(offline["spec"]["digest"], digest);
    assert!(
        err.contains(&format!("1. create it as {AGENT} (spec.proposer")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_come_from_the_cli_before_any_write_or_from_the_webhook_as_is() {
    let cluster = cluster("propose-refused").await;
    let file = cluster.file("web.yaml", &manifest("nginx:1.28", "shop"));
    let (code, _, err) = cluster
        .kubectl_custody(AGENT, &["propose", "-f", &file, "--reason", "fix"])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("--reason must say what the change does and why"),
        "{err}"
    );
    let human = cluster.file(
        "human.yaml",
        &manifest("nginx:1.28", "shop").replace("actor: agent", "actor: human"),
    );
    let (code, _, err) = cluster
        .kubectl_custody(AGENT, &["propose", "-f", &human, "--reason", REASON])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("custody stamp --actor agent --agent <agent-id> <manifest>"),
        "{err}"
    );
    assert!(cluster.writes().is_empty(), "{:?}", cluster.writes());

    // No policy protects namespace `lab`: the webhook refuses, and its words are printed.
    let lab = cluster.file("lab.yaml", &manifest("nginx:1.28", "lab"));
    let (code, _, err) = cluster
        .kubectl_custody(AGENT, &["propose", "-f", &lab, "--reason", REASON])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("admission webhook \"{WEBHOOK}\" denied the request: Custody refused the write of CustodyChange")),
        "{err}"
    );
    assert!(
        err.contains("no CustodyPolicy requires approval for agent \"claude-code/1.0\"'s changes to Deployment lab/web"),
        "{err}"
    );
    assert!(cluster.fake.list(CHANGES).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn people_approve_under_their_own_names_until_the_change_has_enough() {
    let cluster = cluster("approve").await;
    let name = propose(&cluster, "nginx:1.28").await;

    let (code, _, err) = cluster
        .kubectl_custody(ANN, &["approve", &name, "--reason", "ok"])
        .await;
    assert_eq!(code, 1);
    assert!(err.contains("--reason must say what you reviewed"), "{err}");
    let (code, _, err) = cluster
        .kubectl_custody(AGENT, &["approve", &name, "--reason", REVIEW])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "you ({AGENT}) proposed CustodyChange {name}; another person must approve it"
        )),
        "{err}"
    );
    assert!(
        !cluster.writes().iter().any(|(m, _, _)| *m == Method::PATCH),
        "refused before writing"
    );

    let (code, out, err) = cluster
        .kubectl_custody(ANN, &["approve", &name, "-n", "shop", "--reason", REVIEW])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    // The change is shown first, then what was written.
    let shown = out.find(&format!("CustodyChange shop/{name}\n")).unwrap();
    let written = out
        .find(&format!(
            "Approved CustodyChange {name} (deployment/web in namespace shop) as {ANN}: {REVIEW}"
        ))
        .unwrap();
    assert!(shown < written, "{out}");
    for line in [
        "Workload:   deployment/web",
        "Agent:      claude-code/1.0",
        &format!("Proposer:   {AGENT}"),
        &format!("Reason:     {REASON}"),
        "  containers[web].image: nginx:1.27 → nginx:1.28",
        &format!(
            "1 approval so far: {ANN}. Once the policy's required number of people approved, the webhook admits exactly this change, once; the agent applies the same manifest unchanged."
        ),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    let approvals = &stored(&cluster, &name)["status"]["approvals"];
    assert_eq!(approvals[0]["by"], ANN);
    assert_eq!(approvals[0]["reason"], REVIEW);
    let patch = cluster
        .writes()
        .into_iter()
        .find(|(m, p, _)| *m == Method::PATCH && p.ends_with("/status"))
        .unwrap();
    assert!(
        patch.2["metadata"]["resourceVersion"].is_string(),
        "conditioned on the version read: {}",
        patch.2
    );

    // A second run is harmless.
    let (code, out, _) = cluster
        .kubectl_custody(ANN, &["approve", &name, "--reason", "approving once more"])
        .await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("You ({ANN}) approved CustodyChange {name}")),
        "{out}"
    );
    assert!(out.ends_with("Nothing written.\n"), "{out}");

    // Someone outside the team: the webhook's refusal, as it is.
    let (code, _, err) = cluster
        .kubectl_custody("mallory@acme.dev", &["approve", &name, "--reason", REVIEW])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("cannot approve CustodyChange {name} in namespace shop: admission webhook \"{WEBHOOK}\" denied the request: ")),
        "{err}"
    );
    assert!(
        err.contains("mallory@acme.dev may not decide this change"),
        "{err}"
    );

    // Bob's write meets a conflict once (another write in between): read again and retried.
    cluster
        .fake
        .inject(Method::PATCH, "/status", StatusCode::CONFLICT, 1);
    let (code, out, err) = cluster
        .kubectl_custody(BOB, &["approve", &name, "--reason", REVIEW, "-o", "json"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["approvals"], json!([ANN, BOB]));
    let approvals = &stored(&cluster, &name)["status"]["approvals"];
    assert_eq!(approvals.as_array().unwrap().len(), 2);

    // Two were required; a third approval is refused by the webhook.
    let (code, _, err) = cluster
        .kubectl_custody(CAROL, &["approve", &name, "--reason", REVIEW])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("the change already has the 2 approval(s) it needs"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejection_is_final() {
    let cluster = cluster("reject").await;
    let name = propose(&cluster, "nginx:1.29").await;
    let (code, out, err) = cluster
        .kubectl_custody(
            BOB,
            &["reject", &name, "--reason", "1.29 drops the config we use"],
        )
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("Rejected CustodyChange {name} (deployment/web in namespace shop) as {BOB}: 1.29 drops the config we use\nThe webhook never admits this change; the agent must propose another.\n")),
        "{out}"
    );
    assert_eq!(stored(&cluster, &name)["status"]["rejection"]["by"], BOB);
    let (code, _, err) = cluster
        .kubectl_custody(ANN, &["approve", &name, "--reason", REVIEW])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("CustodyChange {name} was rejected by {BOB} (1.29 drops the config we use); nothing to approve")),
        "{err}"
    );

    // Proposed again, the change gets a new request; the rejected one stays as the record.
    let again = propose(&cluster, "nginx:1.29").await;
    assert_eq!(again, format!("{name}-2"));
    assert_eq!(stored(&cluster, &name)["status"]["rejection"]["by"], BOB);
    assert!(stored(&cluster, &again).get("status").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_lists_them_and_shows_one_in_full() {
    let cluster = cluster("changes").await;
    let first = propose(&cluster, "nginx:1.28").await;
    let second = propose(&cluster, "nginx:1.29").await;
    let (code, _, err) = cluster
        .kubectl_custody(ANN, &["approve", &first, "--reason", REVIEW])
        .await;
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = cluster.kubectl_custody(ANN, &["changes"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let columns = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        columns(lines[0]),
        ["NAME", "WORKLOAD", "AGENT", "PHASE", "APPROVALS", "AGE"]
    );
    let mut rows: Vec<Vec<String>> = lines[1..].iter().map(|l| columns(l)).collect();
    rows.sort();
    let mut want = vec![
        vec![
            first.clone(),
            "deployment/web".into(),
            "claude-code/1.0".into(),
            "Pending".into(),
            "1".into(),
            format!("({ANN})"),
        ],
        vec![
            second.clone(),
            "deployment/web".into(),
            "claude-code/1.0".into(),
            "Pending".into(),
            "0".into(),
        ],
    ];
    want.sort();
    let without_age: Vec<Vec<String>> = rows.iter().map(|r| r[..r.len() - 1].to_vec()).collect();
    assert_eq!(without_age, want, "{out}");

    let (code, out, _) = cluster.kubectl_custody(ANN, &["changes", "-A"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("  NAMESPACE  NAME"), "{out}");

    let (code, out, err) = cluster.kubectl_custody(ANN, &["changes", &first]).await;
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("CustodyChange shop/{first}"),
        "Phase:      Pending".to_string(),
        "  containers[web].image: nginx:1.27 → nginx:1.28".to_string(),
        "Approvals:".to_string(),
        "  actor          agent".to_string(),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in\n{out}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("  {ANN}  ")) && l.ends_with(REVIEW)),
        "{out}"
    );
    let (code, out, _) = cluster
        .kubectl_custody(ANN, &["changes", &second, "-o", "json"])
        .await;
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["spec"]["diff"][0]["after"], "nginx:1.29");

    let (code, _, err) = cluster
        .kubectl_custody(ANN, &["changes", "web-0000000000"])
        .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("CustodyChange web-0000000000 not found in namespace shop (`kubectl custody changes -n shop` lists them)"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn why_judges_with_the_clusters_changes() {
    let cluster = cluster("why").await;
    let name = propose(&cluster, "nginx:1.28").await;
    // The agent's next revision, as it would be created now: denied until approved.
    cluster
        .fake
        .upsert("apis/apps/v1/deployments", deployment("nginx:1.28"));
    let why = || cluster.kubectl_custody(ANN, &["why", "deploy/web", "--as", AGENT]);
    let (code, out, err) = why().await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Verdict:    DENIED"), "{out}");
    assert!(
        out.contains(&format!("CustodyChange {name:?} has 0 of 2 approvals")),
        "{out}"
    );
    assert!(out.contains("Change requests:"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with(&format!("  {name}*"))
            && l.contains("0 of 2 approvals, takes approvals until")),
        "{out}"
    );

    for (who, reason) in [(ANN, REVIEW), (BOB, "read the diff, fine by me")] {
        let (code, _, err) = cluster
            .kubectl_custody(who, &["approve", &name, "--reason", reason])
            .await;
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = why().await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Verdict:    ADMITTED"), "{out}");
    assert!(
        out.contains(&format!(
            "admitted as the change CustodyChange {name:?} approved by {ANN}, {BOB}"
        )),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!("  {name}*"))
            && l.contains(&format!(
                "approved by {ANN}, {BOB}: admits its revision until"
            ))),
        "{out}"
    );
}

#[test]
fn custody_propose_offline_diffs_against_a_running_file_and_needs_a_proposer() {
    let scratch = cli::Scratch::new("propose-offline");
    let dir = &scratch.0;
    std::fs::write(dir.join("web.yaml"), manifest("nginx:1.28", "shop")).unwrap();
    std::fs::write(
        dir.join("running.json"),
        serde_json::to_string(&deployment("nginx:1.27")).unwrap(),
    )
    .unwrap();
    let (code, yaml, err) = cli::custody(
        dir,
        &[
            "propose",
            "-f",
            "web.yaml",
            "--reason",
            REASON,
            "--against",
            "running.json",
        ],
        &[("CUSTODY_PROPOSER", AGENT)],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let change: Value = custody_crds::yaml::from_manifest_yaml(&yaml).unwrap();
    assert_eq!(change["kind"], "CustodyChange");
    assert_eq!(change["spec"]["proposer"], AGENT);
    assert_eq!(
        change["spec"]["diff"],
        json!([{"field": "containers[web].image", "before": "nginx:1.27", "after": "nginx:1.28"}])
    );
    assert!(change["spec"]["runningTemplateDigest"].is_string());
    assert!(change.get("status").is_none(), "{yaml}");
    assert!(
        err.starts_with(
            "custody propose: web.yaml:1 (document 1): Service \"web\" is not a workload"
        ),
        "{err}"
    );

    let (code, out, err) = cli::custody(
        dir,
        &["propose", "-f", "web.yaml", "--reason", REASON],
        &[],
        "",
    );
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("--proposer is required"), "{err}");
    let (code, _, err) = cli::custody(
        dir,
        &[
            "propose",
            "-f",
            "web.yaml",
            "--reason",
            REASON,
            "--proposer",
            AGENT,
            "-n",
            "prod",
        ],
        &[],
        "",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("deployment/web says namespace \"shop\", but --namespace is \"prod\""),
        "{err}"
    );
}
