//! CustodyChanges as text: the table, one change in full with its diff, what `propose` did and
//! what `approve` or `reject` wrote.

use std::fmt::Write as _;

use custody_crds::change::{MAX_DIFF_BYTES, MAX_DIFF_LINES};
use custody_crds::{CustodyChange, DiffLine};
use k8s_openapi::jiff::Timestamp;

use super::table::{list_or, plural, table};
use crate::plugin::changes::{ChangeRow, ProposeReport, age, phase, workload_of};
use crate::plugin::decide::{DecideReport, Verdict};
use crate::plugin::why::WhyReport;

/// `changes` as a table, newest first (the rows come sorted); with the namespace column for
/// `-A`.
pub fn changes_text(rows: &[ChangeRow], all_namespaces: bool) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No CustodyChanges.\n");
        return out;
    }
    let mut headers = vec!["NAME", "WORKLOAD", "AGENT", "PHASE", "APPROVALS", "AGE"];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let cells = rows.iter().map(|r| {
        let mut cells = vec![
            r.name.clone(),
            crate::propose::reference(r.kind, &r.workload),
            r.agent.clone(),
            r.phase.as_str().to_string(),
            approvals_cell(&r.approvals),
            r.age.clone(),
        ];
        if all_namespaces {
            cells.insert(0, r.namespace.clone());
        }
        cells
    });
    table(&mut out, &headers, cells);
    out
}

fn approvals_cell(by: &[String]) -> String {
    match by.len() {
        0 => "0".to_string(),
        n => format!("{n} ({})", by.join(", ")),
    }
}

/// One change in full: what it is, its diff, and where it stands.
pub fn change_text(change: &CustodyChange, now: Timestamp) -> String {
    let mut out = String::new();
    let spec = &change.spec;
    let status = change.status.clone().unwrap_or_default();
    let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
    let name = change.metadata.name.as_deref().unwrap_or_default();
    let _ = writeln!(out, "CustodyChange {namespace}/{name}");
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<11} {value}", format!("{label}:"));
    };
    field("Workload", &workload_of(change));
    field("Phase", phase(change).as_str());
    field("Agent", &spec.agent);
    field("Proposer", &spec.proposer);
    field("Reason", &spec.reason);
    field("Digest", &spec.digest);
    if let Some(created) = change.metadata.creation_timestamp.as_ref() {
        field(
            "Proposed",
            &format!("{} ({} ago)", created.0, age(created.0, now)),
        );
    }
    if let Some(expires) = &status.expires_at {
        field("Expires", &expires.0.to_string());
    }
    if let Some(message) = &status.message {
        field("Message", message);
    }
    write_provenance(&mut out, change);
    write_diff(&mut out, change);
    let _ = writeln!(out, "\nApprovals:");
    if status.approvals.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for a in &status.approvals {
        let _ = writeln!(out, "  {}  {}  {}", a.by, a.at.0, a.reason);
    }
    if let Some(r) = &status.rejection {
        let _ = writeln!(out, "\nRejected by {} at {}: {}", r.by, r.at.0, r.reason);
    }
    if let Some(applied) = &status.applied {
        let _ = writeln!(
            out,
            "\nApplied as revision {} at {}: its approval is spent.",
            applied.revision, applied.at.0
        );
    }
    out
}

fn write_provenance(out: &mut String, change: &CustodyChange) {
    let _ = writeln!(out, "\nProvenance:");
    let width = change
        .spec
        .provenance
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0);
    for (key, value) in &change.spec.provenance {
        let _ = writeln!(out, "  {key:<width$}  {value}");
    }
}

/// The diff, one line per field, with what it is taken against.
pub fn write_diff(out: &mut String, change: &CustodyChange) {
    let spec = &change.spec;
    let against = match &spec.running_template_digest {
        Some(running) => format!("against the running template {running}"),
        None => "a new workload, or taken without the running one".to_string(),
    };
    let _ = writeln!(
        out,
        "\nChanges ({against}; proposed template {}):",
        spec.template_digest
    );
    if spec.diff.is_empty() {
        let _ = writeln!(out, "  none in the pod template");
    }
    for line in &spec.diff {
        let _ = writeln!(out, "  {}", diff_line(line));
    }
    if spec.diff_truncated {
        let commit = spec
            .provenance
            .get("source-commit")
            .map_or(String::new(), |c| format!(" at commit {c}"));
        let _ = writeln!(
            out,
            "  … cut at {MAX_DIFF_LINES} lines or {} KiB: the digest still names the whole change; read the rest from the source{commit}",
            MAX_DIFF_BYTES / 1024
        );
    }
}

