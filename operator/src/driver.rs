//! The job driver: the epoch loop shared by the `siren` CLI and (later) the operator.
//!
//! Each epoch: observe -> scheduler decision -> budget check -> scale -> fan out one task per
//! function -> retry retryable failures elsewhere -> aggregate -> evaluate on the test split ->
//! status, history, checkpoint -> stop or go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use siren_crds::{
    EpochRecord, HyperParameters, JobPhase, StoreKind, StoreRef, StoredDataset,
    TASK_PROTOCOL_VERSION, Task, TaskResult, TrainingJobSpec, TrainingJobStatus,
};
pub use siren_scheduler::StopReason;
use siren_scheduler::{
    Action, CostModel, EpochCostEstimate, Gate, Limits, Observation, Scheduler, open_epoch,
};
use siren_worker::TaskError;
use siren_worker::data::{DataError, DataSplits, cached_splits};
use siren_worker::model::{Architecture, Evaluator, ModelError};
use siren_worker::store::{CHECKPOINTS_KEPT, ParameterStore, StoreError, upload_dataset};
use thiserror::Error;
use tokio::sync::watch;
use tracing::Instrument;

use crate::backend::{Assignment, BackendError, FunctionBackend, Invocation};
use crate::blocking::off_runtime;

/// How long a checkpoint waits for the job's status to be recorded.
const RECORD_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Attempts per task before its epoch (and the job) fails.
pub const MAX_TASK_ATTEMPTS: u32 = 3;

#[derive(Debug, Error)]
pub enum DriverError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("parameter store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] crate::learned::LearnedError),
    #[error(
        "epoch {epoch}: task {task_id} failed and retrying it (${retry_usd:.6}) could overrun the budget (${remaining_usd:.6} left)"
    )]
    RetryOverBudget {
        epoch: u32,
        task_id: String,
        retry_usd: f64,
        remaining_usd: f64,
    },
    #[error(
        "cannot resume after epoch {epoch}: {reason}; the model trained so far is gone, so the job does not pretend to continue"
    )]
    ResumeImpossible { epoch: u32, reason: String },
    #[error("epoch {epoch}: task {task_id} failed after {attempts} attempt(s): {error}")]
    Task {
        epoch: u32,
        task_id: String,
        attempts: u32,
        error: TaskError,
    },
}

/// Notified as the job makes progress; the CLI draws from it, the operator patches status.
pub trait DriverObserver: Send {
    fn epoch_started(
        &mut self,
        _epoch: u32,
        _action: Action,
        _samples: u64,
        _progress: Arc<AtomicU64>,
    ) {
    }
    /// Every task result of the epoch (retries' included), before evaluation: what calibration
    /// measures functions from.
    fn tasks_finished(&mut self, _epoch: u32, _results: &[TaskResult]) {}
    fn epoch_finished(&mut self, _record: &EpochRecord, _status: &TrainingJobStatus) {}
    /// The job entered a phase or started an epoch; what the operator reports to the API server.
    fn status_changed(&mut self, _status: &TrainingJobStatus) {}
}

/// What a user may change while a job runs. The driver reads it before every epoch, so a change
/// takes effect at the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct RunControl {
    pub max_cost_usd: Option<f64>,
    pub max_epochs: u32,
    pub suspend: bool,
}

impl RunControl {
    pub fn from_spec(spec: &TrainingJobSpec) -> Self {
        Self {
            max_cost_usd: spec.budget.max_cost_usd,
            max_epochs: spec.training.max_epochs,
            suspend: spec.suspend,
        }
    }
}

/// Observes nothing.
pub struct Silent;
impl DriverObserver for Silent {}

pub struct JobOutcome {
    pub status: TrainingJobStatus,
    pub stop_reason: StopReason,
    pub architecture: Architecture,
    pub params: Vec<f32>,
}

