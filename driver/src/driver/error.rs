//! Why a run of a resolved job failed.

use siren_crds::TaskFailure;
use siren_store::StoreError;
use siren_worker::model::ModelError;
use thiserror::Error;

use crate::backend::BackendError;
use crate::resolve::ResolveError;

#[derive(Debug, Error)]
pub enum DriverError {
    /// The job could not be resolved into a run (for callers that take a job from its manifest
    /// to its end in one go).
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("parameter store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(
        "epoch {epoch}: task {task_id} failed and retrying it (${retry_usd:.6}) could overrun the budget (${remaining_usd:.6} left)"
    )]
    RetryOverBudget {
        epoch: u32,
        task_id: String,
        retry_usd: f64,
        remaining_usd: f64,
    },
    #[error(
        "cannot resume after epoch {epoch}: {reason}; the model trained so far is gone, so the job does not pretend to continue"
    )]
    ResumeImpossible { epoch: u32, reason: String },
    #[error("epoch {epoch}: task {task_id} failed after {attempts} attempt(s): {failure}")]
    Task {
        epoch: u32,
        task_id: String,
        attempts: u32,
        failure: TaskFailure,
    },
}

impl DriverError {
    /// The condition reason a Failed job reports.
    pub fn reason(&self) -> &'static str {
        match self {
            DriverError::Resolve(error) => error.reason(),
            DriverError::Model(_) => "ModelIncompatible",
            DriverError::Store(error) => error.reason(),
            DriverError::Backend(error) => error.reason(),
            DriverError::Task { .. } => "TaskFailed",
            DriverError::RetryOverBudget { .. } => "BudgetExhausted",
            DriverError::ResumeImpossible { .. } => "CheckpointLost",
        }
    }
}
