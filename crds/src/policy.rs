//! `CustodyPolicy`: which workloads must carry which annotations, how strictly, who is exempt,
//! and how the controller treats their regressions.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::AnalysisSpec;
use crate::freeze::{FreezeWindow, OwnershipMode};
use crate::guardrails::AgentGuardrails;
pub use crate::kind::WorkloadKind;
use crate::signatures::SignaturePolicy;
use crate::vocabulary::{Actor, AnnotationKey};

/// The policy's desired state.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "custody.dev",
    version = "v1alpha1",
    kind = "CustodyPolicy",
    plural = "custodypolicies",
    shortname = "cpol",
    status = "CustodyPolicyStatus",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Failure","type":"string","jsonPath":".spec.failurePolicy"}"#,
    printcolumn = r#"{"name":"Kinds","type":"string","jsonPath":".spec.match.kinds"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.match.namespaces.include"}"#,
    printcolumn = r#"{"name":"Freezes","type":"string","jsonPath":".spec.freezes[*].name","priority":1}"#,
    printcolumn = r#"{"name":"Excluded","type":"string","jsonPath":".spec.match.namespaces.exclude"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustodyPolicySpec {
    /// What happens to a workload that breaks the policy: `Enforce` denies it, `Warn` admits it
    /// with kubectl warnings, `Audit` admits it and records the violation in the audit log.
    #[serde(default)]
    pub mode: EnforcementMode,

    /// What the webhook answers for this policy's workloads when it cannot decide (caches not
    /// synced yet, an internal error): `Fail` denies, `Ignore` admits with a warning.
    #[serde(default)]
    pub failure_policy: FailurePolicy,

    /// Which workloads the policy applies to.
    #[serde(default, rename = "match")]
    pub match_rules: MatchRules,

    /// Requesters whose changes the policy does not judge (break-glass users, platform bots).
    #[serde(default, skip_serializing_if = "IdentitySet::is_empty")]
    pub exclude: IdentitySet,

    /// The annotations a matching workload must carry, and their value formats. When omitted,
    /// the built-in set applies: actor, source-repo, source-commit, owner and oncall, plus agent
    /// when the actor is an agent.
    #[serde(default = "default_annotation_rules")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["key"]))]
    pub annotations: Vec<AnnotationRule>,

    /// Who the agents and the delivery systems are, to cross-check the declared actor, and
    /// which controllers besides kube-controller-manager's may write the objects they own
    /// without judgement.
    #[serde(default, skip_serializing_if = "Identities::is_empty")]
    pub identities: Identities,

    /// How the controller treats regressions of matching workloads.
    #[serde(default)]
    pub rollback: RollbackSettings,

    /// Signed provenance: the keys whose attestations are believed, and whether one is
    /// required. When omitted, annotations are judged as declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignaturePolicy>,

    /// `Registered`: `owner` must name a CustodyTeam that may own workloads in the namespace,
    /// and the team's on-call applies when `oncall` is omitted. `FreeForm` (the default): any
    /// value of the owner annotation's format.
    #[serde(default, skip_serializing_if = "OwnershipMode::is_free_form")]
    pub ownership: OwnershipMode,

    /// Change freezes: while one is open, the actors it binds cannot ship new revisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub freezes: Vec<FreezeWindow>,

    /// Guardrails that bind agents: probation after repeated reverts.
    #[serde(default, skip_serializing_if = "AgentGuardrails::is_empty")]
    pub agents: AgentGuardrails,
}

impl Default for CustodyPolicySpec {
    fn default() -> Self {
        Self {
            mode: EnforcementMode::default(),
            failure_policy: FailurePolicy::default(),
            match_rules: MatchRules::default(),
            exclude: IdentitySet::default(),
            annotations: default_annotation_rules(),
            identities: Identities::default(),
            rollback: RollbackSettings::default(),
            signatures: None,
            ownership: OwnershipMode::default(),
            freezes: Vec::new(),
            agents: AgentGuardrails::default(),
        }
    }
}