pub struct JobDriver {
    job: String,
    spec: TrainingJobSpec,
    store: Arc<dyn ParameterStore>,
    backend: Box<dyn FunctionBackend>,
    scheduler: Box<dyn Scheduler>,
    cost_model: Arc<dyn CostModel>,
    status: TrainingJobStatus,
    /// Where a learning scheduler's updated state is saved after the job.
    scheduler_state: Option<PathBuf>,
    control: Option<watch::Receiver<RunControl>>,
    /// The last epoch whose status is durably recorded elsewhere (the operator's status write).
    recorded: Option<watch::Receiver<u32>>,
}

/// What a run carries from one epoch to the next.
struct EpochLoop {
    splits: Arc<DataSplits>,
    stored_data: Option<StoredDataset>,
    /// Shared with the blocking thread each evaluation runs on.
    evaluator: Arc<Mutex<Evaluator>>,
    shard_count: usize,
    /// The last epoch's cost, as the budget check predicts the next one's from it.
    estimate: Option<EpochCostEstimate>,
    previous_loss: Option<f64>,
    started: Instant,
    /// A resumed job's clock carries on from where its last finished epoch left it.
    elapsed_before: f64,
}

impl EpochLoop {
    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.started.elapsed().as_secs_f64()
    }
}

impl JobDriver {
    pub fn new(
        job: &str,
        spec: TrainingJobSpec,
        store: Arc<dyn ParameterStore>,
        backend: Box<dyn FunctionBackend>,
        scheduler: Box<dyn Scheduler>,
        cost_model: Arc<dyn CostModel>,
    ) -> Self {
        Self {
            job: job.to_string(),
            spec,
            store,
            backend,
            scheduler,
            cost_model,
            status: TrainingJobStatus::default(),
            scheduler_state: None,
            control: None,
            recorded: None,
        }
    }

    /// Continues a job whose finished epochs `status` records (after an operator restart or a
    /// suspension): the model comes back from the store's checkpoint of the last finished epoch,
    /// cost and history carry on, and no finished epoch runs again.
    pub fn resuming(mut self, status: TrainingJobStatus) -> Self {
        self.status = status;
        self
    }

    /// Checkpoints wait for `recorded` to keep up: the store keeps only the last few, and the one
    /// of the last recorded epoch is what a restarted run resumes from.
    pub fn waiting_for_records(mut self, recorded: watch::Receiver<u32>) -> Self {
        self.recorded = Some(recorded);
        self
    }

