//! `custody`: Custody's command line. `custody check` judges manifests offline with the same
//! engine as the admission webhook; `custody vap` writes its ValidatingAdmissionPolicy backstop.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use custody_crds::Vocabulary;
use custody_webhook::check::{self, CheckOptions};
use custody_webhook::vap;

#[derive(Debug, Parser)]
#[command(
    name = "custody",
    version,
    about = "Provenance, ownership and rollback governance for workloads shipped by AI agents"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Judge manifests as the admission webhook would, with no cluster.
    ///
    /// Exit status: 0 when every object passes, 1 when one is denied (or, with --strict, has
    /// any violation), 2 when a file cannot be read or a policy is invalid.
    Check(CheckArgs),
    /// Print the CustomResourceDefinitions.
    Crds,
    /// Print a ValidatingAdmissionPolicy and its binding per CustodyPolicy: a backstop the
    /// apiserver enforces by itself, so unannotated workloads are refused even while the
    /// webhook is down under failurePolicy Ignore.
    ///
    /// Exit status: 0 when written, 2 when a file cannot be read or a policy is invalid.
    Vap(VapArgs),
}

#[derive(Debug, clap::Args)]
struct VapArgs {
    /// CustodyPolicy files or directories (multi-document YAML, JSON), or - for stdin.
    #[arg(short, long = "policy", value_name = "PATH", required = true)]
    policies: Vec<PathBuf>,
    /// The cluster's Kubernetes version: 1.28 and 1.29 get admissionregistration.k8s.io/v1beta1,
    /// 1.30 and later v1.
    #[arg(long, default_value = "1.30")]
    kube_version: String,
    /// A namespace never judged besides kube-system, kube-public and kube-node-lease (Custody's
    /// own, say); repeatable.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE")]
    exclude_namespaces: Vec<String>,
    /// A user never judged (Custody's controller, e.g.
    /// system:serviceaccount:custody-system:custody-controller); repeatable.
    #[arg(long = "exclude-user", value_name = "USER")]
    exclude_users: Vec<String>,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Manifest files or directories (.yaml, .yml, .json), or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// CustodyPolicy files or directories; without one, the built-in default policy applies.
    #[arg(short, long = "policy", value_name = "PATH")]
    policies: Vec<PathBuf>,
    /// The user the objects are applied as (agent, controller and excluded identities match on
    /// it). An object with a controller ownerReference is judged unless this is a controller
    /// identity, e.g. system:serviceaccount:kube-system:replicaset-controller.
    #[arg(long, default_value = "custody-check")]
    user: String,
    /// A group of that user; repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// The namespace of objects that do not name one.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Fail (exit 1) on violations of Warn and Audit policies too.
    #[arg(long)]
    strict: bool,
    /// Also list objects that were not judged.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Check(args) => {
            let options = CheckOptions {
                policies: args.policies,
                user: args.user,
                groups: args.groups,
                namespace: args.namespace,
                vocabulary: Vocabulary::with_prefix(&args.annotation_prefix),
            };
            let report = check::run(&args.paths, &mut std::io::stdin().lock(), &options);
            let text = match args.output {
                Output::Text => report.to_text(args.verbose),
                Output::Json => report.to_json() + "\n",
            };
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(report.exit_code(args.strict))
        }
        Command::Vap(args) => vap(args),
        Command::Crds => match custody_crds::generate::crd_documents() {
            Ok(docs) => {
                let mut out = std::io::stdout().lock();
                for (_, yaml) in docs {
                    let _ = write!(out, "---\n{yaml}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("custody: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn vap(args: VapArgs) -> ExitCode {
    let api_version = match vap::ApiVersion::for_kube_version(&args.kube_version) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("custody: {e}");
            return ExitCode::from(2);
        }
    };
    let (policies, invalid, unreadable) =
        check::load_policies(&args.policies, &mut std::io::stdin().lock());
    if !invalid.is_empty() || !unreadable.is_empty() {
        for e in &unreadable {
            eprintln!("custody: {e}");
        }
        for e in &invalid {
            eprintln!("custody: {e}");
        }
        return ExitCode::from(2);
    }
    let options = vap::VapOptions {
        api_version,
        vocabulary: Vocabulary::with_prefix(&args.annotation_prefix),
        exclude_namespaces: args.exclude_namespaces,
        exclude_users: args.exclude_users,
    };
    let generated = vap::generate(&policies, &options);
    for name in &generated.empty {
        eprintln!("custody: CustodyPolicy {name:?} has no annotation rules; no backstop for it");
    }
    for b in &generated.backstops {
        if let Some(skipped) = b.policy.metadata.annotations.get(vap::SKIPPED_ANNOTATION) {
            eprintln!("custody: {}: {skipped}", b.policy.metadata.name);
        }
    }
    match vap::to_yaml(&generated) {
        Ok(yaml) => {
            let _ = std::io::stdout().lock().write_all(yaml.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("custody: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn check_requires_a_path() {
        assert!(Args::try_parse_from(["custody", "check"]).is_err());
        let args =
            Args::try_parse_from(["custody", "check", "-", "-p", "policy.yaml", "-o", "json"])
                .unwrap();
        match args.command {
            Command::Check(c) => {
                assert_eq!(c.paths, vec![PathBuf::from("-")]);
                assert_eq!(c.output, Output::Json);
            }
            _ => panic!("parsed the wrong command"),
        }
    }

    #[test]
    fn vap_requires_a_policy_and_defaults_to_1_30() {
        assert!(Args::try_parse_from(["custody", "vap"]).is_err());
        let args = Args::try_parse_from(["custody", "vap", "-p", "-"]).unwrap();
        match args.command {
            Command::Vap(v) => {
                assert_eq!(v.policies, vec![PathBuf::from("-")]);
                assert_eq!(v.kube_version, "1.30");
            }
            _ => panic!("parsed the wrong command"),
        }
    }
}
