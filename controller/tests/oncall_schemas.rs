//! Every on-call body Custody builds, judged by its receiver's own published schema (the test
//! kit's `schemas`): realistic notices in each format pass, and bodies broken the way a receiver
//! would refuse them fail, so that a pass means something.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use custody_controller::decide::oncall::{self, BodyError, Command, Notice, State};
use custody_crds::{NoticeKind, NotifyFormat, Severity};
use custody_testkit::schemas::check;
use jiff::Timestamp;
use serde_json::{Value, json};

const ROUTING_KEY: &str = "R0UT1NGK3Y0000000000000000000000";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    t("2026-03-02T09:15:00Z")
}

fn cmd(label: &str, command: &str) -> Command {
    Command {
        label: label.into(),
        command: command.into(),
    }
}

/// An agent's revision, reverted: already handled.
fn revert() -> Notice {
    Notice {
        kind: NoticeKind::Reverted,
        severity: Severity::Info,
        situation: "custody/shop/Deployment/web/reverted".into(),
        id: "0b6f4c1e-8d2a-4f3b-9e57-2c41d9a7e310".into(),
        state: State::Firing {
            ends_at: Some(t("2026-03-02T09:14:07Z") + oncall::MOMENT),
        },
        started_at: t("2026-03-02T09:14:07Z"),
        namespace: "shop".into(),
        workload: Some("Deployment/web".into()),
        team: Some("payments".into()),
        agent: Some("claude-code/1.0".into()),
        reason: "CrashLoop".into(),
        summary: "Deployment shop/web revision 4 regressed (CrashLoop) and was reverted to revision 3".into(),
        explanation: "Revision 4 (web-7c9f5d8b6a), shipped by agent claude-code/1.0, \
                      crash-looped in 3 of 4 Pods within 2m of its rollout; Custody reverted to \
                      revision 3 and quarantined its template."
            .into(),
        revision: Some("4 (web-7c9f5d8b6a)".into()),
        shipped_by: Some("agent claude-code/1.0, commit 3f9a1c2e of github.com/acme/shop".into()),
        evidence: vec![
            "CrashLoop: back-off 40s restarting failed container (pod web-7c9f5d8b6a-x2k9p, container app)".into(),
            "CrashLoop: back-off 20s restarting failed container (pod web-7c9f5d8b6a-q7w4z, container app)".into(),
        ],
        commands: vec![
            cmd("Inspect", "kubectl custody why deploy/web -n shop"),
            cmd(
                "Lift the quarantine (after a fix was reviewed)",
                "kubectl custody lift web-r4-7c9f5d8b6a -n shop --reason \"<what was fixed>\"",
            ),
        ],
        source: "/apis/custody.dev/v1alpha1/namespaces/shop/rollbackrecords/web-r4-7c9f5d8b6a"
            .into(),
        subject: "Deployment/web".into(),
        data: json!({
            "apiVersion": "custody.dev/v1alpha1",
            "kind": "RollbackRecord",
            "metadata": {"name": "web-r4-7c9f5d8b6a", "namespace": "shop"},
            "spec": {"workload": {"kind": "Deployment", "name": "web"}, "fromRevision": 4, "toRevision": 3},
        }),
    }
}

/// A person's revision regressed: reported, not reverted, open until it recovers.
fn person_alert() -> Notice {
    Notice {
        kind: NoticeKind::Alerted,
        severity: Severity::Critical,
        situation: "custody/shop/StatefulSet/ledger/alerted".into(),
        id: "5e2d7a90-1c3b-4e8f-a6d2-7f90b3c5e1a4".into(),
        state: State::Firing { ends_at: None },
        started_at: t("2026-03-02T09:12:30.250Z"),
        workload: Some("StatefulSet/ledger".into()),
        agent: None,
        reason: "Unready".into(),
        summary: "StatefulSet shop/ledger revision 7 regressed (Unready) and was not reverted: \
                  a person must act"
            .into(),
        explanation: "Revision 7 was shipped by a person, so Custody alerts instead of reverting. \
                      2 of 3 Pods have been unready for 4m."
            .into(),
        revision: Some("7 (ledger-5d9c8f7b6a)".into()),
        shipped_by: Some("a person, commit 9d1e2f3 of github.com/acme/ledger".into()),
        evidence: vec!["Unready: Readiness probe failed: HTTP probe failed with statuscode: 503 (pod ledger-1, container ledger)".into()],
        commands: vec![cmd("Inspect", "kubectl custody why sts/ledger -n shop")],
        source: "/apis/custody.dev/v1alpha1/namespaces/shop/rollbackrecords/ledger-r7-5d9c8f7b6a"
            .into(),
        subject: "StatefulSet/ledger".into(),
        ..revert()
    }
}

/// The same alert, over: the workload recovered.
fn resolution() -> Notice {
    person_alert().resolved(t("2026-03-02T09:40:00Z"))
}

