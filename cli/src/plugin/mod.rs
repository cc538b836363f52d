//! `kubectl custody`: the on-call view of one workload and of the RollbackRecords.
//!
//! Data flows one way: the binary GETs what the cluster holds (the object, the CustodyPolicies,
//! the namespace labels, the RollbackRecords, a Deployment's ReplicaSets) and hands it here as
//! plain values; [`why::explain`] judges the object with the same [`engine`](crate::engine) the
//! webhook runs and gathers provenance, revisions and records into a [`why::WhyReport`];
//! [`revisions`] reads the workload's revisions and the metric analysis on the current one;
//! [`records::rows`] turns records into rows; [`format`] renders either as text or JSON. Nothing
//! in this module touches the network or the clock. [`lift::plan`] decides what lifting a
//! record's quarantine writes, [`resume::plan`] what releasing a held rollout writes, and
//! [`decide::plan`] what approving or rejecting a CustodyChange writes; the binary writes them,
//! as the person running it. [`changes`] turns CustodyChanges into rows, and says where one
//! stands as the webhook judges it (for `why`).

pub mod changes;
pub mod decide;
pub mod format;
pub mod lift;
pub mod records;
pub mod resume;
pub mod revisions;
pub mod why;

use std::fmt;
use std::str::FromStr;

use custody_crds::WorkloadKind;

/// The kinds `kubectl custody why` explains.
pub const WHY_KINDS: [WorkloadKind; 7] = [
    WorkloadKind::Deployment,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::ReplicaSet,
    WorkloadKind::Job,
    WorkloadKind::CronJob,
    WorkloadKind::Pod,
];

/// A `<kind>/<name>` argument, as kubectl spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    /// The kind.
    pub kind: WorkloadKind,
    /// The name.
    pub name: String,
}

/// Why a `<kind>/<name>` argument cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObjectRefError {
    /// No slash, or nothing on one side of it.
    #[error("expected <kind>/<name>, e.g. deployment/web, got {0:?}")]
    Shape(String),
    /// A kind Custody does not explain.
    #[error(
        "unknown kind {0:?}: use one of deployment (deploy), statefulset (sts), daemonset (ds), replicaset (rs), job, cronjob (cj), pod (po)"
    )]
    Kind(String),
}

impl FromStr for ObjectRef {
    type Err = ObjectRefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s
            .split_once('/')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty() && !n.contains('/'))
            .ok_or_else(|| ObjectRefError::Shape(s.to_string()))?;
        Ok(Self {
            kind: parse_kind(kind).ok_or_else(|| ObjectRefError::Kind(kind.to_string()))?,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.kind.as_str().to_ascii_lowercase(),
            self.name
        )
    }
}

/// Reads a kind as kubectl accepts it: singular, plural, short name, or `kind.group`.
pub fn parse_kind(s: &str) -> Option<WorkloadKind> {
    let lower = s.to_ascii_lowercase();
    // `deployments.apps`, `jobs.batch`: the group must be the kind's own.
    let (name, group) = match lower.split_once('.') {
        Some((name, group)) => (name.to_string(), Some(group.to_string())),
        None => (lower, None),
    };
    let kind = match name.as_str() {
        "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
        "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
        "daemonset" | "daemonsets" | "ds" => WorkloadKind::DaemonSet,
        "replicaset" | "replicasets" | "rs" => WorkloadKind::ReplicaSet,
        "job" | "jobs" => WorkloadKind::Job,
        "cronjob" | "cronjobs" | "cj" => WorkloadKind::CronJob,
        "pod" | "pods" | "po" => WorkloadKind::Pod,
        _ => return None,
    };
    match group {
        Some(g) if g != kind.group() => None,
        _ => Some(kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kind and name, or the start of the error message.
    type Want = Result<(WorkloadKind, &'static str), &'static str>;

    #[test]
    fn object_refs_parse_like_kubectl() {
        let cases: [(&str, Want); 10] = [
            ("deployment/web", Ok((WorkloadKind::Deployment, "web"))),
            ("deploy/web", Ok((WorkloadKind::Deployment, "web"))),
            (
                "Deployments.apps/web",
                Ok((WorkloadKind::Deployment, "web")),
            ),
            ("sts/db", Ok((WorkloadKind::StatefulSet, "db"))),
            ("ds/agent", Ok((WorkloadKind::DaemonSet, "agent"))),
            ("rs/web-5d9c", Ok((WorkloadKind::ReplicaSet, "web-5d9c"))),
            (
                "cronjob.batch/nightly",
                Ok((WorkloadKind::CronJob, "nightly")),
            ),
            ("deployment.batch/web", Err("unknown kind")),
            ("service/web", Err("unknown kind")),
            ("web", Err("expected <kind>/<name>")),
        ];
        for (input, want) in cases {
            let got = input.parse::<ObjectRef>();
            match (got, want) {
                (Ok(r), Ok((kind, name))) => {
                    assert_eq!((r.kind, r.name.as_str()), (kind, name), "{input}");
                }
                (Err(e), Err(prefix)) => {
                    assert!(e.to_string().starts_with(prefix), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn every_why_kind_has_a_plural_and_round_trips() {
        for kind in WHY_KINDS {
            let r = ObjectRef {
                kind,
                name: "x".to_string(),
            };
            assert_eq!(r.to_string().parse::<ObjectRef>(), Ok(r));
            assert_eq!(parse_kind(kind.plural()), Some(kind));
        }
    }
}
