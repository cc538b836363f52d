//! `CustodyAgent`: the controller's summary of one agent's rollouts in flight and its recent
//! revisions, which the webhook enforces `spec.agents.limits` from. Written by the leader
//! controller only; one object per agent id.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::WorkloadKind;

/// One agent, by its `agent` annotation.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "custody.dev",
    version = "v1alpha1",
    kind = "CustodyAgent",
    plural = "custodyagents",
    shortname = "cagent",
    status = "CustodyAgentStatus",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Updated","type":"date","jsonPath":".status.updatedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CustodyAgentSpec {
    /// The agent id, as revisions declare it (`claude-code/1.0`).
    pub agent: String,
}

/// What the controller sees of the agent now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustodyAgentStatus {
    /// Its rollouts in flight: workloads whose current revision is the agent's and is neither
    /// marked healthy nor reverted yet.
    #[serde(default)]
    pub in_flight: Vec<AgentRevision>,
    /// Its revisions created within the last day, newest last.
    #[serde(default)]
    pub revisions: Vec<AgentRevision>,
    /// When the controller last wrote this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

/// One revision of the agent's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRevision {
    /// The workload's namespace.
    pub namespace: String,
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The revision (ReplicaSet or ControllerRevision name).
    pub revision: String,
    /// The owning team it declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// When the revision was created.
    pub at: Time,
}
