//! `CustodyTeam`: a team that may own workloads, whom to page and where to send notifications.
//!
//! A policy with `ownership: Registered` requires a workload's `owner` annotation to name a
//! team whose `namespaces` include the workload's; the team's on-call then applies when the
//! workload declares none, and the controller sends the team's notifications to its targets.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::notify::NotifyTarget;

/// A team that owns workloads.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "custody.dev",
    version = "v1alpha1",
    kind = "CustodyTeam",
    plural = "custodyteams",
    shortname = "cteam",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces"}"#,
    printcolumn = r#"{"name":"On-call","type":"string","jsonPath":".spec.oncall"}"#,
    printcolumn = r#"{"name":"Targets","type":"integer","jsonPath":".spec.notify.length()","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustodyTeamSpec {
    /// How to reach whoever is on call: emails, `@handles` or URLs, in the order to try them.
    /// A workload owned by the team may omit its `oncall` annotation; this applies instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oncall: Vec<String>,

    /// Where the controller sends the notices about the team's workloads, each target in its
    /// format and for the kinds it lists (see `docs/notifications.md`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,

    /// The namespaces the team may own workloads in, as globs (`payments-*`).
    #[serde(default)]
    pub namespaces: Vec<String>,

    /// Who belongs to the team. Members approve and reject agents' changes to the team's
    /// workloads where a policy's `agents.approval` names no approvers; otherwise membership
    /// grants nothing at admission: Kubernetes RBAC decides who may write.
    #[serde(default, skip_serializing_if = "TeamMembers::is_empty")]
    pub members: TeamMembers,
}

/// The people and groups of a team.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamMembers {
    /// User names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl TeamMembers {
    /// True when nobody is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}
