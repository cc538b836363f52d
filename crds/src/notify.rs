//! Where the controller's notices go and in what shape: a [`NotifyTarget`] on a CustodyTeam's
//! `spec.notify` or a policy's `spec.rollback.notify`, its [`NotifyFormat`], and the
//! [`NoticeKind`]s it receives, each with its urgency. A RollbackRecord keeps what was sent to
//! each target in [`TargetDelivery`], so that a restart or a new leader sends nothing twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// PagerDuty's Events API v2 endpoint, a `pagerduty` target's URL when it names none.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// One notification endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifyTarget {
    /// The `https://` (or `http://`) URL to POST to: Alertmanager's base URL (its
    /// `/api/v2/alerts` is added) for `alertmanager`; optional for `pagerduty`, whose Events API
    /// v2 URL is the default. Use `urlFrom` instead when the URL itself is the secret (a Slack
    /// incoming webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The URL, read from a key of a Secret in Custody's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<SecretKeyRef>,
    /// A Secret in Custody's own namespace whose keys become request headers (for example
    /// `Authorization`), so tokens stay out of the team object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from: Option<SecretRef>,
    /// The body's shape: `json` (the RollbackRecord or notice as it is, the default),
    /// `alertmanager`, `slack`, `pagerduty` or `cloudevents`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Which notices the target receives. Empty: every kind, except for `pagerduty`, which
    /// then receives only what a person must act on now (`alerted`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NoticeKind>,
    /// For `pagerduty`: the Secret key holding the service's integration (routing) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_from: Option<SecretKeyRef>,
}

/// A Secret in the namespace Custody runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    pub name: String,
}

/// One key of a Secret in the namespace Custody runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// The shape of a target's body.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// The RollbackRecord or the notice, as JSON.
    #[default]
    Json,
    /// Alerts for Alertmanager's `/api/v2/alerts`, resolved when the situation is.
    Alertmanager,
    /// A Slack incoming-webhook message with Block Kit blocks.
    Slack,
    /// PagerDuty Events API v2 `trigger` and `resolve` events.
    Pagerduty,
    /// A CloudEvents 1.0 event in structured mode.
    Cloudevents,
}

impl NotifyFormat {
    /// Every format.
    pub const ALL: [NotifyFormat; 5] = [
        NotifyFormat::Json,
        NotifyFormat::Alertmanager,
        NotifyFormat::Slack,
        NotifyFormat::Pagerduty,
        NotifyFormat::Cloudevents,
    ];

    /// As written in a target, and the metrics' label.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Alertmanager => "alertmanager",
            NotifyFormat::Slack => "slack",
            NotifyFormat::Pagerduty => "pagerduty",
            NotifyFormat::Cloudevents => "cloudevents",
        }
    }

    /// Whether the receiver keeps a situation open until told it resolved: such targets are
    /// sent the resolution too.
    pub const fn resolves(self) -> bool {
        matches!(self, NotifyFormat::Alertmanager | NotifyFormat::Pagerduty)
    }
}

/// How urgent a notice is: Alertmanager's `severity` label, PagerDuty's `severity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Already handled, or for the record.
    Info,
    /// A person should look, soon.
    Warning,
    /// A person must act now.
    Critical,
}

impl Severity {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What a notice is about. The urgency table lives in `docs/notifications.md`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum NoticeKind {
    /// A regressed revision was reverted: already handled.
    Reverted,
    /// A regressed revision was reported, not reverted (a person's revision, nothing healthy to
    /// go back to, an irreversible one, or a dry run): a person must act.
    Alerted,
    /// A revision was shipped with the break-glass annotation.
    BreakGlass,
    /// An agent was put on probation: its new revisions are denied in a scope.
    Probation,
    /// A signed revision's attestation could not be read: its provenance is not believed.
    AttestationUnreadable,
    /// A revision's metric analysis has been inconclusive for long: nothing is being checked.
    AnalysisInconclusive,
    /// An agent proposed a change that waits for a person's approval.
    ChangeProposed,
    /// A person approved an agent's change.
    ChangeApproved,
    /// A person rejected an agent's change.
    ChangeRejected,
}

impl NoticeKind {
    /// Every kind, in the order of the documentation's table.
    pub const ALL: [NoticeKind; 9] = [
        NoticeKind::Reverted,
        NoticeKind::Alerted,
        NoticeKind::BreakGlass,
        NoticeKind::Probation,
        NoticeKind::AttestationUnreadable,
        NoticeKind::AnalysisInconclusive,
        NoticeKind::ChangeProposed,
        NoticeKind::ChangeApproved,
        NoticeKind::ChangeRejected,
    ];

