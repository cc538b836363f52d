//! `custody`: Custody's command line. `custody check` judges manifests offline with the same
//! engine as the admission webhook; `custody vap` writes its ValidatingAdmissionPolicy backstop;
//! `custody propose` writes the CustodyChange an agent's manifest needs approved.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use custody_cli::check::{self, CheckOptions};
use custody_cli::propose;
use custody_cli::stamp;
use custody_cli::vap;
use custody_crds::Vocabulary;

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
    /// Fill provenance and ownership into each workload's annotations, and with --sign, add a
    /// signed attestation of them. Writes the manifests to stdout; other objects pass through.
    ///
    /// Values come from flags, then CUSTODY_* variables, then the CI system (GitHub Actions,
    /// GitLab CI, Argo CD plugins), then the local git checkout; owner and on-call from
    /// .custody.yaml. Exit status: 0 when written, 2 when something cannot be read or resolved.
    Stamp(Box<StampArgs>),
    /// Write a signing key pair: NAME.key (PKCS#8 PEM, private) and NAME.pub (PEM
    /// SubjectPublicKeyInfo, for spec.signatures.keys[].publicKey).
    Keygen(KeygenArgs),
    /// Verify the signed attestations of manifests against the keys of CustodyPolicies, as the
    /// webhook would.
    ///
    /// Exit status: 0 when every workload a signing policy selects verifies, 1 when one does
    /// not, 2 when a file cannot be read or a policy is invalid.
    Verify(VerifyArgs),
    /// Print a ValidatingAdmissionPolicy and its binding per CustodyPolicy: a backstop the
    /// apiserver enforces by itself, so unannotated workloads are refused even while the
    /// webhook is down under failurePolicy Ignore.
    ///
    /// Exit status: 0 when written, 2 when a file cannot be read or a policy is invalid.
    Vap(VapArgs),
    /// Write the CustodyChange (YAML, on stdout) that asks a person to approve an agent's
    /// manifest before the webhook admits it, with no cluster: pipe it to `kubectl create -f -`
    /// as the proposer. Says on stderr how to follow it. (`kubectl custody propose` does the
    /// same against the cluster, with the diff against what runs.)
    ///
    /// Exit status: 0 when written, 2 when the manifest cannot be read or proposed.
    Propose(ProposeArgs),
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
    /// The user who will create the request (`kubectl auth whoami`), which the webhook checks,
    /// e.g. system:serviceaccount:agents:claude.
    #[arg(long, env = "CUSTODY_PROPOSER", value_name = "USER")]
    proposer: Option<String>,
    /// The namespace of workloads that do not name one: the one they will be applied to.
    #[arg(short, long, env = "CUSTODY_NAMESPACE")]
    namespace: Option<String>,
    /// The running workload (its manifest or `kubectl get -o yaml`), for the diff; without it
    /// the diff lists the whole proposed template.
    #[arg(long, value_name = "PATH")]
    against: Option<PathBuf>,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
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
    /// Judge as of this instant (RFC 3339, e.g. 2026-12-24T18:00:00Z) instead of now: change
    /// freezes and signing keys' validity windows depend on it.
    #[arg(long, value_name = "TIME")]
    at: Option<k8s_openapi::jiff::Timestamp>,
}

