//! The RollbackRecord of a verdict: what happened, to which revisions, on what evidence. Its
//! name is deterministic, so a second create after a restart is a no-op.

use custody_crds::{
    AnnotationKey, RecordAction, RevisionSnapshot, RollbackRecord, RollbackRecordSpec, Signal,
    Vocabulary, WorkloadRef,
};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::cache::observe::{Revision, WorkloadState};
use crate::decide::Verdict;
use crate::decide::owning_team::OwningTeam;

/// The record's name: the workload, the revision and a fingerprint prefix, DNS-safe.
pub fn record_name(workload: &str, revision: &Revision) -> String {
    let short = revision
        .fingerprint
        .trim_start_matches("sha256:")
        .get(..10)
        .unwrap_or_default()
        .to_string();
    let suffix = format!("-r{}-{short}", revision.number);
    let max_prefix = 253 - suffix.len();
    let prefix: String = workload.chars().take(max_prefix).collect();
    format!("{prefix}{suffix}")
}

fn snapshot(revision: &Revision, vocabulary: &Vocabulary) -> RevisionSnapshot {
    let get = |k: AnnotationKey| revision.annotations.get(vocabulary.key(k)).cloned();
    RevisionSnapshot {
        revision: revision.number.to_string(),
        revision_object: Some(revision.name.clone()),
        template_fingerprint: revision.code().to_string(),
        images: revision.images.clone(),
        actor: get(AnnotationKey::Actor).and_then(|a| a.parse().ok()),
        agent: get(AnnotationKey::Agent),
        model: get(AnnotationKey::Model),
        source_commit: get(AnnotationKey::SourceCommit),
        source_repo: get(AnnotationKey::SourceRepo),
        pipeline_run: get(AnnotationKey::PipelineRun),
        attested_by: None,
    }
}

/// Builds the record of `verdict`. The record is owned by the workload, so it goes when the
/// workload does (and with it the quarantine).
pub fn build(
    workload: &WorkloadState,
    verdict: &Verdict,
    action: RecordAction,
    policy: &str,
    vocabulary: &Vocabulary,
    revision_seen_at: Option<Timestamp>,
    now: Timestamp,
) -> RollbackRecord {
    let signals = verdict
        .findings
        .iter()
        .map(|f| Signal {
            reason: f.reason,
            message: f.message.clone(),
            since: Time(f.since),
            pod: f.pod.clone(),
            container: f.container.clone(),
        })
        .collect();
    RollbackRecord {
        metadata: ObjectMeta {
            name: Some(record_name(&workload.name, &verdict.from)),
            namespace: Some(workload.namespace.clone()),
            labels: Some(
                [
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "custody".to_string(),
                    ),
                    (
                        "custody.dev/workload".to_string(),
                        truncate_label(&workload.name),
                    ),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "apps/v1".into(),
                kind: workload.kind.as_str().into(),
                name: workload.name.clone(),
                uid: workload.uid.clone(),
                controller: Some(false),
                block_owner_deletion: Some(false),
            }]),
            ..ObjectMeta::default()
        },
        spec: RollbackRecordSpec {
            workload: WorkloadRef {
                kind: workload.kind,
                name: workload.name.clone(),
                uid: Some(workload.uid.clone()),
            },
            action,
            reason: verdict.reason,
            from: RevisionSnapshot {
                attested_by: verdict.attested_by.clone(),
                ..snapshot(&verdict.from, vocabulary)
            },
            to: verdict.to.as_ref().map(|r| snapshot(r, vocabulary)),
            signals,
            policy: policy.to_string(),
            explanation: verdict.explanation.clone(),
            revision_seen_at: revision_seen_at.map(Time),
            regression_detected_at: Time(verdict.detected_at),
            acted_at: Time(now),
            // Set by [`with_ownership`]: the team store is not the verdict's business.
            team: None,
            oncall: None,
            analysis: verdict.analysis.clone(),
        },
        status: None,
    }
}

/// The record with the owning team and the on-call of its regressed revision.
pub fn with_ownership(mut record: RollbackRecord, ownership: &OwningTeam) -> RollbackRecord {
    record.spec.team.clone_from(&ownership.team);
    record.spec.oncall.clone_from(&ownership.oncall);
    record
}

fn truncate_label(value: &str) -> String {
    value
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.', '_'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_goes_into_the_spec() {
        let record = RollbackRecord::new(
            "web-r2-abc",
            RollbackRecordSpec {
                workload: WorkloadRef {
                    kind: custody_crds::WorkloadKind::Deployment,
                    name: "web".into(),
                    uid: None,
                },
                action: RecordAction::Reverted,
                reason: custody_crds::SignalReason::CrashLoop,
                from: RevisionSnapshot::default(),
                to: None,
                signals: vec![],
                policy: "p".into(),
                explanation: String::new(),
                revision_seen_at: None,
                regression_detected_at: Time(Timestamp::UNIX_EPOCH),
                acted_at: Time(Timestamp::UNIX_EPOCH),
                team: None,
                oncall: None,
                analysis: None,
            },
        );
        let ownership = OwningTeam {
            team: Some("team-web".into()),
            oncall: Some("@web".into()),
            registered: None,
        };
        let owned = with_ownership(record, &ownership);
        assert_eq!(owned.spec.team.as_deref(), Some("team-web"));
        assert_eq!(owned.spec.oncall.as_deref(), Some("@web"));
        let json = serde_json::to_value(&owned).unwrap();
        assert_eq!(json["spec"]["team"], "team-web");
        assert_eq!(json["spec"]["oncall"], "@web");
    }
}
