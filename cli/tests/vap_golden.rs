//! Golden ValidatingAdmissionPolicy backstops: what `custody vap` writes for examples/policy.yaml
//! and for the built-in default policy. Regenerate with
//! `CUSTODY_BLESS=1 cargo test -p custody-cli --test vap_golden` and review the diff (the
//! backstop is proven on a real apiserver by e2e/tests/backstop.rs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use custody_cli::vap::{self, ApiVersion, VapOptions};
use custody_crds::Vocabulary;
use custody_engine::PolicySet;
use custody_engine::files::load_policies;
use support::check_golden;

fn options(api_version: ApiVersion) -> VapOptions {
    VapOptions {
        api_version,
        vocabulary: Vocabulary::default(),
        exclude_namespaces: Vec::new(),
        exclude_users: Vec::new(),
    }
}

#[test]
fn examples_policy() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policy.yaml");
    let (policies, invalid, unreadable) = load_policies(&[path], &mut std::io::empty());
    assert!(
        invalid.is_empty() && unreadable.is_empty(),
        "{invalid:?} {unreadable:?}"
    );
    let generated = vap::generate(&policies, &options(ApiVersion::V1));
    assert_eq!(generated.backstops.len(), policies.len());
    check_golden(
        "vap-examples-policy.yaml",
        &vap::to_yaml(&generated).unwrap(),
    );
}

#[test]
fn builtin_default_policy() {
    let mut options = options(ApiVersion::V1beta1);
    // As the chart installs it: Custody's own namespace and controller left alone.
    options.exclude_namespaces = vec!["custody-system".into()];
    options.exclude_users = vec!["system:serviceaccount:custody-system:custody-controller".into()];
    let generated = vap::generate(&PolicySet::builtin_default(), &options);
    check_golden(
        "vap-builtin-default.yaml",
        &vap::to_yaml(&generated).unwrap(),
    );
}

#[test]
fn every_document_is_yaml_of_the_right_kind() {
    let generated = vap::generate(&PolicySet::builtin_default(), &options(ApiVersion::V1));
    let yaml = vap::to_yaml(&generated).unwrap();
    let kinds: Vec<String> = yaml
        .split("\n---\n")
        .skip(1)
        .map(|doc| {
            let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
            assert_eq!(v["apiVersion"], "admissionregistration.k8s.io/v1");
            v["kind"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
}
