//! Custody's rollback operator.
//!
//! Data flows one way: watch events of Deployments, StatefulSets, DaemonSets, their revisions
//! (ReplicaSets, ControllerRevisions), Pods and Nodes are decoded slim ([`slim`]), reduced to
//! plain data ([`observe`]) and kept compact ([`compact`]) in one cache linked by owner
//! ([`index`]); for each workload ([`workload`]) the rollout is read from the cache with the
//! Nodes its Pods run on ([`node`]), the Pods whose unreadiness is not the revision's doing set apart
//! ([`attribution`]), its health judged ([`health`]) and a pure decision taken ([`decide`])
//! from the observed state, the governing policy and the clock; only then does [`reconcile`]
//! act: the RollbackRecord
//! ([`record`]) first, so the webhook quarantines the bad template before anything can
//! re-apply it, then the guarded revert ([`revert`]), the marks, the Event, the metrics
//! ([`metrics`]) and the notification ([`announce`], [`notify`]) to the owning team's targets or
//! the policy's URL ([`ownership`], [`route`], [`headers`]). A revision shipped with the
//! break-glass annotation is announced once ([`breakglass`]). Under `spec.signatures` the actor
//! acted on is the one a key vouched for ([`attested`]); the cache keeps only a digest of each
//! attestation, and the envelope is read when a regression is decided or reverted
//! ([`envelopes`]). [`run`] wires the watches and one
//! Controller per kind. Only the Lease holder ([`leader`]) acts; every replica keeps its cache
//! warm. The same cache feeds the background [`audit`], which judges what is running with the
//! webhook's engine and writes policy reports.

pub mod agents;
pub mod agents_publish;
pub mod announce;
pub mod attested;
pub mod attribution;
pub mod audit;
pub mod breakglass;
pub mod certs;
pub mod compact;
pub mod decide;
#[path = "signed/fetch.rs"]
pub mod envelopes;
pub mod headers;
pub mod health;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod notify;
pub mod observe;
pub mod ownership;
#[path = "act/mod.rs"]
pub mod reconcile;
pub mod record;
pub mod revert;
pub mod route;
pub mod run;
pub mod slim;
pub mod workload;
