//! The digest an attestation's subject carries: the pod-template fingerprint the quarantine
//! uses, taken after the defaults the apiserver fills in.
//!
//! `custody stamp` sees a manifest as written; the webhook sees the object as the apiserver
//! decoded, defaulted and re-serialized it. Bringing both to that form ([`super::defaults`],
//! derived from the Kubernetes types and defaulting functions) makes them agree, and since
//! defaulting is idempotent, the digest of an admitted template equals the fingerprint its
//! RollbackRecord would carry.
//!
//! A bare Pod also goes through admission plugins that add to it: the ServiceAccount plugin's
//! token volume (with a random name) and its mounts, DefaultTolerationSeconds' two
//! tolerations, and Priority's `priority` and `preemptionPolicy` (derived from
//! `priorityClassName`, which stays in the digest). Those are left out of a Pod's digest on
//! both sides; so a Pod's digest is not its quarantine fingerprint, which no revert ever
//! records. Not covered: mutating webhooks that rewrite templates (sidecar injectors).

use serde_json::{Map, Value, json};

use super::defaults::{self, each_object};
use crate::fingerprint::{TemplateFingerprint, remove_restart, template_fingerprint};
use crate::policy::WorkloadKind;

/// Labels the Job controller adds to its pod template, which differ per Job object.
const JOB_TEMPLATE_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
];

/// The subject digest of a workload's pod template (`spec.template`, a CronJob's job
/// template's, or a bare Pod's `spec`).
pub fn subject_digest(kind: WorkloadKind, template: &Value) -> TemplateFingerprint {
    subject_digest_of(kind, template.clone())
}

/// [`subject_digest`] of a template the caller has no further use for (no copy is made).
pub fn subject_digest_of(kind: WorkloadKind, template: Value) -> TemplateFingerprint {
    template_fingerprint(&normalized_template(kind, template))
}

/// The template as the subject digest sees it: the apiserver's defaults filled in, the restart
/// annotation gone. Its [`template_fingerprint`] is the subject digest.
pub fn normalized_template(kind: WorkloadKind, mut template: Value) -> Value {
    apply_server_defaults(kind, &mut template);
    remove_restart(&mut template);
    template
}

/// The digest of a bare Pod's normalized spec without `nodeName`, for a Pod the scheduler has
/// bound (its status says `PodScheduled`): the binding writes `nodeName` after admission, so a
/// signed manifest without one still vouches for the running Pod. `None` for any other object.
///
/// Only the apiserver writes a Pod's status (a CREATE's is replaced), and `nodeName` cannot
/// change once set, so this opens no way to place a new Pod on a node the signer did not name.
pub fn scheduled_pod_digest(
    kind: WorkloadKind,
    normalized: &Value,
    status: Option<&Value>,
) -> Option<TemplateFingerprint> {
    if kind != WorkloadKind::Pod || normalized.get("nodeName").is_none() || !is_scheduled(status) {
        return None;
    }
    let mut unbound = normalized.clone();
    unbound.as_object_mut()?.remove("nodeName");
    Some(template_fingerprint(&unbound))
}

fn is_scheduled(status: Option<&Value>) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Fills in the defaults the apiserver sets on a pod template of `kind`, and writes it as the
/// apiserver writes it back (see [`super::defaults`]).
pub fn apply_server_defaults(kind: WorkloadKind, template: &mut Value) {
    if kind == WorkloadKind::Pod {
        if let Some(spec) = template.as_object_mut() {
            // The ServiceAccount admission plugin names the default account.
            if !spec.contains_key("serviceAccount") {
                spec.entry("serviceAccountName").or_insert(json!("default"));
            }
            defaults::default_pod_spec(spec);
            without_admission_additions(spec);
        }
        return;
    }
    if kind == WorkloadKind::Job
        && let Some(labels) = template
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
    {
        for label in JOB_TEMPLATE_LABELS {
            labels.remove(label);
        }
    }
    if let Some(template) = template.as_object_mut() {
        defaults::default_pod_template(template);
    }
}

