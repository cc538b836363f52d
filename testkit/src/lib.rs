//! Test support shared by Custody's crates, kept out of the product crates: a dev-dependency
//! only, never linked into a binary.

pub mod admission;
pub mod approval;
pub mod fake_apiserver;
pub mod golden;
pub mod prometheus;
pub mod schemas;
