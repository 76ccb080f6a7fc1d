//! Resolves a TrainingJob into everything its run needs, once: the data splits and the model's
//! architecture, the scheduler (with the DRL agent's policy, profiles and compute probe), the
//! prices, the store and the backend. The `siren` CLI and the operator both start jobs here; the
//! driver only runs what this module built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use siren_crds::{SchedulerPolicy, StoreKind, StoreRef, TaskKey, TrainingJob, TrainingJobSpec};
use siren_data::{DataError, DataSplits, cached_splits};
use siren_scheduler::{
    Action, CostModel, DrlScheduler, JobProfile, PlatformProfile, Scheduler, StaticScheduler,
};
use siren_store::{MemoryStore, ParameterStore, StoreCredentials, StoreError, connect_store};
use siren_worker::model::{Architecture, ModelError};
use thiserror::Error;

use crate::backend::{BackendError, BackendOptions, FunctionBackend, FunctionSecrets, backend_for};
use crate::blocking::off_runtime;
use crate::driver::JobDriver;
use crate::learned::{
    LearnedError, LearningScheduler, load_policy, measure_compute, profiles, read_profile,
};
use crate::pricing::cost_model;

/// Why a job could not be resolved into a run: nothing has trained yet.
#[derive(Debug, Error)]
pub enum ResolveError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("parameter store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] LearnedError),
}

impl ResolveError {
    /// The condition reason of a job that could not start.
    pub fn reason(&self) -> &'static str {
        match self {
            ResolveError::Data(_) => "DatasetUnavailable",
            ResolveError::Model(_) => "ModelIncompatible",
            ResolveError::Store(error) => error.reason(),
            ResolveError::Backend(error) => error.reason(),
            ResolveError::Scheduler(_) => "SchedulerUnavailable",
        }
    }
}

/// A job's data as its run uses it: the splits its functions train on and the driver evaluates
/// on, and the architecture they imply.
pub struct JobData {
    pub splits: Arc<DataSplits>,
    pub architecture: Architecture,
}

impl JobData {
    /// Loads (or takes from the process's cache) the job's splits. Blocking: call it off the
    /// async runtime.
    pub fn load(spec: &TrainingJobSpec) -> Result<Self, ResolveError> {
        let (splits, _) = cached_splits(&spec.dataset, spec.training.seed)?;
        let architecture = Architecture::new(
            &spec.model,
            splits.train.dim,
            splits.train.classes,
            splits.train.image,
        )?;
        Ok(Self {
            splits,
            architecture,
        })
    }
}

/// Everything a run needs, resolved from its TrainingJob.
pub struct ResolvedJob {
    pub name: String,
    pub spec: TrainingJobSpec,
    pub data: JobData,
    pub store: Arc<dyn ParameterStore>,
    pub backend: Box<dyn FunctionBackend>,
    pub scheduler: Box<dyn Scheduler>,
    pub cost_model: Arc<dyn CostModel>,
    /// Where a learning scheduler's updated policy is saved after the job.
    pub scheduler_state: Option<PathBuf>,
    /// What the driver believes of the job and its platform (the calibrated profile, else the
    /// compute probe): the worst case every epoch is checked against, whatever the scheduler.
    /// Present when the job has a budget or acts with the DRL agent.
    pub profiles: Option<(JobProfile, PlatformProfile)>,
}

/// How to resolve a job's store and backend.
#[derive(Default)]
pub struct ResolveOptions {
    pub backend: BackendOptions,
    /// The store's credentials: from the job's `credentialsSecret` (operator) or the environment
    /// (CLI). `spec.store.caFile` adds its CA when they bring none.
    pub store_credentials: StoreCredentials,
    /// This backend instead of the one the spec names, e.g. a Lambda backend whose control plane
    /// is an emulator's.
    pub backend_instead: Option<Box<dyn FunctionBackend>>,
}

