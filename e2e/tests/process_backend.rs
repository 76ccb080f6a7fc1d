//! The `process` backend: real `siren-worker` processes on loopback ports, invoked over HTTP,
//! sharing a real redis-server.

mod common;

use common::{job, on, run, store_stats};
use siren_crds::BackendKind;
use siren_driver::{JobOutcome, Silent};
use siren_e2e::RedisServer;

#[test]
fn one_worker_process_trains_exactly_like_the_local_backend() {
    let redis = RedisServer::start(&[]);
    let local = run(
        &on(job("same", 1, 2, 3000, "[32]"), BackendKind::Local, &redis),
        &mut Silent,
    );
    let process = run(
        &on(
            job("same", 1, 2, 3000, "[32]"),
            BackendKind::Process,
            &redis,
        ),
        &mut Silent,
    );
    assert_eq!(
        process.params, local.params,
        "bit for bit: same shards, same order"
    );
    assert_eq!(process.status.accuracy, local.status.accuracy);
}

#[test]
fn four_worker_processes_share_one_model() {
    let redis = RedisServer::start(&[]);
    let outcome = run(
        &on(
            job("four", 4, 3, 4000, "[32]"),
            BackendKind::Process,
            &redis,
        ),
        &mut Silent,
    );
    let accuracy = outcome.status.accuracy.expect("evaluated");
    assert!(accuracy > 0.6, "accuracy {accuracy}");
    assert!(outcome.status.history.iter().all(|r| r.functions == 4));
    let reported: u64 = outcome.status.history.iter().map(|r| r.updates).sum();
    let applied = store_stats(&redis, "four").updates;
    assert_eq!(
        applied, reported,
        "every reported update is in the store once"
    );
}

fn settled_accuracy(outcome: &JobOutcome) -> f64 {
    let last: Vec<f64> = outcome
        .status
        .history
        .iter()
        .rev()
        .take(3)
        .map(|r| r.accuracy)
        .collect();
    last.iter().sum::<f64>() / last.len() as f64
}

/// The acceptance run: the MLP sample on full Fashion-MNIST, 4 worker processes and Redis, against
/// the local backend with the in-process store, same seed. One epoch's accuracy varies by about a
/// point between asynchronous runs, so the mean of the last three of six epochs is compared.
#[test]
#[ignore = "acceptance run: full Fashion-MNIST, about 20 s, timing-sensitive"]
fn mlp_sample_on_four_worker_processes_matches_the_local_accuracy() {
    let redis = RedisServer::start(&[]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/mlp.yaml");
    let mut job = siren_crds::read_manifest(std::path::Path::new(path)).expect("sample");
    job.spec.training.max_epochs = 6;
    job.spec.training.target_accuracy = None;
    let local = run(&job, &mut Silent);
    let process = run(&on(job, BackendKind::Process, &redis), &mut Silent);
    assert!(process.status.history.iter().all(|r| r.functions == 4));
    let (a, b) = (settled_accuracy(&local), settled_accuracy(&process));
    println!("MLP, epochs 4-6, 4 functions: local {a:.4}, 4 worker processes {b:.4}");
    assert!((a - b).abs() <= 0.01, "local {a} vs process {b}");
}