    /// Budget, epoch limit and suspension are read from `control` before every epoch.
    pub fn controlled_by(mut self, control: watch::Receiver<RunControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// Saves what the scheduler learns from the job to `path` once the job ends.
    pub fn saving_scheduler_state(mut self, path: PathBuf) -> Self {
        self.scheduler_state = Some(path);
        self
    }

    pub fn status(&self) -> &TrainingJobStatus {
        &self.status
    }

    /// Removes everything the job keeps in its store (after its model has been saved).
    pub async fn clean_up(&self) -> Result<(), DriverError> {
        Ok(self.store.clear().await?)
    }

    /// Runs the job to its end; on error the status says Failed and why.
    pub async fn run(
        &mut self,
        observer: &mut dyn DriverObserver,
    ) -> Result<JobOutcome, DriverError> {
        match self.run_epochs(observer).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                self.status
                    .enter_phase(JobPhase::Failed, error.reason(), &error.to_string());
                Err(error)
            }
        }
    }

    async fn run_epochs(
        &mut self,
        observer: &mut dyn DriverObserver,
    ) -> Result<JobOutcome, DriverError> {
        let started = Instant::now();
        // A resumed job's clock and spend carry on from where its last finished epoch left them.
        let elapsed_before = self.status.elapsed_seconds;
        let first_epoch = self.status.epoch;
        self.status
            .enter_phase(JobPhase::Initializing, "LoadingData", "loading the dataset");
        observer.status_changed(&self.status);
        let seed = self.spec.training.seed;
        let dataset = self.spec.dataset.clone();
        let (splits, _) = off_runtime(move || cached_splits(&dataset, seed)).await?;
        let architecture = Architecture::new(
            &self.spec.model,
            splits.train.dim,
            splits.train.classes,
            splits.train.image,
        )?;
        let evaluator = Arc::new(Mutex::new(Evaluator::new(architecture.clone())));
        let stored_data = self.upload_dataset(&splits).await?;
        if first_epoch == 0 {
            self.store
                .initialize(&architecture.initial_params(seed))
                .await?;
        } else {
            self.restore_finished_epoch(first_epoch).await?;
        }

        let shard_size = self.spec.dataset.shard_size as usize;
        let mut run = EpochLoop {
            shard_count: splits.train.shard_count(shard_size),
            splits,
            stored_data,
            evaluator,
            estimate: None,
            previous_loss: None,
            started,
            elapsed_before,
        };
        let mut epoch = first_epoch;
        let stop_reason = loop {
            if self.apply_control() {
                break StopReason::Suspended;
            }
            if epoch >= self.spec.training.max_epochs {
                break StopReason::MaxEpochs;
            }
            // A span per epoch, inside the job's (the caller's): every line logged while the
            // epoch is decided and run names it, on whatever thread it is logged.
            let span = tracing::info_span!("epoch", epoch = epoch + 1);
            if let Some(reason) = self
                .run_epoch(epoch, &mut run, observer)
                .instrument(span)
                .await?
            {
                break reason;
            }
            epoch += 1;
        };

        let params = self.store.pull().await?.params;
        if stop_reason == StopReason::Suspended {
            self.status.elapsed_seconds = run.elapsed();
            let message = format!(
                "suspended after {} epoch(s); clear spec.suspend to resume",
                self.status.epoch
            );
            self.status
                .enter_phase(JobPhase::Suspended, "Suspended", &message);
            return Ok(JobOutcome {
                status: self.status.clone(),
                stop_reason,
                architecture,
                params,
            });
        }
        self.save_scheduler_state();
        self.status.elapsed_seconds = run.elapsed();
        let message = match (stop_reason, self.status.accuracy) {
            (_, Some(accuracy)) => format!(
                "{} after {} epoch(s): test accuracy {:.2}%, cost ${:.6}",
                stop_reason.condition_reason(),
                self.status.epoch,
                accuracy * 100.0,
                self.status.cost_usd
            ),
            (_, None) => format!("{} before the first epoch", stop_reason.condition_reason()),
        };
        let phase = if self.status.epoch == 0 {
            JobPhase::Failed
        } else {
            JobPhase::Succeeded
        };
        self.status
            .enter_phase(phase, stop_reason.condition_reason(), &message);
        Ok(JobOutcome {
            status: self.status.clone(),
            stop_reason,
            architecture,
            params,
        })
    }

    /// Decides, runs, evaluates and records one epoch; the reason to stop, if the job ends here.
    async fn run_epoch(
        &mut self,
        epoch: u32,
        run: &mut EpochLoop,
        observer: &mut dyn DriverObserver,
    ) -> Result<Option<StopReason>, DriverError> {
        let observation = self.observe(epoch, run.previous_loss, run.elapsed());
        let limits = Limits::lambda_memory(run.shard_count as u32);
        let gate = open_epoch(
            self.scheduler.as_mut(),
            &observation,
            &limits,
            self.cost_model.as_ref(),
            run.estimate.as_ref(),
        );
        let action = match gate {
            Gate::Run(action) => action,
            Gate::SchedulerStopped { cheapest } => {
                tracing::info!(
                    functions = cheapest.functions,
                    memory_mb = cheapest.memory_mb,
                    "the scheduler can afford no further epoch"
                );
                return Ok(Some(StopReason::BudgetExhausted));
            }
            Gate::BudgetExhausted {
                predicted_usd,
                remaining_usd,
                ..
            } => {
                tracing::info!(
                    predicted_usd,
                    remaining_usd,
                    "budget cannot pay for another epoch"
                );
                return Ok(Some(StopReason::BudgetExhausted));
            }
        };
        self.status.functions = action.functions;
        self.status.memory_mb = action.memory_mb;
        self.status.enter_phase(
            JobPhase::Running,
            "EpochRunning",
            &format!(
                "epoch {} with {} functions of {} MB",
                epoch + 1,
                action.functions,
                action.memory_mb
            ),
        );
        observer.status_changed(&self.status);
        self.backend.scale(action).await?;

        let progress = Arc::new(AtomicU64::new(0));
        observer.epoch_started(
            epoch,
            action,
            run.splits.train.len() as u64,
            Arc::clone(&progress),
        );
        let epoch_started = Instant::now();
        let tasks = self.plan_tasks(epoch, action, run.shard_count, run.stored_data.as_ref());
        let (results, billed) = match self.fan_out(epoch, tasks, action, progress).await {
            Ok(done) => done,
            Err(DriverError::RetryOverBudget {
                task_id,
                retry_usd,
                remaining_usd,
                ..
            }) if epoch > 0 => {
                // The epoch cannot be finished within the budget. What it applied is undone:
                // the model goes back to the last finished epoch, and the job ends there.
                tracing::warn!(
                    %task_id,
                    retry_usd,
                    remaining_usd,
                    "retrying a failed task could overrun the budget; ending at the last finished epoch"
                );
                self.store.restore(epoch).await?;
                return Ok(Some(StopReason::BudgetExhausted));
            }
            Err(error) => return Err(error),
        };
        let seconds = epoch_started.elapsed().as_secs_f64();
        observer.tasks_finished(epoch, &results);

        let epoch_cost: f64 = billed
            .iter()
            .map(|s| self.cost_model.invocation_cost(action.memory_mb, *s))
            .sum();
        run.estimate = Some(EpochCostEstimate::from_epoch(
            self.cost_model.as_ref(),
            action,
            &billed,
        ));
        // Charged before anything else can fail: the epoch has been paid for.
        let spent_before = self.status.cost_usd;
        self.status.cost_usd += epoch_cost;
        let snapshot = self.store.pull().await?;
        let (evaluator, splits) = (Arc::clone(&run.evaluator), Arc::clone(&run.splits));
        let evaluation =
            off_runtime(move || evaluate(&evaluator, &snapshot.params, &splits)).await?;
        let record = aggregate(
            epoch,
            action,
            &results,
            seconds,
            epoch_cost,
            spent_before,
            evaluation,
        );
        self.wait_for_records(epoch + 1).await;
        self.store.checkpoint(epoch + 1).await?;

        run.previous_loss = self.status.loss;
        self.status.epoch = epoch + 1;
        self.status.loss = Some(record.loss);
        self.status.accuracy = Some(record.accuracy);
        self.status.cost_usd = record.cumulative_cost_usd;
        self.status.elapsed_seconds = run.elapsed();
        self.status.push_history(record.clone());
        let after = self.observe(epoch + 1, run.previous_loss, run.elapsed());
        self.scheduler.record(&observation, action, &after);
        observer.epoch_finished(&record, &self.status);

        if let Some(target) = self.spec.training.target_accuracy
            && record.accuracy >= target
        {
            return Ok(Some(StopReason::TargetReached));
        }
        Ok(None)
    }

    /// Before checkpoint `next` pushes older ones out, the oldest checkpoint it keeps must be
    /// no newer than the last recorded epoch. Bounded, so a status that cannot be written slows
    /// training down without stopping it.
    async fn wait_for_records(&mut self, next: u32) {
        let Some(recorded) = &mut self.recorded else {
            return;
        };
        let oldest_kept = next.saturating_sub(CHECKPOINTS_KEPT as u32 - 1);
        let caught_up = recorded.wait_for(|epoch| *epoch >= oldest_kept);
        if tokio::time::timeout(RECORD_WAIT, caught_up).await.is_err() {
            tracing::warn!(
                "the job's status has not been recorded for {RECORD_WAIT:?}; checkpointing anyway"
            );
        }
    }

    /// Takes the latest control into the spec; whether the job is to suspend now.
    fn apply_control(&mut self) -> bool {
        let Some(control) = &mut self.control else {
            return false;
        };
        let control = control.borrow_and_update().clone();
        self.spec.budget.max_cost_usd = control.max_cost_usd;
        self.spec.training.max_epochs = control.max_epochs;
        control.suspend
    }

    /// Puts the model back to the checkpoint taken after `epoch`. A store that lost it (a Redis
    /// restarted without persistence, a wiped bucket) fails the job rather than restarting it
    /// from scratch under the same history and spend.
    async fn restore_finished_epoch(&mut self, epoch: u32) -> Result<(), DriverError> {
        let latest = self.store.latest_checkpoint().await?;
        match latest {
            Some(checkpoint) if checkpoint.epoch >= epoch => {
                self.store.restore(epoch).await?;
                tracing::info!(
                    finished_epoch = epoch,
                    "resumed from the checkpoint of the last finished epoch"
                );
                Ok(())
            }
            Some(checkpoint) => Err(DriverError::ResumeImpossible {
                epoch,
                reason: format!(
                    "the store's latest checkpoint is of epoch {}",
                    checkpoint.epoch
                ),
            }),
            None => Err(DriverError::ResumeImpossible {
                epoch,
                reason: "the store holds no checkpoint of this job".to_string(),
            }),
        }
    }

    /// A learning scheduler's update is worth keeping, but not worth failing a finished job for.
    fn save_scheduler_state(&mut self) {
        let Some(state) = self.scheduler.job_finished() else {
            return;
        };
        let Some(path) = &self.scheduler_state else {
            return;
        };
        if let Err(error) = write_atomically(path, state.as_bytes()) {
            tracing::warn!(path = %path.display(), %error, "cannot save the scheduler's learned policy");
        } else {
            tracing::info!(path = %path.display(), "saved the scheduler's learned policy");
        }
    }

    fn observe(&self, epoch: u32, previous_loss: Option<f64>, elapsed_seconds: f64) -> Observation {
        Observation {
            epoch,
            max_epochs: self.spec.training.max_epochs,
            loss: self.status.loss,
            previous_loss,
            accuracy: self.status.accuracy,
            target_accuracy: self.spec.training.target_accuracy,
            spent_usd: self.status.cost_usd,
            budget_usd: self.spec.budget.max_cost_usd,
            elapsed_seconds,
            last_action: self.status.history.last().map(|r| Action {
                functions: r.functions,
                memory_mb: r.memory_mb,
            }),
            last_epoch_seconds: self.status.history.last().map(|r| r.seconds),
        }
    }

    /// Functions outside the driver's process have no dataset files: a network store carries the
    /// training split to them. The in-process store's functions share the driver's loaded copy.
    async fn upload_dataset(
        &mut self,
        splits: &DataSplits,
    ) -> Result<Option<StoredDataset>, DriverError> {
        if self.spec.store.kind == StoreKind::Memory {
            return Ok(None);
        }
        self.status.enter_phase(
            JobPhase::Initializing,
            "UploadingData",
            "writing the training shards to the store",
        );
        let started = Instant::now();
        let report = upload_dataset(
            self.store.as_ref(),
            &splits.train,
            self.spec.dataset.shard_size,
        )
        .await?;
        tracing::info!(
            fingerprint = %report.stored.fingerprint,
            shards = report.stored.shards,
            written = report.shards_written,
            bytes = report.bytes_written,
            seconds = started.elapsed().as_secs_f64(),
            "dataset in the store"
        );
        Ok(Some(report.stored))
    }

    /// The epoch's shards, shuffled with the job seed, dealt round-robin to the functions.
    fn plan_tasks(
        &self,
        epoch: u32,
        action: Action,
        shard_count: usize,
        stored_data: Option<&StoredDataset>,
    ) -> Vec<Task> {
        let training = &self.spec.training;
        let mut shards: Vec<u32> = (0..shard_count as u32).collect();
        shards.shuffle(&mut ChaCha8Rng::seed_from_u64(
            training.seed.wrapping_add(u64::from(epoch)),
        ));
        let n = action.functions as usize;
        let threads = self.backend_threads(action);
        (0..n)
            .map(|function| Task {
                protocol_version: TASK_PROTOCOL_VERSION,
                job: self.job.clone(),
                task_id: format!("{}-e{}-f{}", self.job, epoch + 1, function),
                attempt: 1,
                epoch,
                function: function as u32,
                model: self.spec.model.clone(),
                dataset: self.spec.dataset.clone(),
                shards: shards.iter().skip(function).step_by(n).copied().collect(),
                store: StoreRef::from_spec(&self.spec.store),
                hyper: HyperParameters {
                    batch_size: training.batch_size,
                    learning_rate: training.learning_rate_at(epoch),
                    momentum: training.momentum,
                    weight_decay: training.weight_decay,
                    steps_per_push: training.steps_per_push,
                },
                threads,
                memory_mb: action.memory_mb,
                seed: training.seed,
                stored_data: stored_data.cloned(),
            })
            .collect()
    }

    fn backend_threads(&self, action: Action) -> u32 {
        (self.cost_model.vcpus(action.memory_mb).round() as u32).max(1)
    }

    /// Runs the tasks; a retryable failure is retried on the next function slot, at most
    /// [`MAX_TASK_ATTEMPTS`] times. Each task's result is counted once. Returns the results and
    /// the billed seconds of every invocation, failed ones included.
    async fn fan_out(
        &mut self,
        epoch: u32,
        tasks: Vec<Task>,
        action: Action,
        progress: Arc<AtomicU64>,
    ) -> Result<(Vec<TaskResult>, Vec<f64>), DriverError> {
        let slots = action.functions as usize;
        let mut pending: Vec<(Assignment, u32)> = tasks
            .into_iter()
            .enumerate()
            .map(|(slot, task)| (Assignment { slot, task }, 1))
            .collect();
        let mut results = Vec::new();
        let mut billed = Vec::new();
        while !pending.is_empty() {
            let assignments: Vec<Assignment> = pending.iter().map(|(a, _)| a.clone()).collect();
            let invocations = self
                .backend
                .invoke_all(assignments, Arc::clone(&progress))
                .await;
            // Every invocation is billed, whatever comes of its task.
            billed.extend(
                invocations
                    .iter()
                    .map(|invocation| invocation.billed_seconds),
            );
            let mut by_task: HashMap<String, Invocation> = invocations
                .into_iter()
                .map(|invocation| (invocation.task_id.clone(), invocation))
                .collect();
            let mut retry = Vec::new();
            for (assignment, attempt) in pending {
                let result = match by_task.remove(&assignment.task.task_id) {
                    Some(invocation) => invocation.result,
                    None => Err(TaskError::Crashed("the backend lost the invocation".into())),
                };
                match result {
                    Ok(result) => results.push(result),
                    Err(error) if error.is_retryable() && attempt < MAX_TASK_ATTEMPTS => {
                        tracing::warn!(task = %assignment.task.task_id, attempt, %error, "retrying task on another function");
                        let mut task = assignment.task;
                        task.attempt = attempt + 1;
                        let slot = (assignment.slot + 1) % slots.max(1);
                        retry.push((Assignment { slot, task }, attempt + 1));
                    }
                    Err(error) => {
                        // A failed epoch was still paid for: the job's spend says so.
                        self.status.cost_usd += billed
                            .iter()
                            .map(|s| self.cost_model.invocation_cost(action.memory_mb, *s))
                            .sum::<f64>();
                        return Err(DriverError::Task {
                            epoch: epoch + 1,
                            task_id: assignment.task.task_id,
                            attempts: attempt,
                            error,
                        });
                    }
                }
            }
            if let (Some(budget), Some((first, _))) = (self.spec.budget.max_cost_usd, retry.first())
            {
                // Retries are billed too, and the scheduler's worst case covered one invocation
                // per function: a retry that could overrun the budget is not started.
                let billed_usd: f64 = billed
                    .iter()
                    .map(|s| self.cost_model.invocation_cost(action.memory_mb, *s))
                    .sum();
                let slowest = billed.iter().copied().fold(0.0, f64::max);
                let retry_usd =
                    retry.len() as f64 * self.cost_model.invocation_cost(action.memory_mb, slowest);
                if self.status.cost_usd + billed_usd + retry_usd > budget {
                    self.status.cost_usd += billed_usd;
                    return Err(DriverError::RetryOverBudget {
                        epoch: epoch + 1,
                        task_id: first.task.task_id.clone(),
                        retry_usd,
                        remaining_usd: budget - self.status.cost_usd,
                    });
                }
            }
            pending = retry;
        }
        Ok((results, billed))
    }
}

