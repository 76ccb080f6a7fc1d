//! `siren calibrate`: measures a job and this machine's local backend with real training steps, real
//! store round trips and real epochs, fits the simulator's profiles to the measurements (the
//! arithmetic lives in `siren_scheduler::profile_fit`), and checks the fitted simulator's epoch times
//! against epochs measured on the local backend.

use std::time::Instant;

use serde::Serialize;
use siren_crds::{
    BackendKind, EpochRecord, SchedulerPolicy, StoreSpec, TaskResult, TrainingJob,
    TrainingJobStatus,
};
use siren_scheduler::profile_fit::{
    CalibrationError, Transfer, aggregate_bandwidth, fit_cold_start, fit_store, fit_stragglers,
    parallel_efficiency,
};
use siren_scheduler::{Action, CalibratedProfile, EpochModel, MB_PER_VCPU, WarmPool};
use siren_store::{MemoryStore, ParameterStore, StoreError, Update};
use thiserror::Error;

use crate::driver::{DriverError, DriverObserver};
use crate::job_span::job_span;
use crate::learned::{LearnedError, measure_compute, profiles};
use crate::resolve::{JobData, ResolveError, driver_for};
use tracing::Instrument;

#[derive(Debug, Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Probe(#[from] LearnedError),
    #[error("parameter store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot fit the measurements: {0}")]
    Fit(#[from] CalibrationError),
    #[error("{0}")]
    Invalid(String),
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct CalibrationPlan {
    /// Seconds of training steps per compute probe (one thread, then two; probed before and
    /// after the measured epochs).
    pub probe_seconds: f64,
    /// Functions of the measured epochs (cold starts and stragglers come from these).
    pub functions: u32,
    /// Epochs measured: the first starts every function cold.
    pub epochs: u32,
    /// Model sizes (parameters) of the store round trips.
    pub store_sizes: Vec<usize>,
}

impl Default for CalibrationPlan {
    fn default() -> Self {
        Self {
            probe_seconds: 2.0,
            functions: 4,
            epochs: 3,
            store_sizes: vec![10_000, 100_000, 1_000_000],
        }
    }
}

/// The raw measurements behind a profile, kept beside it so a reader can check the fit.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    pub seconds_per_sample_one_thread: f64,
    pub seconds_per_sample_two_threads: f64,
    pub transfers: Vec<Transfer>,
    pub aggregate_bytes_per_second: f64,
    pub cold_start_seconds: Vec<f64>,
    /// Per measured epoch, each function's compute seconds.
    pub function_compute_seconds: Vec<Vec<f64>>,
}

/// Keeps every task result of the epochs it watches.
#[derive(Default)]
struct TaskLog {
    epochs: Vec<Vec<TaskResult>>,
    records: Vec<EpochRecord>,
}

impl DriverObserver for TaskLog {
    fn tasks_finished(&mut self, _epoch: u32, results: &[TaskResult]) {
        self.epochs.push(results.to_vec());
    }

    fn epoch_finished(&mut self, record: &EpochRecord, _status: &TrainingJobStatus) {
        self.records.push(record.clone());
    }
}

/// The job as a fixed-size run of measured epochs on the local backend and the in-process store,
/// under a name of its own: static (n, m), no target, no budget. Nothing in the job's own store
/// is touched.
fn measured_run(job: &TrainingJob, action: Action, epochs: u32) -> TrainingJob {
    let mut run = job.clone();
    let name = job.metadata.name.as_deref().unwrap_or("job");
    run.metadata.name = Some(format!("{name}-calibrate"));
    let spec = &mut run.spec;
    spec.backend.kind = BackendKind::Local;
    spec.store = StoreSpec::default();
    spec.scheduler.policy = SchedulerPolicy::Static;
    spec.scheduler.policy_file = None;
    spec.scheduler.profile_file = None;
    spec.scheduler.functions = action.functions;
    spec.scheduler.memory_mb = action.memory_mb;
    spec.training.max_epochs = epochs;
    spec.training.target_accuracy = None;
    spec.budget.max_cost_usd = None;
    run
}

