//! `kubectl-custody`, run as `kubectl custody`: the on-call view of Custody in a live cluster.
//! `why`, `records` and `changes` only read; `lift` writes one thing, a record's `status.lifted`
//! (or `status.probationLifted`), as the person running it, and an Event; `resume` releases a
//! rollout the controller holds (the workload's `held` mark, and its pause or partition), and
//! records an Event; `propose` creates an agent's CustodyChange as its proposer, and `approve`
//! and `reject` write a person's decision into its status. `main` parses and runs each command;
//! `cluster` reads the cluster and publishes Events, `resume` writes a release, `changes` the
//! CustodyChanges; judging and rendering live in `custody_cli::plugin` and
//! `custody_cli::propose`.

mod changes;
mod cluster;
mod resume;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use custody_cli::plugin::decide::Verdict;
use custody_cli::plugin::lift::{self, LiftPlan};
use custody_cli::plugin::{self, ObjectRef, format, why};
use custody_crds::{CustodyPolicy, CustodyTeam, RollbackRecord, Vocabulary};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Client, Resource};

use cluster::{
    list_custom, namespace_labels, publish, read_workload, revisions, whoami, workload_api,
};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-custody",
    bin_name = "kubectl custody",
    version,
    about = "Custody for on-call: why a workload is (or would be) denied, its revisions and its RollbackRecords, lifting a quarantine, resuming a held rollout, and agents' change requests: proposing, approving, rejecting and listing them."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Judge a live object as the webhook would judge creating it now, and show its provenance,
    /// its revisions (Deployments: ReplicaSets with the controller's health marks), the
    /// RollbackRecords naming it and whether its current template is quarantined.
    Why(WhyArgs),
    /// List RollbackRecords, newest first.
    Records(RecordsArgs),
    /// Lift the quarantine of a revert's RollbackRecord, as yourself, with a reason: the
    /// reverted template may be applied again. With --probation, lift the probation of the
    /// record's agent instead. Written to the record's status (the webhook admits it only from a
    /// person, under their own name) and as an Event on the workload.
    Lift(LiftArgs),
    /// Release a rollout the controller holds after its first step (a Deployment paused, or a
    /// StatefulSet's partition at its last ordinal): the rollout proceeds at once, and the
    /// controller still judges the revision and reverts it if it regresses. Refused for a
    /// workload Custody does not hold.
    Resume(ResumeArgs),
    /// Propose an agent's change to a workload a policy's approval protects: creates a
    /// CustodyChange per workload of the manifest, as you (the webhook checks you are its
    /// proposer), with the diff against what runs, and says how to wait for its approval before
    /// applying the same manifest unchanged.
    Propose(ProposeArgs),
    /// Approve a CustodyChange, as yourself, with a reason. Shows the change, then appends your
    /// approval to its status; the webhook admits it only from a person allowed to approve,
    /// never its proposer.
    Approve(DecideArgs),
    /// Reject a CustodyChange, as yourself, with a reason: the webhook never admits its change.
    Reject(DecideArgs),
    /// List CustodyChanges, newest first, or show one in full with its diff.
    Changes(ChangesArgs),
}

