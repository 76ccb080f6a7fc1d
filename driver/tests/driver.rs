//! The job driver end to end on the local backend: real models, real in-process functions running
//! concurrently, the real store. Small seeded data keeps it fast.

mod common;

use std::sync::Arc;

use siren_crds::{JobPhase, TrainingJob, parse_manifest};
use siren_driver::backend::LocalBackend;
use siren_driver::pricing::cost_model;
use siren_driver::{JobDriver, Silent, StopReason, driver_for};
use siren_scheduler::{Action, StaticScheduler};
use siren_store::{MemoryStore, ParameterStore};

fn synthetic_job(extra: &str) -> TrainingJob {
    let text = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: synthetic
spec:
  model:
    kind: mlp
    hidden: [32]
  dataset:
    synthetic: {{samples: 4000, testSamples: 500, features: 20, classes: 4, noise: 0.8, seed: 3}}
    shardSize: 250
  training:
    batchSize: 32
    learningRate: 0.02
    maxEpochs: 3
    seed: 7
  scheduler:
    functions: 3
    memoryMb: 1769
{extra}"
    );
    parse_manifest(&text, "test").expect("valid test manifest")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn run_job(
    job: &TrainingJob,
) -> Result<siren_driver::JobOutcome, siren_driver::driver::DriverError> {
    runtime().block_on(async { driver_for(job).await?.run(&mut Silent).await })
}

/// Runs a job that must fail, returning its error.
fn run_to_failure(driver: &mut JobDriver) -> siren_driver::driver::DriverError {
    match runtime().block_on(driver.run(&mut Silent)) {
        Ok(_) => panic!("the job should have failed"),
        Err(error) => error,
    }
}

/// Resolves a job that must not resolve, returning its error.
fn resolve_to_failure(job: &TrainingJob) -> siren_driver::ResolveError {
    match runtime().block_on(driver_for(job)) {
        Ok(_) => panic!("the job should not resolve"),
        Err(error) => error,
    }
}

/// Builds the driver by hand so the test can inspect the store afterwards.
fn driver_with_store(job: &TrainingJob) -> (JobDriver, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let costs = cost_model(&job.spec.backend.pricing);
    let backend = Box::new(common::local_backend(store.clone(), costs.clone()));
    let driver = static_driver("synthetic", &job.spec, store.clone(), backend, costs);
    (driver, store)
}

/// A driver whose static scheduler runs the job's own functions and memory on `backend`.
fn static_driver(
    name: &str,
    spec: &siren_crds::TrainingJobSpec,
    store: Arc<MemoryStore>,
    backend: Box<dyn siren_driver::backend::FunctionBackend>,
    costs: Arc<dyn siren_scheduler::CostModel>,
) -> JobDriver {
    let scheduler = StaticScheduler::new(Action {
        functions: spec.scheduler.functions,
        memory_mb: spec.scheduler.memory_mb,
    });
    common::hand_built(
        name,
        spec.clone(),
        store,
        backend,
        Box::new(scheduler),
        costs,
    )
}

#[test]
fn trains_every_epoch_and_accounts_for_every_update() {
    let job = synthetic_job("");
    let (mut driver, store) = driver_with_store(&job);
    let rt = runtime();
    let outcome = rt.block_on(driver.run(&mut Silent)).expect("job runs");
    let status = &outcome.status;
    assert_eq!(status.phase, JobPhase::Succeeded);
    assert_eq!(outcome.stop_reason, StopReason::MaxEpochs);
    assert_eq!(status.epoch, 3);
    assert_eq!(status.history.len(), 3);
    for record in &status.history {
        assert_eq!(record.samples, 4000, "every training sample once per epoch");
        assert_eq!(record.functions, 3);
        // 16 shards of 250 dealt to 3 functions: 6, 5 and 5 shards, 47 + 40 + 40 batches of 32.
        assert_eq!(record.updates, 47 + 40 + 40);
        assert!(record.cost_usd > 0.0);
    }
    let updates: u64 = status.history.iter().map(|r| r.updates).sum();
    let stats = rt.block_on(store.stats()).expect("stats");
    assert_eq!(
        stats.version, updates,
        "the store applied exactly the updates the results report"
    );
    assert!(
        status.history[2].loss < status.history[0].loss,
        "test loss falls"
    );
    assert!(
        status.accuracy.unwrap_or(0.0) > 0.6,
        "accuracy {:?}",
        status.accuracy
    );
    assert_eq!(
        status.condition("Succeeded").map(|c| c.status.as_str()),
        Some("True")
    );
    let latest = rt.block_on(store.latest_checkpoint()).expect("checkpoint");
    assert_eq!(latest.map(|c| c.epoch), Some(3));
    let sum_cost: f64 = status.history.iter().map(|r| r.cost_usd).sum();
    assert!((sum_cost - status.cost_usd).abs() < 1e-12);
}

