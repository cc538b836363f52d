//! The apiserver's defaulting and serialization of a pod template, reproduced.
//!
//! Two sources, both from the Kubernetes code rather than from observation of our own examples:
//! - the types ([`super::schema`], generated from `k8s.io/api` for every supported minor):
//!   what Go writes for an absent or zero field, and every declarative `+default`, applied
//!   wherever its type occurs;
//! - the hand-written `SetDefaults_*` functions of `pkg/apis/core/v1/defaults.go`, mirrored
//!   below one function per Go type (a test compares the list of them with the functions the
//!   generated defaulter calls).
//!
//! Where versions differ (a default behind a feature gate that is on in some minors and off
//! in others, such as resize policies on bare Pods), the default is left out on both sides of
//! the comparison: the manifest and the stored object agree whether or not the cluster filled
//! it in. Only a bare Pod's digest may do that: a template's digest must stay the fingerprint
//! of its stored form, which the controller records.

use serde_json::{Map, Value, json};

use super::schema::{Schema, Shape, schema};
use crate::quantity;

/// Defaults a bare Pod's `spec` as the apiserver does (`SetObjectDefaults_Pod`).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_defaults_pod(spec);
    normalize(schema(), "PodSpec", spec);
}

/// Defaults a pod template (`metadata` and `spec`) as the apiserver does for a workload.
pub fn default_pod_template(template: &mut Map<String, Value>) {
    normalize(schema(), "PodTemplateSpec", template);
}

/// One struct of type `ty`: its hand-written defaults, its declarative ones, Go's rules for
/// absent and zero fields, then each field's own type.
fn normalize(schema: &Schema, ty: &str, object: &mut Map<String, Value>) {
    set_defaults(ty, object);
    let Some(fields) = schema.fields(ty) else {
        return;
    };
    for name in schema.fills(ty) {
        let Some(field) = fields.get(name) else {
            continue;
        };
        if let Some(default) = &field.default
            && object.get(name).is_none_or(|v| field.omitted_at(v))
        {
            object.insert(name.clone(), default.clone());
        }
        if !object.contains_key(name)
            && let Some(written) = field.written_when_absent()
        {
            object.insert(name.clone(), written);
        }
    }
    // Fields the schema does not know are kept: the apiserver refuses or drops them, and
    // either way the digest must not pretend they are not there.
    object.retain(|name, v| fields.get(name).is_none_or(|f| !f.omitted_at(v)));
    for (name, value) in object.iter_mut() {
        let Some(field) = fields.get(name) else {
            continue;
        };
        match (field.shape, value) {
            (Shape::List, Value::Array(items)) => {
                for item in items {
                    one_value(schema, &field.ty, item, quantity::canonical);
                }
            }
            (Shape::Map, Value::Object(entries)) => {
                // Every quantity map in a pod spec is a ResourceList, rounded up to milli
                // units (SetDefaults_ResourceList).
                for item in entries.values_mut() {
                    one_value(
                        schema,
                        &field.ty,
                        item,
                        quantity::canonical_in_resource_list,
                    );
                }
            }
            (_, item) => one_value(schema, &field.ty, item, quantity::canonical),
        }
    }
}

fn one_value(schema: &Schema, ty: &str, value: &mut Value, canonical: fn(&str) -> Option<String>) {
    match value {
        Value::Object(object) if schema.fields(ty).is_some() => normalize(schema, ty, object),
        _ if ty == "quantity" => rewrite_quantity(value, canonical),
        _ => {}
    }
}

/// A quantity, written as a string or as a YAML number, as the apiserver writes it back.
fn rewrite_quantity(q: &mut Value, canonical: fn(&str) -> Option<String>) {
    let text = match q {
        Value::String(s) => canonical(s),
        Value::Number(n) => canonical(&n.to_string()),
        _ => None,
    };
    if let Some(text) = text {
        *q = Value::String(text);
    }
}

