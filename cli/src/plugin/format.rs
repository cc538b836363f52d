//! Rendering: text for people on call, JSON for tools. Pure string building.

use std::fmt::Write as _;

use serde::Serialize;

use super::lift::LiftReport;
use super::records::RecordRow;
use super::why::WhyReport;
use custody_engine::{Decision, Outcome};

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
    if r.kind == "Deployment" {
        write_revisions(&mut out, r);
    }
    write_records(&mut out, r);
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

/// A Deployment's ReplicaSets as a table, newest first.
fn write_revisions(out: &mut String, r: &WhyReport) {
    let _ = writeln!(out, "\nRevisions (newest first):");
    if r.revisions.is_empty() {
        let _ = writeln!(out, "  no ReplicaSets");
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
            format!("{}/{}", rv.ready, rv.replicas),
            rv.actor.clone().unwrap_or_else(|| "-".to_string()),
            rv.source_commit.clone().unwrap_or_else(|| "-".to_string()),
            list_or(&health, "-"),
        ]
    });
    table(
        out,
        &[
            "REVISION",
            "REPLICASET",
            "READY",
            "ACTOR",
            "COMMIT",
            "MARKS",
        ],
        rows,
    );
    let _ = writeln!(out, "  (* = the Deployment's current template)");
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

/// Left-aligned columns two spaces apart, indented by two; the last column is not padded.
fn table(out: &mut String, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &rows {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            line.push(' ');
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 1;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}
