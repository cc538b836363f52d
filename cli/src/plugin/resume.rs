//! `kubectl custody resume`: a person releasing a rollout Custody holds after its first step.
//! What the workload's annotations say about the hold, and the release they call for, are
//! decided here before anything is sent. The release is the merge patch the controller itself
//! writes (the `held` mark removed, the `released` mark naming the revision so it is not held
//! again, the Deployment unpaused or the StatefulSet's partition restored), conditioned on the
//! resourceVersion read: a workload that changed meanwhile is read and judged again.

use custody_crds::record::marks;
use custody_crds::vocabulary::DEFAULT_PREFIX;
use custody_crds::{Vocabulary, WorkloadKind};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ObjectRef, ObjectRefError};

/// The kinds whose rollouts Custody holds.
pub const RESUME_KINDS: [WorkloadKind; 2] = [WorkloadKind::Deployment, WorkloadKind::StatefulSet];

/// The condition the controller sets on a Deployment it holds; a person's release sets it
/// False, as the controller's does.
pub use custody_crds::record::marks::HELD_CONDITION;

/// Why a rollout cannot be resumed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The argument is not `<kind>/<name>`.
    #[error(transparent)]
    Target(#[from] ObjectRefError),
    /// A kind Custody never holds.
    #[error(
        "Custody holds only Deployments and StatefulSets, not a {0}: give deployment/NAME or statefulset/NAME"
    )]
    Kind(&'static str),
    /// The workload carries no `held` mark: Custody does not hold it.
    #[error(
        "{target} in namespace {namespace} is not held by Custody (it carries no {annotation} annotation{released}); {instead}"
    )]
    NotHeld {
        /// `kind/name`.
        target: String,
        /// The namespace.
        namespace: String,
        /// The `held` annotation looked for.
        annotation: String,
        /// What the `released` mark says, if the workload has one.
        released: String,
        /// What a person does about a hold of their own.
        instead: String,
    },
    /// The object read has no resourceVersion to condition the write on.
    #[error("{0} as read has no metadata.resourceVersion: the release cannot be conditioned on it")]
    NoVersion(String),
}

/// Reads a `resume` argument: `<kind>/<name>` with a kind Custody holds.
pub fn parse_target(s: &str) -> Result<ObjectRef, ResumeError> {
    let target: ObjectRef = s.parse()?;
    if RESUME_KINDS.contains(&target.kind) {
        Ok(target)
    } else {
        Err(ResumeError::Kind(target.kind.as_str()))
    }
}

/// Custody's hold on a workload, as its annotations say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// The held revision: a ReplicaSet, or a StatefulSet's ControllerRevision.
    pub revision: String,
    /// A StatefulSet's partition before the hold, restored on release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restores_partition: Option<i32>,
}

/// The hold `workload` (a `kind`) carries, if any.
pub fn hold(kind: WorkloadKind, workload: &Value, vocabulary: &Vocabulary) -> Option<Hold> {
    let revision = mark(workload, vocabulary, marks::HELD)?.to_string();
    let restores_partition = (kind == WorkloadKind::StatefulSet).then(|| {
        // The controller writes the partition it found; anything else restores the default,
        // every Pod updated, as the controller's own release does.
        mark(workload, vocabulary, marks::HELD_PARTITION)
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p >= 0)
            .unwrap_or(0)
    });
    Some(Hold {
        revision,
        restores_partition,
    })
}

/// The command that resumes `kind/name` in `namespace`, with the prefix flag when it is not
/// the default.
pub fn command(target: &ObjectRef, namespace: &str, vocabulary: &Vocabulary) -> String {
    let mut out = format!("kubectl custody resume {target} -n {namespace}");
    if vocabulary.prefix() != DEFAULT_PREFIX {
        out.push_str(&format!(" --annotation-prefix {}", vocabulary.prefix()));
    }
    out
}

/// What `resume` reports, for text and JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeReport {
    /// The workload's kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The revision released.
    pub revision: String,
    /// A StatefulSet's partition, restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// What became of a Deployment's `CustodyHeld` condition: `updated`, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// What became of the Event: `created`, or why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// The release to write, and the report once written.
#[derive(Clone, Debug, PartialEq)]
pub struct ResumePlan {
    /// The merge patch, conditioned on the resourceVersion read.
    pub patch: Value,
    /// The report once written.
    pub report: ResumeReport,
}

