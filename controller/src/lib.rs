//! Custody's rollback operator.
//!
//! Data flows one way: watch events fill the caches ([`index`]); for each Deployment the
//! rollout is reduced to plain data ([`observe`]), its health read ([`health`]) and a pure
//! decision taken ([`decide`]) from the observed state, the governing policy and the clock;
//! only then does [`reconcile`] act: the RollbackRecord ([`record`]) first, so the webhook
//! quarantines the bad template before anything can re-apply it, then the guarded revert
//! ([`revert`]), the marks, the Event, the metrics ([`metrics`]) and the notification
//! ([`notify`]). Only the Lease holder ([`leader`]) acts; every replica keeps its caches warm.

pub mod certs;
pub mod compact;
pub mod decide;
pub mod health;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod notify;
pub mod observe;
pub mod reconcile;
pub mod record;
pub mod revert;
pub mod run;
pub mod slim;
pub mod workload;
