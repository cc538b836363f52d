//! Signed provenance on the controller's side: whether a key vouched for a revision's actor
//! ([`vouch`], pure), and reading the attestation envelope from the API server when a decision
//! needs it, at most once per revision and decision ([`fetch`]): the cache keeps only its digest.

pub mod fetch;
pub mod vouch;
