//! Many jobs at once: one real `siren-operator` against a real kube-apiserver runs 20 small
//! TrainingJobs applied together, with in-process functions and store (`backend: local`,
//! `store: memory`), so every job's driver, functions and data live in the operator's process.
//! Ten jobs share one synthetic dataset and ten another, so the process holds two datasets, not
//! twenty. The test reports the operator's peak memory and how long an epoch's status took to
//! reach the API server (`siren_status_write_delay_seconds`); it asserts only sane bounds.
//!
//! `SIREN_LOAD_REPORT=path` also writes the report as JSON.

mod common;

use std::time::{Duration, Instant};

use common::kube::*;
use serde_json::Value;
use siren_e2e::KubeApiServer;

const JOBS: usize = 20;
const EPOCHS: u64 = 3;
const DELAY_METRIC: &str = "siren_status_write_delay_seconds";

/// A small synthetic job with two in-process functions. Jobs with the same `data_seed` (and the
/// same training seed, which all have) train on the same dataset.
fn load_job(name: &str, data_seed: u64) -> String {
    format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: {name}
spec:
  model: {{kind: mlp, hidden: [32]}}
  dataset:
    synthetic: {{samples: 3000, testSamples: 500, features: 20, classes: 4, noise: 0.8, seed: {data_seed}}}
    shardSize: 250
  training: {{batchSize: 32, learningRate: 0.02, maxEpochs: {EPOCHS}, seed: 7}}
  scheduler: {{functions: 2, memoryMb: 1769}}
  backend: {{kind: local}}
  store: {{kind: memory}}
"
    )
}

/// Every TrainingJob in the test's namespace, by one kubectl call.
fn all_jobs(apiserver: &KubeApiServer) -> Vec<Value> {
    let text = apiserver.kubectl_ok(&["get", "trainingjobs", "-o", "json"]);
    let list: Value = serde_json::from_str(&text).expect("kubectl prints JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A histogram as `/metrics` shows it: cumulative counts by upper bound, count and sum.
#[derive(Debug, Default)]
struct Histogram {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn parse(text: &str, name: &str) -> Self {
        let bucket_prefix = format!("{name}_bucket{{le=\"");
        let count_prefix = format!("{name}_count ");
        let sum_prefix = format!("{name}_sum ");
        let mut histogram = Self::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&bucket_prefix) {
                let (le, count) = rest.split_once("\"}").expect("a bucket line");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("a bucket bound")
                };
                let count = count
                    .split_whitespace()
                    .next()
                    .and_then(|count| count.parse().ok())
                    .expect("a bucket count");
                histogram.buckets.push((le, count));
            } else if let Some(count) = line.strip_prefix(&count_prefix) {
                histogram.count = count.trim().parse().expect("a count");
            } else if let Some(sum) = line.strip_prefix(&sum_prefix) {
                histogram.sum = sum.trim().parse().expect("a sum");
            }
        }
        histogram
    }

    /// The upper bound of the first bucket whose cumulative count reaches the fraction `q` of
    /// all observations: the quantile, rounded up to a bucket bound.
    fn quantile(&self, q: f64) -> f64 {
        let wanted = ((q * self.count as f64).ceil() as u64).max(1);
        self.buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= wanted)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }
}

#[test]
fn one_operator_runs_twenty_jobs_at_once() {
    let apiserver = KubeApiServer::start();
    install_crd(&apiserver);
    // No --dev-process-functions: `backend: local` runs the functions in the operator.
    let mut operator = Operator::start_with(&apiserver, apiserver.dir(), 1, &[]);

    // Ten jobs on one dataset, ten on another.
    let names: Vec<String> = (0..JOBS)
        .map(|i| format!("load-{}-{:02}", if i % 2 == 0 { "a" } else { "b" }, i / 2))
        .collect();
    let manifests: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| load_job(name, if i % 2 == 0 { 3 } else { 5 }))
        .collect();
    let started = Instant::now();
    let applied = apiserver.apply(&manifests.join("---\n"));
    assert!(applied.status.success(), "{applied:?}");

    let limit = Duration::from_secs(900);
    let jobs = loop {
        let jobs = all_jobs(&apiserver);
        if let Some(failed) = jobs.iter().find(|job| phase(job) == "Failed") {
            panic!(
                "{} failed: {}\noperator log:\n{}",
                failed["metadata"]["name"],
                failed["status"],
                operator.log()
            );
        }
        let succeeded = jobs.iter().filter(|job| phase(job) == "Succeeded").count();
        if succeeded == JOBS {
            break jobs;
        }
        if let Ok(Some(exit)) = operator.child.try_wait() {
            panic!("the operator exited ({exit}):\n{}", operator.log());
        }
        assert!(
            started.elapsed() < limit,
            "{succeeded} of {JOBS} jobs Succeeded within {limit:?}; phases {:?}",
            jobs.iter()
                .map(|job| (job["metadata"]["name"].clone(), phase(job).to_string()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let wall = started.elapsed();

    assert_eq!(jobs.len(), JOBS);
    for job in &jobs {
        assert_eq!(
            condition(job, "Succeeded")["reason"],
            "MaxEpochsReached",
            "{}",
            job["metadata"]["name"]
        );
        assert_every_epoch_once(&job["status"], EPOCHS);
    }

    // Every epoch's status write is observed once, right after the write: wait for the last.
    let epochs = JOBS as u64 * EPOCHS;
    let observed = Instant::now();
    let delays = loop {
        let delays = Histogram::parse(&operator.metrics(), DELAY_METRIC);
        if delays.count >= epochs || observed.elapsed() > Duration::from_secs(10) {
            break delays;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        delays.count, epochs,
        "one status write delay per epoch: {delays:?}"
    );
    let (p50, p99) = (delays.quantile(0.50), delays.quantile(0.99));
    let peak_rss = operator.peak_rss_bytes();
    operator.kill();

    let mib = peak_rss as f64 / (1024.0 * 1024.0);
    println!(
        "LOAD: {JOBS} jobs, {:.1} s wall, operator peak RSS {mib:.0} MiB, status write delay \
         p50 {:.1} ms p99 {:.1} ms ({} epochs, mean {:.1} ms)",
        wall.as_secs_f64(),
        p50 * 1000.0,
        p99 * 1000.0,
        delays.count,
        delays.sum / delays.count as f64 * 1000.0
    );
    if let Some(path) = std::env::var_os("SIREN_LOAD_REPORT") {
        let report = serde_json::json!({
            "jobs": JOBS,
            "epochs_per_job": EPOCHS,
            "wall_seconds": wall.as_secs_f64(),
            "operator_peak_rss_bytes": peak_rss,
            "operator_peak_rss_mib": mib,
            "status_write_delay_p50_seconds": p50,
            "status_write_delay_p99_seconds": p99,
            "status_write_delay_mean_seconds": delays.sum / delays.count as f64,
            "status_writes_observed": delays.count,
        });
        let text = serde_json::to_string_pretty(&report).expect("JSON");
        std::fs::write(&path, text + "\n").expect("the load report is written");
    }

    // Sane bounds only: the figures are for the benchmarks, not for this test to judge.
    assert!(p99 < 30.0, "status write delay p99 {p99} s");
    assert!(mib < 1024.0, "operator peak RSS {mib:.0} MiB");
}
