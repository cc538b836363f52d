//! `custody verify`: the signature part of a check, reported on its own.

use std::fmt::Write as _;

use super::report::Report;

/// One line per workload (verified, by which key, or why not), and the exit code: 0 when all
/// verify, 1 when one does not, 2 on unreadable input or an invalid policy.
pub fn verify_report(report: &Report) -> (String, u8) {
    let mut out = String::new();
    let mut failed = false;
    for r in &report.results {
        let object = match &r.namespace {
            Some(ns) => format!("{} {ns}/{}", r.kind, r.name),
            None => format!("{} {}", r.kind, r.name),
        };
        let problems: Vec<_> = r
            .decision
            .violations
            .iter()
            .filter(|v| v.code.is_signature())
            .collect();
        if let Some(key) = r.decision.audit_annotations.get("attestation-key")
            && problems.is_empty()
        {
            let _ = writeln!(out, "verified {object} ({}): key {key}", r.origin);
        }
        for v in &problems {
            failed = true;
            let _ = writeln!(
                out,
                "FAILED {object} ({}): {}: {}",
                r.origin,
                v.code.as_str(),
                v.message
            );
        }
    }
    for e in &report.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for e in &report.policy_errors {
        let _ = writeln!(out, "error: {e}");
    }
    let code = if !report.errors.is_empty() || !report.policy_errors.is_empty() {
        2
    } else if failed {
        1
    } else {
        0
    };
    (out, code)
}