/// The name under which the built-in default policy reports itself.
pub const BUILTIN_POLICY_NAME: &str = "custody-builtin-default";

impl CustodyPolicy {
    /// The built-in default policy: every kind, every namespace, the default annotation rules.
    pub fn builtin_default() -> Self {
        CustodyPolicy::new(BUILTIN_POLICY_NAME, CustodyPolicySpec::default())
    }
}

/// The annotation rules of the built-in default policy.
pub fn default_annotation_rules() -> Vec<AnnotationRule> {
    let required = |key| AnnotationRule {
        key,
        ..AnnotationRule::default()
    };
    vec![
        required(AnnotationKey::Actor),
        AnnotationRule {
            key: AnnotationKey::Agent,
            when_actor: vec![Actor::Agent],
            ..AnnotationRule::default()
        },
        required(AnnotationKey::SourceRepo),
        required(AnnotationKey::SourceCommit),
        required(AnnotationKey::Owner),
        required(AnnotationKey::Oncall),
    ]
}

/// How strictly a policy is applied. Ordered from the weakest to the strongest.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum EnforcementMode {
    /// Admit and record the violation as an audit annotation.
    Audit,
    /// Admit, and return the violations as kubectl warnings.
    Warn,
    /// Deny.
    #[default]
    Enforce,
}

impl EnforcementMode {
    /// The mode as written in the policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            EnforcementMode::Audit => "Audit",
            EnforcementMode::Warn => "Warn",
            EnforcementMode::Enforce => "Enforce",
        }
    }
}

impl fmt::Display for EnforcementMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to answer when the webhook cannot decide. Ordered from the weakest to the strongest.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum FailurePolicy {
    /// Admit, with a warning that the policy could not be evaluated.
    Ignore,
    /// Deny, with a message that says why.
    #[default]
    Fail,
}

impl FailurePolicy {
    /// The value as written in the policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Ignore => "Ignore",
            FailurePolicy::Fail => "Fail",
        }
    }
}

/// Which workloads a policy applies to. Every given criterion must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchRules {
    /// The kinds the policy judges; empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<WorkloadKind>,

    /// Namespace names to include and exclude, as globs (`team-*`).
    #[serde(default)]
    pub namespaces: NamespaceMatch,

    /// Only namespaces whose labels match. Selects namespaces; it cannot exempt them: a policy
    /// rejects `NotIn` and `DoesNotExist` here, because anyone who may label a namespace could
    /// then exempt it. Exemptions belong in `namespaces.exclude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// Only objects whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
}

/// Namespace names by glob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMatch {
    /// Namespaces to judge; empty means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Namespaces never to judge; wins over `include`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Requester identities, as globs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySet {
    /// User names, e.g. `ci-bot@acme.dev` or `system:serviceaccount:argocd:*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names, e.g. `agents:claude`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Service accounts as `namespace/name`, e.g. `argocd/argocd-application-controller` or
    /// `agents/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
}

impl IdentitySet {
    /// True when no identity is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty() && self.service_accounts.is_empty()
    }
}

/// Who the agents, the delivery systems and the extra controllers are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identities {
    /// Identities that AI agents authenticate as. Their changes must declare `actor: agent`.
    #[serde(default, skip_serializing_if = "IdentitySet::is_empty")]
    pub agents: IdentitySet,
    /// Delivery systems (Argo CD, Flux) that apply what Git holds: the provenance declared in
    /// the manifest is passed through as written.
    #[serde(default, skip_serializing_if = "IdentitySet::is_empty")]
    pub delivery: IdentitySet,
    /// Controllers besides kube-controller-manager's (whose service accounts are always
    /// trusted), e.g. Argo Rollouts as `argo-rollouts/argo-rollouts`. An object that carries a
    /// `controller: true` ownerReference, created or updated by one of these identities, is
    /// not judged by this policy: its owner was judged when it was applied. The same object
    /// from anyone else is judged like any other, so writing an ownerReference exempts no one.
    #[serde(default, skip_serializing_if = "IdentitySet::is_empty")]
    pub controllers: IdentitySet,
}