/// Written beside the target and renamed over it, so a crash never leaves half a policy.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per process: two jobs finishing at once each rename a whole file into place.
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

fn evaluate(
    evaluator: &Mutex<Evaluator>,
    params: &[f32],
    splits: &DataSplits,
) -> Result<siren_worker::model::Evaluation, DriverError> {
    // Evaluations of one run never overlap; a poisoned lock means one panicked, and that panic
    // has already ended the run.
    let mut evaluator = evaluator.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(evaluator.evaluate(params, &splits.test.features, &splits.test.labels)?)
}

fn aggregate(
    epoch: u32,
    action: Action,
    results: &[TaskResult],
    seconds: f64,
    epoch_cost: f64,
    spent_before: f64,
    evaluation: siren_worker::model::Evaluation,
) -> EpochRecord {
    let samples: u64 = results.iter().map(|r| r.samples).sum();
    let updates: u64 = results.iter().map(|r| r.updates).sum();
    let loss_sum: f64 = results.iter().map(|r| r.mean_loss * r.samples as f64).sum();
    let staleness_sum: f64 = results
        .iter()
        .map(|r| r.staleness.mean * r.updates as f64)
        .sum();
    EpochRecord {
        epoch: epoch + 1,
        functions: action.functions,
        memory_mb: action.memory_mb,
        train_loss: if samples > 0 {
            loss_sum / samples as f64
        } else {
            0.0
        },
        loss: evaluation.loss,
        accuracy: evaluation.accuracy,
        seconds,
        cost_usd: epoch_cost,
        cumulative_cost_usd: spent_before + epoch_cost,
        samples,
        updates,
        mean_staleness: if updates > 0 {
            staleness_sum / updates as f64
        } else {
            0.0
        },
        max_staleness: results.iter().map(|r| r.staleness.max).max().unwrap_or(0),
    }
}

impl DriverError {
    /// The condition reason a Failed job reports.
    pub fn reason(&self) -> &'static str {
        match self {
            DriverError::Data(_) => "DatasetUnavailable",
            DriverError::Model(_) => "ModelIncompatible",
            DriverError::Store(_) => "StoreFailed",
            DriverError::Backend(_) => "BackendFailed",
            DriverError::Scheduler(_) => "SchedulerUnavailable",
            DriverError::Task { .. } => "TaskFailed",
            DriverError::RetryOverBudget { .. } => "BudgetExhausted",
            DriverError::ResumeImpossible { .. } => "CheckpointLost",
        }
    }
}
