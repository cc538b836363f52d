//! Rendering: text for people on call, JSON for tools. Pure string building.

mod analysis;
mod changes;
mod table;

use std::fmt::Write as _;

use serde::Serialize;

use super::lift::LiftReport;
use super::records::RecordRow;
use super::resume::ResumeReport;
use super::why::WhyReport;
use custody_crds::WorkloadKind;
use custody_engine::{Decision, Outcome};
use table::{list_or, plural, table};

pub use changes::{change_text, changes_text, decided_text, proposed_text, write_diff};

/// Pretty JSON of any report, with a trailing newline.
pub fn json<T: Serialize>(value: &T) -> String {
    match serde_json::to_string_pretty(value) {
        Ok(s) => s + "\n",
        Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
    }
}

/// `why` as text: the verdict first, then what explains it.
pub fn why_text(r: &WhyReport) -> String {
    let mut out = String::new();
    write_verdict(&mut out, r);
    write_provenance(&mut out, r);
    write_quarantine(&mut out, r);
    changes::write_workload_changes(&mut out, r);
    write_held(&mut out, r);
    if matches!(r.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet") {
        write_revisions(&mut out, r);
    }
    if let Some(current) = &r.analysis {
        analysis::write_standing(&mut out, current);
    }
    write_records(&mut out, r);
    for record in &r.records {
        if let Some(evidence) = &record.analysis {
            analysis::write_evidence(&mut out, &record.name, evidence);
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for n in &r.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}

/// The verdict line for an outcome.
fn verdict(d: &Decision) -> String {
    match d.outcome {
        Outcome::Allowed => "ADMITTED: no violations".to_string(),
        Outcome::Denied => format!("DENIED: {} to fix", plural(d.violations.len(), "problem")),
        Outcome::Warned => format!(
            "ADMITTED WITH WARNINGS: {}",
            plural(d.violations.len(), "violation")
        ),
        Outcome::Audited => format!(
            "ADMITTED (audit only): {}",
            plural(d.violations.len(), "violation")
        ),
        Outcome::Skipped => "NOT JUDGED: no policy selects it for this requester".to_string(),
        Outcome::Failed | Outcome::Invalid => format!(
            "NOT JUDGED: {}",
            d.message.as_deref().unwrap_or("the object cannot be read")
        ),
    }
}

/// The object, the verdict, who it was judged as, the policies and each violation.
fn write_verdict(out: &mut String, r: &WhyReport) {
    let d = &r.decision;
    let _ = writeln!(out, "{} {}/{}", r.kind, r.namespace, r.name);
    let _ = writeln!(out, "Verdict:    {}", verdict(d));
    let _ = writeln!(
        out,
        "Judged as:  a CREATE of the live object by {:?} (actor cross-check uses this name)",
        r.judged_as
    );
    let _ = writeln!(out, "Policies:   {}", list_or(&r.policies, "none"));
    for p in &r.invalid_policies {
        let _ = writeln!(out, "            left out by the webhook: {p}");
    }
    for v in &d.violations {
        let _ = writeln!(
            out,
            "  - [{}] {} {}: {}",
            v.mode.as_str(),
            v.code.as_str(),
            v.field,
            v.message
        );
        let _ = writeln!(out, "    fix: {}", v.fix);
    }
    for w in &d.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
}

fn write_provenance(out: &mut String, r: &WhyReport) {
    let _ = writeln!(out, "\nProvenance:");
    let width = r
        .provenance
        .iter()
        .map(|p| p.annotation.len())
        .max()
        .unwrap_or(0);
    for p in &r.provenance {
        let _ = writeln!(
            out,
            "  {:<width$}  {}",
            p.annotation,
            p.value.as_deref().unwrap_or("<unset>")
        );
    }
}

fn write_quarantine(out: &mut String, r: &WhyReport) {
    let _ = writeln!(out, "\nQuarantine:");
    match (&r.quarantined_by, &r.template_fingerprint) {
        (Some(rec), _) => {
            let _ = writeln!(
                out,
                "  QUARANTINED: the current template is revision {} reverted by RollbackRecord {} ({}, {})",
                rec.from_revision,
                rec.name,
                rec.reason.as_str(),
                rec.acted_at
            );
        }
        (None, Some(f)) => {
            let _ = writeln!(out, "  not quarantined (template {f})");
        }
        (None, None) => {
            let _ = writeln!(out, "  no pod template");
        }
    }
}

/// The controller's hold on the rollout after its first step, and how a person releases it.
fn write_held(out: &mut String, r: &WhyReport) {
    let Some(held) = &r.held else {
        return;
    };
    let revision = match held.number {
        Some(n) => format!("revision {n} ({})", held.revision),
        None => held.revision.clone(),
    };
    let alerted = r
        .revisions
        .iter()
        .find(|rv| rv.name == held.revision)
        .and_then(|rv| rv.alerted_by.as_deref());
    let _ = writeln!(out, "\nRollout:");
    match alerted {
        // An alert ends the controller's judgement of the revision: an analysis never passes
        // after it, so only a person (or a rollback) ends such a hold.
        Some(record) => {
            let _ = writeln!(
                out,
                "  HELD after its first step, on {revision}, which the controller alerted about ({record}) and no longer judges: under a metric analysis the hold stays until a person resumes the rollout or rolls it back."
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  HELD after its first step, on {revision}: the controller resumes it once that step stays Ready (and its metric analysis passes), or reverts it if it regresses."
            );
        }
    }
    let partition = held.restores_partition.map_or(String::new(), |p| {
        format!(" (its partition goes back to {p})")
    });
    let _ = writeln!(out, "  To release it now{partition}: {}", held.resume);
}

/// A workload's revisions as a table, newest first.
fn write_revisions(out: &mut String, r: &WhyReport) {
    let (object, current) = if r.kind == "Deployment" {
        ("REPLICASET", "the Deployment's current template")
    } else {
        ("CONTROLLERREVISION", "the current revision")
    };
    let _ = writeln!(out, "\nRevisions (newest first):");
    if r.revisions.is_empty() {
        let _ = writeln!(
            out,
            "  no {}s",
            if r.kind == "Deployment" {
                "ReplicaSet"
            } else {
                "ControllerRevision"
            }
        );
        return;
    }
    let rows = r.revisions.iter().map(|rv| {
        let mut health = Vec::new();
        if let Some(t) = &rv.healthy_since {
            health.push(format!("healthy since {t}"));
        }
        if let Some(rec) = &rv.reverted_by {
            health.push(format!("reverted by {rec}"));
        }
        if let Some(rec) = &rv.alerted_by {
            health.push(format!("alerted by {rec}"));
        }
        vec![
            format!(
                "{}{}",
                rv.revision.map_or("?".to_string(), |n| n.to_string()),
                if rv.current { "*" } else { "" }
            ),
            rv.name.clone(),
            match (rv.ready, rv.replicas) {
                (Some(ready), Some(replicas)) => format!("{ready}/{replicas}"),
                _ => "-".to_string(),
            },
            rv.actor.clone().unwrap_or_else(|| "-".to_string()),
            rv.source_commit.clone().unwrap_or_else(|| "-".to_string()),
            list_or(&health, "-"),
        ]
    });
    table(
        out,
        &["REVISION", object, "READY", "ACTOR", "COMMIT", "MARKS"],
        rows,
    );
    let _ = writeln!(out, "  (* = {current})");
}

fn write_records(out: &mut String, r: &WhyReport) {
    let _ = writeln!(out, "\nRollbackRecords:");
    if r.records.is_empty() {
        let _ = writeln!(out, "  none");
        return;
    }
    // The workload is the one asked about: leave its column out.
    let headers: Vec<&str> = RECORD_HEADERS
        .iter()
        .enumerate()
        .filter_map(|(i, h)| (i != 1).then_some(*h))
        .collect();
    let rows = r.records.iter().map(|row| {
        let mut cells = record_cells(row);
        cells.remove(1);
        cells
    });
    table(out, &headers, rows);
}

const RECORD_HEADERS: [&str; 7] = [
    "ACTED",
    "WORKLOAD",
    "ACTION",
    "REASON",
    "FROM→TO",
    "ACTOR/AGENT",
    "RECORD",
];

fn record_cells(r: &RecordRow) -> Vec<String> {
    vec![
        r.acted_at.clone(),
        format!(
            "{}/{}/{}",
            r.namespace,
            r.kind.as_str().to_ascii_lowercase(),
            r.workload
        ),
        match &r.lifted_by {
            Some(by) => format!("{:?} (lifted by {by})", r.action),
            None => format!("{:?}", r.action),
        },
        r.reason.as_str().to_string(),
        r.revisions(),
        format!(
            "{}/{}",
            r.actor.as_deref().unwrap_or("-"),
            r.agent.as_deref().unwrap_or("-")
        ),
        r.name.clone(),
    ]
}

/// `records` as a table, newest first (the rows come sorted).
pub fn records_text(rows: &[RecordRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No RollbackRecords.\n");
        return out;
    }
    table(&mut out, &RECORD_HEADERS, rows.iter().map(record_cells));
    out
}

/// `lift`'s answer, in words.
pub fn lift_text(r: &LiftReport) -> String {
    let workload = format!(
        "{}/{} in namespace {}",
        r.kind.as_str().to_ascii_lowercase(),
        r.workload,
        r.namespace
    );
    let mut out = String::new();
    if r.already_lifted {
        let _ = writeln!(
            out,
            "RollbackRecord {} was already lifted by {} at {}: {}",
            r.record, r.lifted.by, r.lifted.at.0, r.lifted.reason
        );
        let _ = writeln!(out, "Nothing written.");
        return out;
    }
    let what = match r.kind_of_lift {
        super::lift::LiftKind::Quarantine => {
            format!("the quarantine of {workload}, revision {}", r.revision)
        }
        super::lift::LiftKind::Probation => format!(
            "the probation of agent {} (newest revert: {workload}, revision {})",
            r.agent.as_deref().unwrap_or("<unknown>"),
            r.revision
        ),
    };
    let _ = writeln!(out, "Lifted {what} (RollbackRecord {}).", r.record);
    let _ = writeln!(out, "  by:     {}", r.lifted.by);
    let _ = writeln!(out, "  reason: {}", r.lifted.reason);
    let _ = writeln!(out, "  at:     {}", r.lifted.at.0);
    match r.kind_of_lift {
        super::lift::LiftKind::Quarantine => {
            let _ = writeln!(
                out,
                "The reverted template ({}) may be applied again. The controller never reverts the same revision twice: watch it yourself.",
                r.template_fingerprint
            );
        }
        super::lift::LiftKind::Probation => {
            let _ = writeln!(
                out,
                "This revert and the agent's earlier ones in the policy's scope no longer count towards its probation."
            );
        }
    }
    match r.event.as_deref() {
        Some("created") => {
            let _ = writeln!(
                out,
                "Event {} recorded on {workload}.",
                r.kind_of_lift.event_reason()
            );
        }
        Some(why) => {
            let _ = writeln!(
                out,
                "warning: no Event recorded ({why}); the record holds the lift."
            );
        }
        None => {}
    }
    out
}

/// `resume`'s answer, in words.
pub fn resume_text(r: &ResumeReport) -> String {
    let workload = format!(
        "{}/{} in namespace {}",
        r.kind.as_str().to_ascii_lowercase(),
        r.name,
        r.namespace
    );
    let how = match r.partition {
        Some(p) => format!("partition back to {p}"),
        None => "spec.paused: false".to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Released revision {} of {workload}, held after its first step: its rollout now proceeds ({how}).",
        r.revision
    );
    let _ = writeln!(
        out,
        "The controller still judges revision {} and reverts it if it regresses.",
        r.revision
    );
    if r.kind == WorkloadKind::Deployment {
        match r.condition.as_deref() {
            Some("updated") | None => {}
            Some(why) => {
                let _ = writeln!(
                    out,
                    "warning: the CustodyHeld condition still says held ({why}); the annotations hold the truth."
                );
            }
        }
    }
    match r.event.as_deref() {
        Some("created") => {
            let _ = writeln!(out, "Event RolloutResumed recorded on {workload}.");
        }
        Some(why) => {
            let _ = writeln!(out, "warning: no Event recorded ({why}).");
        }
        None => {}
    }
    out
}
