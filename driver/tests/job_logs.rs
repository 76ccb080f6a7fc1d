//! Every line a job logs names the job and, once epochs run, the epoch: captured as the operator
//! writes them (JSON lines), from a real job on the local backend whose first invocation crashes
//! and whose budget ends it.

mod common;

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use siren_crds::{TrainingJob, parse_manifest};
use siren_driver::backend::{Assignment, BackendError, FunctionBackend, Invocation, LocalBackend};
use siren_driver::{Silent, StopReason, job_span};
use siren_scheduler::{Action, StaticScheduler};
use siren_store::MemoryStore;
use tracing::Instrument;

/// The lines written so far, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The local backend, except that the very first invocation crashes (retryably) without running.
struct CrashesOnce {
    local: LocalBackend,
    crashed: bool,
}

#[async_trait::async_trait]
impl FunctionBackend for CrashesOnce {
    fn name(&self) -> &'static str {
        "crashes-once"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        self.local.scale(action).await
    }

    async fn invoke_all(
        &mut self,
        mut assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        if self.crashed || assignments.is_empty() {
            return self.local.invoke_all(assignments, progress).await;
        }
        self.crashed = true;
        let first = assignments.remove(0);
        let mut invocations = vec![Invocation {
            task_id: first.task.task_id,
            slot: first.slot,
            result: Err(siren_crds::TaskFailure::retryable("the function died")),
            billed_seconds: 0.1,
        }];
        invocations.extend(self.local.invoke_all(assignments, progress).await);
        invocations
    }
}

fn job() -> TrainingJob {
    let text = "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: traced
  namespace: team-a
spec:
  model:
    kind: mlp
    hidden: [16]
  dataset:
    synthetic: {samples: 1500, testSamples: 300, features: 12, classes: 3, noise: 0.8, seed: 3}
    shardSize: 500
  training:
    batchSize: 32
    learningRate: 0.02
    maxEpochs: 20
    seed: 7
  scheduler:
    functions: 3
    memoryMb: 1769
  budget:
    maxCostUsd: 9
";
    parse_manifest(text, "test").expect("valid test manifest")
}

#[test]
fn every_line_of_a_job_names_its_namespace_job_and_epoch() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .init();

    let job = job();
    let store = Arc::new(MemoryStore::new());
    let costs: Arc<dyn siren_scheduler::CostModel> = Arc::new(common::UnitPrice);
    let backend = CrashesOnce {
        local: common::local_backend(store.clone(), costs.clone()),
        crashed: false,
    };
    let span = job_span(&job);
    let mut driver = common::hand_built(
        "traced",
        job.spec.clone(),
        store,
        Box::new(backend),
        Box::new(StaticScheduler::new(Action {
            functions: 3,
            memory_mb: 1769,
        })),
        costs,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime
        .block_on(
            async {
                tracing::info!("starting");
                driver.run(&mut Silent).await
            }
            .instrument(span),
        )
        .expect("job runs");
    assert_eq!(outcome.stop_reason, StopReason::BudgetExhausted);
    let finished = outcome.status.epoch;
    assert!(finished >= 1, "{:?}", outcome.status);

    let text = String::from_utf8(captured.0.lock().expect("captured").clone()).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let message = |line: &Value| line["fields"]["message"].as_str().unwrap_or("").to_string();
    for line in &lines {
        let job = &line["spans"][0];
        assert_eq!(job["name"], "job", "{line}");
        assert_eq!(job["namespace"], "team-a", "{line}");
        assert_eq!(job["job"], "traced", "{line}");
    }
    let epoch_of = |wanted: &str| -> Option<u64> {
        let line = lines
            .iter()
            .find(|line| message(line).contains(wanted))
            .unwrap_or_else(|| panic!("no line says `{wanted}`: {text}"));
        let span = &line["span"];
        (span["name"] == "epoch").then(|| span["epoch"].as_u64().expect("epoch number"))
    };
    // Before any epoch there is no epoch span; the crash is retried in the first; the budget
    // refuses the epoch after the last finished one.
    assert_eq!(epoch_of("starting"), None);
    assert_eq!(epoch_of("retrying task on another function"), Some(1));
    assert_eq!(
        epoch_of("budget cannot pay for another epoch"),
        Some(u64::from(finished) + 1)
    );
}