/// The hand-written `SetDefaults_<ty>` (those of `defaults.go` that a pod template reaches).
fn set_defaults(ty: &str, o: &mut Map<String, Value>) {
    match ty {
        "PodSpec" => set_defaults_pod_spec(o),
        "Container" | "EphemeralContainer" => set_defaults_container(o),
        "Probe" => {
            for (key, value) in [
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ] {
                if_zero(o, key, json!(value));
            }
        }
        "HTTPGetAction" => {
            if_zero(o, "path", json!("/"));
            if_zero(o, "scheme", json!("HTTP"));
        }
        "Volume" => set_defaults_volume(o),
        "SecretVolumeSource"
        | "ConfigMapVolumeSource"
        | "DownwardAPIVolumeSource"
        | "ProjectedVolumeSource" => if_absent(o, "defaultMode", json!(0o644)),
        "ServiceAccountTokenProjection" => if_absent(o, "expirationSeconds", json!(3600)),
        "ObjectFieldSelector" => if_zero(o, "apiVersion", json!("v1")),
        "HostPathVolumeSource" => if_absent(o, "type", json!("")),
        "PersistentVolumeClaimSpec" => if_absent(o, "volumeMode", json!("Filesystem")),
        "ISCSIVolumeSource" => if_zero(o, "iscsiInterface", json!("default")),
        "RBDVolumeSource" => {
            if_zero(o, "pool", json!("rbd"));
            if_zero(o, "user", json!("admin"));
            if_zero(o, "keyring", json!("/etc/ceph/keyring"));
        }
        "ScaleIOVolumeSource" => {
            if_zero(o, "storageMode", json!("ThinProvisioned"));
            if_zero(o, "fsType", json!("xfs"));
        }
        "AzureDiskVolumeSource" => {
            if_absent(o, "cachingMode", json!("ReadWrite"));
            if_absent(o, "kind", json!("Shared"));
            if_absent(o, "fsType", json!("ext4"));
            if_absent(o, "readOnly", json!(false));
        }
        _ => {}
    }
}

/// `SetDefaults_Volume`: no source at all is an emptyDir; an image volume (1.31 and later,
/// behind ImageVolume) pulls as a container image does.
fn set_defaults_volume(o: &mut Map<String, Value>) {
    if o.iter().all(|(k, v)| k == "name" || v.is_null()) {
        o.insert("emptyDir".into(), json!({}));
    }
    if let Some(image) = o.get_mut("image").and_then(Value::as_object_mut)
        && image.get("pullPolicy").is_none_or(|p| p == "")
    {
        let reference = image
            .get("reference")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let policy = super::image::default_pull_policy(reference);
        image.insert("pullPolicy".into(), json!(policy));
    }
}

/// Go's `if obj.X == ""` (or `== 0`): unset when absent, null or the zero value.
fn if_zero(o: &mut Map<String, Value>, key: &str, value: Value) {
    let unset = match o.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(_) => false,
    };
    if unset {
        o.insert(key.to_string(), value);
    }
}

/// Go's `if obj.X == nil` for a pointer field.
fn if_absent(o: &mut Map<String, Value>, key: &str, value: Value) {
    if o.get(key).is_none_or(Value::is_null) {
        o.insert(key.to_string(), value);
    }
}

fn set_defaults_pod_spec(o: &mut Map<String, Value>) {
    if_zero(o, "dnsPolicy", json!("ClusterFirst"));
    if_zero(o, "restartPolicy", json!("Always"));
    if_absent(o, "securityContext", json!({}));
    if_absent(o, "terminationGracePeriodSeconds", json!(30));
    if_zero(o, "schedulerName", json!("default-scheduler"));
    // Host ports under hostNetwork are a Pod's default only: in templates they are behind
    // DefaultHostNetworkHostPortsInPodTemplates, off from 1.28 on, and a template's digest
    // must stay the fingerprint of its stored form.
    // The deprecated field mirrors the new one in both directions when converted to v1.
    match (
        o.get("serviceAccountName").cloned(),
        o.get("serviceAccount").cloned(),
    ) {
        (Some(name), None) => {
            o.insert("serviceAccount".into(), name);
        }
        (None, Some(name)) => {
            o.insert("serviceAccountName".into(), name);
        }
        _ => {}
    }
}

fn default_host_network_ports(spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        for container in each_object(spec.get_mut(list)) {
            for port in each_object(container.get_mut("ports")) {
                let unset = port.get("hostPort").is_none_or(|p| p.as_i64() == Some(0));
                if unset && let Some(container_port) = port.get("containerPort").cloned() {
                    port.insert("hostPort".into(), container_port);
                }
            }
        }
    }
}

fn set_defaults_container(o: &mut Map<String, Value>) {
    if o.get("imagePullPolicy").is_none_or(|p| p == "") {
        let image = o.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = super::image::default_pull_policy(image);
        o.insert("imagePullPolicy".into(), json!(policy));
    }
    if_zero(o, "terminationMessagePath", json!("/dev/termination-log"));
    if_zero(o, "terminationMessagePolicy", json!("File"));
}