/// An agent on probation in every namespace: no workload, no namespace.
fn probation() -> Notice {
    Notice {
        kind: NoticeKind::Probation,
        severity: Severity::Warning,
        situation: "probation/claude-code/1.0".into(),
        id: "probation/claude-code/1.0/2026-03-02T09:14:07Z".into(),
        state: State::Firing {
            ends_at: Some(t("2026-03-02T11:00:00Z")),
        },
        namespace: String::new(),
        workload: None,
        team: None,
        reason: "Probation".into(),
        summary: "Agent claude-code/1.0 is on probation until 2026-03-02T11:00:00Z".into(),
        explanation: "3 of its revisions were reverted within 1h (RollbackRecords web-r1, api-r4, \
                      web-r4), so its new revisions are refused."
            .into(),
        revision: None,
        shipped_by: None,
        evidence: vec!["web-r1".into(), "api-r4".into(), "web-r4".into()],
        commands: vec![cmd(
            "Lift the probation",
            "kubectl custody lift web-r4 -n shop --probation --reason \"<what was checked>\"",
        )],
        source: "/apis/custody.dev/v1alpha1/custodyagents/claude-code-1.0".into(),
        subject: "custodyagents/claude-code-1.0".into(),
        ..revert()
    }
}

/// An agent's change awaiting approval, whose texts run past every receiver's limits.
fn long_change_proposal() -> Notice {
    let rationale = "Raise the connection pool <max> from 20 to 80 & retry on 503 — ünïcödé ✓. ";
    Notice {
        kind: NoticeKind::ChangeProposed,
        severity: Severity::Warning,
        situation: format!("changeProposed/shop/{}", "checkout-".repeat(40)),
        id: "shop/change-checkout-9f2c/proposed".into(),
        state: State::Firing {
            ends_at: Some(t("2026-03-03T09:14:07Z")),
        },
        workload: Some(format!("Deployment/{}", "checkout-".repeat(20))),
        reason: "ChangeProposed".into(),
        summary: rationale.repeat(40),
        explanation: rationale.repeat(200),
        revision: None,
        evidence: (0..80).map(|i| format!("{i}: {rationale}")).collect(),
        commands: (0..40)
            .map(|i| {
                cmd(
                    &format!("Approve step {i}"),
                    "kubectl custody approve change-checkout-9f2c -n shop",
                )
            })
            .collect(),
        source: "/apis/custody.dev/v1alpha1/namespaces/shop/custodychanges/change-checkout-9f2c"
            .into(),
        subject: "custodychanges/change-checkout-9f2c".into(),
        ..revert()
    }
}

fn notices() -> Vec<(&'static str, Notice)> {
    vec![
        ("a revert", revert()),
        ("an alert of a person's revision", person_alert()),
        ("a resolution", resolution()),
        ("a probation without workload", probation()),
        ("a change proposal with long text", long_change_proposal()),
    ]
}

const FORMATS: [NotifyFormat; 4] = [
    NotifyFormat::Alertmanager,
    NotifyFormat::Slack,
    NotifyFormat::Pagerduty,
    NotifyFormat::Cloudevents,
];

fn built(notice: &Notice, format: NotifyFormat) -> Value {
    oncall::body(notice, format, Some(ROUTING_KEY), now()).expect("a body")
}

#[test]
fn every_notice_in_every_format_is_what_its_receiver_accepts() {
    for (situation, notice) in notices() {
        for format in FORMATS {
            let body = match oncall::body(&notice, format, Some(ROUTING_KEY), now()) {
                Ok(body) => body,
                Err(BodyError::NoResolution(_)) if !format.resolves() => continue,
                Err(e) => panic!("{situation} as {}: {e}", format.as_str()),
            };
            if let Err(problems) = check(format.as_str(), &body) {
                panic!(
                    "{situation} as {}: {problems:#?}\n{body:#}",
                    format.as_str()
                );
            }
        }
    }
}

#[test]
fn a_resolution_renders_validly_even_where_it_is_not_sent() {
    let notice = resolution();
    check("slack", &oncall::slack::body(&notice)).unwrap();
    check("cloudevents", &oncall::cloudevents::body(&notice)).unwrap();
}

#[test]
fn a_firing_alert_ends_in_the_future_and_a_resolved_one_when_it_resolved() {
    let firing = built(&person_alert(), NotifyFormat::Alertmanager);
    assert_eq!(
        firing[0]["endsAt"],
        (now() + oncall::ALERT_GRACE).to_string()
    );
    let resolved = built(&resolution(), NotifyFormat::Alertmanager);
    assert_eq!(resolved[0]["endsAt"], "2026-03-02T09:40:00Z");
    assert_eq!(resolved[0]["labels"], firing[0]["labels"], "the same alert");
    let resolve = built(&resolution(), NotifyFormat::Pagerduty);
    let trigger = built(&person_alert(), NotifyFormat::Pagerduty);
    assert_eq!(
        resolve["dedup_key"], trigger["dedup_key"],
        "the same incident"
    );
}

