//! The training step: what one function does with one task.
//!
//! Load the task's shards, then repeatedly pull the current parameters, take `stepsPerPush` SGD
//! steps (momentum and weight decay kept locally for the task's lifetime, since functions are
//! stateless between tasks) and push the accumulated change as one additive update.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use siren_crds::{StalenessStats, TASK_PROTOCOL_VERSION, Task, TaskResult, Timing};
use thiserror::Error;

use crate::model::{Architecture, ComputeEngine, GradientComputer, ModelError};
use siren_data::{DataError, DataSplits, Dataset, cached_splits};
use siren_store::{ParameterStore, StoreError, Update, fetch_shards};

#[derive(Debug, Error)]
pub enum TaskError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("parameter store: {0}")]
    Store(#[from] StoreError),
    #[error("invalid task: {0}")]
    Invalid(String),
    #[error("function failed: {0}")]
    Crashed(String),
}

impl TaskError {
    /// Whether running the same task again (on this or another function) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            TaskError::Store(e) => e.is_retryable(),
            TaskError::Crashed(_) => true,
            _ => false,
        }
    }
}

/// The samples a task trains on: the whole split loaded from the dataset's source (and cached
/// by the process), or just the task's shards read from the store.
enum TaskSamples {
    Split(Arc<DataSplits>),
    Shards(Dataset),
}

impl TaskSamples {
    async fn load(task: &Task, store: &dyn ParameterStore) -> Result<(Self, u32), TaskError> {
        match &task.stored_data {
            Some(stored) => {
                let (shards, fetched) =
                    fetch_shards(store, &task.job, stored, &task.shards, task.memory_mb).await?;
                Ok((TaskSamples::Shards(shards), fetched))
            }
            None => {
                let (splits, _cached) = cached_splits(&task.dataset, task.seed)?;
                Ok((TaskSamples::Split(splits), 0))
            }
        }
    }

    fn dataset(&self) -> &Dataset {
        match self {
            TaskSamples::Split(splits) => &splits.train,
            TaskSamples::Shards(shards) => shards,
        }
    }

    /// Sample indices in shard order, before the task's shuffle.
    fn order(&self, task: &Task) -> Result<Vec<usize>, TaskError> {
        let train = match self {
            TaskSamples::Shards(shards) => return Ok((0..shards.len()).collect()),
            TaskSamples::Split(splits) => &splits.train,
        };
        let shard_size = task.dataset.shard_size as usize;
        let mut order = Vec::new();
        for &shard in &task.shards {
            let range = train.shard(shard as usize, shard_size).ok_or_else(|| {
                TaskError::Invalid(format!(
                    "shard {shard} does not exist: the dataset has {} shards of {shard_size}",
                    train.shard_count(shard_size)
                ))
            })?;
            order.extend(range);
        }
        Ok(order)
    }
}

/// What a function instance keeps between tasks: the built model and the dataset it read. A
/// fresh instance is cold.
#[derive(Default)]
pub struct FunctionState {
    computer: Option<GradientComputer>,
    engine: ComputeEngine,
    tasks_run: u64,
    /// The splits of the last task's dataset: the process's cache holds datasets only as long as
    /// someone does, and a warm function's next task should find them still there.
    splits: Option<Arc<DataSplits>>,
}

