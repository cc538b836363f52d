//! A RollbackRecord as a notice, when its situation resolves, and what each of its targets is
//! still owed. Pure: the workload's revisions come from the cache, the clock is passed in.

use custody_crds::record::marks;
use custody_crds::{
    NoticeKind, RecordAction, RollbackRecord, Severity, TargetDelivery, Vocabulary,
};
use jiff::{SignedDuration, Timestamp};

use crate::cache::observe::{Revision, WorkloadState};
use crate::keys::mark;

use super::{Command, Notice, State, situation, why};

/// The kind of notice a record is.
pub fn kind(record: &RollbackRecord) -> NoticeKind {
    match record.spec.action {
        RecordAction::Reverted => NoticeKind::Reverted,
        RecordAction::Alerted | RecordAction::DryRun => NoticeKind::Alerted,
    }
}

/// The record as a notice, firing.
pub fn notice(record: &RollbackRecord) -> Notice {
    let spec = &record.spec;
    let name = record.metadata.name.clone().unwrap_or_default();
    let namespace = record.metadata.namespace.clone().unwrap_or_default();
    let workload = format!("{}/{}", spec.workload.kind.as_str(), spec.workload.name);
    let kind = kind(record);
    let severity = match spec.action {
        RecordAction::DryRun => Severity::Warning,
        _ => kind.severity(),
    };
    let mut commands = vec![why(&namespace, &workload)];
    if spec.action == RecordAction::Reverted {
        commands.push(Command {
            label: "Lift the quarantine (after a fix was reviewed)".into(),
            command: format!(
                "kubectl custody lift {name} -n {namespace} --reason \"<what was fixed>\""
            ),
        });
    }
    Notice {
        kind,
        severity,
        situation: situation(&namespace, &workload, kind),
        id: record
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| format!("{namespace}/{name}")),
        state: State::Firing { ends_at: None },
        started_at: spec.acted_at.0,
        team: spec.team.clone(),
        agent: spec.from.agent.clone(),
        reason: spec.reason.as_str().to_string(),
        summary: summary(record, &namespace),
        explanation: spec.explanation.clone(),
        revision: Some(revision(&spec.from)),
        shipped_by: shipped_by(&spec.from),
        evidence: evidence(record),
        commands,
        source: format!("/apis/custody.dev/v1alpha1/namespaces/{namespace}/rollbackrecords/{name}"),
        subject: workload.clone(),
        workload: Some(workload),
        namespace,
        data: serde_json::to_value(record).unwrap_or_default(),
    }
}

fn summary(record: &RollbackRecord, namespace: &str) -> String {
    let spec = &record.spec;
    let what = format!(
        "{} {namespace}/{} revision {}",
        spec.workload.kind.as_str(),
        spec.workload.name,
        spec.from.revision
    );
    let reason = spec.reason.as_str();
    match (spec.action, &spec.to) {
        (RecordAction::Reverted, Some(to)) => {
            format!(
                "{what} regressed ({reason}) and was reverted to revision {}",
                to.revision
            )
        }
        (RecordAction::Reverted, None) => format!("{what} regressed ({reason}) and was reverted"),
        (RecordAction::Alerted, _) => {
            format!("{what} regressed ({reason}) and was not reverted: a person must act")
        }
        (RecordAction::DryRun, _) => {
            format!("{what} regressed ({reason}); a revert was due but the policy is in dry run")
        }
    }
}

/// `4 (web-7c9f5d)`.
fn revision(snapshot: &custody_crds::RevisionSnapshot) -> String {
    match &snapshot.revision_object {
        Some(object) => format!("{} ({object})", snapshot.revision),
        None => snapshot.revision.clone(),
    }
}