async fn run_epochs(
    job: &TrainingJob,
    action: Action,
    epochs: u32,
) -> Result<TaskLog, CalibrateError> {
    let mut log = TaskLog::default();
    let run = measured_run(job, action, epochs);
    let mut driver = driver_for(&run).await?;
    driver.run(&mut log).instrument(job_span(&run)).await?;
    driver.clean_up().await?;
    Ok(log)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Pull and push round trips of several model sizes, each timed on its own, and a burst of
/// concurrent clients for the store's aggregate bandwidth.
async fn measure_store(
    store: &dyn ParameterStore,
    sizes: &[usize],
) -> Result<(Vec<Transfer>, f64), CalibrateError> {
    let mut transfers = Vec::new();
    for &size in sizes {
        store.initialize(&vec![0.0; size]).await?;
        let bytes = (size * 4) as f64;
        let (mut pulls, mut pushes) = (Vec::new(), Vec::new());
        for seq in 0..7u64 {
            let started = Instant::now();
            let snapshot = store.pull().await?;
            pulls.push(started.elapsed().as_secs_f64());
            let update = Update::new("calibrate", seq, snapshot.version, vec![0.0; size]);
            let started = Instant::now();
            store.push(&update).await?;
            pushes.push(started.elapsed().as_secs_f64());
        }
        for seconds in [median(&mut pulls), median(&mut pushes)] {
            transfers.push(Transfer {
                bytes,
                seconds: seconds.max(1e-7),
            });
        }
    }
    let size = sizes.iter().copied().max().unwrap_or(100_000);
    let clients = 4u32;
    store.initialize(&vec![0.0; size]).await?;
    let started = Instant::now();
    let rounds = (0..clients).map(|client| async move {
        let snapshot = store.pull().await?;
        let update = Update::new(
            format!("burst-{client}"),
            0,
            snapshot.version,
            vec![0.0; size],
        );
        store.push(&update).await.map(|_| ())
    });
    for result in futures::future::join_all(rounds).await {
        result?;
    }
    let aggregate = aggregate_bandwidth(
        clients,
        (size * 8) as f64,
        started.elapsed().as_secs_f64().max(1e-7),
    )?;
    store.clear().await?;
    Ok((transfers, aggregate))
}

/// Measures the job and the local backend and fits the profile.
pub async fn calibrate(
    job: &TrainingJob,
    plan: &CalibrationPlan,
) -> Result<(CalibratedProfile, Measurements), CalibrateError> {
    let spec = &job.spec;
    let JobData {
        splits,
        architecture,
    } = JobData::load(spec)?;
    let batch = spec.training.batch_size as usize;
    let probe =
        |threads| measure_compute(&architecture, &splits, batch, threads, plan.probe_seconds);
    let (one_before, two_before) = (probe(1)?, probe(2)?);

    // The in-process store, as the local backend's functions use it. A network store is measured
    // by `siren bench store`; its numbers can be put into the profile by hand.
    let (transfers, aggregate) = measure_store(&MemoryStore::new(), &plan.store_sizes).await?;

    let action = Action {
        functions: plan.functions,
        memory_mb: MB_PER_VCPU as u32,
    };
    let log = run_epochs(job, action, plan.epochs.max(2)).await?;
    // Warm epochs only: a cold function's first steps also pay for building its model.
    let compute: Vec<Vec<f64>> = log
        .epochs
        .iter()
        .skip(1)
        .map(|results| results.iter().map(|r| r.timing.compute.max(1e-6)).collect())
        .collect();
    let warm_total = median(
        &mut log
            .epochs
            .iter()
            .skip(1)
            .flatten()
            .map(|r| r.timing.total)
            .collect::<Vec<_>>(),
    );
    // What a cold function spends beyond a warm one on the same amount of work; at least a
    // millisecond, since a fitted log-normal needs positive samples.
    let cold_start_seconds: Vec<f64> = log
        .epochs
        .first()
        .map(|results| {
            results
                .iter()
                .filter(|r| r.cold_start)
                .map(|r| (r.timing.total - warm_total).max(1e-3))
                .collect()
        })
        .unwrap_or_default();
    if cold_start_seconds.len() < 3 {
        return Err(CalibrateError::Invalid(format!(
            "the first measured epoch started {} cold functions; calibration needs at least 3 (a dataset of at least 3 shards, and --functions of at least 3)",
            cold_start_seconds.len()
        )));
    }

    // Load from elsewhere on the machine only ever slows a probe down, so the faster of two
    // probes taken some seconds apart is the better estimate of what the epochs will see.
    let one = one_before.min(probe(1)?);
    let two = two_before.min(probe(2)?);
    let efficiency = parallel_efficiency(one, 2, two)?;

    let (mut job_profile, mut platform) = profiles(spec, &architecture, &splits, None, || Ok(one))?;
    job_profile.parallel_efficiency = efficiency;
    platform.name = "local-calibrated".into();
    platform.store = fit_store(&transfers, aggregate)?;
    platform.cold_start = fit_cold_start(&cold_start_seconds, 0.5)?;
    platform.stragglers = fit_stragglers(&compute, 0.2)?;
    platform.cpu_capacity_vcpus =
        Some(std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64));
    let profile = CalibratedProfile {
        job: job_profile,
        platform,
    };
    profile
        .validate()
        .map_err(|e| CalibrateError::Invalid(format!("the fitted profile is unusable: {e}")))?;
    Ok((
        profile,
        Measurements {
            seconds_per_sample_one_thread: one,
            seconds_per_sample_two_threads: two,
            transfers,
            aggregate_bytes_per_second: aggregate,
            cold_start_seconds,
            function_compute_seconds: compute,
        },
    ))
}

/// One (n, m): the simulator's epoch time beside the local backend's.
#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    pub functions: u32,
    pub memory_mb: u32,
    /// The fan-out of a warm epoch as the fitted simulator predicts it (the driver's own epoch
    /// overhead, evaluation and checkpoint, is not part of either number).
    pub predicted_seconds: f64,
    /// Mean of the measured warm epochs.
    pub measured_seconds: f64,
    pub relative_error: f64,
}

/// Runs `epochs` real epochs per action and compares their warm epochs with the prediction.
pub async fn check_fidelity(
    job: &TrainingJob,
    profile: &CalibratedProfile,
    actions: &[Action],
    epochs: u32,
) -> Result<Vec<FidelityRow>, CalibrateError> {
    let model = EpochModel::new(&profile.job, &profile.platform);
    let mut rows = Vec::new();
    for &action in actions {
        let log = run_epochs(job, action, epochs.max(2)).await?;
        let warm: Vec<f64> = log.records.iter().skip(1).map(|r| r.seconds).collect();
        let measured = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
        // The driver never runs more functions than there are shards: predict what ran.
        let ran = Action {
            functions: log.records.last().map_or(action.functions, |r| r.functions),
            memory_mb: action.memory_mb,
        };
        let warm_pool = WarmPool {
            memory_mb: ran.memory_mb,
            functions: ran.functions,
        };
        let predicted =
            model.predict(ran, warm_pool).seconds - profile.platform.epoch_overhead_seconds;
        rows.push(FidelityRow {
            functions: ran.functions,
            memory_mb: ran.memory_mb,
            predicted_seconds: predicted,
            measured_seconds: measured,
            relative_error: (predicted - measured) / measured.max(1e-9),
        });
    }
    Ok(rows)
}
