//! Custody's API, shared by the webhook, the controller and the offline CLI.
//!
//! Data flows one way through Custody: the webhook and the CLI read [`CustodyPolicy`] objects and
//! workload annotations (the [`vocabulary`]) and decide admission; the controller reads the same
//! policies, follows rollouts and writes [`RollbackRecord`]s, whose template
//! [`fingerprint`](fingerprint::template_fingerprint) the webhook then uses to keep a reverted
//! revision out. This crate holds only types and pure functions: no client, no runtime, no I/O.

pub mod agent;
pub mod analysis;
pub mod attestation;
pub mod change;
pub mod fingerprint;
pub mod freeze;
pub mod generate;
pub mod guardrails;
pub mod kind;
pub mod notify;
pub mod policy;
pub mod quantity;
pub mod record;
pub mod report;
pub mod selection;
pub mod signatures;
pub mod team;
pub mod vocabulary;
pub mod yaml;

pub use agent::{AgentRevision, CustodyAgent, CustodyAgentSpec, CustodyAgentStatus};
pub use change::{
    Applied, ChangePhase, ChangeWorkload, CustodyChange, CustodyChangeSpec, CustodyChangeStatus,
    DiffLine,
};
pub use fingerprint::{TemplateFingerprint, template_fingerprint};
pub use freeze::{FreezeWindow, OwnershipMode};
pub use guardrails::{AgentGuardrails, AgentLimit, Approval, Canary, Probation, ProbationScope};
pub use notify::{
    NoticeKind, NotifyFormat, NotifyTarget, SecretKeyRef, SecretRef, Severity, TargetDelivery,
};
pub use policy::{
    AnnotationRule, CustodyPolicy, CustodyPolicySpec, CustodyPolicyStatus, EnforcementMode,
    FailurePolicy, Identities, IdentitySet, MatchRules, NamespaceMatch, RollbackSettings,
    WorkloadKind,
};
pub use record::{
    Lift, RecordAction, RevisionSnapshot, RollbackRecord, RollbackRecordSpec, RollbackRecordStatus,
    Signal, SignalReason, WorkloadRef,
};
pub use selection::Target;
pub use signatures::{KeyScope, SignatureMode, SignaturePolicy, TrustedKey};
pub use team::{CustodyTeam, CustodyTeamSpec, TeamMembers};
pub use vocabulary::{Actor, AnnotationKey, RollbackMode, Vocabulary};

/// The API group of every Custody resource.
pub const GROUP: &str = "custody.dev";
/// The API version of every Custody resource.
pub const VERSION: &str = "v1alpha1";
