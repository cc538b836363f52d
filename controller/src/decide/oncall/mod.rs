//! On-call notices: one model of what happened ([`Notice`]), whatever produced it (a
//! RollbackRecord, a break-glass revision, a probation, a change request), and its body in each
//! target format ([`body`]). Pure: the controller builds the notice from what it knows and the
//! notifier sends the bytes.
//!
//! A notice belongs to a *situation* ([`Notice::situation`]): stable per workload (or agent, or
//! request) and kind, so that a receiver which keeps situations open (Alertmanager, PagerDuty)
//! sees a later notice of the same situation as the same alert, and its resolution closes it.

pub mod alertmanager;
pub mod cloudevents;
pub mod moment;
pub mod pagerduty;
pub mod probation;
pub mod record;
#[cfg(test)]
pub(crate) mod sample;
pub mod slack;

use custody_crds::{NoticeKind, NotifyFormat, Severity};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// How long an Alertmanager alert stays firing without being sent again: the notifier sends
/// firing alerts again well within it, as Prometheus does, so a controller that is gone lets
/// its alerts resolve instead of firing forever.
pub const ALERT_GRACE: SignedDuration = SignedDuration::from_secs(4 * 60);

/// How long a notice about a moment (a break-glass, an inconclusive analysis, a decision)
/// stays open in Alertmanager.
pub const MOMENT: SignedDuration = SignedDuration::from_secs(60 * 60);

/// Where a situation stands when the notice is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Open; it ends by itself at `ends_at` if given (a probation's end, a request's expiry,
    /// a moment's hour), or when a resolution is sent.
    Firing {
        /// When it ends by itself, if known.
        ends_at: Option<Timestamp>,
    },
    /// Resolved at `at`.
    Resolved {
        /// When.
        at: Timestamp,
    },
}

/// A command a person may run about the notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// What it does, in a few words ("Inspect", "Lift the quarantine").
    pub label: String,
    /// The command line.
    pub command: String,
}

/// One notice, in every format's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// How urgent.
    pub severity: Severity,
    /// Stable per workload (agent, request) and kind: PagerDuty's `dedup_key`, and what a
    /// resolution closes. At most 255 characters.
    pub situation: String,
    /// Unique per notice and per resolution: CloudEvents' `id`.
    pub id: String,
    /// Open or resolved.
    pub state: State,
    /// When the situation began: the revert, the alert, the sighting, the proposal.
    pub started_at: Timestamp,
    /// The namespace, empty for a cluster-wide situation (a probation in every namespace).
    pub namespace: String,
    /// The workload as `Kind/name`, if the notice is about one.
    pub workload: Option<String>,
    /// The owning team, if known.
    pub team: Option<String>,
    /// The agent whose revision or change it is about, if one.
    pub agent: Option<String>,
    /// Why, as one word: the signal's reason (`CrashLoop`), `BreakGlass`, `Probation`.
    pub reason: String,
    /// One line: what happened.
    pub summary: String,
    /// What happened and why, in prose.
    pub explanation: String,
    /// The revision, as `4 (web-7c9f5d)`, if the notice is about one.
    pub revision: Option<String>,
    /// Who shipped it: `agent claude-code/1.0`, `person alice`, with its commit if declared.
    pub shipped_by: Option<String>,
    /// The evidence, one line each.
    pub evidence: Vec<String>,
    /// What to run: inspect first.
    pub commands: Vec<Command>,
    /// The object the notice comes from, as an API path
    /// (`/apis/custody.dev/v1alpha1/namespaces/shop/rollbackrecords/web-4`): CloudEvents'
    /// `source`.
    pub source: String,
    /// The object it is about (`deployments/web`): CloudEvents' `subject`.
    pub subject: String,
    /// The `json` format's body: the record or notice as it is.
    pub data: Value,
}

impl Notice {
    /// The `kubectl custody why` command, if the notice names one.
    pub fn why_command(&self) -> Option<&str> {
        self.commands
            .iter()
            .find(|c| c.command.starts_with("kubectl custody why"))
            .map(|c| c.command.as_str())
    }

    /// The same notice, resolved at `at`: what a resolving target is sent when the situation
    /// ends. Its id differs from the firing notice's.
    #[must_use]
    pub fn resolved(&self, at: Timestamp) -> Self {
        Self {
            id: format!("{}/resolved", self.id),
            state: State::Resolved { at },
            ..self.clone()
        }
    }
}

/// The situation of a workload and kind: PagerDuty's `dedup_key`.
pub fn situation(namespace: &str, workload: &str, kind: NoticeKind) -> String {
    format!("custody/{namespace}/{workload}/{kind}")
}

/// The `kubectl custody why` command of a workload (`Deployment/web`).
pub fn why(namespace: &str, workload: &str) -> Command {
    Command {
        label: "Inspect".into(),
        command: format!(
            "kubectl custody why {} -n {namespace}",
            workload.to_ascii_lowercase()
        ),
    }
}

/// Why a body could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// A PagerDuty body needs the routing key, read from the target's Secret.
    #[error("a pagerduty body needs the routing key")]
    NoRoutingKey,
    /// This format is not sent a resolution.
    #[error("{0} targets are not sent resolutions")]
    NoResolution(&'static str),
}

/// The body of `notice` in `format`, at `now`; `routing_key` is a PagerDuty target's key.
pub fn body(
    notice: &Notice,
    format: NotifyFormat,
    routing_key: Option<&str>,
    now: Timestamp,
) -> Result<Value, BodyError> {
    if matches!(notice.state, State::Resolved { .. }) && !format.resolves() {
        return Err(BodyError::NoResolution(format.as_str()));
    }
    Ok(match format {
        NotifyFormat::Json => notice.data.clone(),
        NotifyFormat::Alertmanager => alertmanager::body(notice, now),
        NotifyFormat::Slack => slack::body(notice),
        NotifyFormat::Pagerduty => {
            pagerduty::body(notice, routing_key.ok_or(BodyError::NoRoutingKey)?)
        }
        NotifyFormat::Cloudevents => cloudevents::body(notice),
    })
}

/// The `content-type` of a body in `format`.
pub const fn content_type(format: NotifyFormat) -> &'static str {
    match format {
        NotifyFormat::Cloudevents => "application/cloudevents+json; charset=utf-8",
        _ => "application/json",
    }
}

/// `text` cut to at most `max` characters, on a character boundary, ending in `…` when cut:
/// the formats' limits count characters, and a receiver refuses a body over one.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let Some(keep) = max.checked_sub(1) else {
        return String::new();
    };
    let mut out: String = text.chars().take(keep).collect();
    out.push('…');
    out
}

/// The path a format's URL is given when it is a base URL: Alertmanager's alerts API.
pub fn endpoint(format: NotifyFormat, url: &str) -> String {
    let url = url.trim();
    if format == NotifyFormat::Alertmanager
        && !url.trim_end_matches('/').ends_with("/api/v2/alerts")
    {
        return format!("{}/api/v2/alerts", url.trim_end_matches('/'));
    }
    url.to_string()
}