/// Where the ServiceAccount plugin mounts a Pod's token.
const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Removes what the apiserver's admission plugins add to a bare Pod, so that a manifest and
/// the Pod it became have one digest.
fn without_admission_additions(spec: &mut Map<String, Value>) {
    spec.remove("priority");
    spec.remove("preemptionPolicy");
    retain(spec, "tolerations", |t| !is_default_toleration(t));
    // A Pod that opted out of the token gets none from the plugin, so a token volume on it was
    // written by someone and counts.
    if spec.get("automountServiceAccountToken") == Some(&Value::Bool(false)) {
        return;
    }
    let mut token_volumes = Vec::new();
    retain(spec, "volumes", |v| {
        let plugins = is_token_volume(v);
        if plugins && let Some(name) = v.get("name").and_then(Value::as_str) {
            token_volumes.push(name.to_string());
        }
        !plugins
    });
    for list in ["containers", "initContainers"] {
        for container in each_object(spec.get_mut(list)) {
            retain(container, "volumeMounts", |m| {
                let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
                !(token_volumes.iter().any(|t| t == name)
                    && m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            });
        }
    }
}

/// Keeps the items of `object[key]` that `keep` accepts; an emptied list goes, as the apiserver
/// never writes an empty one.
fn retain(object: &mut Map<String, Value>, key: &str, keep: impl FnMut(&Value) -> bool) {
    if let Some(list) = object.get_mut(key).and_then(Value::as_array_mut) {
        list.retain(keep);
        if list.is_empty() {
            object.remove(key);
        }
    }
}

fn is_default_toleration(t: &Value) -> bool {
    [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ]
    .iter()
    .any(|key| {
        *t == json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300})
    })
}

