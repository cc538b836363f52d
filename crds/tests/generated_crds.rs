//! The committed CRD YAML must be what the Rust types generate, and must read back as the CRD.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

#[test]
fn committed_crds_match_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    for (name, yaml) in custody_crds::generate::crd_documents().unwrap() {
        let committed = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        assert!(
            committed == yaml,
            "crds/generated/{name} is out of date: run `cargo run -p custody-crds --example crdgen` and commit"
        );
    }
    for (name, yaml) in custody_crds::generate::report_crd_documents().unwrap() {
        let committed = std::fs::read_to_string(dir.join("reports").join(name)).unwrap_or_default();
        assert!(
            committed == yaml,
            "crds/generated/reports/{name} is out of date: run `cargo run -p custody-crds --example crdgen` and commit"
        );
    }
}

#[test]
fn generated_yaml_reads_back_as_the_same_crd() {
    use kube::CustomResourceExt;
    let docs = custody_crds::generate::crd_documents().unwrap();
    let expected = [
        custody_crds::CustodyAgent::crd(),
        custody_crds::CustodyChange::crd(),
        custody_crds::CustodyPolicy::crd(),
        custody_crds::CustodyTeam::crd(),
        custody_crds::RollbackRecord::crd(),
    ];
    assert_eq!(docs.len(), expected.len());
    for ((name, yaml), crd) in docs.iter().zip(expected) {
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(&crd).unwrap(),
            "{name}"
        );
    }
}