/// Plans the release of `workload`, the object `target` as read in `namespace`.
pub fn plan(
    target: &ObjectRef,
    namespace: &str,
    workload: &Value,
    vocabulary: &Vocabulary,
) -> Result<ResumePlan, ResumeError> {
    if !RESUME_KINDS.contains(&target.kind) {
        return Err(ResumeError::Kind(target.kind.as_str()));
    }
    let key = |m: &str| format!("{}{m}", vocabulary.prefix());
    let Some(hold) = hold(target.kind, workload, vocabulary) else {
        return Err(ResumeError::NotHeld {
            target: target.to_string(),
            namespace: namespace.to_string(),
            annotation: key(marks::HELD),
            released: mark(workload, vocabulary, marks::RELEASED)
                .map(|r| format!("; it last released revision {r}"))
                .unwrap_or_default(),
            instead: instead(target, namespace),
        });
    };
    let version = workload
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ResumeError::NoVersion(target.to_string()))?;
    let mut annotations = json!({
        key(marks::HELD): null,
        key(marks::RELEASED): hold.revision,
    });
    let spec = match hold.restores_partition {
        Some(partition) => {
            annotations[key(marks::HELD_PARTITION)] = Value::Null;
            json!({"updateStrategy": {"rollingUpdate": {"partition": partition}}})
        }
        None => json!({"paused": false}),
    };
    Ok(ResumePlan {
        patch: json!({
            "metadata": {"resourceVersion": version, "annotations": annotations},
            "spec": spec,
        }),
        report: ResumeReport {
            kind: target.kind,
            namespace: namespace.to_string(),
            name: target.name.clone(),
            revision: hold.revision,
            partition: hold.restores_partition,
            condition: None,
            event: None,
        },
    })
}

/// The Event's note.
pub fn event_note(report: &ResumeReport) -> String {
    format!(
        "a person resumed the rollout of {} held after its first step (kubectl custody resume); the controller still judges it",
        report.revision
    )
}

/// What a person does about a pause or partition of their own.
fn instead(target: &ObjectRef, namespace: &str) -> String {
    match target.kind {
        WorkloadKind::StatefulSet => format!(
            "a partition a person set is changed with kubectl patch {target} -n {namespace} -p '{{\"spec\":{{\"updateStrategy\":{{\"rollingUpdate\":{{\"partition\":0}}}}}}}}'"
        ),
        _ => format!(
            "a rollout a person paused is resumed with kubectl rollout resume {target} -n {namespace}"
        ),
    }
}