#[derive(Debug, clap::Args)]
struct ProposeArgs {
    /// The workload manifest the agent will apply (YAML or JSON, one or more documents), or -
    /// for stdin. Documents that are not workloads are left out.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    file: PathBuf,
    /// What the change does and why, for the reviewer (10 characters at least).
    #[arg(long)]
    reason: String,
    /// The namespace of workloads that do not name one; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct DecideArgs {
    /// The CustodyChange (`kubectl custody changes` lists them; a denial names it).
    #[arg(value_name = "NAME")]
    name: String,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// What you reviewed (10 characters at least); kept in the change's status.
    #[arg(long)]
    reason: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ChangesArgs {
    /// One CustodyChange to show in full.
    #[arg(value_name = "NAME", conflicts_with = "all_namespaces")]
    name: Option<String>,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct ResumeArgs {
    /// The workload: deployment/NAME (deploy) or statefulset/NAME (sts).
    #[arg(value_name = "KIND/NAME", value_parser = plugin::resume::parse_target)]
    target: ObjectRef,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct LiftArgs {
    /// The RollbackRecord (`kubectl custody records` lists them).
    #[arg(value_name = "RECORD")]
    record: String,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// Why the reverted template may come back (or, with --probation, what was checked); kept
    /// in the record and the Event.
    #[arg(long)]
    reason: String,
    /// Lift the probation of the record's agent (name its newest revert's record), not the
    /// quarantine of its template.
    #[arg(long)]
    probation: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct WhyArgs {
    /// The object: <kind>/<name>, kind one of deployment (deploy), statefulset (sts), daemonset
    /// (ds), replicaset (rs), job, cronjob (cj), pod (po).
    #[arg(value_name = "KIND/NAME")]
    target: ObjectRef,
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// The requester the object is judged as. Policies' agent, controller and excluded
    /// identities, and the actor cross-check, use this name. Reads are not impersonated.
    #[arg(long = "as", value_name = "USER", default_value = "kubectl-custody")]
    user: String,
    /// A group of that requester; repeatable.
    #[arg(long = "as-group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, clap::Args)]
struct RecordsArgs {
    /// The namespace; the kubeconfig context's by default.
    #[arg(short, long, conflicts_with = "all_namespaces")]
    namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(args).await {
        Ok(text) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kubectl-custody: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<String> {
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    match args.command {
        Command::Why(a) => why_cmd(client, a).await,
        Command::Records(a) => records_cmd(client, a).await,
        Command::Lift(a) => lift_cmd(client, a).await,
        Command::Resume(a) => resume_cmd(client, a).await,
        Command::Propose(a) => propose_cmd(client, a).await,
        Command::Approve(a) => decide_cmd(client, a, Verdict::Approve).await,
        Command::Reject(a) => decide_cmd(client, a, Verdict::Reject).await,
        Command::Changes(a) => {
            let namespace = match (a.all_namespaces, a.namespace) {
                (true, _) => None,
                (false, ns) => Some(ns.unwrap_or_else(|| client.default_namespace().to_string())),
            };
            changes::show(
                &client,
                a.name.as_deref(),
                namespace.as_deref(),
                a.output == Output::Json,
            )
            .await
        }
    }
}

async fn propose_cmd(client: Client, args: ProposeArgs) -> anyhow::Result<String> {
    let manifest = args.file.display().to_string();
    let text = if manifest == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .context("cannot read the manifest from stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {manifest}"))?
    };
    let vocabulary = Vocabulary::with_prefix(&args.annotation_prefix);
    let reports = changes::propose(
        &client,
        &changes::ProposeRequest {
            manifest: &manifest,
            text: &text,
            namespace: args.namespace.as_deref(),
            reason: &args.reason,
            vocabulary: &vocabulary,
        },
    )
    .await?;
    Ok(match args.output {
        Output::Text => format::proposed_text(&reports),
        Output::Json => format::json(&reports),
    })
}

async fn decide_cmd(client: Client, args: DecideArgs, verdict: Verdict) -> anyhow::Result<String> {
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let report = changes::decide(
        &client,
        &args.name,
        &namespace,
        &args.reason,
        verdict,
        args.output == Output::Text,
    )
    .await?;
    Ok(match args.output {
        Output::Text => format::decided_text(&report),
        Output::Json => format::json(&report),
    })
}

async fn resume_cmd(client: Client, args: ResumeArgs) -> anyhow::Result<String> {
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let vocabulary = Vocabulary::with_prefix(&args.annotation_prefix);
    let report = resume::release(&client, &args.target, &namespace, &vocabulary).await?;
    Ok(match args.output {
        Output::Text => format::resume_text(&report),
        Output::Json => format::json(&report),
    })
}

async fn lift_cmd(client: Client, args: LiftArgs) -> anyhow::Result<String> {
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let records: Api<RollbackRecord> = Api::namespaced(client.clone(), &namespace);
    let record = records
        .get_opt(&args.record)
        .await
        .with_context(|| format!("cannot read RollbackRecord {} in namespace {namespace}", args.record))?
        .with_context(|| format!("RollbackRecord {} not found in namespace {namespace} (`kubectl custody records -n {namespace}` lists them)", args.record))?;
    let user = whoami(&client).await?;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let what = if args.probation {
        lift::LiftKind::Probation
    } else {
        lift::LiftKind::Quarantine
    };
    let mut report = match lift::plan(&record, &user, &args.reason, now, what)? {
        LiftPlan::AlreadyLifted(report) => report,
        LiftPlan::Write { patch, mut report } => {
            records
                .patch_status(&args.record, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(status) => anyhow::anyhow!("{}", status.message),
                    other => anyhow::Error::new(other),
                })
                .with_context(|| format!("cannot lift RollbackRecord {}", args.record))?;
            report.event = Some(lift_event(&client, &record, &report, &user).await);
            report
        }
    };
    if report.event.is_none() && !report.already_lifted {
        report.event = Some("not attempted".into());
    }
    Ok(match args.output {
        Output::Text => format::lift_text(&report),
        Output::Json => format::json(&report),
    })
}

/// Records the lift as an Event on the workload, naming the record; says what became of it.
async fn lift_event(
    client: &Client,
    record: &RollbackRecord,
    report: &lift::LiftReport,
    user: &str,
) -> String {
    let workload = ObjectReference {
        api_version: Some(
            format!("{}/v1", report.kind.group())
                .trim_start_matches('/')
                .to_string(),
        ),
        kind: Some(report.kind.as_str().into()),
        name: Some(report.workload.clone()),
        namespace: Some(report.namespace.clone()),
        uid: record.spec.workload.uid.clone(),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: report.kind_of_lift.event_reason().into(),
        note: Some(lift::event_note(report).chars().take(1000).collect()),
        action: "Lift".into(),
        secondary: Some(record.object_ref(&())),
    };
    publish(client, Some(user), &event, &workload).await
}

async fn why_cmd(client: Client, args: WhyArgs) -> anyhow::Result<String> {
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    let kind = args.target.kind;
    let object = read_workload(
        &workload_api(&client, &namespace, kind),
        &args.target,
        &namespace,
    )
    .await?;

    let policies = list_custom::<CustodyPolicy>(Api::all(client.clone())).await?;
    let records =
        list_custom::<RollbackRecord>(Api::namespaced(client.clone(), &namespace)).await?;
    // A cluster without the CustodyTeam CRD (an older install) has no registered teams.
    let teams = list_custom::<CustodyTeam>(Api::all(client.clone()))
        .await
        .unwrap_or_default();
    let namespace_labels = namespace_labels(&client, &namespace).await;
    let revisions = revisions(&client, &namespace, kind, &object).await?;
    let change_requests = changes::for_why(&client, &namespace).await;

    let vocabulary = Vocabulary::with_prefix(&args.annotation_prefix);
    let report = why::explain(&why::WhyInput {
        target: &args.target,
        namespace: &namespace,
        object: &object,
        policies: &policies,
        namespace_labels: namespace_labels.as_ref(),
        records: &records,
        teams: &teams,
        changes: &change_requests,
        revisions: &revisions,
        user: &args.user,
        groups: &args.groups,
        vocabulary: &vocabulary,
        now: k8s_openapi::jiff::Timestamp::now(),
    });
    Ok(match args.output {
        Output::Text => format::why_text(&report),
        Output::Json => format::json(&report),
    })
}

async fn records_cmd(client: Client, args: RecordsArgs) -> anyhow::Result<String> {
    let api: Api<RollbackRecord> = if args.all_namespaces {
        Api::all(client)
    } else {
        let ns = args
            .namespace
            .unwrap_or_else(|| client.default_namespace().to_string());
        Api::namespaced(client, &ns)
    };
    let records = list_custom(api).await?;
    let rows = plugin::records::rows(&records);
    Ok(match args.output {
        Output::Text => format::records_text(&rows),
        Output::Json => format::json(&rows),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use custody_crds::WorkloadKind;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn why_parses_kubectl_style_arguments() {
        let args = Args::try_parse_from([
            "kubectl-custody",
            "why",
            "deploy/web",
            "-n",
            "shop",
            "-o",
            "json",
            "--as",
            "system:serviceaccount:ci:agent",
        ])
        .unwrap();
        match args.command {
            Command::Why(w) => {
                assert_eq!(w.target.kind, WorkloadKind::Deployment);
                assert_eq!(w.target.name, "web");
                assert_eq!(w.namespace.as_deref(), Some("shop"));
                assert_eq!(w.output, Output::Json);
                assert_eq!(w.user, "system:serviceaccount:ci:agent");
            }
            _ => panic!("parsed the wrong command"),
        }
        let args = Args::try_parse_from(["kubectl-custody", "why", "sts/db"]).unwrap();
        match args.command {
            Command::Why(w) => assert_eq!(w.user, "kubectl-custody"),
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["kubectl-custody", "why", "service/web"]).is_err());
        assert!(Args::try_parse_from(["kubectl-custody", "why"]).is_err());
    }

    #[test]
    fn records_takes_a_namespace_or_all_but_not_both() {
        let args = Args::try_parse_from(["kubectl-custody", "records", "-A"]).unwrap();
        match args.command {
            Command::Records(r) => assert!(r.all_namespaces && r.namespace.is_none()),
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["kubectl-custody", "records", "-A", "-n", "x"]).is_err());
    }

    #[test]
    fn lift_needs_a_record_and_a_reason() {
        let args = Args::try_parse_from([
            "kubectl-custody",
            "lift",
            "web-r2",
            "-n",
            "shop",
            "--reason",
            "root cause fixed",
            "-o",
            "json",
        ])
        .unwrap();
        match args.command {
            Command::Lift(l) => {
                assert_eq!(l.record, "web-r2");
                assert_eq!(l.namespace.as_deref(), Some("shop"));
                assert_eq!(l.reason, "root cause fixed");
                assert_eq!(l.output, Output::Json);
            }
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["kubectl-custody", "lift", "web-r2"]).is_err());
        assert!(Args::try_parse_from(["kubectl-custody", "lift", "--reason", "x"]).is_err());
    }

    #[test]
    fn propose_approve_reject_and_changes_parse_like_kubectl() {
        let args = Args::try_parse_from([
            "kubectl-custody",
            "propose",
            "-f",
            "web.yaml",
            "-n",
            "shop",
            "--reason",
            "bump web to 1.28",
        ])
        .unwrap();
        match args.command {
            Command::Propose(p) => {
                assert_eq!(p.file, PathBuf::from("web.yaml"));
                assert_eq!(p.namespace.as_deref(), Some("shop"));
                assert_eq!(p.output, Output::Text);
            }
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["kubectl-custody", "propose", "-f", "-"]).is_err());
        for verb in ["approve", "reject"] {
            let args = Args::try_parse_from([
                "kubectl-custody",
                verb,
                "web-1a2b3c4d5e",
                "--reason",
                "checked the diff",
                "-o",
                "json",
            ])
            .unwrap();
            match args.command {
                Command::Approve(d) | Command::Reject(d) => {
                    assert_eq!(d.name, "web-1a2b3c4d5e");
                    assert_eq!(d.output, Output::Json);
                }
                _ => panic!("parsed the wrong command"),
            }
            assert!(Args::try_parse_from(["kubectl-custody", verb, "web-1a2b3c4d5e"]).is_err());
        }
        let args = Args::try_parse_from(["kubectl-custody", "changes", "-A"]).unwrap();
        match args.command {
            Command::Changes(c) => assert!(c.all_namespaces && c.name.is_none()),
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["kubectl-custody", "changes", "web-1", "-A"]).is_err());
        assert!(Args::try_parse_from(["kubectl-custody", "changes", "-A", "-n", "x"]).is_err());
    }

    #[test]
    fn resume_takes_a_deployment_or_a_statefulset() {
        let args = Args::try_parse_from([
            "kubectl-custody",
            "resume",
            "sts/db",
            "-n",
            "shop",
            "-o",
            "json",
        ])
        .unwrap();
        match args.command {
            Command::Resume(r) => {
                assert_eq!(r.target.kind, WorkloadKind::StatefulSet);
                assert_eq!(r.target.name, "db");
                assert_eq!(r.namespace.as_deref(), Some("shop"));
                assert_eq!(r.output, Output::Json);
            }
            _ => panic!("parsed the wrong command"),
        }
        let args = Args::try_parse_from(["kubectl-custody", "resume", "Deployment/web"]).unwrap();
        match args.command {
            Command::Resume(r) => assert_eq!(r.target.kind, WorkloadKind::Deployment),
            _ => panic!("parsed the wrong command"),
        }
        let refused = Args::try_parse_from(["kubectl-custody", "resume", "ds/agent"]).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("Custody holds only Deployments and StatefulSets"),
            "{refused}"
        );
        assert!(Args::try_parse_from(["kubectl-custody", "resume"]).is_err());
    }
}
