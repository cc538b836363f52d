//! Custody end to end on a real cluster (see the crate docs for the environment). Without
//! CUSTODY_E2E_KUBECONFIG it prints one SKIPPED line and passes, so it always compiles and runs
//! in CI; `e2e/lab.sh` runs it against the lab.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod alertmanager;
mod analysis;
mod approval;
mod audit;
mod budget;
mod corpus;
mod desk;
mod exporter;
mod faults;
mod freeze;
mod helm_install;
mod leader;
mod lift;
mod node;
mod oncall;
mod outage;
mod probation;
mod prometheus;
mod proposal;
mod rollback;
mod rollout;
mod scene;
mod server;
mod signatures;
mod support;
mod teams;
mod timeline;

use std::time::{Duration, Instant};

use custody_e2e::local::{ChartValues, LocalInstall};
use custody_e2e::{Mode, Settings, helm, repo_root, run, wait_for};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use support::Ctx;

/// The helm-mode release namespace (a cluster that runs images).
const HELM_NAMESPACE: &str = "custody-system";

struct Outcome {
    name: &'static str,
    ok: bool,
    seconds: f64,
    detail: String,
}

fn say(line: &str) {
    // Straight to stderr, past the test harness's capture, so progress is seen as it happens.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The controller replicas of the local install; two, so leader election is exercised.
pub const CONTROLLERS: [&str; 2] = ["controller-a", "controller-b"];

fn local_values() -> ChartValues {
    ChartValues {
        set: vec![
            ("defaultPolicy.rollback.notReadySeconds".into(), "15".into()),
            (
                "defaultPolicy.rollback.healthyAfterSeconds".into(),
                "5".into(),
            ),
            // The helm scenario's release namespace is judged by its own release only.
            (
                "webhook.excludeNamespaces[0]".into(),
                helm_install::NAMESPACE.into(),
            ),
            // The freeze scenarios' namespaces are judged by their own policy only.
            (
                "defaultPolicy.excludeNamespaces[0]".into(),
                format!("{}*", freeze::NAMESPACE_PREFIX),
            ),
            // So are the metric-analysis scenarios' namespaces.
            (
                "defaultPolicy.excludeNamespaces[1]".into(),
                format!("{}*", scene::NAMESPACE_PREFIX),
            ),
            // And the approval scenario's.
            (
                "defaultPolicy.excludeNamespaces[2]".into(),
                format!("{}*", approval::NAMESPACE_PREFIX),
            ),
            // And the on-call scenario's.
            (
                "defaultPolicy.excludeNamespaces[3]".into(),
                format!("{}*", oncall::NAMESPACE_PREFIX),
            ),
        ],
    }
}

async fn install(settings: &Settings, client: &Client) -> anyhow::Result<Option<LocalInstall>> {
    match settings.mode {
        Mode::Helm => {
            let chart = repo_root().join("charts/custody");
            let (repo, tag) = settings
                .custody_image
                .rsplit_once(':')
                .unwrap_or((&settings.custody_image, "latest"));
            run(
                &helm(),
                &[
                    "upgrade",
                    "--install",
                    "custody",
                    &chart.display().to_string(),
                    "-n",
                    HELM_NAMESPACE,
                    "--create-namespace",
                    "--set",
                    &format!("image.repository={repo}"),
                    "--set",
                    &format!("image.tag={tag}"),
                    "--set",
                    "defaultPolicy.rollback.notReadySeconds=15",
                    "--set",
                    "defaultPolicy.rollback.healthyAfterSeconds=5",
                    "--set",
                    &format!(
                        "defaultPolicy.excludeNamespaces[0]={}*",
                        freeze::NAMESPACE_PREFIX
                    ),
                    "--set",
                    &format!(
                        "defaultPolicy.excludeNamespaces[1]={}*",
                        approval::NAMESPACE_PREFIX
                    ),
                    "--wait",
                    "--timeout",
                    "5m",
                ],
            )?;
            // The controller bootstraps the certificate and the caBundle; wait for both.
            let vwcs: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            wait_for("the webhook's caBundle", Duration::from_secs(120), || {
                let vwcs = vwcs.clone();
                async move {
                    let v = vwcs.get("custody-workloads").await?;
                    Ok(v.webhooks
                        .unwrap_or_default()
                        .iter()
                        .all(|w| w.client_config.ca_bundle.is_some())
                        .then_some(()))
                }
            })
            .await?;
            Ok(None)
        }
        Mode::Local => Ok(Some(
            LocalInstall::start(local_values(), &CONTROLLERS).await?,
        )),
    }
}

#[tokio::test]
async fn custody_end_to_end() {
    let Some(kubeconfig) = std::env::var_os("CUSTODY_E2E_KUBECONFIG") else {
        say(
            "SKIPPED: custody e2e needs a cluster: set CUSTODY_E2E_KUBECONFIG, or run `bash e2e/lab.sh` on a machine with the lab built (options in e2e/src/lib.rs)",
        );
        return;
    };
    let settings = Settings::from_env().expect("e2e settings");
    let client = custody_e2e::client(&kubeconfig)
        .await
        .expect("a client for CUSTODY_E2E_KUBECONFIG");
    let started = Instant::now();
    let local = install(&settings, &client).await.expect("install Custody");
    say(&format!(
        "installed Custody ({:?} mode) in {:.1}s",
        settings.mode,
        started.elapsed().as_secs_f64()
    ));

    let ns = format!("custody-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("test namespace");
    let mut ctx = Ctx {
        client: client.clone(),
        settings,
        ns: ns.clone(),
        local,
    };
    let mut outcomes: Vec<Outcome> = Vec::new();
    // CUSTODY_E2E_ONLY=17,18 runs only those scenarios (the lab is shared; a full run is long).
    let only: Option<Vec<String>> = std::env::var("CUSTODY_E2E_ONLY")
        .ok()
        .map(|v| v.split(',').map(|n| format!("{} ", n.trim())).collect());
    let wanted = |name: &str| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|n| name.starts_with(n.as_str())))
    };
    macro_rules! scenario {
        ($name:expr, $body:expr) => {{
            if wanted($name) {
                say(&format!("-- {}", $name));
                let t = Instant::now();
                let result: anyhow::Result<String> = $body.await;
                let (ok, detail) = match result {
                    Ok(d) => (true, d),
                    Err(e) => (false, format!("{e:#}")),
                };
                say(&format!(
                    "   {} in {:.1}s: {}",
                    if ok { "PASS" } else { "FAIL" },
                    t.elapsed().as_secs_f64(),
                    detail
                ));
                outcomes.push(Outcome {
                    name: $name,
                    ok,
                    seconds: t.elapsed().as_secs_f64(),
                    detail,
                });
            }
        }};
    }

    scenario!(
        "1 unannotated Deployment denied",
        admission::unannotated_denied(&ctx)
    );
    scenario!(
        "2 annotated Deployment admitted with its ReplicaSets and Pods",
        admission::annotated_admitted(&ctx)
    );
    scenario!("3 broken agent v2 reverted", rollback::agent_reverted(&ctx));
    scenario!(
        "4 quarantine holds against re-sync, yields to a human override",
        rollback::quarantine(&ctx)
    );
    scenario!(
        "21 lift: refused to a service account and under another's name; `kubectl custody lift` re-admits the template",
        lift::lift(&ctx)
    );
    scenario!(
        "5 human regression alerted, not reverted",
        rollback::human_alerted(&ctx)
    );
    scenario!(
        "9 broken agent StatefulSet revision reverted",
        rollback::stateful_set_reverted(&ctx)
    );
    scenario!(
        "31 a broken agent revision restarted by a person is reverted to v1, and Git's copy of it stays quarantined",
        rollback::restarted_then_reverted(&ctx)
    );
    scenario!(
        "10 a forged controller ownerReference is judged",
        admission::forged_owner_denied(&ctx)
    );
    if ctx.local.is_some() {
        scenario!(
            "11 webhook down: scale-up, replacements, CronJob/Job and DaemonSet pods, and a revert proceed",
            outage::webhook_down(&mut ctx)
        );
        scenario!(
            "12 leader SIGKILLed mid-rollout: the survivor reverts exactly once",
            leader::leader_killed(&mut ctx)
        );
        scenario!(
            "13 certificate rotated under load: no failed request",
            outage::certificate_rotation(&mut ctx)
        );
        scenario!(
            "16 failurePolicyByActor: webhook down under Ignore, an agent is refused and a person admitted",
            outage::failure_policy_by_actor(&mut ctx)
        );
        scenario!(
            "22 teams: a reverted agent Deployment's record goes to its team's target, with the header of a Secret, naming team and on-call",
            teams::revert_notifies_team(&ctx)
        );
        scenario!(
            "23 break-glass: a person's break-glass revision gets one BreakGlass Warning Event, one count and one notice to the team",
            teams::break_glass_visible(&ctx)
        );
        if wanted(oncall::NAME) {
            if alertmanager::Alertmanager::binary().is_some() {
                scenario!(oncall::NAME, oncall::notifications(&ctx));
            } else {
                say(&format!(
                    "SKIPPED {}: no Alertmanager (Debian's `prometheus-alertmanager` package; .ci/tools.sh installs it; or CUSTODY_E2E_ALERTMANAGER)",
                    oncall::NAME
                ));
            }
        }
        if ctx.settings.lab.is_some() {
            scenario!(
                "14 a node dies under an agent revision: nothing reverted or alerted",
                node::node_dies(&mut ctx)
            );
            scenario!(
                "33 kube-apiserver SIGKILLed during an agent's broken rollout: the watches recover, one revert",
                faults::apiserver_killed_mid_rollout(&ctx)
            );
            scenario!(
                "34 etcd stopped under steady applies: nothing admitted unjudged, the revert recorded once",
                faults::etcd_stopped_under_applies(&ctx)
            );
        } else {
            say(
                "SKIPPED scenarios 14, 33 and 34 (node dies, apiserver killed, etcd stopped): set CUSTODY_E2E_LAB to the lab's folder",
            );
        }
    } else {
        say(
            "SKIPPED scenarios 11-14, 16, 22, 23 and 43 (outage, leader kill, certificate rotation, node death, failure policy by actor, teams' notifications to receivers on 127.0.0.1): they need local processes; run with CUSTODY_E2E_MODE=local",
        );
    }
    if ["17 ", "18 ", "19 ", "27 ", "29 ", "30 "]
        .iter()
        .any(|n| wanted(n))
    {
        let signed = signatures::Signed::setup(&ctx).await;
        scenario!(
            "17 a signed agent Deployment is admitted; a forged actor: human is denied",
            signatures::agent_admitted_forgery_denied(&ctx, &signed)
        );
        scenario!(
            "18 a signed revision reverted by the controller verifies after the revert",
            signatures::signed_revert_verifies(&ctx, &signed)
        );
        scenario!(
            "19 key rotation: both keys during the overlap, the old one refused after notAfter",
            signatures::key_rotation(&ctx, &signed)
        );
        scenario!(
            "27 a signed StatefulSet revision reverted by the controller verifies after the revert",
            signatures::signed_stateful_set_revert_verifies(&ctx, &signed)
        );
        scenario!(
            "29 signed as written: rewritten quantities and a bare Pod the admission plugins add to verify as stored",
            signatures::written_forms_verify(&ctx, &signed)
        );
        scenario!(
            "30 kubectl rollout restart of a signed agent Deployment is admitted without new provenance and still verifies",
            signatures::restart_keeps_signature(&ctx, &signed)
        );
        if let Ok(s) = &signed {
            s.teardown(&ctx).await;
        }
    }
    scenario!(
        "32 public corpus: every project's workloads signed, applied with kubectl, verified live, re-applied, restarted, verified again",
        corpus::real_manifests(&ctx)
    );
    if ["24 ", "25 ", "26 ", "28 "].iter().any(|n| wanted(n)) {
        // With a local install, a second webhook process judges every workload too, as a
        // second replica would: the guardrails must hold in both.
        let second = match ctx.local.as_mut() {
            Some(local) => match local.start_second_webhook().await {
                Ok(()) => true,
                Err(e) => {
                    say(&format!("second webhook process not started: {e:#}"));
                    false
                }
            },
            None => false,
        };
        let frozen = freeze::Frozen::setup(&ctx).await;
        scenario!(
            "24 ownership Registered: an unregistered owner is denied; a registered team's workload without oncall is admitted",
            freeze::registered_owner(&frozen)
        );
        scenario!(
            "25 a freeze denies an agent's change; Custody's revert and a person's break-glass go through, with a BreakGlass Event",
            freeze::freeze(&frozen)
        );
        scenario!(
            "26 probation: an agent's third broken revision reverted, its fourth change denied, a person's admitted; a lift lets it back",
            probation::probation(&ctx, &frozen)
        );
        scenario!(
            "28 budget: an agent with two rollouts in flight is refused a third until one finishes, by both webhook processes",
            budget::in_flight_budget(&ctx, &frozen)
        );
        if let Ok(f) = &frozen {
            f.teardown(&ctx).await;
        }
        if second
            && let Some(local) = ctx.local.as_mut()
            && let Err(e) = local.stop_second_webhook()
        {
            say(&format!(
                "stopping the second webhook process failed: {e:#}"
            ));
        }
    }
    scenario!(
        "35 a registered team's on-call stands in for a missing oncall under the default FreeForm policy too",
        freeze::team_oncall_under_every_policy(&ctx)
    );
    if analysis::NAMES.iter().any(|n| wanted(n)) {
        let skipped = |why: &str| {
            for name in analysis::NAMES.iter().filter(|n| wanted(n)) {
                say(&format!("SKIPPED {name}: {why}"));
            }
        };
        if ctx.local.is_none() {
            skipped(
                "the controller must reach a Prometheus on 127.0.0.1; run with CUSTODY_E2E_MODE=local",
            );
        } else {
            match scene::Rig::setup(&ctx).await.transpose() {
                None => skipped(
                    "no prometheus (Debian's `prometheus` package; .ci/tools.sh installs it)",
                ),
                Some(rig) => {
                    scenario!(analysis::NAMES[0], analysis::agent_reverted(&ctx, &rig));
                    scenario!(analysis::NAMES[1], analysis::human_alerted(&ctx, &rig));
                    scenario!(analysis::NAMES[2], analysis::prometheus_away(&ctx, &rig));
                    scenario!(analysis::NAMES[3], analysis::canary_released(&ctx, &rig));
                    scenario!(analysis::NAMES[4], analysis::canary_reverted(&ctx, &rig));
                    scenario!(
                        analysis::NAMES[5],
                        analysis::stateful_set_partition(&ctx, &rig)
                    );
                }
            }
        }
    }
    scenario!(approval::NAME, approval::approvals(&ctx));
    scenario!(
        "6 kube-system untouched",
        admission::kube_system_untouched(&ctx)
    );
    scenario!("7 policy change live", admission::policy_change_live(&ctx));
    scenario!(
        "20 background audit: a running workload a new policy refuses is in the namespace's Report",
        audit::reports_what_runs(&ctx)
    );

    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;

    scenario!(
        "8 uninstall leaves no webhook configuration",
        helm_install::uninstall(&mut ctx)
    );
    if ctx.local.is_some() {
        scenario!(
            "15 helm install and uninstall of the chart leave nothing behind",
            helm_install::helm_round_trip(&mut ctx)
        );
    }

    let logs = match ctx.local.as_ref() {
        Some(l) if outcomes.iter().any(|o| !o.ok) => {
            format!("{}\n{}", l.webhook_log(), l.controller_logs())
        }
        _ => String::new(),
    };
    // Uninstall before judging, so a failed assertion never leaves the cluster blocked.
    drop(ctx);

    println!("\nCustody e2e:");
    for o in &outcomes {
        println!(
            "  {} {:<96} {:>6.1}s  {}",
            if o.ok { "PASS" } else { "FAIL" },
            o.name,
            o.seconds,
            o.detail
        );
    }
    // Each failure with its reason, so the panic (the part of a CI log that is always shown)
    // says why and not only which.
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.name, o.detail))
        .collect();
    if !failed.is_empty() {
        println!("\nlogs:\n{logs}");
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}
