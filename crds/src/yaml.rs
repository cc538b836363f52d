//! Manifest YAML read as `kubectl` reads it.
//!
//! kubectl and the apiserver decode YAML with go-yaml's YAML 1.1 rules, where an integer with a
//! leading zero is octal: `defaultMode: 0755` is 493 on the cluster. Read as YAML 1.2, the same
//! text is 755, so a manifest's digest would not be its stored object's. Every manifest Custody
//! reads (check, stamp, verify) goes through here.

use serde::de::DeserializeOwned;

/// Parses one YAML document of a manifest with kubectl's number rules.
pub fn from_manifest_yaml<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    serde_saphyr::from_str_with_options(text, options)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn numbers_as_kubectl_reads_them() {
        let v: Value = from_manifest_yaml(
            "a: 0755\nb: 0644\nc: 420\nd: 0\ne: 0x1F\nf: \"0755\"\ng: 0.5\nh: yes\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": 493, "b": 420, "c": 420, "d": 0, "e": 31, "f": "0755", "g": 0.5, "h": true})
        );
    }
}
