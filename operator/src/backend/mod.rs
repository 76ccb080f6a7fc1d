//! Function backends: where the functions of a job run. The driver scales a backend's pool before
//! each epoch and hands it the epoch's tasks; the backend runs them concurrently and reports each
//! one's result and billed time.

#[cfg(feature = "cluster")]
mod cluster;
mod fan_out;
#[cfg(feature = "process")]
mod http;
#[cfg(feature = "cluster")]
pub mod knative;
#[cfg(feature = "lambda")]
mod lambda;
mod local;
#[cfg(feature = "cluster")]
pub mod openfaas;
#[cfg(feature = "cluster")]
mod pods;
#[cfg(feature = "process")]
mod process;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use siren_crds::{Task, TaskResult};
use siren_scheduler::Action;
use siren_worker::TaskError;
use thiserror::Error;

#[cfg(feature = "cluster")]
pub use cluster::{cluster_backend, remove_functions};
pub use fan_out::PoolLimits;
#[cfg(feature = "lambda")]
pub use lambda::{AwsLambdaControl, LambdaBackend, LambdaControl, lambda_client};
pub use local::LocalBackend;
#[cfg(feature = "process")]
pub use process::{ProcessBackend, worker_binary};

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("cannot scale the function pool: {0}")]
    Scale(String),
}

/// One task for one function slot of the pool.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub slot: usize,
    pub task: Task,
}

#[derive(Debug)]
pub struct Invocation {
    pub task_id: String,
    pub slot: usize,
    pub result: Result<TaskResult, TaskError>,
    /// Time the platform bills for this invocation, failed or not.
    pub billed_seconds: f64,
}

#[async_trait]
pub trait FunctionBackend: Send {
    fn name(&self) -> &'static str;
    /// Resizes the pool to `action.functions` functions of `action.memory_mb` each. Functions that
    /// survive a resize stay warm.
    async fn scale(&mut self, action: Action) -> Result<(), BackendError>;
    /// Runs the assignments, different slots concurrently, and returns one invocation per
    /// assignment, in the order given. `progress` counts processed samples.
    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation>;
}
