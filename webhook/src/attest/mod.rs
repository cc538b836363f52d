//! Signed attestations on the webhook's side: signing keys and key generation for `custody
//! keygen` and `custody stamp --sign`, the claim a workload object makes, and the bounded cache
//! that spares a re-applied or dry-run object a second signature check.
//!
//! The envelope, statement and verification themselves are in
//! [`custody_crds::attestation`], shared with the controller.

mod cache;
mod claim;
mod signer;

pub use cache::{AttestationCache, DEFAULT_CAPACITY as DEFAULT_CACHE_CAPACITY};
pub use claim::{claim_from_value, claim_from_view};
pub use signer::{GeneratedKey, SignError, SigningKey, generate, pem_encode};
