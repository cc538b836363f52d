//! Custody's admission side: the pure engine, the AdmissionReview codec, the HTTPS server and
//! the offline `custody check`, and the ValidatingAdmissionPolicy backstop `custody vap` generates.
//!
//! Data flows one way: a body is decoded ([`review::decode`], borrowing), judged
//! ([`engine::evaluate`] against a compiled [`engine::PolicySet`] and the live
//! [`engine::Context`]), and encoded ([`review::encode`]). The server feeds the context from
//! watches; `custody check` feeds it from files. Both run the same engine.

pub mod attest;
pub mod check;
pub mod engine;
pub mod plugin;
pub mod review;
pub mod server;
pub mod stamp;
pub mod vap;
