//! What an epoch came to: the test split's verdict on the store's model, the epoch's record, and
//! the status, checkpoint and scheduler update that follow from it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use siren_crds::{EpochRecord, JobProgress, TaskResult};
use siren_data::DataSplits;
use siren_scheduler::{Action, JobState, Observation, forecast};
use siren_store::CHECKPOINTS_KEPT;
use siren_worker::model::{Evaluation, Evaluator};

use super::{DriverError, DriverObserver, EpochLoop, JobDriver};
use crate::blocking::off_runtime;

/// How long a checkpoint waits for the job's status to be recorded.
const RECORD_WAIT: Duration = Duration::from_secs(60);

/// An epoch's outcome before evaluation.
pub(super) struct EpochWork<'a> {
    pub epoch: u32,
    pub action: Action,
    pub results: &'a [TaskResult],
    pub seconds: f64,
    pub cost_usd: f64,
    pub spent_before_usd: f64,
}

impl JobDriver {
    /// Evaluates the store's model, records the epoch (status, history, checkpoint), lets the
    /// scheduler learn from it and tells the observer.
    pub(super) async fn record_epoch(
        &mut self,
        work: EpochWork<'_>,
        observation: &Observation,
        run: &mut EpochLoop,
        observer: &mut dyn DriverObserver,
    ) -> Result<EpochRecord, DriverError> {
        let snapshot = self.store.pull().await?;
        let (evaluator, splits) = (Arc::clone(&run.evaluator), Arc::clone(&self.data.splits));
        let evaluation =
            off_runtime(move || evaluate(&evaluator, &snapshot.params, &splits)).await?;
        let record = epoch_record(&work, evaluation);
        let epoch = work.epoch;
        self.wait_for_records(epoch + 1).await;
        self.store.checkpoint(epoch + 1).await?;

        run.previous_loss = self.status.loss;
        self.status.epoch = epoch + 1;
        self.status.loss = Some(record.loss);
        self.status.accuracy = Some(record.accuracy);
        self.status.cost_usd = record.cumulative_cost_usd;
        self.status.elapsed_seconds = run.elapsed();
        self.status.push_history(record.clone());
        self.status.progress = self.forecast_progress();
        let after = self.observe(epoch + 1, run.previous_loss, run.elapsed());
        self.scheduler.record(observation, work.action, &after);
        observer.epoch_finished(&record, &self.status);
        Ok(record)
    }
}

impl JobDriver {
    /// Where the job is headed after the epochs in its status.
    pub(super) fn forecast_progress(&self) -> Option<JobProgress> {
        let state = JobState {
            history: &self.status.history,
            epochs_done: self.status.epoch,
            max_epochs: self.spec.training.max_epochs,
            target_accuracy: self.spec.training.target_accuracy,
            budget_usd: self.spec.budget.max_cost_usd,
            spent_usd: self.status.cost_usd,
            curve: self.profiles.as_ref().map(|(job, _)| &job.curve),
        };
        let forecast = forecast(&state)?;
        Some(JobProgress {
            percent: (forecast.percent * 10.0).round() / 10.0,
            ends_by: forecast.ends_by.condition_reason().to_string(),
            remaining_epochs: forecast.remaining_epochs,
            eta_seconds: forecast.seconds.round(),
            eta_cost_usd: forecast.cost_usd,
            basis: forecast.basis.as_str().to_string(),
            computed_at: Time(Timestamp::now()),
        })
    }
}

fn evaluate(
    evaluator: &Mutex<Evaluator>,
    params: &[f32],
    splits: &DataSplits,
) -> Result<Evaluation, DriverError> {
    // Evaluations of one run never overlap; a poisoned lock means one panicked, and that panic
    // has already ended the run.
    let mut evaluator = evaluator.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(evaluator.evaluate(params, &splits.test.features, &splits.test.labels)?)
}

fn epoch_record(work: &EpochWork<'_>, evaluation: Evaluation) -> EpochRecord {
    let results = work.results;
    let samples: u64 = results.iter().map(|r| r.samples).sum();
    let updates: u64 = results.iter().map(|r| r.updates).sum();
    let loss_sum: f64 = results.iter().map(|r| r.mean_loss * r.samples as f64).sum();
    let staleness_sum: f64 = results
        .iter()
        .map(|r| r.staleness.mean * r.updates as f64)
        .sum();
    EpochRecord {
        epoch: work.epoch + 1,
        functions: work.action.functions,
        memory_mb: work.action.memory_mb,
        train_loss: if samples > 0 {
            loss_sum / samples as f64
        } else {
            0.0
        },
        loss: evaluation.loss,
        accuracy: evaluation.accuracy,
        seconds: work.seconds,
        cost_usd: work.cost_usd,
        cumulative_cost_usd: work.spent_before_usd + work.cost_usd,
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

impl JobDriver {
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
}
