//! The `process` backend: real `siren-worker` processes on loopback ports, invoked over HTTP,
//! sharing a real redis-server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use siren_crds::{BackendKind, StoreKind, TrainingJob, parse_manifest};
use siren_e2e::RedisServer;
use siren_operator::{DriverObserver, JobOutcome, Silent, driver_for};
use siren_scheduler::Action;
use siren_worker::store::{ParameterStore, RedisStore};

fn job(name: &str, functions: u32, epochs: u32, samples: u32, hidden: &str) -> TrainingJob {
    let text = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: {name}
spec:
  model: {{kind: mlp, hidden: {hidden}}}
  dataset:
    synthetic: {{samples: {samples}, testSamples: 500, features: 20, classes: 4, noise: 0.8, seed: 3}}
    shardSize: 250
  training: {{batchSize: 32, learningRate: 0.02, maxEpochs: {epochs}, seed: 7}}
  scheduler: {{functions: {functions}, memoryMb: 1769}}
"
    );
    parse_manifest(&text, "test").expect("valid manifest")
}

fn on(mut job: TrainingJob, backend: BackendKind, redis: &RedisServer) -> TrainingJob {
    job.spec.backend.kind = backend;
    job.spec.store.kind = StoreKind::Redis;
    job.spec.store.url = Some(redis.url());
    job
}

fn run(job: &TrainingJob, observer: &mut dyn DriverObserver) -> JobOutcome {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { driver_for(job).await?.run(observer).await })
        .expect("the job runs")
}

async fn store_updates(redis: &RedisServer, job: &str) -> u64 {
    let store = RedisStore::connect(&redis.url(), job, 4096, Duration::from_secs(5))
        .await
        .expect("connect");
    store.stats().await.expect("stats").updates
}

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
    let applied = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(store_updates(&redis, "four"));
    assert_eq!(
        applied, reported,
        "every reported update is in the store once"
    );
}

/// Hands each epoch's progress counter to the test thread.
struct Progress(mpsc::Sender<(u64, Arc<AtomicU64>)>);

impl DriverObserver for Progress {
    fn epoch_started(&mut self, _: u32, _: Action, samples: u64, progress: Arc<AtomicU64>) {
        let _ = self.0.send((samples, progress));
    }
}

fn worker_pids() -> Vec<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-P", &std::process::id().to_string(), "-x", "siren-worker"])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

#[test]
fn a_worker_killed_mid_epoch_has_its_task_retried_and_nothing_counted_twice() {
    let redis = RedisServer::start(&[]);
    let job = on(
        job("killed", 4, 2, 16_000, "[256, 256]"),
        BackendKind::Process,
        &redis,
    );
    let (sender, epochs) = mpsc::channel();
    let driver = std::thread::spawn(move || run(&job, &mut Progress(sender)));

    let (samples, progress) = epochs.recv().expect("the first epoch starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::Relaxed) < samples / 8 {
        assert!(Instant::now() < deadline, "the epoch never progressed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let pids = worker_pids();
    assert_eq!(pids.len(), 4, "four worker processes: {pids:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[1].to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let done_when_killed = progress.load(Ordering::Relaxed);
    assert!(done_when_killed < samples, "the kill landed mid-epoch");

    let outcome = driver.join().expect("the driver thread");
    assert_eq!(outcome.status.epoch, 2, "both epochs completed");
    let first = &outcome.status.history[0];
    assert_eq!(
        first.samples, 16_000,
        "the killed task's shards were trained once in the result"
    );
    let reported: u64 = outcome.status.history.iter().map(|r| r.updates).sum();
    let applied = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(store_updates(&redis, "killed"));
    assert_eq!(
        applied, reported,
        "the store's update count matches the task results"
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
