//! The annotation vocabulary: which keys Custody reads, what their values may be, and the prefix
//! they live under.
//!
//! The formats here are the ones every policy shares (an actor is one of three words, a commit is
//! hex); a policy may narrow them further with its own patterns.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The default annotation prefix.
pub const DEFAULT_PREFIX: &str = "custody.dev/";

/// The attestation annotation's name after the prefix.
pub const ATTESTATION_KEY: &str = "attestation";

/// Every annotation key Custody knows, without its prefix.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AnnotationKey {
    /// Who made this revision: `human`, `agent` or `automation`.
    Actor,
    /// Which agent made it, e.g. `claude-code/1.0`; required when the actor is an agent.
    Agent,
    /// The model behind the agent, e.g. `claude-sonnet-4`.
    Model,
    /// The source repository the revision was built from.
    SourceRepo,
    /// The commit the revision was built from: 7 to 40 hex characters.
    SourceCommit,
    /// The pipeline run (CI job, agent session) that delivered the revision.
    PipelineRun,
    /// The owning team.
    Owner,
    /// How to reach whoever is on call for the workload: an email, a pager handle or a URL.
    Oncall,
    /// What the controller may do when the revision regresses: `auto`, `alert` or `unsafe`.
    Rollback,
    /// Why a human re-admits a template the controller reverted.
    QuarantineOverride,
    /// Why a human ships a revision during a change freeze.
    BreakGlass,
}

impl AnnotationKey {
    /// Every key, in the order Custody reports them.
    pub const ALL: [AnnotationKey; 11] = [
        AnnotationKey::Actor,
        AnnotationKey::Agent,
        AnnotationKey::Model,
        AnnotationKey::SourceRepo,
        AnnotationKey::SourceCommit,
        AnnotationKey::PipelineRun,
        AnnotationKey::Owner,
        AnnotationKey::Oncall,
        AnnotationKey::Rollback,
        AnnotationKey::QuarantineOverride,
        AnnotationKey::BreakGlass,
    ];

    /// The key as written after the prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnnotationKey::Actor => "actor",
            AnnotationKey::Agent => "agent",
            AnnotationKey::Model => "model",
            AnnotationKey::SourceRepo => "source-repo",
            AnnotationKey::SourceCommit => "source-commit",
            AnnotationKey::PipelineRun => "pipeline-run",
            AnnotationKey::Owner => "owner",
            AnnotationKey::Oncall => "oncall",
            AnnotationKey::Rollback => "rollback",
            AnnotationKey::QuarantineOverride => "quarantine-override",
            AnnotationKey::BreakGlass => "break-glass",
        }
    }

    /// A value that satisfies the built-in format, used in fix hints.
    pub const fn example(self) -> &'static str {
        match self {
            AnnotationKey::Actor => "agent",
            AnnotationKey::Agent => "claude-code/1.0",
            AnnotationKey::Model => "claude-sonnet-4",
            AnnotationKey::SourceRepo => "https://github.com/acme/payments",
            AnnotationKey::SourceCommit => "3f9c2a7",
            AnnotationKey::PipelineRun => "https://ci.acme.dev/runs/1842",
            AnnotationKey::Owner => "team-payments",
            AnnotationKey::Oncall => "payments-oncall@acme.dev",
            AnnotationKey::Rollback => "auto",
            AnnotationKey::QuarantineOverride => "fixed config drift, verified by jane",
            AnnotationKey::BreakGlass => "INC-4711: restoring checkout, approved by jane",
        }
    }

    /// What the annotation records, in words, for denial messages.
    pub const fn purpose(self) -> &'static str {
        match self {
            AnnotationKey::Actor => "who made this revision (human, agent or automation)",
            AnnotationKey::Agent => "which AI agent made this revision",
            AnnotationKey::Model => "the model behind the agent",
            AnnotationKey::SourceRepo => "the repository this revision was built from",
            AnnotationKey::SourceCommit => "the commit this revision was built from",
            AnnotationKey::PipelineRun => "the pipeline run or agent session that delivered it",
            AnnotationKey::Owner => "the team that owns the workload",
            AnnotationKey::Oncall => "how to reach whoever is on call for it",
            AnnotationKey::Rollback => "what Custody may do when the revision regresses",
            AnnotationKey::QuarantineOverride => "why a human re-admits a reverted template",
            AnnotationKey::BreakGlass => "why a human ships a revision during a change freeze",
        }
    }

    /// What the built-in format accepts, in words.
    pub const fn format_description(self) -> &'static str {
        match self {
            AnnotationKey::Actor => "one of human, agent, automation",
            AnnotationKey::SourceCommit => "7 to 40 hexadecimal characters",
            AnnotationKey::Oncall => "an email address, a pager handle (@name) or an http(s) URL",
            AnnotationKey::Rollback => "one of auto, alert, unsafe",
            _ => "a non-empty value",
        }
    }

    /// Checks `value` against the format every policy shares.
    pub fn check_builtin_format(self, value: &str) -> Result<(), FormatError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(FormatError::Empty);
        }
        let ok = match self {
            AnnotationKey::Actor => value.parse::<Actor>().is_ok(),
            AnnotationKey::Rollback => value.parse::<RollbackMode>().is_ok(),
            AnnotationKey::SourceCommit => {
                (7..=40).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit())
            }
            AnnotationKey::Oncall => is_contact(value),
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(FormatError::Invalid {
                expected: self.format_description(),
            })
        }
    }
}

impl fmt::Display for AnnotationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AnnotationKey {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AnnotationKey::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_string()))
    }
}

/// Why a value does not satisfy a key's built-in format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The annotation is present but blank.
    #[error("the value is empty")]
    Empty,
    /// The value does not have the expected shape.
    #[error("expected {expected}")]
    Invalid {
        /// The accepted format, in words.
        expected: &'static str,
    },
}