/// `body` mutated by `change`, which must then fail `format`'s check with a problem naming
/// `at`.
fn refused(format: &str, mut body: Value, change: impl FnOnce(&mut Value), at: &str) {
    check(format, &body).expect("the unbroken body passes");
    change(&mut body);
    let problems = check(format, &body).expect_err("a broken body must fail");
    assert!(
        problems.iter().any(|p| p.contains(at)),
        "{format}: no problem at {at}: {problems:#?}"
    );
}

#[test]
fn a_pagerduty_event_the_events_api_refuses_fails() {
    let body = || built(&person_alert(), NotifyFormat::Pagerduty);
    refused(
        "pagerduty",
        body(),
        |b| b["payload"]["severity"] = "urgent".into(),
        "/payload/severity",
    );
    refused(
        "pagerduty",
        body(),
        |b| b["event_action"] = "page".into(),
        "/event_action",
    );
    refused(
        "pagerduty",
        body(),
        |b| b["payload"]["timestamp"] = "yesterday".into(),
        "/payload/timestamp",
    );
    refused(
        "pagerduty",
        body(),
        |b| b["payload"] = json!({"summary": "x"}),
        "/payload",
    );
    refused(
        "pagerduty",
        body(),
        |b| b["dedup_key"] = "k".repeat(256).into(),
        "/dedup_key",
    );
    refused(
        "pagerduty",
        body(),
        |b| b["payload"]["summary"] = "s".repeat(1025).into(),
        "/payload/summary",
    );
    refused(
        "pagerduty",
        body(),
        |b| _ = b.as_object_mut().unwrap().remove("routing_key"),
        "routing_key",
    );
}

#[test]
fn a_cloudevent_the_spec_forbids_fails() {
    let body = || built(&revert(), NotifyFormat::Cloudevents);
    refused(
        "cloudevents",
        body(),
        |b| _ = b.as_object_mut().unwrap().remove("specversion"),
        "specversion",
    );
    refused(
        "cloudevents",
        body(),
        |b| b["specversion"] = "0.3".into(),
        "/specversion",
    );
    refused(
        "cloudevents",
        body(),
        |b| b["time"] = "2026-03-02 09:14".into(),
        "/time",
    );
    refused("cloudevents", body(), |b| b["id"] = "".into(), "/id");
    refused(
        "cloudevents",
        body(),
        |b| b["custody_state"] = "firing".into(),
        "/custody_state",
    );
    refused(
        "cloudevents",
        body(),
        |b| b["source"] = "not a uri reference".into(),
        "/source",
    );
}

#[test]
fn a_slack_message_slack_refuses_fails() {
    let body = || built(&revert(), NotifyFormat::Slack);
    refused(
        "slack",
        body(),
        |b| b["blocks"][0]["text"] = json!({"type": "mrkdwn", "text": "*Reverted*"}),
        "/blocks/0",
    );
    refused(
        "slack",
        body(),
        |b| b["blocks"][0]["text"]["text"] = "h".repeat(151).into(),
        "/blocks/0/text",
    );
    refused(
        "slack",
        body(),
        |b| b["blocks"][1]["text"]["text"] = "".into(),
        "/blocks/1/text",
    );
    refused(
        "slack",
        body(),
        |b| b["blocks"][1]["type"] = "paragraph".into(),
        "/blocks/1",
    );
    refused("slack", body(), |b| b["text"] = json!(42), "/text");
    refused(
        "slack",
        body(),
        |b| b["blocks"][2]["fields"] = json!(vec![json!({"type": "mrkdwn", "text": "f"}); 11]),
        "/blocks/2/fields",
    );
}

#[test]
fn an_alert_alertmanager_refuses_fails() {
    let body = || built(&revert(), NotifyFormat::Alertmanager);
    refused(
        "alertmanager",
        body(),
        |b| b[0]["labels"]["severity"] = json!(3),
        "/0/labels/severity",
    );
    refused(
        "alertmanager",
        body(),
        |b| b[0]["annotations"]["summary"] = json!(["a"]),
        "/0/annotations/summary",
    );
    refused(
        "alertmanager",
        body(),
        |b| b[0]["endsAt"] = "soon".into(),
        "/0/endsAt",
    );
    refused(
        "alertmanager",
        body(),
        |b| b[0]["endsAt"] = "2026-03-02T09:00:00Z".into(),
        "/0/endsAt",
    );
    refused(
        "alertmanager",
        body(),
        |b| b[0]["labels"] = json!({}),
        "/0/labels",
    );
    refused("alertmanager", body(), |b| *b = b[0].clone(), "");
}

/// The bodies as sent, for reading: `cargo test -p custody-controller --test oncall_schemas
/// -- --nocapture bodies`.
#[test]
fn bodies() {
    for (format, notice) in [
        (NotifyFormat::Alertmanager, revert()),
        (NotifyFormat::Slack, revert()),
        (NotifyFormat::Pagerduty, person_alert()),
        (NotifyFormat::Cloudevents, revert()),
    ] {
        let body = built(&notice, format);
        println!("--- {}\n{body:#}", format.as_str());
    }
}
