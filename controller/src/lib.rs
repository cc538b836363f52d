//! Custody's rollback operator.
//!
//! Data flows one way, cache → decide → act, wired by [`run`]:
//! - [`cache`]: watch events of Deployments, StatefulSets, DaemonSets, their revisions
//!   (ReplicaSets, ControllerRevisions), Pods and Nodes, decoded slim, reduced to plain data and
//!   kept compact in one index linked by owner; of an attestation only its digest.
//! - [`decide`]: for each workload, pure functions of the cached rollout, the governing policy
//!   and the clock: its health assessed (the Pods whose unreadiness is not the revision's doing
//!   set apart), then, on a regression, revert or alert chosen from what the revision declares.
//! - [`signed`]: under `spec.signatures`, the actor acted on is the one a key vouched for; the
//!   envelope is read from the API server once per decision, only when a regression is decided
//!   or a revision marked.
//! - [`act`]: the only writer, and only on the Lease holder ([`leader`]): the RollbackRecord
//!   first, so the webhook quarantines the bad template before anything can re-apply it, then
//!   the guarded revert, the marks, the Event, the metrics ([`metrics`]) and the notification to
//!   the owning team's targets or the policy's URL; a break-glass revision is announced once;
//!   the agents' summaries are published for the webhook's budgets; agents' change requests
//!   (CustodyChanges) get their phase, their Events and notices, and once their workload runs
//!   the approved change, the revision that spent the approval.
//!
//! [`keys`] names the annotation keys and marks everything reads, and imports nothing. Every
//! replica keeps its cache warm. The same cache feeds the background [`audit`], which judges
//! what is running with the admission engine (`custody-engine`, the webhook's rules) and writes
//! policy reports; [`certs`] keeps the webhook's serving certificate.

pub mod act;
pub mod audit;
pub mod cache;
pub mod certs;
pub mod decide;
pub mod headers;
pub mod keys;
pub mod leader;
pub mod measure;
pub mod metrics;
pub mod run;
pub mod schedule;
pub mod signed;

// `audit/` still names the cache by its old paths; it is moving to the `custody-engine` crate
// and is left untouched until then.
pub use cache::{index, observe};
