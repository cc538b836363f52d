//! Notices as the controller builds them, for the formats' tests.

use custody_crds::{NoticeKind, Severity};
use jiff::Timestamp;
use serde_json::json;

use super::{Command, Notice, State};

/// When the sample revert happened.
pub(crate) fn started() -> Timestamp {
    "2026-03-02T09:14:07Z".parse().expect("a timestamp")
}

/// A revert of an agent's revision of `shop/Deployment/web`, firing.
pub(crate) fn sample_notice() -> Notice {
    Notice {
        kind: NoticeKind::Reverted,
        severity: Severity::Info,
        situation: "custody/shop/Deployment/web/reverted".to_string(),
        id: "0b6f4c1e-8d2a-4f3b-9e57-2c41d9a7e310".to_string(),
        state: State::Firing {
            ends_at: Some(started() + super::MOMENT),
        },
        started_at: started(),
        namespace: "shop".to_string(),
        workload: Some("Deployment/web".to_string()),
        team: Some("payments".to_string()),
        agent: Some("claude-code/1.0".to_string()),
        reason: "CrashLoop".to_string(),
        summary: "Deployment shop/web revision 4 regressed (CrashLoop) and was reverted to revision 3".to_string(),
        explanation: "Revision 4 (web-7c9f5d8b6a), shipped by agent claude-code/1.0, crash-looped \
                      in 3 of 4 Pods within 2m of its rollout, so Custody reverted to revision 3 \
                      and quarantined its template."
            .to_string(),
        revision: Some("4 (web-7c9f5d8b6a)".to_string()),
        shipped_by: Some("agent claude-code/1.0, commit 3f9a1c2e of github.com/acme/shop".to_string()),
        evidence: vec![
            "CrashLoop: back-off 40s restarting failed container (pod web-7c9f5d8b6a-x2k9p, container app)".to_string(),
            "CrashLoop: back-off 20s restarting failed container (pod web-7c9f5d8b6a-q7w4z, container app)".to_string(),
        ],
        commands: vec![
            Command {
                label: "Inspect".to_string(),
                command: "kubectl custody why deploy/web -n shop".to_string(),
            },
            Command {
                label: "Lift the quarantine (after a fix was reviewed)".to_string(),
                command: "kubectl custody lift web-r4-7c9f5d8b6a -n shop --reason \"...\""
                    .to_string(),
            },
        ],
        source: "/apis/custody.dev/v1alpha1/namespaces/shop/rollbackrecords/web-r4-7c9f5d8b6a"
            .to_string(),
        subject: "Deployment/web".to_string(),
        data: json!({"kind": "RollbackRecord", "metadata": {"name": "web-r4-7c9f5d8b6a"}}),
    }
}
