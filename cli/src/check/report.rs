//! Rendering a check: text for people, JSON for tools, and the exit code.

use std::fmt::Write as _;

use serde::Serialize;

use super::ObjectResult;
use custody_engine::files::LoadError;
use custody_engine::{Outcome, PolicyError};

/// Everything a check found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// One verdict per object.
    pub results: Vec<ObjectResult>,
    /// Files and documents that could not be read.
    pub errors: Vec<LoadError>,
    /// Policies that could not be compiled.
    #[serde(serialize_with = "policy_errors")]
    pub policy_errors: Vec<PolicyError>,
    /// The names of the policies in force.
    pub policies: Vec<String>,
}

fn policy_errors<S: serde::Serializer>(errors: &[PolicyError], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        errors
            .iter()
            .map(|e| serde_json::json!({"policy": e.policy, "problems": e.problems})),
    )
}

/// Counts by outcome.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Objects judged.
    pub objects: usize,
    /// Denied.
    pub denied: usize,
    /// Admitted with warnings.
    pub warned: usize,
    /// Admitted, violations audited.
    pub audited: usize,
    /// Admitted clean.
    pub passed: usize,
    /// Not judged.
    pub skipped: usize,
    /// Unreadable documents and invalid policies.
    pub errors: usize,
}

impl Report {
    /// Counts by outcome.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            objects: self.results.len(),
            errors: self.errors.len() + self.policy_errors.len(),
            ..Summary::default()
        };
        for r in &self.results {
            match r.decision.outcome {
                Outcome::Denied | Outcome::Invalid | Outcome::Failed if !r.decision.allowed => {
                    s.denied += 1
                }
                Outcome::Warned => s.warned += 1,
                Outcome::Audited => s.audited += 1,
                Outcome::Skipped => s.skipped += 1,
                _ => s.passed += 1,
            }
        }
        s
    }

    /// 2 when something could not be read or a policy is invalid, 1 when an object is denied
    /// (or, with `strict`, has any violation), 0 otherwise.
    pub fn exit_code(&self, strict: bool) -> u8 {
        let s = self.summary();
        if s.errors > 0 {
            2
        } else if s.denied > 0
            || (strict
                && self
                    .results
                    .iter()
                    .any(|r| !r.decision.violations.is_empty()))
        {
            1
        } else {
            0
        }
    }

    /// The report as JSON.
    pub fn to_json(&self) -> String {
        let value = serde_json::json!({
            "summary": self.summary(),
            "policies": self.policies,
            "results": self.results,
            "errors": self.errors,
            "policyErrors": serde_json::to_value(self).ok().and_then(|v| v.get("policyErrors").cloned()),
        });
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report as text, one block per object.
    pub fn to_text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for e in &self.policy_errors {
            let _ = writeln!(out, "ERROR  {e}");
        }
        for e in &self.errors {
            let _ = writeln!(out, "ERROR  {e}");
        }
        for r in &self.results {
            let d = &r.decision;
            let object = match &r.namespace {
                Some(ns) => format!("{} {ns}/{}", r.kind, r.name),
                None => format!("{} {}", r.kind, r.name),
            };
            let tag = match d.outcome {
                _ if !d.allowed => "DENY ",
                Outcome::Warned => "WARN ",
                Outcome::Audited => "AUDIT",
                Outcome::Skipped => "skip ",
                _ => "ok   ",
            };
            if d.outcome == Outcome::Skipped && d.warnings.is_empty() && !verbose {
                continue;
            }
            let _ = writeln!(out, "{tag}  {object}  [{}]", r.origin);
            if let Some(message) = &d.message {
                for line in message.lines() {
                    let _ = writeln!(out, "         {line}");
                }
            }
            for w in &d.warnings {
                let _ = writeln!(out, "         warning: {w}");
            }
            if d.outcome == Outcome::Audited {
                for v in &d.violations {
                    let _ = writeln!(out, "         audit: {}", v.message);
                }
            }
        }
        let s = self.summary();
        let _ = write!(
            out,
            "\n{} object{} checked against {}: {} denied, {} warned, {} audited, {} passed, {} skipped",
            s.objects,
            if s.objects == 1 { "" } else { "s" },
            if self.policies.is_empty() {
                "no policy".to_string()
            } else {
                format!("policy {}", self.policies.join(", "))
            },
            s.denied,
            s.warned,
            s.audited,
            s.passed,
            s.skipped,
        );
        if s.errors > 0 {
            let _ = write!(
                out,
                "; {} error{}",
                s.errors,
                if s.errors == 1 { "" } else { "s" }
            );
        }
        out.push('\n');
        out
    }
}
