//! What the records say each target was sent: their `status.notifications`, with the loop's
//! newer outcomes over them, and the writes that keep them there.

use std::collections::BTreeMap;
use std::time::Duration;

use custody_crds::{NoticeKind, RollbackRecord, TargetDelivery};
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;

use crate::decide::oncall::record;

use super::memory::{Inputs, Memory};

/// The record's deliveries: its status's, with the loop's newer ones over them.
pub(super) fn sent_of(
    record: &RollbackRecord,
    overlay: Option<&BTreeMap<(String, NoticeKind), TargetDelivery>>,
) -> Vec<TargetDelivery> {
    let mut out: Vec<TargetDelivery> = record
        .status
        .as_ref()
        .map(|s| s.notifications.clone())
        .unwrap_or_default();
    for newer in overlay.into_iter().flat_map(BTreeMap::values) {
        match out
            .iter_mut()
            .find(|d| d.target == newer.target && d.kind == newer.kind)
        {
            Some(d) => {
                d.sent_at = newer.sent_at.clone().or(d.sent_at.take());
                d.resolved_at = newer.resolved_at.clone().or(d.resolved_at.take());
                d.error = newer.error.clone();
            }
            None => out.push(newer.clone()),
        }
    }
    out
}

/// A record notified before targets kept what they were sent (`notified` set, none of its own
/// notice's deliveries listed): its own notice is not sent again (a probation it keeps still
/// is, and that one's deliveries do not make it new).
pub(super) fn legacy(record: &RollbackRecord, sent: &[TargetDelivery]) -> bool {
    let own = record::kind(record);
    !sent.iter().any(|d| d.kind == own)
        && record.status.as_ref().is_some_and(|s| s.notified.is_some())
}

/// Writes the deliveries of every record the loop changed: the whole list (the store's with
/// the loop's over it), `notified` once every target took the record's own notice, and the
/// errors of the last attempts.
pub(super) async fn write_statuses(inputs: &Inputs, memory: &mut Memory) {
    for key in std::mem::take(&mut memory.dirty) {
        let Some(record) = inputs
            .records
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .or_else(|| memory.fresh.get(&key).map(|(r, _)| r.clone()))
        else {
            continue;
        };
        let sent = sent_of(&record, memory.overlay.get(&key));
        let kind = record::kind(&record);
        let own: Vec<&TargetDelivery> = sent.iter().filter(|d| d.kind == kind).collect();
        let errors: Vec<&str> = sent.iter().filter_map(|d| d.error.as_deref()).collect();
        let mut status = serde_json::json!({
            "notifications": sent,
            "notificationError": (!errors.is_empty()).then(|| errors.join("; ")),
        });
        // A record notified before (its own notice not among these) keeps its `notified`.
        if !own.is_empty() {
            status["notified"] = own.iter().all(|d| d.sent_at.is_some()).into();
        }
        let patch = serde_json::json!({ "status": status });
        let api: Api<RollbackRecord> = Api::namespaced(inputs.client.clone(), &key.0);
        let params = PatchParams::default();
        let patch = Patch::Merge(&patch);
        let write = api.patch_status(&key.1, &params, &patch);
        match tokio::time::timeout(Duration::from_secs(10), write).await {
            Ok(Ok(_)) => {}
            Ok(Err(kube::Error::Api(e))) if e.code == 404 => {
                memory.overlay.remove(&key);
            }
            Ok(Err(error)) => {
                tracing::warn!(namespace = %key.0, record = %key.1, %error, "cannot write the record's notifications; trying again");
                memory.dirty.insert(key);
            }
            Err(_) => {
                tracing::warn!(namespace = %key.0, record = %key.1, "writing the record's notifications timed out; trying again");
                memory.dirty.insert(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::NotifyFormat;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn record(notified: Option<bool>) -> RollbackRecord {
        let mut r: RollbackRecord = serde_json::from_value(serde_json::json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
            "metadata": {"name": "web-2", "namespace": "shop"},
            "spec": {"workload": {"kind": "Deployment", "name": "web"}, "action": "Reverted",
                     "reason": "CrashLoop", "from": {"revision": "2", "templateFingerprint": "f"},
                     "policy": "p", "explanation": "x",
                     "regressionDetectedAt": "2026-12-05T10:00:00Z", "actedAt": "2026-12-05T10:00:00Z"}
        }))
        .expect("a record");
        r.status = notified.map(|n| custody_crds::RollbackRecordStatus {
            notified: Some(n),
            ..Default::default()
        });
        r
    }

    fn delivery(kind: NoticeKind) -> TargetDelivery {
        TargetDelivery {
            target: "team/web/00000000".into(),
            kind,
            format: NotifyFormat::Alertmanager,
            sent_at: None,
            resolved_at: None,
            error: None,
        }
    }

    #[test]
    fn a_record_notified_by_an_older_controller_is_not_notified_again() {
        assert!(legacy(&record(Some(true)), &[]));
        assert!(legacy(&record(Some(false)), &[]), "nor retried");
        assert!(
            legacy(&record(Some(true)), &[delivery(NoticeKind::Probation)]),
            "a probation it keeps does not make it new"
        );
        assert!(!legacy(&record(None), &[]), "a new record");
        assert!(
            !legacy(&record(Some(false)), &[delivery(NoticeKind::Reverted)]),
            "a record of this version whose sends failed"
        );
    }

    #[test]
    fn the_loops_deliveries_win_over_the_stores() {
        let mut r = record(None);
        let mut stored = delivery(NoticeKind::Reverted);
        stored.sent_at = Some(Time("2026-12-05T10:00:01Z".parse().expect("a time")));
        stored.error = Some("earlier failure".into());
        r.status = Some(custody_crds::RollbackRecordStatus {
            notifications: vec![stored.clone()],
            ..Default::default()
        });
        let mut newer = delivery(NoticeKind::Reverted);
        newer.resolved_at = Some(Time("2026-12-05T10:05:00Z".parse().expect("a time")));
        let overlay: BTreeMap<_, _> = [
            ((newer.target.clone(), newer.kind), newer.clone()),
            (
                (newer.target.clone(), NoticeKind::Probation),
                delivery(NoticeKind::Probation),
            ),
        ]
        .into();
        let merged = sent_of(&r, Some(&overlay));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].sent_at, stored.sent_at, "kept from the store");
        assert_eq!(
            merged[0].resolved_at, newer.resolved_at,
            "added by the loop"
        );
        assert_eq!(merged[0].error, None, "the last attempt's error");
        assert_eq!(merged[1].kind, NoticeKind::Probation);
    }
}
