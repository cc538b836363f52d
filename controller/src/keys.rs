//! The annotation keys the controller reads and the marks it writes, in one leaf module: the
//! cache, the decision and the writers all name them, so they live where none of those depend
//! on another to reach them. Nothing here imports from the crate.

use custody_crds::{AnnotationKey, Vocabulary};

pub use custody_crds::record::marks;

/// The controller's mark on a revision whose break-glass was announced: when. The controller's
/// own (the webhook never reads it), so it is not among the shared [`marks`].
pub const NOTICED: &str = "break-glass-noticed";

/// The provenance keys: read to decide, copied onto a ControllerRevision with a mark, restored
/// by a revert.
pub const PROVENANCE: [AnnotationKey; 7] = [
    AnnotationKey::Actor,
    AnnotationKey::Agent,
    AnnotationKey::Model,
    AnnotationKey::SourceRepo,
    AnnotationKey::SourceCommit,
    AnnotationKey::PipelineRun,
    AnnotationKey::Rollback,
];

/// The ownership keys, kept besides provenance for verification and the background audit.
pub const OWNERSHIP: [AnnotationKey; 2] = [AnnotationKey::Owner, AnnotationKey::Oncall];

/// Keys read only to make a revision visible, never to decide about it (break-glass).
pub const VISIBILITY: [AnnotationKey; 1] = [AnnotationKey::BreakGlass];

/// The controller's marks it reads back: on revisions, and the holds on workloads. (The
/// `analysis` mark is written for people and never read back.)
pub const MARKS: [&str; 7] = [
    marks::HEALTHY_SINCE,
    marks::REVERTED,
    marks::ALERTED,
    NOTICED,
    marks::HELD,
    marks::HELD_PARTITION,
    marks::RELEASED,
];

/// The controller's own marks, under the vocabulary prefix.
pub fn mark(vocabulary: &Vocabulary, name: &str) -> String {
    format!("{}{name}", vocabulary.prefix())
}
