//! Assembles a driver from a TrainingJob: its store, backend, scheduler and pricing.

use std::sync::Arc;

use siren_crds::{BackendKind, SchedulerPolicy, StoreKind, StoreRef, TrainingJob};
use siren_scheduler::{Action, Scheduler, StaticScheduler};
use siren_worker::store::{MemoryStore, ParameterStore, connect_store};

use crate::backend::{FunctionBackend, LocalBackend};
use crate::driver::{DriverError, JobDriver};
use crate::pricing::cost_model;

/// Builds the driver, connecting to the job's store.
pub async fn driver_for(job: &TrainingJob) -> Result<JobDriver, DriverError> {
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
    let backend: Box<dyn FunctionBackend> = match spec.backend.kind {
        BackendKind::Local => Box::new(LocalBackend::new(
            Arc::clone(&store),
            Arc::clone(&cost_model),
        )),
    };
    let scheduler: Box<dyn Scheduler> = match spec.scheduler.policy {
        SchedulerPolicy::Static => Box::new(StaticScheduler::new(Action {
            functions: spec.scheduler.functions,
            memory_mb: spec.scheduler.memory_mb,
        })),
    };
    Ok(JobDriver::new(
        &name, spec, store, backend, scheduler, cost_model,
    ))
}
