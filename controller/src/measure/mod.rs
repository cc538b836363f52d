//! Reading a revision's metrics for its analysis (`custody_crds::analysis`): a query template
//! filled in for one revision ([`query`]) and run against a provider ([`prometheus`]) that the
//! policy names ([`sources`]), every interval, by one task per revision under analysis
//! ([`analyses`]). The judgement of the values is [`crate::decide::analysis`]'s, which never
//! sees a network.

pub mod analyses;
pub mod prometheus;
pub mod query;
pub mod sources;
