//! Custody's admission side around the engine: the AdmissionReview codec, the HTTPS server and
//! the offline `custody check`, and the ValidatingAdmissionPolicy backstop `custody vap` generates.
//!
//! Data flows one way: a body is decoded ([`review::decode`], borrowing), judged
//! ([`custody_engine::evaluate`] against a compiled [`custody_engine::PolicySet`] and the live
//! [`custody_engine::Context`]), and encoded ([`review::encode`]). The server feeds the context
//! from watches; `custody check` feeds it from files. Both run the same engine.

pub mod check;
pub mod plugin;
pub mod review;
pub mod server;
pub mod stamp;
pub mod vap;