/// `SetDefaults_Pod`: what only a Pod gets, not a template. Requests default to limits; a
/// container with CPU or memory requests gets the `NotRequired` resize policy where
/// InPlacePodVerticalScaling is on (1.33 and later), which both sides leave out; service links
/// are on; host ports follow container ports under `hostNetwork`.
fn set_defaults_pod(spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        for container in each_object(spec.get_mut(list)) {
            requests_from_limits(container);
            if list == "containers" {
                without_default_resize_policy(container);
            }
        }
    }
    if_absent(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork") == Some(&Value::Bool(true)) {
        default_host_network_ports(spec);
    }
}

fn requests_from_limits(container: &mut Map<String, Value>) {
    let Some(limits) = container
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
    else {
        return;
    };
    let resources = container.entry("resources").or_insert(json!({}));
    let Some(resources) = resources.as_object_mut() else {
        return;
    };
    let requests = resources.entry("requests").or_insert(json!({}));
    if let Some(requests) = requests.as_object_mut() {
        for (name, limit) in limits {
            requests.entry(name).or_insert(limit);
        }
    }
}

/// The `NotRequired` resize policy that 1.33 and later add for each requested CPU or memory is
/// taken out rather than added: on 1.28 to 1.32 the apiserver does not add it, and a digest
/// made before Custody knew of it must keep verifying.
fn without_default_resize_policy(container: &mut Map<String, Value>) {
    let requested = |resource: &str| {
        container
            .get("resources")
            .and_then(|res| res.get("requests"))
            .and_then(|req| req.get(resource))
            .is_some()
    };
    let defaulted: Vec<&str> = ["cpu", "memory"]
        .into_iter()
        .filter(|r| requested(r))
        .collect();
    retain_list(container, "resizePolicy", |p| {
        !(p.get("restartPolicy").and_then(Value::as_str) == Some("NotRequired")
            && p.get("resourceName")
                .and_then(Value::as_str)
                .is_some_and(|r| defaulted.contains(&r)))
    });
}

/// Keeps the items of `object[key]` that `keep` accepts; an emptied list goes.
fn retain_list(object: &mut Map<String, Value>, key: &str, keep: impl FnMut(&Value) -> bool) {
    if let Some(list) = object.get_mut(key).and_then(Value::as_array_mut) {
        list.retain(keep);
        if list.is_empty() {
            object.remove(key);
        }
    }
}