/// Resolves `job`. Loading the data and probing compute run on a blocking thread; connecting to
/// the store and the platform on the caller's runtime.
pub async fn resolve(
    job: &TrainingJob,
    options: ResolveOptions,
) -> Result<ResolvedJob, ResolveError> {
    let name = job
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "job".to_string());
    let spec = job.spec.clone();
    let cost_model = cost_model(&spec.backend.pricing);
    let on_blocking_thread = spec.clone();
    let (data, scheduler, scheduler_state, profiles) = off_runtime(move || {
        let data = JobData::load(&on_blocking_thread)?;
        let (scheduler, saved_to, profiles) = scheduler_for(&on_blocking_thread, &data)?;
        Ok::<_, ResolveError>((data, scheduler, saved_to, profiles))
    })
    .await?;
    let credentials = options
        .store_credentials
        .with_ca_file(spec.store.ca_file.as_deref())?;
    let store: Arc<dyn ParameterStore> = match spec.store.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        _ => connect_store(&StoreRef::from_spec(&spec.store), &name, &credentials).await?,
    };
    let backend = match options.backend_instead {
        Some(backend) => backend,
        None => {
            // A new key for every run: a restart or a resume rotates it.
            let secrets = FunctionSecrets {
                key: TaskKey::generate(),
                store: credentials,
            };
            backend_for(job, &store, &cost_model, &options.backend, &secrets).await?
        }
    };
    Ok(ResolvedJob {
        name,
        spec,
        data,
        store,
        backend,
        scheduler,
        cost_model,
        scheduler_state,
        profiles,
    })
}

/// The driver of `job` outside a cluster (the `siren` CLI), resolved with its own backend and
/// the store's credentials from this process's environment (`SIREN_STORE_USERNAME`, ...).
pub async fn driver_for(job: &TrainingJob) -> Result<JobDriver, ResolveError> {
    let options = ResolveOptions {
        store_credentials: StoreCredentials::from_env()?,
        ..ResolveOptions::default()
    };
    Ok(JobDriver::new(resolve(job, options).await?))
}

/// The driver of `job`, with `backend` instead of the one its spec names.
pub async fn driver_with_backend(
    job: &TrainingJob,
    backend: Box<dyn FunctionBackend>,
) -> Result<JobDriver, ResolveError> {
    let options = ResolveOptions {
        backend_instead: Some(backend),
        store_credentials: StoreCredentials::from_env()?,
        ..ResolveOptions::default()
    };
    Ok(JobDriver::new(resolve(job, options).await?))
}

/// The job's scheduler, where a learning one saves what it learns, and the profiles the budget
/// check bounds each epoch with.
type SchedulerParts = (
    Box<dyn Scheduler>,
    Option<PathBuf>,
    Option<(JobProfile, PlatformProfile)>,
);

fn scheduler_for(spec: &TrainingJobSpec, data: &JobData) -> Result<SchedulerParts, ResolveError> {
    match spec.scheduler.policy {
        SchedulerPolicy::Static => {
            let scheduler = StaticScheduler::new(Action {
                functions: spec.scheduler.functions,
                memory_mb: spec.scheduler.memory_mb,
            });
            // Without a budget there is nothing to bound, and no reason to probe.
            let profiles = match spec.budget.max_cost_usd {
                Some(_) => Some(job_profiles(spec, data)?),
                None => None,
            };
            Ok((Box::new(scheduler), None, profiles))
        }
        SchedulerPolicy::Drl => {
            let policy_and_path = load_policy(spec)?;
            let (job, platform) = job_profiles(spec, data)?;
            let (policy, saved_to) = policy_and_path;
            let agent = DrlScheduler::new(policy, job.clone(), platform.clone());
            let scheduler = LearningScheduler::new(agent, spec.scheduler.online_learning);
            Ok((Box::new(scheduler), Some(saved_to), Some((job, platform))))
        }
    }
}

/// The job's profiles: the calibrated ones when the spec names a profile file, else the shipped
/// prior with this job's compute measured by a short probe.
fn job_profiles(
    spec: &TrainingJobSpec,
    data: &JobData,
) -> Result<(JobProfile, PlatformProfile), ResolveError> {
    let calibrated = match &spec.scheduler.profile_file {
        Some(path) => Some(read_profile(Path::new(path))?),
        None => None,
    };
    let (architecture, splits) = (&data.architecture, data.splits.as_ref());
    Ok(profiles(spec, architecture, splits, calibrated, || {
        measure_compute(
            architecture,
            splits,
            spec.training.batch_size as usize,
            1,
            COMPUTE_PROBE_SECONDS,
        )
    })?)
}

/// Long enough to time a few dozen batches of any sample model, short beside an epoch.
const COMPUTE_PROBE_SECONDS: f64 = 0.5;
