//! The digest an attestation's subject carries: the pod-template fingerprint the quarantine
//! uses, taken after the defaults the apiserver fills in.
//!
//! `custody stamp` sees a manifest as written; the webhook sees the object as the apiserver
//! decoded it, with `imagePullPolicy`, `terminationMessagePath`, probe timings and the like
//! filled in. Applying the same defaults to both makes them agree, and since defaulting is
//! idempotent, the digest of an admitted object equals the fingerprint its RollbackRecord would
//! carry. Not covered: mutating webhooks and admission plugins that rewrite templates (sidecar
//! injectors; the ServiceAccount plugin on bare Pods), and non-canonical resource quantities
//! written as strings (`"0.5"` rather than `500m`).

use serde_json::{Map, Value, json};

use crate::fingerprint::{TemplateFingerprint, template_fingerprint};
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
    let mut template = template.clone();
    apply_server_defaults(kind, &mut template);
    template_fingerprint(&template)
}

/// Fills in the defaults the apiserver sets on a pod template of `kind`.
pub fn apply_server_defaults(kind: WorkloadKind, template: &mut Value) {
    if kind == WorkloadKind::Pod {
        if let Some(spec) = template.as_object_mut() {
            pod_spec(spec);
            spec.entry("enableServiceLinks").or_insert(json!(true));
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
    if let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    spec.entry("restartPolicy").or_insert(json!("Always"));
    spec.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    spec.entry("securityContext").or_insert(json!({}));
    spec.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    // The deprecated field mirrors the new one in both directions when converted to v1.
    match (
        spec.get("serviceAccountName").cloned(),
        spec.get("serviceAccount").cloned(),
    ) {
        (Some(name), None) => {
            spec.insert("serviceAccount".into(), name);
        }
        (None, Some(name)) => {
            spec.insert("serviceAccountName".into(), name);
        }
        _ => {}
    }
    for list in ["containers", "initContainers"] {
        for container in each_object(spec.get_mut(list)) {
            self::container(container);
        }
    }
    for volume in each_object(spec.get_mut("volumes")) {
        self::volume(volume);
    }
}

fn each_object(list: Option<&mut Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    list.and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn container(c: &mut Map<String, Value>) {
    c.entry("terminationMessagePath")
        .or_insert(json!("/dev/termination-log"));
    c.entry("terminationMessagePolicy").or_insert(json!("File"));
    let policy = pull_policy(c.get("image").and_then(Value::as_str).unwrap_or_default());
    c.entry("imagePullPolicy").or_insert(json!(policy));
    let resources = c.entry("resources").or_insert(json!({}));
    for list in ["limits", "requests"] {
        if let Some(quantities) = resources.get_mut(list).and_then(Value::as_object_mut) {
            for q in quantities.values_mut() {
                if let Value::Number(n) = q {
                    *q = json!(quantity(n));
                }
            }
        }
    }
    for port in each_object(c.get_mut("ports")) {
        port.entry("protocol").or_insert(json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            p.entry("timeoutSeconds").or_insert(json!(1));
            p.entry("periodSeconds").or_insert(json!(10));
            p.entry("successThreshold").or_insert(json!(1));
            p.entry("failureThreshold").or_insert(json!(3));
            http_get(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in lifecycle.values_mut().filter_map(Value::as_object_mut) {
            http_get(hook);
        }
    }
    for env in each_object(c.get_mut("env")) {
        if let Some(field_ref) = env
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            field_ref.entry("apiVersion").or_insert(json!("v1"));
        }
    }
}

fn http_get(handler: &mut Map<String, Value>) {
    if let Some(get) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        get.entry("path").or_insert(json!("/"));
        get.entry("scheme").or_insert(json!("HTTP"));
    }
}

/// `Always` for an untagged or `:latest` image, `IfNotPresent` otherwise (a digest counts as a
/// tag), as the apiserver decides.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// A quantity written as a YAML number, as the apiserver prints it back: `1` is `"1"`, `0.5`
/// is `"500m"`.
fn quantity(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    match n.as_f64() {
        Some(f) if (f * 1000.0).fract() == 0.0 => {
            let milli = (f * 1000.0) as i64;
            if milli % 1000 == 0 {
                (milli / 1000).to_string()
            } else {
                format!("{milli}m")
            }
        }
        _ => n.to_string(),
    }
}

fn volume(v: &mut Map<String, Value>) {
    const SOURCES_WITH_MODE: [&str; 4] = ["secret", "configMap", "downwardAPI", "projected"];
    if v.len() == 1 && v.contains_key("name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in SOURCES_WITH_MODE {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            s.entry("defaultMode").or_insert(json!(420));
        }
    }
    if let Some(items) = v.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
        for item in each_object(Some(items)) {
            if let Some(field_ref) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
                field_ref.entry("apiVersion").or_insert(json!("v1"));
            }
        }
    }
    if let Some(host_path) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        host_path.entry("type").or_insert(json!(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry:5000/team/web", "Always"),
            ("registry:5000/team/web:v2", "IfNotPresent"),
            ("web@sha256:abc", "IfNotPresent"),
        ];
        for (image, expected) in cases {
            assert_eq!(pull_policy(image), expected, "{image}");
        }
    }

    #[test]
    fn numeric_quantities_print_as_the_apiserver_prints_them() {
        let cases = [
            (json!(1), "1"),
            (json!(0.5), "500m"),
            (json!(2.0), "2"),
            (json!(0.25), "250m"),
        ];
        for (n, expected) in cases {
            let Value::Number(n) = n else { unreachable!() };
            assert_eq!(quantity(&n), expected);
        }
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