    /// As written in a target's `events`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Reverted => "reverted",
            NoticeKind::Alerted => "alerted",
            NoticeKind::BreakGlass => "breakGlass",
            NoticeKind::Probation => "probation",
            NoticeKind::AttestationUnreadable => "attestationUnreadable",
            NoticeKind::AnalysisInconclusive => "analysisInconclusive",
            NoticeKind::ChangeProposed => "changeProposed",
            NoticeKind::ChangeApproved => "changeApproved",
            NoticeKind::ChangeRejected => "changeRejected",
        }
    }

    /// Alertmanager's `alertname`. None is the name of an alert of the chart's PrometheusRule
    /// (those are about Custody itself); every notice also carries the label `notice`.
    pub const fn alertname(self) -> &'static str {
        match self {
            NoticeKind::Reverted => "CustodyReverted",
            NoticeKind::Alerted => "CustodyRegressionNotReverted",
            NoticeKind::BreakGlass => "CustodyBreakGlassRevision",
            NoticeKind::Probation => "CustodyAgentProbation",
            NoticeKind::AttestationUnreadable => "CustodyAttestationUnreadable",
            NoticeKind::AnalysisInconclusive => "CustodyAnalysisInconclusiveRevision",
            NoticeKind::ChangeProposed => "CustodyChangeAwaitingApproval",
            NoticeKind::ChangeApproved => "CustodyChangeApproved",
            NoticeKind::ChangeRejected => "CustodyChangeRejected",
        }
    }

    /// The CloudEvents `type`.
    pub const fn cloudevent_type(self) -> &'static str {
        match self {
            NoticeKind::Reverted => "dev.custody.revision.reverted.v1",
            NoticeKind::Alerted => "dev.custody.revision.alerted.v1",
            NoticeKind::BreakGlass => "dev.custody.revision.breakglass.v1",
            NoticeKind::Probation => "dev.custody.agent.probation.v1",
            NoticeKind::AttestationUnreadable => "dev.custody.attestation.unreadable.v1",
            NoticeKind::AnalysisInconclusive => "dev.custody.analysis.inconclusive.v1",
            NoticeKind::ChangeProposed => "dev.custody.change.proposed.v1",
            NoticeKind::ChangeApproved => "dev.custody.change.approved.v1",
            NoticeKind::ChangeRejected => "dev.custody.change.rejected.v1",
        }
    }

    /// The kind's usual urgency. An alert raised only by a dry run is a [`Severity::Warning`]
    /// instead (see the controller's notices).
    pub const fn severity(self) -> Severity {
        match self {
            NoticeKind::Alerted => Severity::Critical,
            NoticeKind::BreakGlass
            | NoticeKind::Probation
            | NoticeKind::AttestationUnreadable
            | NoticeKind::AnalysisInconclusive
            | NoticeKind::ChangeProposed => Severity::Warning,
            NoticeKind::Reverted | NoticeKind::ChangeApproved | NoticeKind::ChangeRejected => {
                Severity::Info
            }
        }
    }
}

impl std::fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NotifyTarget {
    /// A `json` target POSTing to `url`, as the policy's `notifyUrl` is.
    pub fn json(url: &str) -> Self {
        Self {
            url: Some(url.to_string()),
            ..Self::default()
        }
    }

    /// Whether the target receives notices of `kind`.
    pub fn receives(&self, kind: NoticeKind) -> bool {
        if self.events.is_empty() {
            return self.format != NotifyFormat::Pagerduty || kind == NoticeKind::Alerted;
        }
        self.events.contains(&kind)
    }

    /// What is wrong with the target, each problem naming the field under `field`
    /// (`spec.notify[0]`). Empty when it is sound.
    pub fn problems(&self, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.url, &self.url_from) {
            (Some(_), Some(_)) => out.push(format!("{field}: set url or urlFrom, not both")),
            (None, None) if self.format != NotifyFormat::Pagerduty => out.push(format!(
                "{field}: url or urlFrom is required (only a pagerduty target defaults to {PAGERDUTY_EVENTS_URL})"
            )),
            _ => {}
        }
        if let Some(url) = &self.url
            && !is_http_url(url)
        {
            out.push(format!("{field}.url {url:?} must be an http(s) URL"));
        }
        for (name, secret) in [
            ("urlFrom", self.url_from.as_ref()),
            ("routingKeyFrom", self.routing_key_from.as_ref()),
        ] {
            if let Some(s) = secret
                && (s.name.trim().is_empty() || s.key.trim().is_empty())
            {
                out.push(format!("{field}.{name} needs both a name and a key"));
            }
        }
        if let Some(secret) = &self.headers_from
            && secret.name.trim().is_empty()
        {
            out.push(format!("{field}.headersFrom.name is empty"));
        }
        match (self.format, &self.routing_key_from) {
            (NotifyFormat::Pagerduty, None) => out.push(format!(
                "{field}: a pagerduty target needs routingKeyFrom: the service's integration key, from a Secret"
            )),
            (NotifyFormat::Pagerduty, Some(_)) | (_, None) => {}
            (other, Some(_)) => out.push(format!(
                "{field}.routingKeyFrom is for pagerduty targets, not {}",
                other.as_str()
            )),
        }
        let mut seen = std::collections::BTreeSet::new();
        for kind in &self.events {
            if !seen.insert(kind) {
                out.push(format!("{field}.events lists {kind} twice"));
            }
        }
        out
    }
}

