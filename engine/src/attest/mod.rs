//! Signed attestations on the admission side: the claim a workload object makes, and the
//! bounded cache that spares a re-applied or dry-run object a second signature check.
//!
//! The envelope, statement, verification and signing themselves are in
//! [`custody_crds::attestation`], shared with the controller and the CLI. The cache is memory
//! only, with no client: the envelope travels on the object, so nothing is fetched.

mod cache;
mod claim;

pub use cache::{AttestationCache, DEFAULT_CAPACITY as DEFAULT_CACHE_CAPACITY};
pub use claim::{claim_from_template, claim_from_value, claim_from_view};
