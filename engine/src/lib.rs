//! Custody's admission engine: `(policies, request, context) -> Decision`, pure.
//!
//! Data flows one way: CustodyPolicies are compiled into a [`PolicySet`] (regexes, keys,
//! windows, budgets built once); a [`Request`] (from the webhook's codec, or built offline with
//! [`Request::create`]) is judged by [`evaluate`] against the set and the [`Context`] (the live
//! state and the time, passed in); the [`Decision`] carries the outcome, the violations and the
//! denial text. The webhook server, `custody check`, `kubectl custody why` and the controller's
//! audit all call this one function. Nothing here reads a clock, opens a socket or holds a
//! client; [`files`] reads local policy files for the binaries that take them.
//!
//! Modules form a tree: leaves (the request, the object view, decisions, identities, the
//! subject, compiled parts) are imported by the rule modules, the rules by [`evaluate`], and
//! nothing imports upward.

mod approval;
pub mod attest;
mod change_freeze;
mod change_review;
mod context;
mod controllers;
mod decision;
mod evaluate;
pub mod files;
mod freeze_window;
mod hold;
mod identity;
mod limits;
mod object;
mod person;
mod policies;
mod policy_ref;
mod policy_review;
mod probation;
mod quarantine;
mod record_review;
mod registered;
mod request;
mod requests;
mod rules;
mod signatures;
mod subject;
mod teams;
mod triage;

pub use approval::{
    ChangeEntry, ChangeIndex, CompiledApproval, Scope as ApprovalScope, Standing, approvers,
    standing,
};
pub use change_review::{ChangeReview, is_agent_identity, may_approve, validate_change};
pub use context::Context;
pub use controllers::{BUILTIN_CONTROLLERS, ControllerWrite};
pub use decision::{Decision, Outcome, Violation, ViolationCode};
pub use evaluate::evaluate;
pub use freeze_window::CompiledFreeze;
pub use identity::identity_matches;
pub use limits::{AgentActivity, CompiledLimit};
pub use object::{Metadata, OwnerReference, WorkloadObject, templates_differ};
pub use policies::{CompiledPolicy, CompiledRule, PolicyError, PolicySet};
pub use policy_review::validate_policy;
pub use probation::{CompiledProbation, Revert, RevertIndex};
pub use quarantine::{QuarantineEntry, QuarantineIndex};
pub use record_review::{MIN_REASON_CHARS, validate_record};
pub use request::{GroupVersionKind, Operation, Request, UserInfo};
pub use requests::{JudgedChange, judge_change, protecting};
pub use rules::example_for;
pub use teams::{Team, TeamError, TeamIndex, check_team};