fn mark<'v>(workload: &'v Value, vocabulary: &Vocabulary, name: &str) -> Option<&'v str> {
    workload
        .pointer("/metadata/annotations")?
        .get(format!("{}{name}", vocabulary.prefix()))?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(kind: &str, annotations: Value) -> Value {
        json!({
            "kind": kind,
            "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "42", "annotations": annotations},
        })
    }

    fn target(kind: WorkloadKind) -> ObjectRef {
        ObjectRef {
            kind,
            name: "web".into(),
        }
    }

    /// The kind and name, or the start of the error message.
    type Want = Result<(WorkloadKind, &'static str), &'static str>;

    #[test]
    fn targets_are_deployments_and_statefulsets_only() {
        let cases: [(&str, Want); 8] = [
            ("deployment/web", Ok((WorkloadKind::Deployment, "web"))),
            ("DEPLOY/web", Ok((WorkloadKind::Deployment, "web"))),
            ("statefulset/db", Ok((WorkloadKind::StatefulSet, "db"))),
            ("Sts/db", Ok((WorkloadKind::StatefulSet, "db"))),
            (
                "ds/agent",
                Err("Custody holds only Deployments and StatefulSets, not a DaemonSet"),
            ),
            (
                "pod/web",
                Err("Custody holds only Deployments and StatefulSets, not a Pod"),
            ),
            ("service/web", Err("unknown kind")),
            ("web", Err("expected <kind>/<name>")),
        ];
        for (input, want) in cases {
            match (parse_target(input), want) {
                (Ok(t), Ok((kind, name))) => assert_eq!((t.kind, t.name.as_str()), (kind, name)),
                (Err(e), Err(prefix)) => {
                    assert!(e.to_string().starts_with(prefix), "{input}: {e}");
                }
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_held_rollout_is_released_by_the_controllers_own_patch() {
        let cases: Vec<(&str, WorkloadKind, Value, Value)> = vec![
            (
                "a held Deployment is unpaused",
                WorkloadKind::Deployment,
                json!({"custody.dev/held": "web-7d9f"}),
                json!({
                    "metadata": {"resourceVersion": "42", "annotations": {
                        "custody.dev/held": null, "custody.dev/released": "web-7d9f"}},
                    "spec": {"paused": false},
                }),
            ),
            (
                "a held StatefulSet gets the partition it had back",
                WorkloadKind::StatefulSet,
                json!({"custody.dev/held": "web-5c4b", "custody.dev/held-partition": "2"}),
                json!({
                    "metadata": {"resourceVersion": "42", "annotations": {
                        "custody.dev/held": null, "custody.dev/held-partition": null,
                        "custody.dev/released": "web-5c4b"}},
                    "spec": {"updateStrategy": {"rollingUpdate": {"partition": 2}}},
                }),
            ),
            (
                "a StatefulSet without its held-partition mark goes back to 0",
                WorkloadKind::StatefulSet,
                json!({"custody.dev/held": "web-5c4b"}),
                json!({
                    "metadata": {"resourceVersion": "42", "annotations": {
                        "custody.dev/held": null, "custody.dev/held-partition": null,
                        "custody.dev/released": "web-5c4b"}},
                    "spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}},
                }),
            ),
        ];
        for (name, kind, annotations, want) in cases {
            let plan = plan(
                &target(kind),
                "shop",
                &workload(kind.as_str(), annotations),
                &Vocabulary::default(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(plan.patch, want, "{name}");
            assert_eq!(plan.report.kind, kind, "{name}");
        }
    }

    #[test]
    fn a_garbage_held_partition_restores_every_pod() {
        for garbage in ["", "two", "-1", "1.5", "99999999999"] {
            let w = workload(
                "StatefulSet",
                json!({"custody.dev/held": "web-5c4b", "custody.dev/held-partition": garbage}),
            );
            let hold = hold(WorkloadKind::StatefulSet, &w, &Vocabulary::default());
            assert_eq!(
                hold.and_then(|h| h.restores_partition),
                Some(0),
                "{garbage:?}"
            );
        }
        let w = workload(
            "StatefulSet",
            json!({"custody.dev/held": "web-5c4b", "custody.dev/held-partition": " 3 "}),
        );
        assert_eq!(
            hold(WorkloadKind::StatefulSet, &w, &Vocabulary::default()),
            Some(Hold {
                revision: "web-5c4b".into(),
                restores_partition: Some(3)
            })
        );
    }

    #[test]
    fn a_workload_custody_does_not_hold_is_refused_with_what_to_do_instead() {
        let cases: Vec<(&str, WorkloadKind, Value, &str)> = vec![
            (
                "a Deployment a person paused",
                WorkloadKind::Deployment,
                json!({}),
                "deployment/web in namespace shop is not held by Custody (it carries no custody.dev/held annotation); a rollout a person paused is resumed with kubectl rollout resume deployment/web -n shop",
            ),
            (
                "a Deployment Custody already released",
                WorkloadKind::Deployment,
                json!({"custody.dev/released": "web-7d9f"}),
                "(it carries no custody.dev/held annotation; it last released revision web-7d9f)",
            ),
            (
                "a StatefulSet a person partitioned",
                WorkloadKind::StatefulSet,
                json!({"custody.dev/held-partition": "0"}),
                "a partition a person set is changed with kubectl patch statefulset/web -n shop",
            ),
        ];
        for (name, kind, annotations, want) in cases {
            let got = plan(
                &target(kind),
                "shop",
                &workload(kind.as_str(), annotations),
                &Vocabulary::default(),
            );
            match got {
                Err(e @ ResumeError::NotHeld { .. }) => {
                    assert!(e.to_string().contains(want), "{name}: {e}");
                }
                other => panic!("{name}: expected a refusal, got {other:?}"),
            }
        }
        // A DaemonSet is never held, whatever it carries.
        let ds = workload("DaemonSet", json!({"custody.dev/held": "x"}));
        assert_eq!(
            plan(
                &target(WorkloadKind::DaemonSet),
                "shop",
                &ds,
                &Vocabulary::default()
            ),
            Err(ResumeError::Kind("DaemonSet"))
        );
    }

    #[test]
    fn the_prefix_names_the_marks_and_the_command() {
        let vocabulary = Vocabulary::with_prefix("acme.io/");
        let w = workload(
            "Deployment",
            json!({"acme.io/held": "web-7d9f", "custody.dev/held": "no"}),
        );
        let plan = plan(&target(WorkloadKind::Deployment), "shop", &w, &vocabulary).unwrap();
        assert_eq!(
            plan.patch["metadata"]["annotations"]["acme.io/released"],
            "web-7d9f"
        );
        assert_eq!(plan.report.revision, "web-7d9f");
        assert_eq!(
            command(&target(WorkloadKind::Deployment), "shop", &vocabulary),
            "kubectl custody resume deployment/web -n shop --annotation-prefix acme.io/"
        );
        assert_eq!(
            command(
                &target(WorkloadKind::StatefulSet),
                "shop",
                &Vocabulary::default()
            ),
            "kubectl custody resume statefulset/web -n shop"
        );
    }

    #[test]
    fn a_write_is_never_unconditioned() {
        let mut w = workload("Deployment", json!({"custody.dev/held": "web-7d9f"}));
        w["metadata"]["resourceVersion"] = Value::Null;
        assert_eq!(
            plan(
                &target(WorkloadKind::Deployment),
                "shop",
                &w,
                &Vocabulary::default()
            ),
            Err(ResumeError::NoVersion("deployment/web".into()))
        );
    }
}
