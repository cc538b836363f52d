//! The quarantine: pod templates the controller reverted, which must not come straight back
//! through a GitOps re-sync; and, from the same records, agents' reverts for probation.
//!
//! The index is built from RollbackRecords; a request is only fingerprinted when its workload
//! has records, so the common case costs one hash lookup.

use std::collections::HashMap;

use custody_crds::{RollbackRecord, WorkloadKind};

use crate::probation::RevertIndex;

/// One quarantined template of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// The reverted template's fingerprint.
    pub fingerprint: String,
    /// The RollbackRecord that quarantined it.
    pub record: String,
    /// The reverted revision.
    pub revision: String,
    /// Why it was reverted.
    pub reason: &'static str,
}

/// Quarantined templates by workload (namespace, kind, name).
#[derive(Clone, Debug, Default)]
pub struct QuarantineIndex {
    by_workload: HashMap<(String, WorkloadKind, String), Vec<QuarantineEntry>>,
    reverts: RevertIndex,
}

impl QuarantineIndex {
    /// Builds the index from records; only records of an actual revert quarantine anything
    /// (an alert or a dry run leaves the template admissible), until a person lifts them.
    pub fn from_records<'r>(records: impl IntoIterator<Item = &'r RollbackRecord>) -> Self {
        let records: Vec<&RollbackRecord> = records.into_iter().collect();
        let reverts = RevertIndex::from_records(records.iter().copied());
        let mut by_workload: HashMap<_, Vec<QuarantineEntry>> = HashMap::new();
        for record in records {
            if !record.quarantines() {
                continue;
            }
            let namespace = record.metadata.namespace.clone().unwrap_or_default();
            let key = (
                namespace,
                record.spec.workload.kind,
                record.spec.workload.name.clone(),
            );
            by_workload.entry(key).or_default().push(QuarantineEntry {
                fingerprint: record.spec.from.template_fingerprint.clone(),
                record: record.metadata.name.clone().unwrap_or_default(),
                revision: record.spec.from.revision.clone(),
                reason: record.spec.reason.as_str(),
            });
        }
        Self {
            by_workload,
            reverts,
        }
    }

    /// Agents' reverts, for probation.
    pub fn reverts(&self) -> &RevertIndex {
        &self.reverts
    }

    /// How many workloads have quarantined templates.
    pub fn len(&self) -> usize {
        self.by_workload.len()
    }

    /// Whether nothing is quarantined.
    pub fn is_empty(&self) -> bool {
        self.by_workload.is_empty()
    }

    /// The quarantined templates of one workload.
    pub fn entries(&self, namespace: &str, kind: WorkloadKind, name: &str) -> &[QuarantineEntry] {
        // Avoid allocating the key for the common miss.
        if self.by_workload.is_empty() {
            return &[];
        }
        self.by_workload
            .get(&(namespace.to_string(), kind, name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}