/// The objects of a JSON list.
pub fn each_object(list: Option<&mut Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    list.and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Go functions mirrored here, by name.
    const HANDWRITTEN: [&str; 20] = [
        "SetDefaults_AzureDiskVolumeSource",
        "SetDefaults_ConfigMapVolumeSource",
        "SetDefaults_Container",
        "SetDefaults_DownwardAPIVolumeSource",
        "SetDefaults_EphemeralContainer",
        "SetDefaults_HTTPGetAction",
        "SetDefaults_HostPathVolumeSource",
        "SetDefaults_ISCSIVolumeSource",
        "SetDefaults_ObjectFieldSelector",
        "SetDefaults_PersistentVolumeClaimSpec",
        "SetDefaults_Pod",
        "SetDefaults_PodSpec",
        "SetDefaults_Probe",
        "SetDefaults_ProjectedVolumeSource",
        "SetDefaults_RBDVolumeSource",
        "SetDefaults_ResourceList",
        "SetDefaults_ScaleIOVolumeSource",
        "SetDefaults_SecretVolumeSource",
        "SetDefaults_ServiceAccountTokenProjection",
        "SetDefaults_Volume",
    ];

    #[test]
    fn mirrors_every_function_the_generated_defaulter_calls() {
        let called: Vec<&str> = include_str!("../../defaults/setdefaults-1.28.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert_eq!(called, HANDWRITTEN);
    }

    fn defaulted(mut spec: Value) -> Value {
        default_pod_spec(spec.as_object_mut().unwrap());
        spec
    }

    #[test]
    fn pod_requests_follow_limits_and_default_resize_policies_are_left_out() {
        let spec = defaulted(json!({"containers": [{"name": "a", "image": "a:1",
            "resources": {"limits": {"cpu": "0.5", "nvidia.com/gpu": 1}}}],
            "initContainers": [{"name": "i", "image": "i:1",
            "resources": {"limits": {"memory": "1Gi"}}}]}));
        let c = &spec["containers"][0];
        assert_eq!(
            c["resources"]["requests"],
            json!({"cpu": "500m", "nvidia.com/gpu": "1"})
        );
        assert!(c.get("resizePolicy").is_none());
        // What 1.33 and later store digests as what 1.28 stores; a policy of one's own stays.
        let stored_133 = defaulted(json!({"containers": [{"name": "a", "image": "a:1",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                             {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}));
        assert_eq!(
            stored_133["containers"][0]["resizePolicy"],
            json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}])
        );
        let i = &spec["initContainers"][0];
        assert_eq!(i["resources"]["requests"], json!({"memory": "1Gi"}));
        assert!(i.get("resizePolicy").is_none());
    }

    #[test]
    fn zero_values_go_as_go_omits_them_and_defaults_replace_zeros() {
        let spec = defaulted(json!({"hostNetwork": false, "nodeSelector": {},
            "containers": [{"name": "a", "image": "a", "args": [],
                "env": [{"name": "E", "value": ""},
                        {"name": "P", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
                "livenessProbe": {"grpc": {"port": 9000}, "timeoutSeconds": 0, "initialDelaySeconds": 0},
                "ports": [{"containerPort": 80, "protocol": ""}]}]}));
        assert!(spec.get("hostNetwork").is_none() && spec.get("nodeSelector").is_none());
        let c = &spec["containers"][0];
        assert!(c.get("args").is_none());
        assert_eq!(c["env"][0], json!({"name": "E"}));
        assert_eq!(
            c["env"][1]["valueFrom"]["resourceFieldRef"]["divisor"],
            json!("0")
        );
        let probe = &c["livenessProbe"];
        assert_eq!(probe["grpc"]["service"], json!(""));
        assert_eq!(probe["timeoutSeconds"], json!(1));
        assert!(probe.get("initialDelaySeconds").is_none());
        assert_eq!(c["ports"][0]["protocol"], json!("TCP"));
        assert_eq!(c["imagePullPolicy"], json!("Always"));
    }

    #[test]
    fn volumes_get_their_source_defaults() {
        let spec = defaulted(
            json!({"containers": [{"name": "a", "image": "a:1"}], "volumes": [
                {"name": "scratch"},
                {"name": "token", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "t"}},
                    {"downwardAPI": {"items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
                {"name": "disk", "azureDisk": {"diskName": "d", "diskURI": "u"}},
                {"name": "claim", "ephemeral": {"volumeClaimTemplate": {"spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}}}}}
            ]}),
        );
        let v = &spec["volumes"];
        assert_eq!(v[0]["emptyDir"], json!({}));
        assert_eq!(v[1]["projected"]["defaultMode"], json!(420));
        let sources = &v[1]["projected"]["sources"];
        assert_eq!(
            sources[0]["serviceAccountToken"]["expirationSeconds"],
            json!(3600)
        );
        assert_eq!(
            sources[1]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            json!("v1")
        );
        assert_eq!(
            v[2]["azureDisk"],
            json!({"diskName": "d", "diskURI": "u", "cachingMode": "ReadWrite",
                "kind": "Shared", "fsType": "ext4", "readOnly": false})
        );
        let claim = &v[3]["ephemeral"]["volumeClaimTemplate"];
        assert_eq!(claim["spec"]["volumeMode"], json!("Filesystem"));
        assert_eq!(
            claim["spec"]["resources"]["requests"]["storage"],
            json!("1Gi")
        );
        assert_eq!(claim["metadata"], json!({}));
    }

    #[test]
    fn image_volumes_pull_as_images_do() {
        let spec = defaulted(
            json!({"containers": [{"name": "a", "image": "a:1"}], "volumes": [
            {"name": "model", "image": {"reference": "registry.example/models/llm:latest"}},
            {"name": "data", "image": {"reference": "registry.example/data:v3"}}]}),
        );
        assert_eq!(spec["volumes"][0]["image"]["pullPolicy"], json!("Always"));
        assert_eq!(
            spec["volumes"][1]["image"]["pullPolicy"],
            json!("IfNotPresent")
        );
    }

    #[test]
    fn host_network_ports_default_to_host_ports() {
        let spec = defaulted(json!({"hostNetwork": true, "containers": [{"name": "a",
            "image": "a:1", "ports": [{"containerPort": 9100}, {"containerPort": 80, "hostPort": 8080}]}]}));
        let ports = &spec["containers"][0]["ports"];
        assert_eq!(ports[0]["hostPort"], json!(9100));
        assert_eq!(ports[1]["hostPort"], json!(8080));
    }

    #[test]
    fn defaulting_is_idempotent() {
        let once = defaulted(json!({"containers": [{"name": "a", "image": "a:1",
            "resources": {"limits": {"cpu": 1}},
            "readinessProbe": {"httpGet": {"port": 80}}}], "volumes": [{"name": "v"}]}));
        assert_eq!(defaulted(once.clone()), once);
    }
}
