//! The Kubernetes pod-spec types, as `crds/defaults/derive.py` read them from the
//! `k8s.io/api` sources of every supported minor version: each field's JSON name, type, shape,
//! whether Go writes it when empty, and its declarative `+default`.
//!
//! This is what lets the digest reproduce the apiserver's serialization without a list of
//! remembered cases: a non-pointer `omitempty` field is dropped at its zero value, a struct
//! that is not a pointer is always written, a `+default` is filled in wherever its type occurs.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

/// The generated file (see `crds/defaults/README.md`).
const TYPES_JSON: &str = include_str!("../../defaults/podspec-types.json");

/// A field's Go shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// One value.
    Scalar,
    /// A Go slice.
    List,
    /// A Go `map[string]T`.
    Map,
}

/// One field of a struct.
#[derive(Clone, Debug, Deserialize)]
pub struct Field {
    /// A struct's name, or `string`, `int`, `bool`, `number`, `quantity`, `intorstring`, `time`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Scalar, list or map.
    pub shape: Shape,
    /// A Go pointer: written whenever set, even to a zero value.
    pub pointer: bool,
    /// Tagged `omitempty`.
    pub omitempty: bool,
    /// The `+default` marker's value, in any supported version.
    #[serde(default)]
    pub default: Option<Value>,
}

impl Field {
    /// Whether the type is a struct of the schema.
    pub fn is_struct(&self) -> bool {
        !matches!(
            self.ty.as_str(),
            "string" | "int" | "bool" | "number" | "quantity" | "intorstring" | "time"
        )
    }

    /// Whether Go omits this field at `value`: a nil list or map, or an `omitempty` scalar
    /// that is not a pointer at its type's zero value (a struct value is never omitted).
    pub fn omitted_at(&self, value: &Value) -> bool {
        match (self.shape, value) {
            (_, Value::Null) => true,
            (Shape::List, Value::Array(a)) => a.is_empty(),
            (Shape::Map, Value::Object(m)) => m.is_empty(),
            (Shape::Scalar, _) if self.pointer || !self.omitempty => false,
            (Shape::Scalar, v) => match self.ty.as_str() {
                "string" => v.as_str() == Some(""),
                "int" | "number" => v.as_f64() == Some(0.0),
                "bool" => v.as_bool() == Some(false),
                _ => false,
            },
            _ => false,
        }
    }

    /// What Go writes for this field when the manifest leaves it out, if anything: a struct
    /// or quantity that is not a pointer, or a scalar without `omitempty`, is always written.
    pub fn written_when_absent(&self) -> Option<Value> {
        if self.pointer || self.shape != Shape::Scalar {
            return None;
        }
        match self.ty.as_str() {
            "quantity" => Some(Value::String("0".into())),
            // A zero metav1.Time is written as null, which the digest drops.
            "time" => None,
            _ if self.omitempty && !self.is_struct() => None,
            "string" => Some(Value::String(String::new())),
            "int" | "number" | "intorstring" => Some(Value::from(0)),
            "bool" => Some(Value::Bool(false)),
            _ => Some(Value::Object(serde_json::Map::new())),
        }
    }
}

/// Every struct reachable from `PodSpec` and `PodTemplateSpec`, by name.
#[derive(Debug, Deserialize)]
pub struct Schema {
    /// The fields of each struct, by JSON name.
    pub types: HashMap<String, HashMap<String, Field>>,
    /// Of each struct, the fields that may be filled in (a `+default`, or written when absent):
    /// a handful of its dozens, so the walk does not visit the rest (on every signed review).
    #[serde(skip)]
    fills: HashMap<String, Vec<String>>,
}

impl Schema {
    /// The fields of struct `name`.
    pub fn fields(&self, name: &str) -> Option<&HashMap<String, Field>> {
        self.types.get(name)
    }

    /// The fields of struct `name` that may be filled in.
    pub fn fills(&self, name: &str) -> &[String] {
        self.fills.get(name).map_or(&[], Vec::as_slice)
    }

    fn index_fills(mut self) -> Self {
        self.fills = self
            .types
            .iter()
            .map(|(ty, fields)| {
                let mut names: Vec<String> = fields
                    .iter()
                    .filter(|(_, f)| f.default.is_some() || f.written_when_absent().is_some())
                    .map(|(name, _)| name.clone())
                    .collect();
                names.sort_unstable();
                (ty.clone(), names)
            })
            .collect();
        self
    }
}

/// The schema, parsed on first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
        // The file is generated and checked in; a test parses it, so this cannot fail in a
        // build that passed its tests.
        serde_json::from_str::<Schema>(TYPES_JSON)
            .unwrap_or_else(|e| panic!("crds/defaults/podspec-types.json does not parse: {e}"))
            .index_fills()
    });
    &SCHEMA
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(ty: &str, name: &str) -> &'static Field {
        &schema().fields(ty).unwrap()[name]
    }

    #[test]
    fn the_generated_file_parses_and_has_the_pod_spec() {
        let s = schema();
        for ty in ["PodSpec", "PodTemplateSpec", "Container", "Probe", "Volume"] {
            assert!(s.fields(ty).is_some(), "{ty}");
        }
        // Every struct a field names is described too.
        for (ty, fields) in &s.types {
            for (name, f) in fields {
                assert!(
                    !f.is_struct() || s.fields(&f.ty).is_some(),
                    "{ty}.{name}: {}",
                    f.ty
                );
            }
        }
    }

    #[test]
    fn go_serialization_rules() {
        assert!(field("EnvVar", "value").omitted_at(&json!("")));
        assert!(field("PodSpec", "hostNetwork").omitted_at(&json!(false)));
        assert!(!field("PodSpec", "shareProcessNamespace").omitted_at(&json!(false)));
        assert!(field("Probe", "initialDelaySeconds").omitted_at(&json!(0)));
        assert!(field("PodSpec", "nodeSelector").omitted_at(&json!({})));
        assert!(field("Container", "args").omitted_at(&json!([])));
        assert!(!field("PodSpec", "securityContext").omitted_at(&json!({})));
        assert_eq!(
            field("ResourceFieldSelector", "divisor").written_when_absent(),
            Some(json!("0"))
        );
        assert_eq!(
            field("Container", "resources").written_when_absent(),
            Some(json!({}))
        );
        assert_eq!(field("EnvVar", "value").written_when_absent(), None);
        assert_eq!(field("GRPCAction", "service").default, Some(json!("")));
        assert_eq!(
            field("ContainerPort", "protocol").default,
            Some(json!("TCP"))
        );
    }
}
