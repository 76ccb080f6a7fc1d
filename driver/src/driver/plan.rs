//! What an epoch will run: the scheduler's decision through the epoch gate, and the tasks that
//! deal the epoch's shards to the functions.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use siren_crds::{
    DatasetSpec, HyperParameters, StoreRef, StoredDataset, TASK_PROTOCOL_VERSION, Task,
};
use siren_scheduler::{Action, EpochModel, Gate, Limits, Observation, StopReason, open_epoch};

use super::{EpochLoop, JobDriver};

impl JobDriver {
    /// The scheduler's action for the epoch, clamped to the platform and paid for by the budget;
    /// or why the job stops before it.
    pub(super) fn decide(
        &mut self,
        observation: &Observation,
        run: &EpochLoop,
    ) -> Result<Action, StopReason> {
        let limits = Limits::lambda_memory(run.shard_count as u32);
        let worst_case = self
            .profiles
            .as_ref()
            .map(|(job, platform)| EpochModel::new(job, platform));
        let gate = open_epoch(
            self.scheduler.as_mut(),
            observation,
            &limits,
            self.cost_model.as_ref(),
            worst_case.as_ref(),
            run.estimate.as_ref(),
        );
        match gate {
            Gate::Run(action) => Ok(action),
            Gate::SchedulerStopped { cheapest } => {
                tracing::info!(
                    functions = cheapest.functions,
                    memory_mb = cheapest.memory_mb,
                    "the scheduler can afford no further epoch"
                );
                Err(StopReason::BudgetExhausted)
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
                Err(StopReason::BudgetExhausted)
            }
        }
    }

    /// The epoch's shards, shuffled with the job seed, dealt round-robin to the functions.
    pub(super) fn plan_tasks(
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
        let threads = (self.cost_model.vcpus(action.memory_mb).round() as u32).max(1);
        // Functions that read the store get no dataset source: a task names no file or URL.
        let dataset = match stored_data {
            Some(_) => DatasetSpec {
                builtin: None,
                idx: None,
                csv: None,
                libsvm: None,
                synthetic: None,
                ..self.spec.dataset.clone()
            },
            None => self.spec.dataset.clone(),
        };
        (0..n)
            .map(|function| Task {
                protocol_version: TASK_PROTOCOL_VERSION,
                job: self.job.clone(),
                task_id: task_id(&self.job, epoch, self.status.failed_epochs, function),
                attempt: 1,
                epoch,
                function: function as u32,
                model: self.spec.model.clone(),
                dataset: dataset.clone(),
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
}

/// Names a task, and with it the task's updates in the store. Once an epoch has failed, names
/// carry the count of failed epochs, so that a rerun never reuses the names of the run that
/// failed: a timed-out attempt of that run may still be pushing, and its updates must not take
/// the places of the rerun's.
fn task_id(job: &str, epoch: u32, failed_epochs: u32, function: usize) -> String {
    match failed_epochs {
        0 => format!("{job}-e{}-f{function}", epoch + 1),
        run => format!("{job}-e{}r{run}-f{function}", epoch + 1),
    }
}