fn diff_line(line: &DiffLine) -> String {
    match (&line.before, &line.after) {
        (Some(b), Some(a)) => format!("{}: {b} → {a}", line.field),
        (None, Some(a)) => format!("{}: (none) → {a}", line.field),
        (Some(b), None) => format!("{}: {b} → (removed)", line.field),
        (None, None) => line.field.clone(),
    }
}

/// What `propose` did, for each workload of the manifest.
pub fn proposed_text(reports: &[ProposeReport]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let change = &r.change;
        let namespace = change.metadata.namespace.as_deref().unwrap_or_default();
        let name = change.metadata.name.as_deref().unwrap_or_default();
        if r.created {
            let _ = writeln!(
                out,
                "Proposed CustodyChange {name} in namespace {namespace} for {}.",
                r.workload
            );
        } else {
            let _ = writeln!(
                out,
                "CustodyChange {name} in namespace {namespace} already proposes this change to {} (phase {}); nothing created.",
                r.workload,
                r.phase.map_or("Pending", |p| p.as_str())
            );
        }
        let _ = writeln!(out, "  digest:   {}", change.spec.digest);
        let _ = writeln!(out, "  agent:    {}", change.spec.agent);
        let _ = writeln!(out, "  proposer: {}", change.spec.proposer);
        let _ = writeln!(out, "  reason:   {}", change.spec.reason);
        write_diff(&mut out, change);
        if !r.notes.is_empty() {
            out.push('\n');
        }
        for note in &r.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(out, "\nNext:");
        for (n, step) in r.follow.iter().enumerate() {
            let _ = writeln!(out, "  {}. {step}", n + 1);
        }
    }
    out
}

/// What `approve` or `reject` wrote, in words.
pub fn decided_text(r: &DecideReport) -> String {
    let mut out = String::new();
    let what = format!(
        "CustodyChange {} ({} in namespace {})",
        r.name, r.workload, r.namespace
    );
    let d = &r.decision;
    if r.already {
        let verb = match r.verdict {
            Verdict::Approve => "approved",
            Verdict::Reject => "rejected",
        };
        let _ = writeln!(
            out,
            "You ({}) {verb} {what} already at {}: {}",
            d.by, d.at.0, d.reason
        );
        let _ = writeln!(out, "Nothing written.");
        return out;
    }
    match r.verdict {
        Verdict::Approve => {
            let _ = writeln!(out, "Approved {what} as {}: {}", d.by, d.reason);
            let _ = writeln!(
                out,
                "{} so far: {}. Once the policy's required number of people approved, the webhook admits exactly this change, once; the agent applies the same manifest unchanged.",
                plural(r.approvals.len(), "approval"),
                list_or(&r.approvals, "none")
            );
        }
        Verdict::Reject => {
            let _ = writeln!(out, "Rejected {what} as {}: {}", d.by, d.reason);
            let _ = writeln!(
                out,
                "The webhook never admits this change; the agent must propose another."
            );
        }
    }
    out
}

/// `why`'s change requests: the one that admitted the current revision, and the open ones.
pub(super) fn write_workload_changes(out: &mut String, r: &WhyReport) {
    let approval_required = r
        .decision
        .violations
        .iter()
        .any(|v| v.code == custody_engine::ViolationCode::ApprovalRequired);
    if r.changes.is_empty() && r.closed_changes == 0 && !approval_required {
        return;
    }
    let _ = writeln!(out, "\nChange requests:");
    if r.changes.is_empty() {
        let _ = writeln!(out, "  none open, none for the current revision");
    } else {
        let rows = r.changes.iter().map(|c| {
            vec![
                format!("{}{}", c.name, if c.current { "*" } else { "" }),
                c.phase.as_str().to_string(),
                c.agent.clone(),
                list_or(&c.approvals, "-"),
                c.standing.clone(),
            ]
        });
        table(
            out,
            &[
                "NAME",
                "PHASE",
                "AGENT",
                "APPROVED BY",
                "AS THE WEBHOOK SEES IT",
            ],
            rows,
        );
        if r.changes.iter().any(|c| c.current) {
            let _ = writeln!(out, "  (* = the change of the current revision)");
        }
    }
    if r.closed_changes > 0 {
        let _ = writeln!(
            out,
            "  and {} spent, rejected or expired: kubectl custody changes -n {}",
            plural(r.closed_changes, "other"),
            r.namespace
        );
    }
}