#[derive(Debug, clap::Args)]
struct StampArgs {
    /// Manifest files or directories (.yaml, .yml, .json), or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Who made this revision: human, agent or automation.
    #[arg(long, env = "CUSTODY_ACTOR")]
    actor: Option<String>,
    /// Which agent, e.g. claude-code/1.0.
    #[arg(long, env = "CUSTODY_AGENT")]
    agent: Option<String>,
    /// The model behind the agent.
    #[arg(long, env = "CUSTODY_MODEL")]
    model: Option<String>,
    /// The source repository (default: the CI system's, or the checkout's origin remote).
    #[arg(long, env = "CUSTODY_SOURCE_REPO")]
    source_repo: Option<String>,
    /// The commit (default: the CI system's, or the checkout's HEAD).
    #[arg(long, env = "CUSTODY_SOURCE_COMMIT")]
    source_commit: Option<String>,
    /// The pipeline run or agent session (default: the CI system's run URL).
    #[arg(long, env = "CUSTODY_PIPELINE_RUN")]
    pipeline_run: Option<String>,
    /// The owning team (default: .custody.yaml).
    #[arg(long, env = "CUSTODY_OWNER")]
    owner: Option<String>,
    /// How to reach on-call (default: .custody.yaml).
    #[arg(long, env = "CUSTODY_ONCALL")]
    oncall: Option<String>,
    /// What the controller may do on regression: auto, alert or unsafe.
    #[arg(long, env = "CUSTODY_ROLLBACK")]
    rollback: Option<String>,
    /// Sign with this PKCS#8 PEM private key (Ed25519 or ECDSA P-256).
    #[arg(long, value_name = "KEY", env = "CUSTODY_SIGNING_KEY")]
    sign: Option<PathBuf>,
    /// The key id to sign under, as listed in the policy's spec.signatures.keys[].keyId
    /// (default: the public key's sha256 fingerprint).
    #[arg(long, env = "CUSTODY_KEY_ID", requires = "sign")]
    key_id: Option<String>,
    /// Stamp HEAD even though the work tree has uncommitted changes (recorded in the
    /// attestation).
    #[arg(long)]
    allow_dirty: bool,
    /// The owner/on-call file (default: .custody.yaml here, then at the checkout's top).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The namespace of objects that do not name one: the one they will be applied to.
    #[arg(short, long, default_value = "default", env = "CUSTODY_NAMESPACE")]
    namespace: String,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
}

