//! Custody's webhook server around the engine: the AdmissionReview codec and the HTTPS server.
//!
//! Data flows one way: a body is decoded ([`review::decode`], borrowing), judged
//! ([`custody_engine::evaluate`] against a compiled [`custody_engine::PolicySet`] and the live
//! [`custody_engine::Context`]), and encoded ([`review::encode`]). The server feeds the context
//! from watches, or from policy files in standalone mode. `custody check` (crate
//! `custody-cli`) runs the same engine offline.

pub mod review;
pub mod server;
