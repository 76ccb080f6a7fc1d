//! What the end-to-end driver tests share: a synthetic job on a real Redis, running it, and finding
//! this test binary's worker processes. Each fault test lives in a file of its own, so that its
//! binary runs alone and the workers it finds are its own.

#![allow(dead_code)]

pub mod kube;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use siren_crds::{
    BackendKind, EpochRecord, StoreKind, TrainingJob, TrainingJobStatus, parse_manifest,
};
use siren_driver::driver::DriverError;
use siren_driver::{DriverObserver, JobOutcome, driver_for};
use siren_e2e::RedisServer;
use siren_scheduler::Action;
use siren_store::{ParameterStore, RedisStore, StoreStats};

pub fn job(name: &str, functions: u32, epochs: u32, samples: u32, hidden: &str) -> TrainingJob {
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

pub fn on(mut job: TrainingJob, backend: BackendKind, redis: &RedisServer) -> TrainingJob {
    job.spec.backend.kind = backend;
    job.spec.store.kind = StoreKind::Redis;
    job.spec.store.url = Some(redis.url());
    job
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn try_run(
    job: &TrainingJob,
    observer: &mut dyn DriverObserver,
) -> Result<JobOutcome, DriverError> {
    runtime().block_on(async { driver_for(job).await?.run(observer).await })
}

pub fn run(job: &TrainingJob, observer: &mut dyn DriverObserver) -> JobOutcome {
    try_run(job, observer).expect("the job runs")
}

pub fn store_stats(redis: &RedisServer, job: &str) -> StoreStats {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = RedisStore::connect(&redis.url(), job, 4096, Duration::from_secs(5))
                .await
                .expect("connect");
            store.stats().await.expect("stats")
        })
}

/// What the driver tells about its epochs, handed to the test thread.
pub enum Event {
    Started(u64, Arc<AtomicU64>),
    Finished(EpochRecord),
}

pub struct Events(pub mpsc::Sender<Event>);

impl DriverObserver for Events {
    fn epoch_started(&mut self, _: u32, _: Action, samples: u64, progress: Arc<AtomicU64>) {
        let _ = self.0.send(Event::Started(samples, progress));
    }

    fn epoch_finished(&mut self, record: &EpochRecord, _: &TrainingJobStatus) {
        let _ = self.0.send(Event::Finished(record.clone()));
    }
}

/// The `siren-worker` processes this test binary started.
pub fn worker_pids() -> Vec<u32> {
    workers_of(std::process::id())
}

/// The `siren-worker` processes the process `parent` started.
pub fn workers_of(parent: u32) -> Vec<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-P", &parent.to_string(), "-x", "siren-worker"])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} {pid}");
}