/// A value outside a closed set of words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

fn is_contact(value: &str) -> bool {
    if let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    {
        return !rest.is_empty() && !rest.contains(char::is_whitespace);
    }
    if let Some(handle) = value.strip_prefix('@') {
        return !handle.is_empty() && !handle.contains(char::is_whitespace);
    }
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// Who made a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// A person, through kubectl, Helm or a merged pull request.
    Human,
    /// An AI coding agent.
    Agent,
    /// A non-AI automation (a release bot, a dependency updater).
    Automation,
}

impl Actor {
    /// The annotation value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Actor::Human => "human",
            Actor::Agent => "agent",
            Actor::Automation => "automation",
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Actor {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "human" => Ok(Actor::Human),
            "agent" => Ok(Actor::Agent),
            "automation" => Ok(Actor::Automation),
            other => Err(UnknownValue(other.to_string())),
        }
    }
}

/// What the controller may do when a revision regresses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RollbackMode {
    /// Revert when the policy allows it for the revision's actor.
    #[default]
    Auto,
    /// Never revert; alert only.
    Alert,
    /// The revision cannot be safely reverted (an irreversible migration): alert and notify.
    Unsafe,
}

impl RollbackMode {
    /// The annotation value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RollbackMode::Auto => "auto",
            RollbackMode::Alert => "alert",
            RollbackMode::Unsafe => "unsafe",
        }
    }
}

impl FromStr for RollbackMode {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(RollbackMode::Auto),
            "alert" => Ok(RollbackMode::Alert),
            "unsafe" => Ok(RollbackMode::Unsafe),
            other => Err(UnknownValue(other.to_string())),
        }
    }
}

/// The annotation prefix in force, and the full keys derived from it.
///
/// The prefix is a deployment-wide setting (a flag of each binary) rather than a policy field, so
/// that the webhook, the controller and the CLI always read the same keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    prefix: String,
    keys: [String; AnnotationKey::ALL.len()],
    attestation: String,
}

impl Default for Vocabulary {
    fn default() -> Self {
        Self::with_prefix(DEFAULT_PREFIX)
    }
}

impl Vocabulary {
    /// Builds the vocabulary for `prefix`; a prefix without a trailing `/` gets one.
    pub fn with_prefix(prefix: &str) -> Self {
        let mut prefix = prefix.trim().to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let keys = AnnotationKey::ALL.map(|k| format!("{prefix}{}", k.as_str()));
        let attestation = format!("{prefix}{ATTESTATION_KEY}");
        Self {
            prefix,
            keys,
            attestation,
        }
    }

    /// The prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full annotation name of `key`, e.g. `custody.dev/actor`.
    pub fn key(&self, key: AnnotationKey) -> &str {
        // ALL lists the variants in declaration order, so the discriminant is the index.
        &self.keys[key as usize]
    }

    /// The full name of the annotation holding the signed attestation, e.g.
    /// `custody.dev/attestation`. It is not an [`AnnotationKey`]: no policy rule judges its
    /// format, the signature verification does.
    pub fn attestation(&self) -> &str {
        &self.attestation
    }

    /// Which vocabulary key a full annotation name is, if any.
    pub fn parse_key(&self, annotation: &str) -> Option<AnnotationKey> {
        annotation
            .strip_prefix(self.prefix.as_str())
            .and_then(|k| k.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_indexed_by_discriminant() {
        let v = Vocabulary::default();
        for key in AnnotationKey::ALL {
            assert_eq!(v.key(key), format!("custody.dev/{key}"));
            assert_eq!(v.parse_key(v.key(key)), Some(key));
        }
        assert_eq!(v.parse_key("custody.dev/unknown"), None);
        assert_eq!(v.parse_key("other.dev/actor"), None);
    }

    #[test]
    fn prefix_gets_a_slash() {
        let v = Vocabulary::with_prefix("acme.io");
        assert_eq!(v.key(AnnotationKey::Owner), "acme.io/owner");
        assert_eq!(v.prefix(), "acme.io/");
        assert_eq!(v.attestation(), "acme.io/attestation");
    }

    #[test]
    fn builtin_formats() {
        let cases: &[(AnnotationKey, &str, bool)] = &[
            (AnnotationKey::Actor, "agent", true),
            (AnnotationKey::Actor, "robot", false),
            (AnnotationKey::Actor, "", false),
            (AnnotationKey::SourceCommit, "3f9c2a7", true),
            (AnnotationKey::SourceCommit, "3f9c2a", false),
            (AnnotationKey::SourceCommit, &"a".repeat(40), true),
            (AnnotationKey::SourceCommit, &"a".repeat(41), false),
            (AnnotationKey::SourceCommit, "main", false),
            (AnnotationKey::Oncall, "team@acme.dev", true),
            (AnnotationKey::Oncall, "@payments-oncall", true),
            (
                AnnotationKey::Oncall,
                "https://pager.acme.dev/payments",
                true,
            ),
            (AnnotationKey::Oncall, "bob", false),
            (AnnotationKey::Oncall, "bob@localhost", false),
            (AnnotationKey::Rollback, "unsafe", true),
            (AnnotationKey::Rollback, "never", false),
            (AnnotationKey::Owner, "team-a", true),
            (AnnotationKey::Owner, "  ", false),
        ];
        for (key, value, ok) in cases {
            assert_eq!(
                key.check_builtin_format(value).is_ok(),
                *ok,
                "{key}={value:?}"
            );
        }
    }

    #[test]
    fn examples_satisfy_their_own_format() {
        for key in AnnotationKey::ALL {
            assert!(key.check_builtin_format(key.example()).is_ok(), "{key}");
        }
    }
}
