//! Plumbing shared by Custody's binaries, in the manner of kubert: an admin server with
//! `/healthz`, `/readyz` and `/metrics`, readiness gated on named conditions (cache syncs),
//! tracing setup, and a shutdown token cancelled by SIGTERM or SIGINT.
//!
//! Nothing here knows about policies or workloads: the binaries register their conditions and
//! metrics, then hand the pieces to [`admin::serve`].

pub mod admin;
pub mod backoff;
pub mod logging;
pub mod readiness;
pub mod shutdown;

pub use admin::{AdminError, serve as serve_admin};
pub use backoff::watch_backoff;
pub use logging::LogFormat;
pub use readiness::{Readiness, ReadyHandle};
pub use shutdown::shutdown_token;
