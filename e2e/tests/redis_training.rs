//! Whole training jobs whose functions share a real Redis store.

mod common;

use std::sync::{Arc, Mutex};

use common::try_run as run;
use siren_crds::{JobPhase, StoreKind, TrainingJob, parse_manifest, read_manifest};
use siren_driver::{DriverObserver, JobOutcome, Silent};
use siren_e2e::RedisServer;

fn synthetic_job(functions: u32, epochs: u32) -> TrainingJob {
    let text = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: redis-synthetic
spec:
  model: {{kind: mlp, hidden: [32]}}
  dataset:
    synthetic: {{samples: 4000, testSamples: 500, features: 20, classes: 4, noise: 0.8, seed: 3}}
    shardSize: 250
  training: {{batchSize: 32, learningRate: 0.02, maxEpochs: {epochs}, seed: 7}}
  scheduler: {{functions: {functions}, memoryMb: 1769}}
"
    );
    parse_manifest(&text, "test").expect("valid manifest")
}

fn on_redis(mut job: TrainingJob, server: &RedisServer) -> TrainingJob {
    job.spec.store.kind = StoreKind::Redis;
    job.spec.store.url = Some(server.url());
    job.spec.store.chunk_values = 4096;
    job
}

#[test]
fn one_function_trains_the_same_model_on_redis_as_in_memory() {
    let server = RedisServer::start(&[]);
    let in_memory = run(&synthetic_job(1, 2), &mut Silent).expect("memory run");
    let on_redis = run(&on_redis(synthetic_job(1, 2), &server), &mut Silent).expect("redis run");
    assert_eq!(
        on_redis.params, in_memory.params,
        "bit for bit: the store only moves the bytes"
    );
    assert_eq!(on_redis.status.accuracy, in_memory.status.accuracy);
    let updates: u64 = on_redis.status.history.iter().map(|r| r.updates).sum();
    assert_eq!(
        updates,
        in_memory
            .status
            .history
            .iter()
            .map(|r| r.updates)
            .sum::<u64>()
    );
}

#[test]
fn four_functions_share_the_model_through_redis() {
    let server = RedisServer::start(&[]);
    let outcome = run(&on_redis(synthetic_job(4, 3), &server), &mut Silent).expect("redis run");
    assert_eq!(outcome.status.phase, JobPhase::Succeeded);
    for record in &outcome.status.history {
        assert_eq!(record.samples, 4000);
        assert!(
            record.mean_staleness > 0.0,
            "concurrent functions see stale versions"
        );
    }
    assert!(outcome.status.accuracy.unwrap_or(0.0) > 0.6);
}

/// Mean test accuracy of the last three epochs: one epoch's accuracy moves by up to a point from
/// run to run (asynchronous pushes interleave differently), the mean of three by under half a point.
fn settled_accuracy(outcome: &JobOutcome) -> f64 {
    let history = &outcome.status.history;
    let last = &history[history.len().saturating_sub(3)..];
    last.iter().map(|r| r.accuracy).sum::<f64>() / last.len().max(1) as f64
}

#[test]
fn mlp_sample_on_redis_matches_the_in_memory_accuracy() {
    let server = RedisServer::start(&[]);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/mlp.yaml");
    let mut job = read_manifest(std::path::Path::new(path)).expect("sample");
    job.spec.training.max_epochs = 6;
    job.spec.training.target_accuracy = None;
    let in_memory = run(&job, &mut Silent).expect("memory run");
    let on_redis = run(&on_redis(job, &server), &mut Silent).expect("redis run");
    let (a, b) = (settled_accuracy(&in_memory), settled_accuracy(&on_redis));
    println!("MLP, epochs 4-6, 4 functions: memory {a:.4}, redis {b:.4}");
    assert!((a - b).abs() <= 0.01, "memory {a} vs redis {b}");
}

/// Kills redis-server when the first epoch has finished.
struct KillAfterFirstEpoch(Arc<Mutex<RedisServer>>);

impl DriverObserver for KillAfterFirstEpoch {
    fn epoch_finished(
        &mut self,
        record: &siren_crds::EpochRecord,
        _: &siren_crds::TrainingJobStatus,
    ) {
        if record.epoch == 1 {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).kill();
        }
    }
}

#[test]
fn killing_redis_mid_job_fails_it_with_a_clear_error() {
    let server = Arc::new(Mutex::new(RedisServer::start(&[])));
    let job = {
        let guard = server.lock().unwrap_or_else(|p| p.into_inner());
        on_redis(synthetic_job(2, 5), &guard)
    };
    let error = run(&job, &mut KillAfterFirstEpoch(Arc::clone(&server)))
        .err()
        .expect("the job cannot go on without its store");
    let message = error.to_string();
    assert!(message.contains("store unavailable"), "{message}");
    assert!(
        message.contains("epoch 2") || message.contains("redis"),
        "{message}"
    );
}

#[test]
fn a_job_trains_through_a_tls_redis_with_its_ca_file() {
    let (server, ca) = RedisServer::start_tls();
    let mut job = on_redis(synthetic_job(2, 1), &server);
    job.spec.store.ca_file = Some(ca.display().to_string());
    job.spec.validate().expect("rediss with a CA file is valid");
    let outcome = run(&job, &mut Silent).expect("TLS run");
    assert_eq!(outcome.status.history[0].samples, 4000);
}
