//! The checked-in CRD must be what the types generate, or `kubectl apply` would install a schema
//! that disagrees with the code.

use kube::CustomResourceExt;

#[test]
fn checked_in_crd_matches_the_types() {
    let generated = serde_yaml::to_string(&siren_crds::TrainingJob::crd()).expect("CRD serialises");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/trainingjob.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/trainingjob.yaml exists");
    assert!(
        generated == checked_in,
        "crds/trainingjob.yaml is stale: regenerate it with `cargo run -p siren-crds --bin crdgen > crds/trainingjob.yaml`"
    );
}

/// The Helm chart and the plain manifests install copies of the CRD; a stale copy would install an
/// older schema than the operator's.
#[test]
fn the_chart_and_manifest_copies_match_the_crd() {
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/trainingjob.yaml"))
        .expect("crds/trainingjob.yaml exists");
    for copy in [
        "/../charts/siren/crds/trainingjob.yaml",
        "/../config/crd/trainingjob.yaml",
    ] {
        let path = format!("{}{copy}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == crd,
            "{path} differs from crds/trainingjob.yaml: run `scripts/check-packaging.sh --update`"
        );
    }
}

#[test]
fn crd_has_the_contracted_names_and_subresources() {
    let crd = siren_crds::TrainingJob::crd();
    assert_eq!(crd.spec.group, "siren.dev");
    assert_eq!(crd.spec.names.kind, "TrainingJob");
    assert_eq!(crd.spec.names.short_names, Some(vec!["tj".to_string()]));
    assert_eq!(crd.spec.names.categories, Some(vec!["siren".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<String> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Epoch",
            "Accuracy",
            "Cost",
            "Functions",
            "Memory",
            "Progress",
            "ETA",
            "Age"
        ]
    );
}