fn mix(seed: u64, epoch: u32, function: u32) -> u64 {
    seed ^ (u64::from(epoch) << 32 | u64::from(function)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// One momentum SGD step with L2 decay, applied to the local copy and accumulated into the delta
/// that will be pushed. Written over zipped slices so that it vectorises.
fn sgd_step(
    local: &mut [f32],
    delta: &mut [f32],
    velocity: &mut [f32],
    grad: &[f32],
    lr: f32,
    momentum: f32,
    decay: f32,
) {
    for (((p, d), v), g) in local
        .iter_mut()
        .zip(delta.iter_mut())
        .zip(velocity.iter_mut())
        .zip(grad)
    {
        *v = momentum * *v + *g + decay * *p;
        let step = lr * *v;
        *p -= step;
        *d -= step;
    }
}

impl FunctionState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A function that computes gradients with a given engine (benchmarks compare them).
    pub fn with_engine(engine: ComputeEngine) -> Self {
        Self {
            engine,
            ..Self::default()
        }
    }

    pub fn is_warm(&self) -> bool {
        self.tasks_run > 0
    }

    /// Runs one task against a store. `progress` counts the samples processed so far, for
    /// whoever watches (a progress bar).
    pub async fn run_task(
        &mut self,
        task: &Task,
        store: &dyn ParameterStore,
        progress: Option<&AtomicU64>,
    ) -> Result<TaskResult, TaskError> {
        let started = Instant::now();
        let cold_start = self.tasks_run == 0;
        self.tasks_run += 1;
        let (samples, shards_fetched) = TaskSamples::load(task, store).await?;
        if let TaskSamples::Split(splits) = &samples {
            // Replaces (and so lets go of) the dataset of an earlier job.
            self.splits = Some(Arc::clone(splits));
        }
        let train = samples.dataset();
        let mut order = samples.order(task)?;
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
            task.seed,
            task.epoch,
            task.function,
        )));
        let architecture = Architecture::new(&task.model, train.dim, train.classes, train.image)?;
        if self.computer.as_ref().map(|c| c.architecture()) != Some(&architecture) {
            self.computer = Some(GradientComputer::with_engine(architecture, self.engine));
        }
        let Some(computer) = self.computer.as_mut() else {
            return Err(TaskError::Crashed("model was not built".into()));
        };
        let mut timing = Timing {
            data: started.elapsed().as_secs_f64(),
            ..Timing::default()
        };

        let hyper = &task.hyper;
        let (lr, momentum, decay) = (
            hyper.learning_rate as f32,
            hyper.momentum as f32,
            hyper.weight_decay as f32,
        );
        let param_count = computer.param_count();
        let mut velocity = vec![0.0f32; param_count];
        let mut grad = Vec::with_capacity(param_count);
        // One update buffer for the whole task: the store only borrows it.
        let mut update = Update {
            task_id: task.task_id.clone(),
            seq: 0,
            base_version: 0,
            delta: vec![0.0f32; param_count],
        };
        let mut batch_x = Vec::with_capacity(hyper.batch_size as usize * train.dim);
        let mut batch_y = Vec::with_capacity(hyper.batch_size as usize);
        let (mut loss_sum, mut samples, mut batches, mut updates) = (0.0f64, 0u64, 0u64, 0u64);
        let (mut staleness_sum, mut staleness_max, mut fresh_updates) = (0u64, 0u64, 0u64);
        let batch_list: Vec<&[usize]> = order.chunks(hyper.batch_size as usize).collect();

        for (seq, group) in batch_list.chunks(hyper.steps_per_push as usize).enumerate() {
            let t = Instant::now();
            let snapshot = store.pull().await?;
            timing.pull += t.elapsed().as_secs_f64();

            let t = Instant::now();
            let mut local = snapshot.params;
            update.delta.fill(0.0);
            let mut group_samples = 0u64;
            for batch in group {
                batch_x.clear();
                batch_y.clear();
                for &i in *batch {
                    batch_x.extend_from_slice(train.sample(i));
                    batch_y.push(train.labels[i]);
                }
                let loss = computer.gradient(&local, &batch_x, &batch_y, &mut grad)?;
                sgd_step(
                    &mut local,
                    &mut update.delta,
                    &mut velocity,
                    &grad,
                    lr,
                    momentum,
                    decay,
                );
                loss_sum += f64::from(loss) * batch.len() as f64;
                group_samples += batch.len() as u64;
                batches += 1;
            }
            timing.compute += t.elapsed().as_secs_f64();

            let t = Instant::now();
            update.seq = seq as u64;
            update.base_version = snapshot.version;
            let receipt = store.push(&update).await?;
            timing.push += t.elapsed().as_secs_f64();
            // A duplicate was applied by an earlier attempt of this task: it is still one of this
            // task's updates in the store, but its staleness belongs to that attempt.
            updates += 1;
            if !receipt.duplicate {
                fresh_updates += 1;
                staleness_sum += receipt.staleness;
                staleness_max = staleness_max.max(receipt.staleness);
            }
            samples += group_samples;
            if let Some(progress) = progress {
                progress.fetch_add(group_samples, Ordering::Relaxed);
            }
        }
        timing.total = started.elapsed().as_secs_f64();
        Ok(TaskResult {
            protocol_version: TASK_PROTOCOL_VERSION,
            task_id: task.task_id.clone(),
            epoch: task.epoch,
            function: task.function,
            samples,
            batches,
            updates,
            mean_loss: if samples > 0 {
                loss_sum / samples as f64
            } else {
                0.0
            },
            staleness: StalenessStats {
                mean: if fresh_updates > 0 {
                    staleness_sum as f64 / fresh_updates as f64
                } else {
                    0.0
                },
                max: staleness_max,
            },
            timing,
            cold_start,
            shards_fetched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_crds::{
        DatasetSpec, HyperParameters, ModelKind, ModelSpec, StoreRef, SyntheticSource,
    };
    use siren_store::MemoryStore;

    fn task(shards: Vec<u32>, steps_per_push: u32) -> Task {
        Task {
            protocol_version: TASK_PROTOCOL_VERSION,
            job: "t".into(),
            task_id: "t-e1-f0".into(),
            attempt: 1,
            epoch: 0,
            function: 0,
            model: ModelSpec {
                kind: ModelKind::Logistic,
                hidden: None,
            },
            dataset: DatasetSpec::synthetic(
                SyntheticSource {
                    samples: 600,
                    test_samples: 100,
                    features: 5,
                    classes: 3,
                    noise: 0.3,
                    seed: 9,
                },
                100,
            ),
            shards,
            store: StoreRef::from_spec(&siren_crds::StoreSpec::default()),
            hyper: HyperParameters {
                batch_size: 16,
                learning_rate: 0.05,
                momentum: 0.9,
                weight_decay: 0.0001,
                steps_per_push,
            },
            threads: 1,
            memory_mb: 1769,
            seed: 4,
            stored_data: None,
        }
    }

    async fn store_for(task: &Task) -> MemoryStore {
        let (splits, _) = cached_splits(&task.dataset, task.seed).expect("data");
        let arch = Architecture::new(&task.model, splits.train.dim, splits.train.classes, None)
            .expect("arch");
        let store = MemoryStore::new();
        store
            .initialize(&arch.initial_params(1))
            .await
            .expect("init");
        store
    }

    #[tokio::test]
    async fn a_task_trains_its_shards_and_reports_what_it_did() {
        let first = task(vec![0, 2, 4], 1);
        let store = store_for(&first).await;
        let mut function = FunctionState::new();
        let progress = AtomicU64::new(0);
        let result = function
            .run_task(&first, &store, Some(&progress))
            .await
            .expect("task runs");
        assert_eq!(result.samples, 300);
        assert_eq!(progress.load(Ordering::Relaxed), 300);
        assert_eq!(result.batches, 19, "300 samples in batches of 16");
        assert_eq!(result.updates, 19);
        assert!(result.cold_start);
        assert_eq!(result.staleness.max, 0, "alone, no update is stale");
        assert!(result.timing.total >= result.timing.compute);
        assert_eq!(store.stats().await.expect("stats").version, 19);

        let mut second = task(vec![1, 3], 4);
        second.task_id = "t-e1-f1".into();
        let result = function
            .run_task(&second, &store, None)
            .await
            .expect("warm task");
        assert!(!result.cold_start);
        assert_eq!(result.batches, 13);
        assert_eq!(result.updates, 4, "13 batches, 4 per push");
    }

    /// The process keeps a dataset only while someone holds it: a warm function does, so that its
    /// next task does not load the dataset again.
    #[tokio::test]
    async fn a_warm_function_holds_its_dataset_until_it_goes() {
        let mut held = task(vec![0], 1);
        // A dataset (and seed) no other test uses: the cache is the process's.
        held.seed = 0x5EED_F00D;
        let store = store_for(&held).await;
        let mut function = FunctionState::new();
        function
            .run_task(&held, &store, None)
            .await
            .expect("task runs");
        let (_, cached) = cached_splits(&held.dataset, held.seed).expect("data");
        assert!(cached, "the warm function holds the dataset");
        drop(function);
        let (_, cached) = cached_splits(&held.dataset, held.seed).expect("data");
        assert!(!cached, "nobody holds it any more");
    }

    /// A retry keeps the task id, so the store recognises every update an earlier attempt applied.
    #[tokio::test]
    async fn a_retried_task_applies_none_of_its_updates_twice() {
        let t = task(vec![0, 1], 1);
        let store = store_for(&t).await;
        let first = FunctionState::new()
            .run_task(&t, &store, None)
            .await
            .expect("first attempt");
        let version = store.stats().await.expect("stats").version;
        assert_eq!(version, first.updates);
        let mut retry = t.clone();
        retry.attempt = 2;
        let second = FunctionState::new()
            .run_task(&retry, &store, None)
            .await
            .expect("retry");
        assert_eq!(
            store.stats().await.expect("stats").version,
            version,
            "nothing applied twice"
        );
        assert_eq!(
            second.updates, first.updates,
            "the retry accounts for the same updates"
        );
    }

    #[tokio::test]
    async fn a_nonexistent_shard_is_rejected_before_anything_is_pushed() {
        let bad = task(vec![0, 99], 1);
        let store = store_for(&bad).await;
        let error = FunctionState::new()
            .run_task(&bad, &store, None)
            .await
            .expect_err("shard 99");
        assert!(
            error
                .to_string()
                .contains("shard 99 does not exist: the dataset has 6 shards")
        );
        assert!(!error.is_retryable());
        assert_eq!(store.stats().await.expect("stats").version, 0);
    }

    /// A function with no dataset files trains on shards from the store, on exactly the samples
    /// and in exactly the order it would have used with the files.
    #[tokio::test]
    async fn shards_from_the_store_train_exactly_like_the_files() {
        let from_files = task(vec![3, 1], 2);
        let files_store = store_for(&from_files).await;
        FunctionState::new()
            .run_task(&from_files, &files_store, None)
            .await
            .expect("task from files");

        let shards_store = store_for(&from_files).await;
        let (splits, _) = cached_splits(&from_files.dataset, from_files.seed).expect("data");
        let report = siren_store::upload_dataset(&shards_store, &splits.train, 100)
            .await
            .expect("upload");
        let mut from_store = from_files.clone();
        from_store.job = "no-files".into();
        from_store.dataset.synthetic = None;
        from_store.dataset.csv = Some(
            serde_json::from_value(serde_json::json!({"train": "/nonexistent/train.csv"}))
                .expect("csv source"),
        );
        from_store.stored_data = Some(report.stored);
        let mut function = FunctionState::new();
        let result = function
            .run_task(&from_store, &shards_store, None)
            .await
            .expect("task from the store");
        assert_eq!(result.shards_fetched, 2);
        assert_eq!(
            shards_store.pull().await.expect("pull"),
            files_store.pull().await.expect("pull"),
            "same samples, same order, same parameters"
        );
        let warm = function
            .run_task(&from_store, &shards_store, None)
            .await
            .expect("warm task");
        assert_eq!(warm.shards_fetched, 0, "a warm function keeps its shards");
    }

    #[tokio::test]
    async fn a_store_without_the_model_fails_the_task() {
        let t = task(vec![0], 1);
        let error = FunctionState::new()
            .run_task(&t, &MemoryStore::new(), None)
            .await
            .expect_err("no model");
        assert!(matches!(error, TaskError::Store(StoreError::NoModel)));
    }
}
