//! Assembles a driver from a TrainingJob: its store, backend, scheduler and pricing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use siren_crds::{BackendKind, SchedulerPolicy, StoreKind, StoreRef, TrainingJob, TrainingJobSpec};
use siren_scheduler::{Action, DrlScheduler, Scheduler, StaticScheduler};
use siren_worker::data::cached_splits;
use siren_worker::model::Architecture;
use siren_worker::store::{MemoryStore, ParameterStore, connect_store};

use crate::blocking::off_runtime;
use crate::learned::{LearningScheduler, load_policy, measure_compute, profiles, read_profile};

use crate::backend::{BackendError, FunctionBackend, LocalBackend, PoolLimits};
use crate::driver::{DriverError, JobDriver};
use crate::pricing::cost_model;

/// Builds the driver, connecting to the job's store.
pub async fn driver_for(job: &TrainingJob) -> Result<JobDriver, DriverError> {
    driver_with_backend(job, None).await
}

/// Builds the driver with `backend` in place of the one the spec names, e.g. a Lambda backend
/// whose control plane is an emulator's.
pub async fn driver_with_backend(
    job: &TrainingJob,
    backend: Option<Box<dyn FunctionBackend>>,
) -> Result<JobDriver, DriverError> {
    let spec = job.spec.clone();
    let name = job
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "job".to_string());
    let cost_model = cost_model(&spec.backend.pricing);
    let store: Arc<dyn ParameterStore> = match spec.store.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        _ => connect_store(&StoreRef::from_spec(&spec.store), &name).await?,
    };
    #[cfg_attr(
        not(any(feature = "process", feature = "lambda", feature = "cluster")),
        allow(unused_variables, reason = "only remote functions have pool limits")
    )]
    let limits = PoolLimits::of(&spec.backend);
    let backend: Box<dyn FunctionBackend> = match (backend, spec.backend.kind) {
        (Some(backend), _) => backend,
        (None, BackendKind::Local) => Box::new(LocalBackend::new(
            Arc::clone(&store),
            Arc::clone(&cost_model),
        )),
        #[cfg(feature = "process")]
        (None, BackendKind::Process) => Box::new(crate::backend::ProcessBackend::new(
            crate::backend::worker_binary(),
            limits,
        )?),
        #[cfg(feature = "lambda")]
        (None, BackendKind::Lambda) => {
            let lambda = spec.backend.lambda.as_ref().ok_or_else(|| {
                BackendError::Scale("the lambda backend needs spec.backend.lambda".to_string())
            })?;
            Box::new(crate::backend::LambdaBackend::connect(lambda, limits).await)
        }
        #[cfg(feature = "cluster")]
        (None, BackendKind::Knative | BackendKind::OpenFaas) => {
            // Outside the operator (the CLI): the cluster of the current kubeconfig.
            let client = kube::Client::try_default().await.map_err(|e| {
                BackendError::Scale(format!(
                    "the {:?} backend needs a Kubernetes cluster (in-cluster config or KUBECONFIG): {e}",
                    spec.backend.kind
                ))
            })?;
            crate::backend::cluster_backend(job, client, limits)
                .await?
                .ok_or_else(|| BackendError::Scale("no cluster backend for this job".to_string()))?
        }
        #[cfg(not(all(feature = "lambda", feature = "cluster", feature = "process")))]
        (None, kind) => {
            return Err(BackendError::Scale(format!(
                "this build of Siren has no {kind:?} backend: build it with the default features \
                 (`cargo build --release`), as scripts/test.sh does; the quickstart's build \
                 leaves the process, cluster and Lambda backends out"
            ))
            .into());
        }
    };
    let mut policy_out = None;
    let scheduler: Box<dyn Scheduler> = match spec.scheduler.policy {
        SchedulerPolicy::Static => Box::new(StaticScheduler::new(Action {
            functions: spec.scheduler.functions,
            memory_mb: spec.scheduler.memory_mb,
        })),
        SchedulerPolicy::Drl => {
            // The compute probe trains for half a second and the dataset may load for longer.
            let probed = spec.clone();
            let (agent, saved_to) = off_runtime(move || drl_scheduler(&probed)).await?;
            policy_out = Some(saved_to);
            Box::new(agent)
        }
    };
    let driver = JobDriver::new(&name, spec, store, backend, scheduler, cost_model);
    Ok(match policy_out {
        Some(path) => driver.saving_scheduler_state(path),
        None => driver,
    })
}

/// The DRL agent for this job, and the file its online updates are saved to.
fn drl_scheduler(spec: &TrainingJobSpec) -> Result<(LearningScheduler, PathBuf), DriverError> {
    let (policy, saved_to) = load_policy(spec)?;
    let (splits, _) = cached_splits(&spec.dataset, spec.training.seed)?;
    let architecture = Architecture::new(
        &spec.model,
        splits.train.dim,
        splits.train.classes,
        splits.train.image,
    )?;
    let calibrated = match &spec.scheduler.profile_file {
        Some(path) => Some(read_profile(Path::new(path))?),
        None => None,
    };
    let (job, platform) = profiles(spec, &architecture, &splits, calibrated, || {
        measure_compute(
            &architecture,
            &splits,
            spec.training.batch_size as usize,
            1,
            COMPUTE_PROBE_SECONDS,
        )
    })?;
    let agent = DrlScheduler::new(policy, job, platform);
    Ok((
        LearningScheduler::new(agent, spec.scheduler.online_learning),
        saved_to,
    ))
}

/// Long enough to time a few dozen batches of any sample model, short beside an epoch.
const COMPUTE_PROBE_SECONDS: f64 = 0.5;