/// Whether `url` is an `http(s)://` URL with a host and no whitespace.
pub fn is_http_url(url: &str) -> bool {
    let url = url.trim();
    (url.starts_with("https://") || url.starts_with("http://"))
        && url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty())
        && !url.contains(char::is_whitespace)
}

/// What one target was sent about one notice of a RollbackRecord: written in the record's
/// status, so that a restart or a new leader sends nothing twice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetDelivery {
    /// The target: whose it is and a digest of where it points (`team/web/3f9a1c2e`), never
    /// its URL, which may carry a token.
    pub target: String,
    /// The notice.
    pub kind: NoticeKind,
    /// The target's format.
    pub format: NotifyFormat,
    /// When the target accepted the notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    /// When the target accepted its resolution (Alertmanager, PagerDuty), or when it was
    /// superseded by a newer notice of the same situation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    /// The last failure, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(yaml: &str) -> NotifyTarget {
        crate::yaml::from_manifest_yaml(yaml).expect("a target")
    }

    #[test]
    fn problems_by_target() {
        let cases = [
            ("url: https://hooks.example.com/x", vec![]),
            ("urlFrom: {name: slack, key: url}\nformat: slack", vec![]),
            (
                "format: pagerduty\nroutingKeyFrom: {name: pd, key: routing-key}",
                vec![],
            ),
            ("format: slack", vec!["url or urlFrom is required"]),
            (
                "url: https://a.example.com\nurlFrom: {name: s, key: k}",
                vec!["not both"],
            ),
            ("url: ftp://a.example.com", vec!["must be an http(s) URL"]),
            ("format: pagerduty", vec!["needs routingKeyFrom"]),
            (
                "url: https://a.example.com\nroutingKeyFrom: {name: s, key: k}",
                vec!["is for pagerduty targets, not json"],
            ),
            (
                "urlFrom: {name: s, key: ''}",
                vec!["urlFrom needs both a name and a key"],
            ),
            (
                "url: https://a.example.com\nevents: [reverted, reverted]",
                vec!["lists reverted twice"],
            ),
        ];
        for (yaml, want) in cases {
            let got = target(yaml).problems("spec.notify[0]");
            assert_eq!(got.len(), want.len(), "{yaml}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.contains(w), "{yaml}: {g}");
            }
        }
    }

    #[test]
    fn unknown_format_or_kind_is_refused_when_read() {
        assert!(
            crate::yaml::from_manifest_yaml::<NotifyTarget>("url: https://a\nformat: teams")
                .is_err()
        );
        assert!(
            crate::yaml::from_manifest_yaml::<NotifyTarget>("url: https://a\nevents: [oops]")
                .is_err()
        );
    }

    #[test]
    fn which_kinds_a_target_receives() {
        let all = target("url: https://a.example.com");
        assert!(NoticeKind::ALL.iter().all(|k| all.receives(*k)));
        let pager = target("format: pagerduty\nroutingKeyFrom: {name: pd, key: k}");
        let paged: Vec<_> = NoticeKind::ALL
            .into_iter()
            .filter(|k| pager.receives(*k))
            .collect();
        assert_eq!(paged, vec![NoticeKind::Alerted]);
        let chosen = target("url: https://a.example.com\nevents: [probation, breakGlass]");
        assert!(chosen.receives(NoticeKind::Probation));
        assert!(!chosen.receives(NoticeKind::Reverted));
    }

    #[test]
    fn every_kind_has_distinct_names() {
        let mut names = std::collections::BTreeSet::new();
        for kind in NoticeKind::ALL {
            assert!(names.insert(kind.as_str()));
            assert!(names.insert(kind.alertname()));
            assert!(names.insert(kind.cloudevent_type()));
            let json = serde_json::to_value(kind).expect("serializes");
            assert_eq!(json, kind.as_str());
        }
    }
}