#[test]
fn stops_when_the_target_accuracy_is_reached() {
    let mut job = synthetic_job("");
    job.spec.training.max_epochs = 20;
    job.spec.training.target_accuracy = Some(0.8);
    let outcome = run_job(&job).expect("job runs");
    let history = &outcome.status.history;
    assert_eq!(outcome.stop_reason, StopReason::TargetReached);
    let last = history.last().expect("an epoch ran");
    assert!(last.accuracy >= 0.8);
    assert!(
        history[..history.len() - 1]
            .iter()
            .all(|r| r.accuracy < 0.8),
        "it stops at the first epoch that reaches the target: {history:?}"
    );
}

#[test]
fn never_starts_an_epoch_the_budget_cannot_pay_for() {
    let mut job = synthetic_job("");
    job.spec.training.max_epochs = 50;
    // 3 functions: 3 units per epoch. After 2 epochs 6 are spent and the next is predicted at
    // 3 x 1.2 = 3.6, over the 7.5 budget.
    job.spec.budget.max_cost_usd = Some(7.5);
    let store = Arc::new(MemoryStore::new());
    let costs: Arc<dyn siren_scheduler::CostModel> = Arc::new(common::UnitPrice);
    let mut driver = static_driver(
        "budget",
        &job.spec,
        store.clone(),
        Box::new(common::local_backend(store, costs.clone())),
        costs,
    );
    let outcome = runtime()
        .block_on(driver.run(&mut Silent))
        .expect("job runs");
    assert_eq!(outcome.stop_reason, StopReason::BudgetExhausted);
    assert_eq!(outcome.status.epoch, 2);
    assert_eq!(outcome.status.cost_usd, 6.0);
    assert_eq!(
        outcome
            .status
            .condition("Succeeded")
            .map(|c| c.reason.as_str()),
        Some("BudgetExhausted")
    );
}

/// The budget guarantee holds for a static policy from its first epoch on: the compute probe's
/// worst case must fit the budget, or the job stops before it starts anything.
#[test]
fn a_static_job_whose_budget_cannot_pay_its_first_epoch_never_starts_it() {
    let mut job = synthetic_job("");
    job.spec.budget.max_cost_usd = Some(1e-9);
    let outcome = run_job(&job).expect("job runs");
    assert_eq!(outcome.stop_reason, StopReason::BudgetExhausted);
    assert_eq!(outcome.status.epoch, 0);
    assert_eq!(outcome.status.cost_usd, 0.0);
    // Nothing trained: the job failed, for its budget.
    assert_eq!(outcome.status.phase, JobPhase::Failed);
    assert_eq!(
        outcome
            .status
            .condition("Failed")
            .map(|c| c.reason.as_str()),
        Some("BudgetExhausted")
    );
    // With its worst case paid for, the same job runs.
    job.spec.budget.max_cost_usd = Some(1.0);
    let outcome = run_job(&job).expect("job runs");
    assert_eq!(outcome.status.epoch, job.spec.training.max_epochs);
    assert!(outcome.status.cost_usd <= 1.0);
}

#[test]
fn same_seed_same_single_function_result() {
    // With one function there is no race between pushes, so training is bit-for-bit repeatable.
    let mut job = synthetic_job("");
    job.spec.scheduler.functions = 1;
    job.spec.training.max_epochs = 2;
    let a = run_job(&job).expect("run a");
    let b = run_job(&job).expect("run b");
    assert_eq!(a.params, b.params);
    assert_eq!(a.status.accuracy, b.status.accuracy);
}