impl Identities {
    /// True when no list names anyone.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.delivery.is_empty() && self.controllers.is_empty()
    }
}

/// One annotation a workload must (or may) carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnnotationRule {
    /// The vocabulary key, without its prefix.
    pub key: AnnotationKey,
    /// Whether the annotation must be present. An optional rule still checks the format of a
    /// value that is present.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Require the annotation only when the declared actor is one of these; empty means always.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when_actor: Vec<Actor>,
    /// A regular expression (RE2 syntax, anchored by you) the value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values allowed; empty means any value of the built-in format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_values: Vec<String>,
    /// An example value to show in the fix hint of a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<String>,
}

impl Default for AnnotationRule {
    fn default() -> Self {
        Self {
            key: AnnotationKey::Actor,
            required: true,
            when_actor: Vec::new(),
            pattern: None,
            allowed_values: Vec::new(),
            example: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// How the controller treats regressions of the workloads a policy matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSettings {
    /// Record and alert what would have been reverted, without reverting.
    #[serde(default)]
    pub dry_run: bool,
    /// The actors whose regressed revisions are reverted; others get an alert.
    #[serde(default = "default_revert_actors")]
    pub revert_actors: Vec<Actor>,
    /// Seconds a started pod of the new revision may stay not Ready before it counts as a
    /// regression.
    #[serde(default = "default_not_ready_seconds")]
    #[schemars(range(min = 1))]
    pub not_ready_seconds: u32,
    /// Container restarts of a new-revision pod at which it counts as a regression.
    #[serde(default = "default_restart_threshold")]
    #[schemars(range(min = 1))]
    pub restart_threshold: u32,
    /// Seconds a new-revision pod may wait on ImagePullBackOff or ErrImagePull.
    #[serde(default = "default_image_pull_seconds")]
    #[schemars(range(min = 1))]
    pub image_pull_seconds: u32,
    /// Seconds a fully available revision must stay so before it is marked healthy (the revert
    /// target of later regressions).
    #[serde(default = "default_healthy_after_seconds")]
    pub healthy_after_seconds: u32,
    /// Where to POST each RollbackRecord as JSON (the owner's on-call route): a `json` target,
    /// sent after `notify`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_url: Option<String>,
    /// Where the notices about the policy's workloads go when their owning CustodyTeam lists
    /// no targets of its own: each target in its format, for the kinds it lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<crate::notify::NotifyTarget>,
    /// Metric analysis: queries checked from a revision's first Pod until it is marked healthy
    /// (which waits for the analysis), whose confirmed failure is a regression like a probe's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisSpec>,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        Self {
            dry_run: false,
            revert_actors: default_revert_actors(),
            not_ready_seconds: default_not_ready_seconds(),
            restart_threshold: default_restart_threshold(),
            image_pull_seconds: default_image_pull_seconds(),
            healthy_after_seconds: default_healthy_after_seconds(),
            notify_url: None,
            notify: Vec::new(),
            analysis: None,
        }
    }
}

fn default_revert_actors() -> Vec<Actor> {
    vec![Actor::Agent]
}
fn default_not_ready_seconds() -> u32 {
    30
}
fn default_restart_threshold() -> u32 {
    3
}
fn default_image_pull_seconds() -> u32 {
    30
}
fn default_healthy_after_seconds() -> u32 {
    30
}

/// What the cluster reports about a policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustodyPolicyStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` when the webhook serves the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The annotation on a CustodyPolicy that acknowledges an update weakening its mode or failure
/// policy. Its value is the reason, and it must change with each weakening.
pub const ACKNOWLEDGE_WEAKENING: &str = "custody.dev/acknowledge-weakening";
