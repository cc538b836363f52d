//! `custody`: Custody's command line. `custody check` judges manifests offline with the same
//! engine as the admission webhook.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use custody_crds::Vocabulary;
use custody_webhook::check::{self, CheckOptions};

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
            Command::Crds => panic!("parsed the wrong command"),
        }
    }
}
