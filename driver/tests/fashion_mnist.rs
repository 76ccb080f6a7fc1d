//! Real training on real data: Fashion-MNIST from Debian's `dataset-fashion-mnist` package.
//! The quick test trains on a subset; the `--ignored` ones are the acceptance runs of the shipped
//! samples on the full dataset (about a minute together on 2 cores).

use std::path::Path;

use siren_crds::read_manifest;
use siren_data::builtin_dir;
use siren_driver::{Silent, StopReason, driver_for};

fn require_dataset() {
    assert!(
        builtin_dir().join("train-images-idx3-ubyte.gz").is_file()
            || builtin_dir().join("train-images-idx3-ubyte").is_file(),
        "Fashion-MNIST is missing from {}: apt-get install dataset-fashion-mnist",
        builtin_dir().display()
    );
}

fn run_sample(
    name: &str,
    edit: impl FnOnce(&mut siren_crds::TrainingJob),
) -> siren_driver::JobOutcome {
    require_dataset();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/samples")
        .join(name);
    let mut job = read_manifest(&path).expect("sample manifest is valid");
    edit(&mut job);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(async { driver_for(&job).await?.run(&mut Silent).await })
        .expect("sample trains")
}

#[test]
fn mlp_learns_fashion_mnist_subset() {
    let outcome = run_sample("mlp.yaml", |job| {
        job.spec.dataset.max_train_samples = Some(12_000);
        job.spec.dataset.max_test_samples = Some(2_000);
        job.spec.training.max_epochs = 2;
        job.spec.training.target_accuracy = None;
    });
    let accuracy = outcome.status.accuracy.unwrap_or(0.0);
    // Four functions train asynchronously, so the update order (and the accuracy) depends on thread
    // timing: 0.79-0.84 over repeated runs. 0.75 still rules out a model that did not learn
    // (chance is 0.10); the full-dataset acceptance runs below hold the real accuracy targets.
    assert!(accuracy > 0.75, "accuracy {accuracy}");
    assert_eq!(outcome.status.history[0].samples, 12_000);
}

#[test]
#[ignore = "acceptance run on the full dataset (about 20 s on 2 cores)"]
fn quickstart_lenet_reaches_89_percent() {
    let outcome = run_sample("quickstart.yaml", |_| {});
    assert_eq!(
        outcome.stop_reason,
        StopReason::TargetReached,
        "{:?}",
        outcome.status.accuracy
    );
    assert!(outcome.status.accuracy.unwrap_or(0.0) >= 0.89);
}

#[test]
#[ignore = "acceptance run on the full dataset"]
fn mlp_sample_reaches_87_percent() {
    let outcome = run_sample("mlp.yaml", |_| {});
    assert!(
        outcome.status.accuracy.unwrap_or(0.0) >= 0.87,
        "{:?}",
        outcome.status.accuracy
    );
}

#[test]
#[ignore = "acceptance run on the full dataset"]
fn logistic_sample_reaches_83_percent() {
    let outcome = run_sample("logistic.yaml", |_| {});
    assert!(
        outcome.status.accuracy.unwrap_or(0.0) >= 0.83,
        "{:?}",
        outcome.status.accuracy
    );
}