/// The projected volume the ServiceAccount plugin adds, exactly: any other content counts.
fn is_token_volume(v: &Value) -> bool {
    let named = v
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with("kube-api-access-"));
    named
        && v.as_object().is_some_and(|o| o.len() == 2)
        && v.get("projected")
            == Some(&json!({
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::{RESTARTED_AT_ANNOTATION, code_fingerprint, restart_free_fingerprint};

    fn manifest_template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "web", "image": "nginx:1.27",
                "ports": [{"containerPort": 80}],
                "readinessProbe": {"httpGet": {"port": 80}},
                "resources": {"limits": {"cpu": 0.5, "memory": "64Mi"}}
            }]}
        })
    }

    /// The same template as the apiserver returns it.
    fn stored_template() -> Value {
        json!({
            "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                    "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "schedulerName": "default-scheduler", "securityContext": {},
                "terminationGracePeriodSeconds": 30
            }
        })
    }

    #[test]
    fn a_manifest_and_its_stored_form_have_one_digest() {
        let manifest = subject_digest(WorkloadKind::Deployment, &manifest_template());
        let stored = subject_digest(WorkloadKind::Deployment, &stored_template());
        assert_eq!(manifest, stored);
        // Defaulting the stored form changes nothing: the digest is its quarantine fingerprint.
        assert_eq!(stored, template_fingerprint(&stored_template()));
    }

    #[test]
    fn quantities_are_written_as_the_apiserver_writes_them() {
        let mut manifest = manifest_template();
        let spec = &mut manifest["spec"];
        spec["containers"][0]["resources"] = json!({
            "limits": {"cpu": "0.5", "memory": "1024Mi"},
            "requests": {"cpu": 0.25, "memory": 1000, "ephemeral-storage": "1.5Gi"}
        });
        spec["overhead"] = json!({"cpu": "0.1"});
        spec["volumes"] = json!([
            {"name": "scratch", "emptyDir": {"sizeLimit": "0.5Gi"}},
            {"name": "claim", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "resources": {"requests": {"storage": "1024Mi"}}}}}}
        ]);
        let mut stored = manifest.clone();
        let spec = &mut stored["spec"];
        spec["containers"][0]["resources"] = json!({
            "limits": {"cpu": "500m", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "1k", "ephemeral-storage": "1536Mi"}
        });
        spec["overhead"] = json!({"cpu": "100m"});
        spec["volumes"][0]["emptyDir"]["sizeLimit"] = json!("512Mi");
        spec["volumes"][1]["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] =
            json!("1Gi");
        assert_eq!(
            subject_digest(WorkloadKind::Deployment, &manifest),
            subject_digest(WorkloadKind::Deployment, &stored)
        );
        let mut other = stored.clone();
        other["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("501m");
        assert_ne!(
            subject_digest(WorkloadKind::Deployment, &other),
            subject_digest(WorkloadKind::Deployment, &stored)
        );
    }

    /// A bare Pod's spec as a v1.28 apiserver sent it to the webhook (the captured
    /// `pod-create-bare-unannotated.json` review): the
    /// ServiceAccount plugin's volume and mount, the default tolerations and the priority.
    fn stored_pod_spec() -> Value {
        json!({
            "containers": [
                {
                    "image": "registry.example.com/tools:1",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "sh",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [
                        {
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "name": "kube-api-access-4qxhk",
                            "readOnly": true
                        }
                    ]
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "tolerationSeconds": 300
                },
                {
                    "effect": "NoExecute",
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "tolerationSeconds": 300
                }
            ],
            "volumes": [
                {
                    "name": "kube-api-access-4qxhk",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "expirationSeconds": 3607,
                                    "path": "token"
                                }
                            },
                            {
                                "configMap": {
                                    "items": [
                                        {
                                            "key": "ca.crt",
                                            "path": "ca.crt"
                                        }
                                    ],
                                    "name": "kube-root-ca.crt"
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace"
                                            },
                                            "path": "namespace"
                                        }
                                    ]
                                }
                            }
                        ]
                    }
                }
            ]
        })
    }

    #[test]
    fn a_bare_pod_and_its_manifest_have_one_digest() {
        let manifest =
            json!({"containers": [{"name": "sh", "image": "registry.example.com/tools:1"}]});
        let stored = stored_pod_spec();
        assert_eq!(
            subject_digest(WorkloadKind::Pod, &manifest),
            subject_digest(WorkloadKind::Pod, &stored)
        );
        // Whatever else changes counts: a token volume on a Pod that opted out, a toleration
        // of its own, another image.
        let mut opted_out = stored.clone();
        opted_out["automountServiceAccountToken"] = json!(false);
        let mut manifest_opted_out = manifest.clone();
        manifest_opted_out["automountServiceAccountToken"] = json!(false);
        assert_ne!(
            subject_digest(WorkloadKind::Pod, &opted_out),
            subject_digest(WorkloadKind::Pod, &manifest_opted_out)
        );
        let mut tolerating = stored.clone();
        tolerating["tolerations"][0]["tolerationSeconds"] = json!(30);
        let mut changed_image = stored.clone();
        changed_image["containers"][0]["image"] = json!("registry.example.com/tools:2");
        let mut extra_source = stored.clone();
        extra_source["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] =
            json!("vault");
        for other in [tolerating, changed_image, extra_source] {
            assert_ne!(
                subject_digest(WorkloadKind::Pod, &other),
                subject_digest(WorkloadKind::Pod, &manifest)
            );
        }
    }

    #[test]
    fn a_scheduled_pod_verifies_without_the_node_the_scheduler_chose() {
        let manifest =
            json!({"containers": [{"name": "sh", "image": "registry.example.com/tools:1"}]});
        let signed = subject_digest(WorkloadKind::Pod, &manifest);
        let mut bound = stored_pod_spec();
        bound["nodeName"] = json!("kwok-node-1");
        let bound = normalized_template(WorkloadKind::Pod, bound);
        assert_ne!(template_fingerprint(&bound), signed);
        let scheduled = json!({"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}]});
        assert_eq!(
            scheduled_pod_digest(WorkloadKind::Pod, &bound, Some(&scheduled)),
            Some(signed.clone())
        );
        // Not bound by the scheduler (a CREATE's status), or not a Pod: nothing is left out.
        let pending = json!({"phase": "Pending", "qosClass": "BestEffort"});
        assert_eq!(
            scheduled_pod_digest(WorkloadKind::Pod, &bound, Some(&pending)),
            None
        );
        assert_eq!(
            scheduled_pod_digest(WorkloadKind::Deployment, &bound, Some(&scheduled)),
            None
        );
    }

    #[test]
    fn a_restart_is_no_part_of_the_subject() {
        let stored = stored_template();
        let mut restarted = stored.clone();
        restarted["metadata"]["annotations"] =
            json!({RESTARTED_AT_ANNOTATION: "2026-12-03T12:00:00Z"});
        let digest = subject_digest(WorkloadKind::Deployment, &stored);
        assert_eq!(subject_digest(WorkloadKind::Deployment, &restarted), digest);
        // The plain fingerprint tells the two revisions apart; the restart-free one is the
        // subject digest, and only a restarted template has one.
        assert_ne!(template_fingerprint(&restarted), digest);
        assert_eq!(restart_free_fingerprint(&restarted), Some(digest.clone()));
        assert_eq!(restart_free_fingerprint(&stored), None);
        assert_eq!(code_fingerprint(&restarted), code_fingerprint(&stored));
        assert_eq!(code_fingerprint(&stored), template_fingerprint(&stored));
        // Another template annotation still counts.
        restarted["metadata"]["annotations"]["team.example.com/note"] = json!("x");
        assert_ne!(subject_digest(WorkloadKind::Deployment, &restarted), digest);
    }

    #[test]
    fn job_labels_do_not_count() {
        let mut t = manifest_template();
        let plain = subject_digest(WorkloadKind::Job, &t);
        t["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] = json!("1234");
        t["metadata"]["labels"]["job-name"] = json!("migrate");
        assert_eq!(subject_digest(WorkloadKind::Job, &t), plain);
        assert_ne!(subject_digest(WorkloadKind::Deployment, &t), plain);
    }
}