#[derive(Debug, clap::Args)]
struct KeygenArgs {
    /// The algorithm.
    #[arg(long, value_enum, default_value_t = Algorithm::Ed25519)]
    algorithm: Algorithm,
    /// Write NAME.key and NAME.pub.
    #[arg(default_value = "custody")]
    name: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Algorithm {
    Ed25519,
    P256,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    /// Manifest files or directories (.yaml, .yml, .json), or - for stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// CustodyPolicy files or directories holding spec.signatures.
    #[arg(short, long = "policy", value_name = "PATH", required = true)]
    policies: Vec<PathBuf>,
    /// The namespace of objects that do not name one.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// The user the objects are applied as.
    #[arg(long, default_value = "custody-verify")]
    user: String,
    /// The annotation prefix.
    #[arg(long, env = "CUSTODY_ANNOTATION_PREFIX", default_value = custody_crds::vocabulary::DEFAULT_PREFIX)]
    annotation_prefix: String,
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
                now: args.at.unwrap_or_else(k8s_openapi::jiff::Timestamp::now),
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
        Command::Stamp(args) => stamp(*args),
        Command::Keygen(args) => keygen(args),
        Command::Verify(args) => verify(args),
        Command::Propose(args) => propose_cmd(args),
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

fn stamp(args: StampArgs) -> ExitCode {
    use custody_crds::AnnotationKey as K;
    let flags: stamp::resolve::Explicit = [
        (K::Actor, args.actor),
        (K::Agent, args.agent),
        (K::Model, args.model),
        (K::SourceRepo, args.source_repo),
        (K::SourceCommit, args.source_commit),
        (K::PipelineRun, args.pipeline_run),
        (K::Owner, args.owner),
        (K::Oncall, args.oncall),
        (K::Rollback, args.rollback),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let fail = |message: String| {
        eprintln!("custody stamp: {message}");
        ExitCode::from(2)
    };
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let checkout = stamp::edge::git_info(&cwd);
    let config = match stamp::edge::repo_config(
        args.config.as_deref(),
        &cwd,
        checkout.as_ref().map(|(top, _)| top.as_path()),
    ) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let resolved = match stamp::resolve(
        &flags,
        &stamp::edge::environment(),
        checkout.as_ref().map(|(_, info)| info),
        config.as_ref(),
        args.allow_dirty,
    ) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    if resolved.dirty {
        eprintln!(
            "custody stamp: warning: the work tree has uncommitted changes; stamped anyway (--allow-dirty), and recorded as dirtyTree in the attestation"
        );
    }
    let signer = match &args.sign {
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|pem| {
                custody_crds::attestation::SigningKey::from_pem(&pem)
                    .map_err(|e| format!("{}: {e}", path.display()))
            }) {
            Ok(key) => Some(key),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let key_id = match (&signer, args.key_id) {
        (_, Some(id)) => id,
        (Some(key), None) => match key.public_key() {
            Ok(public) => public.fingerprint(),
            Err(e) => return fail(e.to_string()),
        },
        (None, None) => String::new(),
    };
    let vocabulary = Vocabulary::with_prefix(&args.annotation_prefix);
    let stamper = stamp::Stamper {
        resolved: &resolved,
        vocabulary: &vocabulary,
        namespace: &args.namespace,
        signer: signer.as_ref().map(|k| (k, key_id.as_str())),
    };
    let mut out = std::io::stdout().lock();
    for path in &args.paths {
        let texts = match read_manifests(path) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        for (name, text) in texts {
            match stamp::stamp_text(&text, &stamper) {
                Ok(stamped) => {
                    // YAML streams are concatenated with separators; JSON is written as is.
                    let text = stamped.text.trim_start();
                    if !text.is_empty() && !text.starts_with(['{', '[']) && !text.starts_with("---")
                    {
                        let _ = out.write_all(b"---\n");
                    }
                    let _ = out.write_all(stamped.text.as_bytes());
                    if !stamped.text.ends_with('\n') {
                        let _ = out.write_all(b"\n");
                    }
                }
                Err(e) => return fail(format!("{name}: {e}")),
            }
        }
    }
    ExitCode::SUCCESS
}

fn propose_cmd(args: ProposeArgs) -> ExitCode {
    let fail = |message: String| {
        eprintln!("custody propose: {message}");
        ExitCode::from(2)
    };
    let Some(proposer) = args.proposer.filter(|p| !p.trim().is_empty()) else {
        return fail(
            "--proposer is required: the user who will create the request, which the webhook checks (`kubectl auth whoami`); or run `kubectl custody propose`, which asks the apiserver"
                .to_string(),
        );
    };
    if let Err(e) = propose::check_reason(&args.reason) {
        return fail(e.to_string());
    }
    let manifest = args.file.display().to_string();
    // The notes say which documents of the manifest were left out; the running file's others
    // do not matter.
    let read = |path: &std::path::Path, notes: bool| -> Result<Vec<propose::Workload>, String> {
        let mut workloads = Vec::new();
        for (name, text) in read_manifests(path)? {
            let m = propose::read_workloads(&name, &text, args.namespace.as_deref(), "default")
                .map_err(|e| e.to_string())?;
            for note in m.notes.iter().filter(|_| notes) {
                eprintln!("custody propose: {note}");
            }
            workloads.extend(m.workloads);
        }
        Ok(workloads)
    };
    let manifest_workloads = match read(&args.file, true) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let running = match &args.against {
        Some(path) => match read(path, false) {
            Ok(w) => w,
            Err(e) => return fail(format!("--against: {e}")),
        },
        None => Vec::new(),
    };
    let vocabulary = Vocabulary::with_prefix(&args.annotation_prefix);
    let who = propose::Proposer {
        user: proposer.trim(),
        reason: &args.reason,
    };
    let mut proposals = Vec::new();
    for workload in &manifest_workloads {
        let against = propose::running_in(&running, workload);
        if args.against.is_some() && against.is_none() {
            eprintln!(
                "custody propose: warning: {} is not in --against; the diff lists its whole template",
                workload.reference()
            );
        }
        match propose::build(workload, who, against, &vocabulary) {
            Ok(p) => proposals.push(p),
            Err(e) => return fail(e.to_string()),
        }
    }
    let changes: Vec<_> = proposals.iter().map(|p| p.change.clone()).collect();
    let yaml = match propose::to_yaml(&changes) {
        Ok(y) => y,
        Err(e) => return fail(e.to_string()),
    };
    let _ = std::io::stdout().lock().write_all(yaml.as_bytes());
    let mut err = std::io::stderr().lock();
    for p in &proposals {
        let _ = err.write_all(propose::offline_text(p, &manifest).as_bytes());
    }
    ExitCode::SUCCESS
}

/// The texts of a path: stdin for `-`, a file, or a directory's manifest files.
fn read_manifests(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(vec![("-".to_string(), text)]);
    }
    let mut files = Vec::new();
    custody_engine::files::manifests::collect_files(path, &mut files)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    files
        .into_iter()
        .map(|f| {
            std::fs::read_to_string(&f)
                .map(|t| (f.display().to_string(), t))
                .map_err(|e| format!("{}: {e}", f.display()))
        })
        .collect()
}

fn keygen(args: KeygenArgs) -> ExitCode {
    let algorithm = match args.algorithm {
        Algorithm::Ed25519 => custody_crds::attestation::KeyAlgorithm::Ed25519,
        Algorithm::P256 => custody_crds::attestation::KeyAlgorithm::EcdsaP256,
    };
    let key = match custody_crds::attestation::generate(algorithm) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("custody keygen: {e}");
            return ExitCode::from(2);
        }
    };
    let private = args.name.with_extension("key");
    let public = args.name.with_extension("pub");
    for (path, text, mode) in [
        (&private, &key.private_pem, 0o600),
        (&public, &key.public_pem, 0o644),
    ] {
        if let Err(e) = write_new(path, text, mode) {
            eprintln!("custody keygen: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    println!(
        "wrote {} (private, keep it secret) and {} ({algorithm}, {})",
        private.display(),
        public.display(),
        key.fingerprint
    );
    ExitCode::SUCCESS
}

/// Creates `path` with `mode`, refusing to overwrite a key that exists.
fn write_new(path: &std::path::Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)?.write_all(text.as_bytes())
}

fn verify(args: VerifyArgs) -> ExitCode {
    let options = CheckOptions {
        policies: args.policies,
        user: args.user,
        groups: Vec::new(),
        namespace: args.namespace,
        vocabulary: Vocabulary::with_prefix(&args.annotation_prefix),
        now: k8s_openapi::jiff::Timestamp::now(),
    };
    let report = check::run(&args.paths, &mut std::io::stdin().lock(), &options);
    let (text, code) = check::verify_report(&report);
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::from(code)
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
        custody_engine::files::load_policies(&args.policies, &mut std::io::stdin().lock());
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
    fn propose_needs_a_manifest_and_a_reason() {
        let args = Args::try_parse_from([
            "custody",
            "propose",
            "-f",
            "web.yaml",
            "--reason",
            "bump web to 1.28",
            "--proposer",
            "system:serviceaccount:agents:claude",
            "--against",
            "running.yaml",
        ])
        .unwrap();
        match args.command {
            Command::Propose(p) => {
                assert_eq!(p.file, PathBuf::from("web.yaml"));
                assert_eq!(p.against, Some(PathBuf::from("running.yaml")));
                assert_eq!(
                    p.proposer.as_deref(),
                    Some("system:serviceaccount:agents:claude")
                );
            }
            _ => panic!("parsed the wrong command"),
        }
        assert!(Args::try_parse_from(["custody", "propose", "-f", "web.yaml"]).is_err());
        assert!(Args::try_parse_from(["custody", "propose", "--reason", "bump web"]).is_err());
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
