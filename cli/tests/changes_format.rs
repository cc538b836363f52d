//! How `kubectl custody` prints CustodyChanges: the table, one change in full, what `propose`
//! did and what `approve` or `reject` wrote. The full texts are golden files
//! (`CUSTODY_BLESS=1` rewrites them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use custody_cli::plugin::changes::{self, ProposeReport};
use custody_cli::plugin::decide::{DecidePlan, Verdict, plan};
use custody_cli::plugin::format;
use custody_cli::propose::follow_steps;
use custody_crds::change::MAX_DIFF_LINES;
use custody_crds::{
    Applied, ChangePhase, ChangeWorkload, CustodyChange, CustodyChangeSpec, CustodyChangeStatus,
    DiffLine, Lift, WorkloadKind,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use support::check_golden;

const NOW: &str = "2026-12-05T10:00:00Z";

fn at(s: &str) -> Time {
    Time(s.parse::<Timestamp>().unwrap())
}

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn line(field: &str, before: Option<&str>, after: Option<&str>) -> DiffLine {
    DiffLine {
        field: field.into(),
        before: before.map(str::to_string),
        after: after.map(str::to_string),
    }
}

fn change(name: &str, namespace: &str, created: &str) -> CustodyChange {
    let mut c = CustodyChange::new(
        name,
        CustodyChangeSpec {
            workload: ChangeWorkload {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            },
            digest: format!("sha256:{}", "5e".repeat(32)),
            template_digest: format!("sha256:{}", "a6".repeat(32)),
            provenance: [
                ("actor", "agent"),
                ("agent", "claude-code/1.0"),
                ("source-commit", "3f9c2a7"),
                ("owner", "team-web"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            labels: Default::default(),
            agent: "claude-code/1.0".into(),
            proposer: "system:serviceaccount:agents:claude".into(),
            reason: "bump nginx to 1.28 for CVE-2026-1234".into(),
            diff: vec![
                line(
                    "containers[web].image",
                    Some("nginx:1.27"),
                    Some("nginx:1.28"),
                ),
                line("containers[web].env[TOKEN]", None, Some("set")),
                line("containers[sidecar]", Some("envoy:1.30"), None),
            ],
            diff_truncated: false,
            running_template_digest: Some(format!("sha256:{}", "f3".repeat(32))),
        },
    );
    c.metadata.namespace = Some(namespace.into());
    c.metadata.creation_timestamp = Some(at(created));
    c.metadata.resource_version = Some("7".into());
    c
}

fn lift(by: &str, when: &str, reason: &str) -> Lift {
    Lift {
        by: by.into(),
        reason: reason.into(),
        at: at(when),
    }
}

#[test]
fn the_table_and_one_change_in_full() {
    let mut approved = change("web-5e5e5e5e5e", "shop", "2026-12-05T09:48:00Z");
    approved.status = Some(CustodyChangeStatus {
        phase: Some(ChangePhase::Approved),
        approvals: vec![
            lift(
                "ann@acme.dev",
                "2026-12-05T09:50:00Z",
                "checked the image bump",
            ),
            lift(
                "bob@acme.dev",
                "2026-12-05T09:55:00Z",
                "read the diff, fine",
            ),
        ],
        expires_at: Some(at("2026-12-06T09:55:00Z")),
        message: Some("approved by ann@acme.dev, bob@acme.dev under policy reviewed".into()),
        ..CustodyChangeStatus::default()
    });
    let rejected = {
        let mut c = change("api-0123456789", "billing", "2026-12-02T10:00:00Z");
        c.spec.workload.name = "api".into();
        c.status = Some(CustodyChangeStatus {
            rejection: Some(lift(
                "bob@acme.dev",
                "2026-12-02T11:00:00Z",
                "drops the config we use",
            )),
            ..CustodyChangeStatus::default()
        });
        c
    };
    let pending = change("web-9f8e7d6c5b", "shop", "2026-12-05T09:59:15Z");
    let all = [approved.clone(), rejected.clone(), pending];
    let rows = changes::rows(&all, now());
    check_golden("changes-table.txt", &format::changes_text(&rows, false));
    check_golden("changes-table-all.txt", &format::changes_text(&rows, true));
    assert_eq!(format::changes_text(&[], true), "No CustodyChanges.\n");
    assert_eq!(
        rows[2].phase,
        ChangePhase::Rejected,
        "derived before the controller wrote one"
    );

    check_golden(
        "change-approved.txt",
        &format::change_text(&approved, now()),
    );

    let mut spent = rejected;
    spent.status = Some(CustodyChangeStatus {
        applied: Some(Applied {
            revision: "4".into(),
            generation: Some(4),
            at: at("2026-12-02T12:00:00Z"),
        }),
        ..CustodyChangeStatus::default()
    });
    spent.spec.diff = (0..MAX_DIFF_LINES)
        .map(|i| line(&format!("containers[web].env[VAR_{i}]"), None, Some("set")))
        .collect();
    spent.spec.diff_truncated = true;
    spent.spec.running_template_digest = None;
    let text = format::change_text(&spent, now());
    assert!(text.contains("Phase:      Applied\n"), "{text}");
    assert!(
        text.contains("\nApplied as revision 4 at 2026-12-02T12:00:00Z: its approval is spent.\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "Changes (a new workload, or taken without the running one; proposed template sha256:"
        ),
        "{text}"
    );
    assert!(
        text.contains("  … cut at 100 lines or 16 KiB: the digest still names the whole change; read the rest from the source at commit 3f9c2a7\n"),
        "{text}"
    );
}

#[test]
fn what_propose_did() {
    let created = change("web-5e5e5e5e5e", "shop", NOW);
    let existing = {
        let mut c = change("web-5e5e5e5e5e", "shop", "2026-12-05T09:00:00Z");
        c.status = Some(CustodyChangeStatus {
            phase: Some(ChangePhase::Approved),
            ..CustodyChangeStatus::default()
        });
        c
    };
    let report = |change: CustodyChange, created: bool| {
        ProposeReport {
        workload: changes::workload_of(&change),
        phase: (!created).then(|| changes::phase(&change)),
        follow: follow_steps(&change, "web.yaml"),
        notes: vec![
            "web.yaml:1 (document 1): Service \"web\" is not a workload; it needs no approval and is left out"
                .into(),
        ],
        change,
        created,
    }
    };
    check_golden(
        "propose-created.txt",
        &format::proposed_text(&[report(created, true)]),
    );
    let text = format::proposed_text(&[report(existing, false)]);
    assert!(
        text.starts_with("CustodyChange web-5e5e5e5e5e in namespace shop already proposes this change to deployment/web (phase Approved); nothing created.\n"),
        "{text}"
    );
}

#[test]
fn what_approve_and_reject_wrote() {
    let mut c = change("web-5e5e5e5e5e", "shop", "2026-12-05T09:48:00Z");
    c.status = Some(CustodyChangeStatus {
        approvals: vec![lift(
            "bob@acme.dev",
            "2026-12-05T09:55:00Z",
            "read the diff, fine",
        )],
        ..CustodyChangeStatus::default()
    });
    let written = |verdict| match plan(
        &c,
        "ann@acme.dev",
        "checked the image bump",
        at(NOW),
        verdict,
    ) {
        Ok(DecidePlan::Write { report, .. }) => format::decided_text(&report),
        other => panic!("expected a write, got {other:?}"),
    };
    assert_eq!(
        written(Verdict::Approve),
        "Approved CustodyChange web-5e5e5e5e5e (deployment/web in namespace shop) as ann@acme.dev: checked the image bump
2 approvals so far: bob@acme.dev, ann@acme.dev. Once the policy's required number of people approved, the webhook admits exactly this change, once; the agent applies the same manifest unchanged.
"
    );
    assert_eq!(
        written(Verdict::Reject),
        "Rejected CustodyChange web-5e5e5e5e5e (deployment/web in namespace shop) as ann@acme.dev: checked the image bump
The webhook never admits this change; the agent must propose another.
"
    );
    match plan(&c, "bob@acme.dev", "checked it again", at(NOW), Verdict::Approve) {
        Ok(DecidePlan::Already(report)) => assert_eq!(
            format::decided_text(&report),
            "You (bob@acme.dev) approved CustodyChange web-5e5e5e5e5e (deployment/web in namespace shop) already at 2026-12-05T09:55:00Z: read the diff, fine
Nothing written.
"
        ),
        other => panic!("expected already approved, got {other:?}"),
    }
}
