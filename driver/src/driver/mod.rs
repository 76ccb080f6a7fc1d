//! The job driver: runs a resolved job epoch by epoch, for the `siren` CLI and the operator alike.
//!
//! Each epoch: observe -> epoch gate (decide, clamp, budget) -> scale -> one task per function
//! (`plan`) -> run them, retrying elsewhere (`attempts`), billing every invocation (`billing`) ->
//! evaluate, record, checkpoint (`record`) -> stop or go on. Before the first epoch the store is
//! made ready (`prepare`); after the last, the run ends (`finish`). An epoch that cannot finish is
//! undone and run again while the failure policy allows (`failed_epoch`).

mod attempts;
mod billing;
mod control;
mod error;
mod failed_epoch;
mod finish;
mod observer;
mod plan;
mod prepare;
mod record;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use siren_crds::{JobPhase, StoredDataset, TrainingJobSpec, TrainingJobStatus};
pub use siren_scheduler::StopReason;
use siren_scheduler::{
    Action, CostModel, EpochCostEstimate, JobProfile, Observation, PlatformProfile, Scheduler,
};
use siren_store::ParameterStore;
use siren_worker::model::{Architecture, Evaluator};
use tokio::sync::watch;
use tracing::Instrument;

use attempts::{Retries, run_tasks};
use billing::Bill;
pub use control::RunControl;
pub use error::DriverError;
pub use observer::{DriverObserver, Silent};
use record::EpochWork;

use crate::backend::{BackendError, FunctionBackend};
use crate::resolve::{JobData, ResolvedJob};

pub struct JobOutcome {
    pub status: TrainingJobStatus,
    pub stop_reason: StopReason,
    pub architecture: Architecture,
    pub params: Vec<f32>,
}

pub struct JobDriver {
    job: String,
    spec: TrainingJobSpec,
    data: JobData,
    store: Arc<dyn ParameterStore>,
    backend: Box<dyn FunctionBackend>,
    scheduler: Box<dyn Scheduler>,
    cost_model: Arc<dyn CostModel>,
    status: TrainingJobStatus,
    /// Where a learning scheduler's updated state is saved after the job.
    scheduler_state: Option<PathBuf>,
    /// The job's profiles: every epoch's worst case, whatever the scheduler.
    profiles: Option<(JobProfile, PlatformProfile)>,
    control: Option<watch::Receiver<RunControl>>,
    /// The last epoch whose status is durably recorded elsewhere (the operator's status write).
    recorded: Option<watch::Receiver<u32>>,
}

/// What a run carries from one epoch to the next.
struct EpochLoop {
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
    pub fn new(job: ResolvedJob) -> Self {
        Self {
            job: job.name,
            spec: job.spec,
            data: job.data,
            store: job.store,
            backend: job.backend,
            scheduler: job.scheduler,
            cost_model: job.cost_model,
            status: TrainingJobStatus::default(),
            scheduler_state: job.scheduler_state,
            profiles: job.profiles,
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

    pub fn status(&self) -> &TrainingJobStatus {
        &self.status
    }

    /// Removes everything the job keeps in its store (after its model has been saved).
    pub async fn clean_up(&self) -> Result<(), DriverError> {
        Ok(self.store.clear().await?)
    }

    /// Removes the job's functions (see [`FunctionBackend::release`]): a finished or suspended
    /// job's pods would otherwise idle at a price.
    pub async fn release_functions(&mut self) -> Result<(), BackendError> {
        self.backend.release().await
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
        let stored_data = self.prepare_store(first_epoch).await?;
        let mut run = EpochLoop {
            stored_data,
            evaluator: Arc::new(Mutex::new(Evaluator::new(self.data.architecture.clone()))),
            shard_count: (self.data.splits.train)
                .shard_count(self.spec.dataset.shard_size as usize),
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
            let ended = self.run_epoch(epoch, &mut run, observer);
            match ended.instrument(span.clone()).await {
                Ok(Some(reason)) => break reason,
                Ok(None) => epoch += 1,
                Err(error) if self.may_run_again(&error) => {
                    self.undo_failed_epoch(epoch, &error, observer)
                        .instrument(span)
                        .await?;
                }
                Err(error) => return Err(error),
            }
        };
        self.finish(stop_reason, &run).await
    }

    /// Decides, runs, evaluates and records one epoch; the reason to stop, if the job ends here.
    async fn run_epoch(
        &mut self,
        epoch: u32,
        run: &mut EpochLoop,
        observer: &mut dyn DriverObserver,
    ) -> Result<Option<StopReason>, DriverError> {
        let observation = self.observe(epoch, run.previous_loss, run.elapsed());
        let action = match self.decide(&observation, run) {
            Ok(action) => action,
            Err(stop) => return Ok(Some(stop)),
        };
        self.announce(epoch, action, observer);
        self.backend.scale(action).await?;
        let progress = Arc::new(AtomicU64::new(0));
        let samples = self.data.splits.train.len() as u64;
        observer.epoch_started(epoch, action, samples, Arc::clone(&progress));

        let epoch_started = Instant::now();
        let tasks = self.plan_tasks(epoch, action, run.shard_count, run.stored_data.as_ref());
        let cost_model = Arc::clone(&self.cost_model);
        let mut bill = Bill::new(cost_model.as_ref(), action.memory_mb);
        let retries = Retries {
            policy: &self.spec.failure_policy,
            max_cost_usd: self.spec.budget.max_cost_usd,
            spent_usd: self.status.cost_usd,
        };
        let slots = action.functions as usize;
        let ran = run_tasks(
            self.backend.as_mut(),
            epoch,
            tasks,
            slots,
            progress,
            retries,
            &mut bill,
        );
        let ran = ran.await;
        let seconds = epoch_started.elapsed().as_secs_f64();
        // Charged before anything else can fail: the epoch has been paid for, finished or not.
        let spent_before_usd = self.status.cost_usd;
        self.status.cost_usd += bill.usd();
        let results = match ran {
            Ok(results) => results,
            Err(DriverError::RetryOverBudget { task_id, .. }) if epoch > 0 => {
                // The epoch cannot be finished within the budget. What it applied is undone:
                // the model goes back to the last finished epoch, and the job ends there.
                tracing::warn!(%task_id, "retrying a failed task could overrun the budget; ending at the last finished epoch");
                self.store.restore(epoch).await?;
                return Ok(Some(StopReason::BudgetExhausted));
            }
            Err(error) => return Err(error),
        };
        observer.tasks_finished(epoch, &results);
        run.estimate = Some(EpochCostEstimate::from_epoch(
            cost_model.as_ref(),
            action,
            bill.seconds(),
        ));
        let work = EpochWork {
            epoch,
            action,
            results: &results,
            seconds,
            cost_usd: bill.usd(),
            spent_before_usd,
        };
        let record = self.record_epoch(work, &observation, run, observer).await?;
        let reached = (self.spec.training.target_accuracy).is_some_and(|t| record.accuracy >= t);
        Ok(reached.then_some(StopReason::TargetReached))
    }

    /// The epoch's action becomes the job's status.
    fn announce(&mut self, epoch: u32, action: Action, observer: &mut dyn DriverObserver) {
        self.status.functions = action.functions;
        self.status.memory_mb = action.memory_mb;
        let message = format!(
            "epoch {} with {} functions of {} MB",
            epoch + 1,
            action.functions,
            action.memory_mb
        );
        self.status
            .enter_phase(JobPhase::Running, "EpochRunning", &message);
        observer.status_changed(&self.status);
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
}
