//! A notice as a PagerDuty Events API v2 event: a `trigger` while the situation is open, a
//! `resolve` when it ends, both keyed by the situation so that PagerDuty keeps one incident.

use std::borrow::Cow;

use custody_crds::Severity;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Notice, State, clip};

/// PagerDuty's limit on `dedup_key`.
pub const MAX_DEDUP_KEY: usize = 255;

/// PagerDuty's limit on `payload.summary`.
pub const MAX_SUMMARY: usize = 1024;

/// The event to send about `notice` to the service whose integration key is `routing_key`.
pub fn body(notice: &Notice, routing_key: &str) -> Value {
    let dedup_key = dedup_key(&notice.situation);
    if let State::Resolved { .. } = notice.state {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": payload(notice),
        "client": "Custody",
    })
}

fn payload(notice: &Notice) -> Value {
    let summary = if notice.summary.trim().is_empty() {
        notice.kind.alertname()
    } else {
        &notice.summary
    };
    let mut payload = Map::new();
    payload.insert("summary".into(), clip(summary, MAX_SUMMARY).into());
    payload.insert("source".into(), source(notice).into());
    payload.insert("severity".into(), severity(notice.severity).into());
    payload.insert("timestamp".into(), notice.started_at.to_string().into());
    let group = Some(notice.namespace.as_str())
        .filter(|n| !n.is_empty())
        .or(notice.team.as_deref());
    for (name, value) in [
        ("component", notice.workload.as_deref()),
        ("group", group),
        ("class", Some(notice.kind.as_str())),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            payload.insert(name.into(), value.into());
        }
    }
    payload.insert("custom_details".into(), custom_details(notice).into());
    payload.into()
}

/// Where it happened, the way a responder looks it up: `namespace/Kind/name`, else the object
/// the notice comes from.
fn source(notice: &Notice) -> String {
    match notice.workload.as_deref().filter(|w| !w.is_empty()) {
        Some(workload) if notice.namespace.is_empty() => workload.to_string(),
        Some(workload) => format!("{}/{workload}", notice.namespace),
        None => notice.source.clone(),
    }
}

const fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn custom_details(notice: &Notice) -> Map<String, Value> {
    let mut details = Map::new();
    for (name, value) in [
        ("explanation", Some(notice.explanation.as_str())),
        ("reason", Some(notice.reason.as_str())),
        ("revision", notice.revision.as_deref()),
        ("shippedBy", notice.shipped_by.as_deref()),
        ("team", notice.team.as_deref()),
        ("agent", notice.agent.as_deref()),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            details.insert(name.into(), value.into());
        }
    }
    if !notice.evidence.is_empty() {
        details.insert("evidence".into(), notice.evidence.clone().into());
    }
    if !notice.commands.is_empty() {
        let commands: Vec<_> = notice
            .commands
            .iter()
            .map(|c| format!("{}: {}", c.label, c.command))
            .collect();
        details.insert("commands".into(), commands.into());
    }
    details
}

/// The situation, or when it is too long for PagerDuty, a prefix of it and the SHA-256 of the
/// whole: a cut alone could make two situations one incident, and the key must be the same for
/// the trigger and the resolve.
pub fn dedup_key(situation: &str) -> Cow<'_, str> {
    // Bytes, not characters: whichever PagerDuty counts, this stays within it.
    if situation.len() <= MAX_DEDUP_KEY {
        return Cow::Borrowed(situation);
    }
    let digest = Sha256::digest(situation.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut cut = MAX_DEDUP_KEY - hex.len() - 1;
    while !situation.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}~{hex}", &situation[..cut]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::oncall::sample::{sample_notice, started};
    use custody_crds::NoticeKind;

    #[test]
    fn an_alert_triggers_an_incident_keyed_by_its_situation() {
        let notice = Notice {
            kind: NoticeKind::Alerted,
            severity: Severity::Critical,
            situation: "custody/shop/Deployment/web/alerted".into(),
            ..sample_notice()
        };
        let body = body(&notice, "R0UT1NGK3Y");
        assert_eq!(body["routing_key"], "R0UT1NGK3Y");
        assert_eq!(body["event_action"], "trigger");
        assert_eq!(body["dedup_key"], "custody/shop/Deployment/web/alerted");
        assert_eq!(body["client"], "Custody");
        assert!(body.get("client_url").is_none());
        let payload = &body["payload"];
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "shop/Deployment/web");
        assert_eq!(payload["component"], "Deployment/web");
        assert_eq!(payload["group"], "shop");
        assert_eq!(payload["class"], "alerted");
        assert_eq!(payload["timestamp"], started().to_string());
        let details = &payload["custom_details"];
        assert_eq!(
            details["shippedBy"],
            "agent claude-code/1.0, commit 3f9a1c2e of github.com/acme/shop"
        );
        assert_eq!(details["evidence"].as_array().map(Vec::len), Some(2));
        assert_eq!(
            details["commands"][0],
            "Inspect: kubectl custody why deploy/web -n shop"
        );
    }

    #[test]
    fn a_resolution_names_only_the_incident() {
        let notice = sample_notice().resolved(started());
        let body = body(&notice, "R0UT1NGK3Y");
        assert_eq!(
            body,
            json!({
                "routing_key": "R0UT1NGK3Y",
                "event_action": "resolve",
                "dedup_key": "custody/shop/Deployment/web/reverted",
            })
        );
    }

    #[test]
    fn without_a_workload_the_source_is_the_object_and_the_group_the_team() {
        let notice = Notice {
            kind: NoticeKind::Probation,
            namespace: String::new(),
            workload: None,
            ..sample_notice()
        };
        let payload = &body(&notice, "k")["payload"];
        assert_eq!(payload["source"], notice.source.as_str());
        assert_eq!(payload["group"], "payments");
        assert!(payload.get("component").is_none());
    }

    #[test]
    fn a_long_summary_is_cut_to_the_limit() {
        let notice = Notice {
            summary: "é".repeat(3000),
            ..sample_notice()
        };
        let summary = body(&notice, "k")["payload"]["summary"]
            .as_str()
            .map(str::to_string)
            .expect("a summary");
        assert_eq!(summary.chars().count(), MAX_SUMMARY);
        assert!(summary.ends_with('…'));
    }

    #[test]
    fn a_long_situation_keeps_a_stable_distinct_key_within_the_limit() {
        let long = format!("changeProposed/{}", "ü".repeat(300));
        let other = format!("{long}x");
        let key = dedup_key(&long);
        assert!(key.len() <= MAX_DEDUP_KEY, "{}", key.len());
        assert!(key.starts_with("changeProposed/ü"));
        assert_eq!(key, dedup_key(&long));
        assert_ne!(key, dedup_key(&other));
        let short = "custody/shop/Deployment/web/reverted";
        assert_eq!(dedup_key(short), short);
        let exact = "a".repeat(MAX_DEDUP_KEY);
        assert_eq!(dedup_key(&exact), exact.as_str());
    }
}