/// `agent claude-code/1.0, commit 1a2b3c4 of github.com/acme/shop`.
pub fn shipped_by(snapshot: &custody_crds::RevisionSnapshot) -> Option<String> {
    let who = match (snapshot.actor, &snapshot.agent) {
        (_, Some(agent)) => format!("agent {agent}"),
        (Some(custody_crds::Actor::Human), None) => "a person".to_string(),
        (Some(actor), None) => actor.as_str().to_string(),
        (None, None) => return None,
    };
    let mut out = who;
    if let Some(commit) = &snapshot.source_commit {
        out.push_str(&format!(", commit {commit}"));
        if let Some(repo) = &snapshot.source_repo {
            out.push_str(&format!(" of {repo}"));
        }
    }
    if let Some(run) = &snapshot.pipeline_run {
        out.push_str(&format!(", run {run}"));
    }
    if let Some(key) = &snapshot.attested_by {
        out.push_str(&format!(", signed by key {key}"));
    }
    Some(out)
}

fn evidence(record: &RollbackRecord) -> Vec<String> {
    let mut out: Vec<String> = record
        .spec
        .signals
        .iter()
        .map(|s| {
            let mut line = format!("{}: {}", s.reason.as_str(), s.message);
            if let Some(pod) = &s.pod {
                line.push_str(&format!(" (pod {pod}"));
                if let Some(container) = &s.container {
                    line.push_str(&format!(", container {container}"));
                }
                line.push(')');
            }
            line
        })
        .collect();
    if let Some(analysis) = &record.spec.analysis {
        for metric in &analysis.metrics {
            if metric.result == custody_crds::analysis::CheckResult::Fail {
                out.push(format!("metric {}: {}", metric.name, metric.why));
            }
        }
    }
    out
}

/// When the record's situation resolved, if it has: once the workload runs a revision newer
/// than the regressed one (after a revert, the restored one), marked healthy, and has rolled
/// out fully. A revision marked after the record resolves it at its mark. A restored revision
/// keeps the mark it earned before the revert, so it resolves the record only once it has run
/// for the policy's `healthy_after` window since the revert, the same proof any new revision
/// gives. `now` when the workload is gone (`workload` is `None`: not in the synced cache).
pub fn resolved_at(
    record: &RollbackRecord,
    workload: Option<(&WorkloadState, &[Revision])>,
    healthy_after: SignedDuration,
    vocabulary: &Vocabulary,
    now: Timestamp,
) -> Option<Timestamp> {
    let Some((w, revisions)) = workload else {
        return Some(now);
    };
    let from: i64 = record.spec.from.revision.parse().ok()?;
    let current = revisions.iter().max_by_key(|r| r.number)?;
    let settled = w.observed_generation >= w.generation
        && w.updated_replicas >= w.replicas
        && w.available_replicas >= w.replicas;
    if current.number <= from || !settled {
        return None;
    }
    let since = current
        .annotations
        .get(&mark(vocabulary, marks::HEALTHY_SINCE))?
        .parse::<Timestamp>()
        .unwrap_or(now);
    let acted = record.spec.acted_at.0;
    if since > acted {
        return Some(since);
    }
    let proven = acted + healthy_after;
    (now >= proven).then_some(proven)
}

/// What a target is owed about one notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owed {
    /// Nothing.
    Nothing,
    /// The notice itself.
    Trigger,
    /// The resolution (to a target that keeps situations open).
    Resolve,
    /// Nothing to send, but the resolution is to be written as done: a newer notice of the
    /// same situation is open, and resolving this one would close that one too.
    Supersede,
}

