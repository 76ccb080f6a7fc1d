//! Function backends: where the functions of a job run. The driver scales a backend's pool before
//! each epoch and hands it the epoch's tasks; the backend runs them concurrently and reports each
//! one's result and billed time.

#[cfg(feature = "cluster")]
mod cluster;
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
mod select;
mod slots;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use siren_crds::{Task, TaskFailure, TaskKey, TaskResult};
use siren_scheduler::Action;
use siren_store::StoreCredentials;

use thiserror::Error;

#[cfg(feature = "lambda")]
pub use lambda::{AwsLambdaControl, LambdaBackend, LambdaControl, lambda_client};
pub use local::LocalBackend;
#[cfg(feature = "process")]
pub use process::{ProcessBackend, worker_binary};
pub use select::{BackendOptions, backend_for, release_functions};
pub use slots::PoolLimits;

/// What went wrong with a job's functions, apart from the tasks they ran (those fail as a
/// [`TaskFailure`]).
#[derive(Debug, Error)]
pub enum BackendError {
    /// The job's backend settings cannot work as they are: a missing section, a name that cannot
    /// name functions, credentials the platform refuses, a backend this build was made without.
    #[error("{0}")]
    Config(String),
    /// The platform refused or failed an operation on the job's functions.
    #[error("{what}: {source}")]
    Platform {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The functions did not become ready in time; the same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
}

impl BackendError {
    pub fn platform(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        BackendError::Platform {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The condition reason of a job this error ended.
    pub fn reason(&self) -> &'static str {
        match self {
            BackendError::Config(_) => "BackendMisconfigured",
            BackendError::Platform { .. } => "BackendFailed",
            BackendError::Unavailable(_) => "BackendUnavailable",
        }
    }
}

/// What a job's functions must hold and no task may carry: the key its tasks are signed with
/// (new for every run) and the store's credentials. Each backend hands them to its functions the
/// way its platform keeps secrets.
#[derive(Debug, Clone)]
pub struct FunctionSecrets {
    pub key: TaskKey,
    pub store: StoreCredentials,
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
    pub result: Result<TaskResult, TaskFailure>,
    /// Time the platform bills for this invocation, failed or not.
    pub billed_seconds: f64,
}

/// Every assignment failed with `failure` before reaching a function, and unbilled.
pub(crate) fn failed_invocations(
    assignments: Vec<Assignment>,
    failure: &TaskFailure,
) -> Vec<Invocation> {
    assignments
        .into_iter()
        .map(|assignment| Invocation {
            task_id: assignment.task.task_id,
            slot: assignment.slot,
            result: Err(failure.clone()),
            billed_seconds: 0.0,
        })
        .collect()
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
    /// Removes the functions this backend created (a Knative Service, an OpenFaaS function,
    /// worker processes), which would otherwise idle at a price until the job is deleted. The
    /// backend stays usable: the next `scale` creates them again.
    async fn release(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}
