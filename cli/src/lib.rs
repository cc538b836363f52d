//! Custody's command lines around the engine: `custody check` (the engine on manifest files),
//! `custody stamp` (provenance and signed attestations written into manifests), `custody vap`
//! (the ValidatingAdmissionPolicy backstop), `custody propose` (an agent's manifest turned into
//! the CustodyChange a person approves) and the `kubectl custody` plugin's judging, planning
//! and rendering.
//!
//! Data flows one way: files or live objects are read into engine [`Request`]s built with
//! [`Request::create`], judged by the same [`custody_engine::evaluate`] the webhook server
//! runs, and rendered. The binaries in `src/bin` parse flags and do the I/O; the modules here
//! hold the logic.
//!
//! [`Request`]: custody_engine::Request
//! [`Request::create`]: custody_engine::Request::create

pub mod check;
pub mod plugin;
pub mod propose;
pub mod stamp;
pub mod vap;
