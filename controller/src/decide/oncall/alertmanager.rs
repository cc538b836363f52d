//! A notice as Alertmanager's `POST /api/v2/alerts` takes it (`postableAlerts`): one alert whose
//! labels identify the situation, so that a later notice of it, and its resolution, update the
//! same alert.

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::{ALERT_GRACE, Notice, State};

/// The alerts to POST about `notice` at `now`.
pub fn body(notice: &Notice, now: Timestamp) -> Value {
    let ends_at = ends_at(notice.state, now).max(notice.started_at);
    json!([{
        "labels": labels(notice),
        "annotations": annotations(notice),
        "startsAt": notice.started_at.to_string(),
        "endsAt": ends_at.to_string(),
    }])
}

/// When the alert ends. Alertmanager refuses an alert that ends before it starts, hence the
/// caller's floor at `started_at`.
fn ends_at(state: State, now: Timestamp) -> Timestamp {
    match state {
        State::Resolved { at } => at,
        // An end already past means the situation ended by itself: the alert resolves.
        State::Firing { ends_at: Some(at) } => at,
        // No end of its own: it lapses unless sent again, so a controller that is gone cannot
        // leave it firing forever.
        State::Firing { ends_at: None } => now + ALERT_GRACE,
    }
}

/// Alertmanager drops labels with empty values itself, and a label that differs between two
/// notices of one situation would split it into two alerts, so only what is stable and present
/// is a label.
fn labels(notice: &Notice) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("alertname".into(), notice.kind.alertname().into());
    // Tells Custody's notices from the chart's alerts about Custody itself, and routes by kind.
    labels.insert("notice".into(), notice.kind.as_str().into());
    labels.insert("severity".into(), notice.severity.as_str().into());
    let optional = [
        ("namespace", Some(notice.namespace.as_str())),
        ("workload", notice.workload.as_deref()),
        ("team", notice.team.as_deref()),
        ("agent", notice.agent.as_deref()),
        ("reason", Some(notice.reason.as_str())),
    ];
    insert_present(&mut labels, optional);
    labels
}

fn annotations(notice: &Notice) -> Map<String, Value> {
    let mut annotations = Map::new();
    let description = description(notice);
    let others = notice.commands.len() > usize::from(notice.why_command().is_some());
    let commands = others.then(|| {
        notice
            .commands
            .iter()
            .map(|c| format!("{}: {}", c.label, c.command))
            .collect::<Vec<_>>()
            .join("\n")
    });
    insert_present(
        &mut annotations,
        [
            ("summary", Some(notice.summary.as_str())),
            ("description", Some(description.as_str())),
            ("command", notice.why_command()),
            ("commands", commands.as_deref()),
            ("revision", notice.revision.as_deref()),
            ("shippedBy", notice.shipped_by.as_deref()),
        ],
    );
    annotations
}

/// The explanation, then the evidence as a list: Alertmanager's templates show one text.
fn description(notice: &Notice) -> String {
    let mut text = notice.explanation.trim().to_string();
    if !notice.evidence.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str("Evidence:");
        for line in &notice.evidence {
            text.push_str("\n- ");
            text.push_str(line);
        }
    }
    text
}

fn insert_present<const N: usize>(map: &mut Map<String, Value>, pairs: [(&str, Option<&str>); N]) {
    for (name, value) in pairs {
        if let Some(value) = value.filter(|v| !v.trim().is_empty()) {
            map.insert(name.into(), value.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::oncall::MOMENT;
    use crate::decide::oncall::sample::{sample_notice, started};
    use jiff::SignedDuration;

    fn alert(notice: &Notice, now: Timestamp) -> Value {
        let body = body(notice, now);
        assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
        body[0].clone()
    }

    #[test]
    fn a_revert_is_one_alert_labelled_by_its_situation() {
        let now = started() + SignedDuration::from_secs(30);
        let alert = alert(&sample_notice(), now);
        assert_eq!(
            alert["labels"],
            json!({
                "alertname": "CustodyReverted",
                "notice": "reverted",
                "severity": "info",
                "namespace": "shop",
                "workload": "Deployment/web",
                "team": "payments",
                "agent": "claude-code/1.0",
                "reason": "CrashLoop",
            })
        );
        let annotations = &alert["annotations"];
        assert_eq!(
            annotations["command"],
            "kubectl custody why deploy/web -n shop"
        );
        assert!(
            annotations["commands"].as_str().is_some_and(|c| c.contains(
                "\nLift the quarantine (after a fix was reviewed): kubectl custody lift"
            )),
            "{annotations}"
        );
        assert!(
            annotations["description"].as_str().is_some_and(
                |d| d.ends_with("\n- CrashLoop: back-off 20s restarting failed container (pod web-7c9f5d8b6a-q7w4z, container app)")
            ),
            "{annotations}"
        );
        assert_eq!(annotations["revision"], "4 (web-7c9f5d8b6a)");
        assert_eq!(
            annotations["shippedBy"],
            "agent claude-code/1.0, commit 3f9a1c2e of github.com/acme/shop"
        );
        assert_eq!(alert["startsAt"], "2026-03-02T09:14:07Z");
        assert_eq!(alert["endsAt"], "2026-03-02T10:14:07Z");
        assert!(alert.get("generatorURL").is_none());
    }

    #[test]
    fn absent_or_empty_values_are_not_labels() {
        let notice = Notice {
            namespace: String::new(),
            workload: None,
            team: Some(String::new()),
            agent: Some("claude-code/1.0".into()),
            reason: String::new(),
            revision: None,
            commands: Vec::new(),
            ..sample_notice()
        };
        let alert = alert(&notice, started());
        let labels = alert["labels"].as_object().expect("labels");
        let mut names: Vec<_> = labels.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["agent", "alertname", "notice", "severity"]);
        assert!(labels.values().all(Value::is_string));
        let annotations = alert["annotations"].as_object().expect("annotations");
        for absent in ["command", "commands", "revision"] {
            assert!(
                !annotations.contains_key(absent),
                "{absent}: {annotations:?}"
            );
        }
    }

    #[test]
    fn only_the_why_command_needs_no_list() {
        let mut notice = sample_notice();
        notice.commands.truncate(1);
        let alert = alert(&notice, started());
        assert!(alert["annotations"].get("commands").is_none());
        assert!(alert["annotations"]["command"].is_string());
    }

    #[test]
    fn when_the_alert_ends() {
        let now = started() + SignedDuration::from_secs(600);
        let cases = [
            (
                "an open situation lapses after the grace unless sent again",
                State::Firing { ends_at: None },
                now + ALERT_GRACE,
            ),
            (
                "a moment ends at its hour",
                State::Firing {
                    ends_at: Some(started() + MOMENT),
                },
                started() + MOMENT,
            ),
            (
                "an end already past resolves the alert",
                State::Firing {
                    ends_at: Some(now - SignedDuration::from_secs(5)),
                },
                now - SignedDuration::from_secs(5),
            ),
            (
                "a resolution ends it when it resolved",
                State::Resolved { at: now },
                now,
            ),
            (
                "never before it started",
                State::Resolved {
                    at: started() - SignedDuration::from_secs(1),
                },
                started(),
            ),
        ];
        for (situation, state, want) in cases {
            let notice = Notice {
                state,
                ..sample_notice()
            };
            assert_eq!(
                alert(&notice, now)["endsAt"],
                want.to_string(),
                "{situation}"
            );
        }
    }
}