#[test]
fn more_functions_than_shards_are_capped() {
    let mut job = synthetic_job("");
    job.spec.scheduler.functions = 40;
    job.spec.training.max_epochs = 1;
    let outcome = run_job(&job).expect("job runs");
    assert_eq!(outcome.status.history[0].functions, 16);
    assert_eq!(outcome.status.history[0].samples, 4000);
}

#[test]
fn unusable_dataset_fails_the_job_with_a_reason() {
    let mut job = synthetic_job("");
    job.spec.dataset.synthetic = None;
    job.spec.dataset.csv = Some(siren_crds::CsvSource {
        train: "/nonexistent/train.csv".into(),
        test: None,
        label_column: 0,
        header: false,
        test_fraction: 0.1,
    });
    // The data is loaded once, when the job is resolved: it fails there, before any run.
    let error = resolve_to_failure(&job);
    assert!(
        error.to_string().contains("/nonexistent/train.csv"),
        "{error}"
    );
    assert_eq!(error.reason(), "DatasetUnavailable");
}

#[test]
fn lenet_on_tabular_data_fails_with_a_reason() {
    let mut job = synthetic_job("");
    job.spec.model = siren_crds::ModelSpec {
        kind: siren_crds::ModelKind::Lenet5,
        hidden: None,
    };
    let error = resolve_to_failure(&job);
    assert!(
        error.to_string().contains("lenet5 cannot take this data"),
        "{error}"
    );
    assert_eq!(error.reason(), "ModelIncompatible");
}

/// A backend whose every invocation runs for one second and fails: for good, or retryably (as a
/// crashed function does).
struct FailingBackend {
    retryable: bool,
}

#[async_trait::async_trait]
impl siren_driver::backend::FunctionBackend for FailingBackend {
    fn name(&self) -> &'static str {
        "failing"
    }

    async fn scale(&mut self, _: Action) -> Result<(), siren_driver::backend::BackendError> {
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<siren_driver::backend::Assignment>,
        _: Arc<std::sync::atomic::AtomicU64>,
    ) -> Vec<siren_driver::backend::Invocation> {
        assignments
            .into_iter()
            .map(|a| siren_driver::backend::Invocation {
                task_id: a.task.task_id,
                slot: a.slot,
                result: Err(if self.retryable {
                    siren_crds::TaskFailure::retryable("the function died")
                } else {
                    siren_crds::TaskFailure::fatal("the function rejected the task")
                }),
                billed_seconds: 1.0,
            })
            .collect()
    }
}

#[test]
fn a_failed_epoch_still_counts_what_it_cost() {
    let job = synthetic_job("");
    let costs = cost_model(&job.spec.backend.pricing);
    let mut driver = static_driver(
        "failing",
        &job.spec,
        Arc::new(MemoryStore::new()),
        Box::new(FailingBackend { retryable: false }),
        costs.clone(),
    );
    let error = run_to_failure(&mut driver);
    assert!(
        error.to_string().contains("the function rejected the task"),
        "{error}"
    );
    let status = driver.status();
    assert_eq!(status.phase, JobPhase::Failed);
    assert_eq!(
        status.condition("Failed").map(|c| c.reason.as_str()),
        Some("TaskFailed")
    );
    // Non-retryable: each of the 3 tasks ran once, and all 3 invocations are charged.
    let expected = 3.0 * costs.invocation_cost(1769, 1.0);
    assert!(
        (status.cost_usd - expected).abs() < 1e-12,
        "{} vs {expected}",
        status.cost_usd
    );
}

#[test]
fn a_retry_that_could_overrun_the_budget_is_not_started() {
    let mut job = synthetic_job("");
    let costs = cost_model(&job.spec.backend.pricing);
    let one = costs.invocation_cost(1769, 1.0);
    // Room for the first 3 invocations, not for 3 retries.
    job.spec.budget.max_cost_usd = Some(4.5 * one);
    let failing = |spec: siren_crds::TrainingJobSpec| {
        static_driver(
            "retries",
            &spec,
            Arc::new(MemoryStore::new()),
            Box::new(FailingBackend { retryable: true }),
            costs.clone(),
        )
    };
    let mut driver = failing(job.spec.clone());
    let error = run_to_failure(&mut driver);
    assert!(
        error.to_string().contains("could overrun the budget"),
        "{error}"
    );
    assert_eq!(
        driver
            .status()
            .condition("Failed")
            .map(|c| c.reason.as_str()),
        Some("BudgetExhausted")
    );
    assert!((driver.status().cost_usd - 3.0 * one).abs() < 1e-12);

    // Without a budget, each task gets its three attempts, all of them billed.
    job.spec.budget.max_cost_usd = None;
    let mut driver = failing(job.spec);
    let error = run_to_failure(&mut driver);
    assert!(error.to_string().contains("after 3 attempt(s)"), "{error}");
    assert!((driver.status().cost_usd - 9.0 * one).abs() < 1e-12);
}

