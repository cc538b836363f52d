//! The cache: what the watches deliver, kept small enough for tens of thousands of objects.
//! Watch events are decoded slim ([`slim`]), reduced to plain data ([`observe`]), stored compact
//! ([`compact`]) and linked by owner in one index ([`index`]) with the Nodes the Pods run on
//! ([`node`]); an attestation is kept as its [`digest`] only. [`feed`] applies the watches'
//! events and says which workloads to look at; [`workload`] says how each watched kind feeds
//! it. Nothing here writes to the API server or decides anything.

pub mod compact;
pub mod digest;
pub mod feed;
pub mod index;
pub mod node;
pub mod observe;
pub mod slim;
pub mod workload;
