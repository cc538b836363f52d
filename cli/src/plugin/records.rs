//! RollbackRecords as rows: what the controller did, to which workload, when, and whose
//! revision it was.

use custody_crds::analysis::AnalysisReport;
use custody_crds::{RecordAction, RollbackRecord, SignalReason, WorkloadKind};
use serde::Serialize;

/// One RollbackRecord, flattened for a table.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordRow {
    /// The record's name.
    pub name: String,
    /// The record's namespace (the workload's).
    pub namespace: String,
    /// When the controller acted (RFC 3339).
    pub acted_at: String,
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// The workload's name.
    pub workload: String,
    /// Reverted, Alerted or DryRun.
    pub action: RecordAction,
    /// The signal that confirmed the regression.
    pub reason: SignalReason,
    /// The regressed revision.
    pub from_revision: String,
    /// The revision reverted to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<String>,
    /// The regressed revision's declared actor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The regressed revision's declared agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Whether the record keeps the regressed template out at admission (a revert, not lifted).
    pub quarantines: bool,
    /// Who lifted the quarantine, if someone did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifted_by: Option<String>,
    /// The regressed template's fingerprint.
    pub from_fingerprint: String,
    /// Why the action was what it was, in the controller's words.
    pub explanation: String,
    /// The metric analysis's evidence, when it confirmed the regression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisReport>,
}

impl RecordRow {
    /// Flattens one record.
    pub fn from_record(record: &RollbackRecord) -> Self {
        let spec = &record.spec;
        Self {
            name: record.metadata.name.clone().unwrap_or_default(),
            namespace: record.metadata.namespace.clone().unwrap_or_default(),
            acted_at: spec.acted_at.0.to_string(),
            kind: spec.workload.kind,
            workload: spec.workload.name.clone(),
            action: spec.action,
            reason: spec.reason,
            from_revision: spec.from.revision.clone(),
            to_revision: spec.to.as_ref().map(|t| t.revision.clone()),
            actor: spec.from.actor.map(|a| a.as_str().to_string()),
            agent: spec.from.agent.clone(),
            quarantines: record.quarantines(),
            lifted_by: record
                .status
                .as_ref()
                .and_then(|s| s.lifted.as_ref())
                .map(|l| l.by.clone()),
            from_fingerprint: spec.from.template_fingerprint.clone(),
            explanation: spec.explanation.clone(),
            analysis: spec.analysis.clone(),
        }
    }

    /// `from→to`, or `from→-` for an alert with nowhere to go back to.
    pub fn revisions(&self) -> String {
        format!(
            "{}→{}",
            self.from_revision,
            self.to_revision.as_deref().unwrap_or("-")
        )
    }
}

/// Every record as a row, newest first (ties by namespace and name, so the order is stable).
pub fn rows<'r>(records: impl IntoIterator<Item = &'r RollbackRecord>) -> Vec<RecordRow> {
    let mut keyed: Vec<_> = records
        .into_iter()
        .map(|r| (r.spec.acted_at.0, RecordRow::from_record(r)))
        .collect();
    keyed.sort_by(|(ta, a), (tb, b)| {
        tb.cmp(ta)
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    keyed.into_iter().map(|(_, row)| row).collect()
}

/// The records naming one workload, newest first.
pub fn for_workload<'r>(
    records: impl IntoIterator<Item = &'r RollbackRecord>,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Vec<RecordRow> {
    rows(records.into_iter().filter(|r| {
        r.metadata.namespace.as_deref() == Some(namespace)
            && r.spec.workload.kind == kind
            && r.spec.workload.name == name
    }))
}
