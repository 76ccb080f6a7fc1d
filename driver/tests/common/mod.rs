#![allow(dead_code, reason = "each test file uses what it needs")]
//! What several of the driver's test files share.

/// Every invocation costs one unit whatever its duration, so budgets are exact in tests.
pub struct UnitPrice;

impl siren_scheduler::CostModel for UnitPrice {
    fn vcpus(&self, memory_mb: u32) -> f64 {
        f64::from(memory_mb) / 1769.0
    }
    fn invocation_cost(&self, _: u32, _: f64) -> f64 {
        1.0
    }
}

use std::sync::Arc;

use siren_crds::TrainingJobSpec;
use siren_driver::JobDriver;
use siren_driver::backend::{FunctionBackend, LocalBackend, PoolLimits};
use siren_driver::resolve::{JobData, ResolvedJob};
use siren_scheduler::{CostModel, Scheduler};
use siren_store::ParameterStore;

/// A driver put together by hand (store, backend, scheduler or prices of the test's choosing),
/// with the job's data resolved as `resolve` would.
pub fn hand_built(
    name: &str,
    spec: TrainingJobSpec,
    store: Arc<dyn ParameterStore>,
    backend: Box<dyn FunctionBackend>,
    scheduler: Box<dyn Scheduler>,
    cost_model: Arc<dyn CostModel>,
) -> JobDriver {
    let data = JobData::load(&spec).expect("the job's data loads");
    JobDriver::new(ResolvedJob {
        name: name.to_string(),
        spec,
        data,
        store,
        backend,
        scheduler,
        cost_model,
        scheduler_state: None,
        // No profiles: only the last epoch's cost bounds the next, as the tests' prices expect.
        profiles: None,
    })
}

/// The local backend with the default pool limits.
pub fn local_backend(
    store: Arc<dyn ParameterStore>,
    cost_model: Arc<dyn CostModel>,
) -> LocalBackend {
    LocalBackend::new(store, cost_model, PoolLimits::of(&Default::default()))
}