/// Runs epochs on a real local backend until `failing_from`; from then on a function pushes one
/// update and dies (every task fails retryably), as a function killed mid-task would.
struct FailsFromEpoch {
    local: LocalBackend,
    store: Arc<MemoryStore>,
    failing_from: u32,
}

#[async_trait::async_trait]
impl siren_driver::backend::FunctionBackend for FailsFromEpoch {
    fn name(&self) -> &'static str {
        "fails-from-epoch"
    }

    async fn scale(&mut self, action: Action) -> Result<(), siren_driver::backend::BackendError> {
        self.local.scale(action).await
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<siren_driver::backend::Assignment>,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Vec<siren_driver::backend::Invocation> {
        if assignments
            .first()
            .is_some_and(|a| a.task.epoch < self.failing_from)
        {
            return self.local.invoke_all(assignments, progress).await;
        }
        if let Ok(snapshot) = self.store.pull().await {
            let partial = siren_store::Update::new(
                format!("partial-{}", snapshot.version),
                0,
                snapshot.version,
                vec![1.0; snapshot.params.len()],
            );
            let _ = self.store.push(&partial).await;
        }
        FailingBackend { retryable: true }
            .invoke_all(assignments, progress)
            .await
    }
}

#[test]
fn an_epoch_the_budget_cannot_finish_ends_the_job_at_the_last_finished_epoch() {
    let mut job = synthetic_job("");
    let costs = cost_model(&job.spec.backend.pricing);
    let one = costs.invocation_cost(1769, 1.0);
    // Room for epoch 1 (milliseconds of work) and epoch 2's failed first round, not its retries.
    job.spec.budget.max_cost_usd = Some(4.5 * one);
    let store = Arc::new(MemoryStore::new());
    let mut driver = static_driver(
        "ends-early",
        &job.spec,
        store.clone(),
        Box::new(FailsFromEpoch {
            local: common::local_backend(store.clone(), costs.clone()),
            store: store.clone(),
            failing_from: 1,
        }),
        costs.clone(),
    );
    let outcome = runtime()
        .block_on(driver.run(&mut Silent))
        .expect("the job ends, not fails");
    assert_eq!(outcome.stop_reason, StopReason::BudgetExhausted);
    assert_eq!(outcome.status.phase, JobPhase::Succeeded);
    assert_eq!(outcome.status.epoch, 1, "epoch 2 never finished");
    assert!(
        outcome.status.cost_usd <= 4.5 * one,
        "spent {}",
        outcome.status.cost_usd
    );
    let restored = runtime()
        .block_on(store.latest_checkpoint())
        .expect("checkpoints");
    let model = runtime().block_on(store.pull()).expect("model");
    assert_eq!(
        Some(model.version),
        restored.map(|c| c.version),
        "the model is epoch 1's checkpoint, without the update the dying function pushed"
    );
    assert_eq!(outcome.params, model.params);
}

/// A real local backend whose epoch `failing_epoch` (0-based) sees its first `failing_rounds`
/// rounds of invocations fail retryably, each function first pushing an update that the epoch's
/// undoing must remove.
struct FailingRounds {
    local: LocalBackend,
    store: Arc<MemoryStore>,
    failing_epoch: u32,
    failing_rounds: u32,
}