/// What the target `id` is owed about a notice of `kind`, given what the record says was sent
/// (`sent`), whether the target keeps situations open (`resolves`), when the situation resolved
/// and whether a newer notice of the same situation is still open.
pub fn owed(
    sent: &[TargetDelivery],
    id: &str,
    kind: NoticeKind,
    resolves: bool,
    resolved: Option<Timestamp>,
    newer_open: bool,
) -> Owed {
    let entry = sent.iter().find(|d| d.target == id && d.kind == kind);
    match entry {
        None => Owed::Trigger,
        Some(d) if d.sent_at.is_none() => Owed::Trigger,
        Some(d) if !resolves || d.resolved_at.is_some() || resolved.is_none() => Owed::Nothing,
        Some(_) if newer_open => Owed::Supersede,
        Some(_) => Owed::Resolve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_crds::NotifyFormat;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    fn delivery(target: &str, sent: bool, resolved: bool) -> TargetDelivery {
        let t = Time("2026-12-05T10:00:00Z".parse().expect("a time"));
        TargetDelivery {
            target: target.into(),
            kind: NoticeKind::Reverted,
            format: NotifyFormat::Alertmanager,
            sent_at: sent.then(|| t.clone()),
            resolved_at: resolved.then_some(t),
            error: None,
        }
    }

    #[test]
    fn what_a_target_is_owed() {
        let now: Timestamp = "2026-12-05T10:05:00Z".parse().expect("a time");
        let k = NoticeKind::Reverted;
        let sent = [delivery("a", true, false), delivery("b", false, false)];
        let done = [delivery("a", true, true)];
        // (situation, sent, target, resolves, resolved, newer open, expected)
        let cases = [
            (
                "never sent",
                &sent[..],
                "c",
                true,
                None,
                false,
                Owed::Trigger,
            ),
            (
                "failed before",
                &sent[..],
                "b",
                true,
                None,
                false,
                Owed::Trigger,
            ),
            (
                "sent, still open",
                &sent[..],
                "a",
                true,
                None,
                false,
                Owed::Nothing,
            ),
            (
                "sent, resolved",
                &sent[..],
                "a",
                true,
                Some(now),
                false,
                Owed::Resolve,
            ),
            (
                "sent, resolved, newer open",
                &sent[..],
                "a",
                true,
                Some(now),
                true,
                Owed::Supersede,
            ),
            (
                "a target that keeps nothing open",
                &sent[..],
                "a",
                false,
                Some(now),
                false,
                Owed::Nothing,
            ),
            (
                "resolution already sent",
                &done[..],
                "a",
                true,
                Some(now),
                false,
                Owed::Nothing,
            ),
            (
                "resolved before it was ever sent",
                &[][..],
                "a",
                true,
                Some(now),
                false,
                Owed::Trigger,
            ),
        ];
        for (situation, sent, id, resolves, resolved, newer, want) in cases {
            assert_eq!(
                owed(sent, id, k, resolves, resolved, newer),
                want,
                "{situation}"
            );
        }
        assert_eq!(
            owed(&sent, "a", NoticeKind::Probation, true, None, false),
            Owed::Trigger,
            "another kind is another notice"
        );
    }

    fn revision(number: i64, healthy: Option<&str>) -> Revision {
        let vocabulary = Vocabulary::default();
        let annotations: BTreeMap<String, String> = healthy
            .map(|t| (mark(&vocabulary, marks::HEALTHY_SINCE), t.to_string()))
            .into_iter()
            .collect();
        Revision::new(
            format!("web-{number}"),
            number,
            &serde_json::json!({"spec": {"containers": [{"name": "a", "image": "a"}]}}),
            annotations,
            None,
        )
    }

    fn record(from: &str) -> RollbackRecord {
        let mut record: RollbackRecord = serde_json::from_value(serde_json::json!({
            "apiVersion": "custody.dev/v1alpha1", "kind": "RollbackRecord",
            "metadata": {"name": "web-2", "namespace": "shop", "uid": "u-1"},
            "spec": {
                "workload": {"kind": "Deployment", "name": "web"},
                "action": "Reverted", "reason": "CrashLoop",
                "from": {"revision": "2", "revisionObject": "web-abc", "templateFingerprint": "f",
                         "actor": "agent", "agent": "claude-code/1.0", "sourceCommit": "1a2b3c"},
                "to": {"revision": "1", "templateFingerprint": "e"},
                "signals": [{"reason": "CrashLoop", "message": "back-off 10s restarting", "since": "2026-12-05T09:59:00Z", "pod": "web-abc-1", "container": "app"}],
                "policy": "p", "explanation": "reverted: agent's revision crash-looped",
                "regressionDetectedAt": "2026-12-05T10:00:00Z", "actedAt": "2026-12-05T10:00:01Z",
                "team": "web"
            }
        }))
        .expect("a record");
        record.spec.from.revision = from.into();
        record
    }

    #[test]
    fn a_record_resolves_when_a_newer_revision_is_healthy_and_rolled_out() {
        let v = Vocabulary::default();
        let now: Timestamp = "2026-12-05T10:10:00Z".parse().expect("a time");
        let r = record("2");
        let settled = WorkloadState::sample("f");
        let mut rolling = WorkloadState::sample("f");
        rolling.updated_replicas = 0;
        let older_only = [revision(2, None), revision(1, Some("2026-12-05T09:00:00Z"))];
        let window = SignedDuration::from_secs(120);
        let w = |s: &WorkloadState, r: &[Revision]| {
            resolved_at(&record("2"), Some((s, r)), window, &v, now)
        };
        assert_eq!(
            w(&settled, &older_only),
            None,
            "only an older one is healthy"
        );
        let unmarked = [revision(3, None), revision(2, None)];
        assert_eq!(
            w(&settled, &unmarked),
            None,
            "the newer one is not marked healthy"
        );
        let fixed = [revision(3, Some("2026-12-05T10:02:00Z")), revision(2, None)];
        assert_eq!(
            w(&settled, &fixed),
            Some("2026-12-05T10:02:00Z".parse().expect("a time")),
            "at the mark"
        );
        assert_eq!(w(&rolling, &fixed), None, "still rolling out");
        let restored = [revision(3, Some("2026-12-05T09:00:00Z")), revision(2, None)];
        assert_eq!(
            w(&settled, &restored),
            Some("2026-12-05T10:02:01Z".parse().expect("a time")),
            "a mark from before the revert: once the window since the revert has passed"
        );
        let soon: Timestamp = "2026-12-05T10:01:00Z".parse().expect("a time");
        assert_eq!(
            resolved_at(&r, Some((&settled, &restored)), window, &v, soon),
            None,
            "not before"
        );
        assert_eq!(
            resolved_at(&r, None, window, &v, now),
            Some(now),
            "the workload is gone"
        );
    }

    #[test]
    fn a_record_as_a_notice() {
        let n = notice(&record("2"));
        assert_eq!(n.kind, NoticeKind::Reverted);
        assert_eq!(n.severity, Severity::Info);
        assert_eq!(n.situation, "custody/shop/Deployment/web/reverted");
        assert_eq!(n.workload.as_deref(), Some("Deployment/web"));
        assert_eq!(n.agent.as_deref(), Some("claude-code/1.0"));
        assert_eq!(n.reason, "CrashLoop");
        assert_eq!(n.revision.as_deref(), Some("2 (web-abc)"));
        assert_eq!(
            n.shipped_by.as_deref(),
            Some("agent claude-code/1.0, commit 1a2b3c")
        );
        assert_eq!(
            n.why_command(),
            Some("kubectl custody why deployment/web -n shop")
        );
        assert!(
            n.commands[1]
                .command
                .starts_with("kubectl custody lift web-2 -n shop")
        );
        assert_eq!(
            n.evidence,
            vec!["CrashLoop: back-off 10s restarting (pod web-abc-1, container app)"]
        );
        assert!(
            n.summary.contains("reverted to revision 1"),
            "{}",
            n.summary
        );
        let mut dry = record("2");
        dry.spec.action = RecordAction::DryRun;
        let n = notice(&dry);
        assert_eq!(
            (n.kind, n.severity),
            (NoticeKind::Alerted, Severity::Warning)
        );
        dry.spec.action = RecordAction::Alerted;
        assert_eq!(notice(&dry).severity, Severity::Critical);
    }
}
