//! Prints the TrainingJob CustomResourceDefinition as YAML (`cargo run --bin crdgen > crds/trainingjob.yaml`).

use kube::CustomResourceExt;

fn main() -> Result<(), serde_yaml::Error> {
    print!(
        "{}",
        serde_yaml::to_string(&siren_crds::TrainingJob::crd())?
    );
    Ok(())
}