#[async_trait::async_trait]
impl siren_driver::backend::FunctionBackend for FailingRounds {
    fn name(&self) -> &'static str {
        "failing-rounds"
    }

    async fn scale(&mut self, action: Action) -> Result<(), siren_driver::backend::BackendError> {
        self.local.scale(action).await
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<siren_driver::backend::Assignment>,
        progress: Arc<std::sync::atomic::AtomicU64>,
    ) -> Vec<siren_driver::backend::Invocation> {
        let failing = assignments
            .first()
            .is_some_and(|a| a.task.epoch == self.failing_epoch);
        if !failing || self.failing_rounds == 0 {
            return self.local.invoke_all(assignments, progress).await;
        }
        self.failing_rounds -= 1;
        if let Ok(snapshot) = self.store.pull().await {
            let partial = siren_store::Update::new(
                format!("partial-{}-{}", snapshot.version, self.failing_rounds),
                0,
                snapshot.version,
                vec![100.0; snapshot.params.len()],
            );
            let _ = self.store.push(&partial).await;
        }
        FailingBackend { retryable: true }
            .invoke_all(assignments, progress)
            .await
    }
}

/// Runs the synthetic job with `policy` (YAML under `failurePolicy:`) on a backend whose second
/// epoch fails its first `failing_rounds` rounds.
fn run_with_failing_rounds(
    policy: &str,
    failing_rounds: u32,
) -> (
    Result<siren_driver::JobOutcome, siren_driver::driver::DriverError>,
    siren_crds::TrainingJobStatus,
) {
    let job = synthetic_job(&format!("  failurePolicy:\n{policy}"));
    let costs = cost_model(&job.spec.backend.pricing);
    let store = Arc::new(MemoryStore::new());
    let mut driver = static_driver(
        "failure-policy",
        &job.spec,
        store.clone(),
        Box::new(FailingRounds {
            local: common::local_backend(store.clone(), costs.clone()),
            store,
            failing_epoch: 1,
            failing_rounds,
        }),
        costs,
    );
    let outcome = runtime().block_on(driver.run(&mut Silent));
    (outcome, driver.status().clone())
}

#[test]
fn the_failure_policy_sets_attempts_failed_epochs_and_final_failures() {
    // Today's behaviour by default: three attempts, and an epoch out of them fails the job.
    let (outcome, status) = run_with_failing_rounds("    attemptsPerTask: 3\n", 3);
    let error = outcome.err().expect("the job fails");
    assert!(error.to_string().contains("after 3 attempt(s)"), "{error}");
    assert_eq!(status.epoch, 1);

    // A fourth attempt gets the epoch through.
    let (outcome, status) = run_with_failing_rounds("    attemptsPerTask: 4\n", 3);
    let outcome = outcome.expect("the job succeeds");
    assert_eq!(outcome.status.epoch, 3);
    assert_eq!(status.failed_epochs, 0);

    // One failed epoch allowed: epoch 2 is undone and run again, and the job finishes.
    let (outcome, status) = run_with_failing_rounds("    failedEpochsAllowed: 1\n", 3);
    let outcome = outcome.expect("the job succeeds after running epoch 2 again");
    assert_eq!(outcome.status.epoch, 3);
    assert_eq!(status.failed_epochs, 1);
    let epochs: Vec<u32> = status.history.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 3], "each epoch recorded once");
    // The failed epoch's pushes (every parameter +100) were undone with it.
    assert!(
        outcome.params.iter().all(|p| p.abs() < 50.0),
        "the failed epoch's updates survived"
    );
    // Two failed epochs in a row exhaust an allowance of one.
    let (outcome, status) = run_with_failing_rounds("    failedEpochsAllowed: 1\n", 6);
    assert!(outcome.is_err());
    assert_eq!(status.failed_epochs, 1);
    assert_eq!(status.phase, JobPhase::Failed);

    // A final failure ends the job at its first occurrence, whatever else is allowed.
    let (outcome, status) = run_with_failing_rounds(
        "    failedEpochsAllowed: 5\n    finalFailures: [functionError]\n",
        1,
    );
    let error = outcome.err().expect("the job fails");
    assert!(error.to_string().contains("after 1 attempt(s)"), "{error}");
    assert_eq!(status.failed_epochs, 0);
}

#[test]
fn every_epoch_updates_the_forecast_of_the_jobs_end() {
    let job = synthetic_job("");
    let outcome = run_job(&job).expect("the job runs");
    let progress = outcome
        .status
        .progress
        .expect("a forecast after the last epoch");
    assert_eq!(progress.remaining_epochs, 0);
    assert_eq!(progress.percent, 100.0);
    assert_eq!(progress.ends_by, "MaxEpochsReached");

    // Stopped after one of three epochs, the job has two to go at its pace.
    let mut one = job.clone();
    one.spec.training.max_epochs = 1;
    let first = run_job(&one).expect("one epoch");
    let status = first.status;
    let state = siren_scheduler::JobState {
        history: &status.history,
        epochs_done: 1,
        max_epochs: 3,
        target_accuracy: None,
        budget_usd: None,
        spent_usd: status.cost_usd,
        curve: None,
    };
    let forecast = siren_scheduler::forecast(&state).expect("a forecast");
    assert_eq!(forecast.remaining_epochs, 2);
    assert!((forecast.seconds - 2.0 * status.history[0].seconds).abs() < 1e-9);
}

#[test]
fn a_resumed_job_continues_after_its_last_checkpoint_and_a_lost_one_fails_clearly() {
    let job = synthetic_job("");
    let runtime = runtime();
    let (first, resumed) = runtime.block_on(async {
        // Two epochs, then the job stops as an operator restart would leave it.
        let mut two_epochs = job.clone();
        two_epochs.spec.training.max_epochs = 2;
        let mut driver = driver_for(&two_epochs).await.expect("driver");
        let first = driver.run(&mut Silent).await.expect("two epochs");
        (first, driver)
    });
    assert_eq!(first.status.epoch, 2);
    drop(resumed);

    // The in-process store died with the process: nothing to resume from, and the job says so
    // instead of training again from scratch under the same history.
    let mut fresh = runtime
        .block_on(driver_for(&job))
        .expect("driver")
        .resuming(first.status.clone());
    let error = run_to_failure(&mut fresh);
    assert!(
        error.to_string().contains("cannot resume after epoch 2"),
        "{error}"
    );
    assert_eq!(fresh.status().phase, JobPhase::Failed);
    assert_eq!(error.reason(), "CheckpointLost");
}

#[test]
fn a_suspended_job_stops_before_its_next_epoch_and_resumes_where_it_stopped() {
    let job = synthetic_job("");
    let store: Arc<dyn ParameterStore> = Arc::new(MemoryStore::new());
    let driver = |status: Option<siren_crds::TrainingJobStatus>, suspend: bool, max_epochs: u32| {
        let cost = cost_model(&job.spec.backend.pricing);
        let mut control = siren_driver::RunControl::from_spec(&job.spec);
        control.suspend = suspend;
        control.max_epochs = max_epochs;
        let (_keep, receiver) = tokio::sync::watch::channel(control);
        let driver = common::hand_built(
            "synthetic",
            job.spec.clone(),
            Arc::clone(&store),
            Box::new(common::local_backend(Arc::clone(&store), Arc::clone(&cost))),
            Box::new(StaticScheduler::new(Action {
                functions: 3,
                memory_mb: 1769,
            })),
            cost,
        )
        .controlled_by(receiver);
        match status {
            Some(status) => driver.resuming(status),
            None => driver,
        }
    };
    let runtime = runtime();
    let mut first = driver(None, false, 3);
    let finished = runtime
        .block_on(first.run(&mut Silent))
        .expect("three epochs");
    assert_eq!(finished.status.epoch, 3);

    // Suspended from the start of a resumed run: no epoch runs, the phase says Suspended.
    let mut suspended = driver(Some(finished.status.clone()), true, 4);
    let outcome = runtime
        .block_on(suspended.run(&mut Silent))
        .expect("suspends");
    assert_eq!(outcome.stop_reason, StopReason::Suspended);
    assert_eq!(outcome.status.phase, JobPhase::Suspended);
    assert_eq!(outcome.status.history.len(), 3);
    assert_eq!(outcome.status.cost_usd, finished.status.cost_usd);

    // Unsuspended with one more epoch allowed (a mid-run spec change): exactly epoch 4 runs.
    let mut resumed = driver(Some(outcome.status), false, 4);
    let outcome = runtime.block_on(resumed.run(&mut Silent)).expect("resumes");
    let epochs: Vec<u32> = outcome.status.history.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, vec![1, 2, 3, 4]);
    assert_eq!(outcome.status.phase, JobPhase::Succeeded);
    assert!(outcome.status.cost_usd > finished.status.cost_usd);
}
