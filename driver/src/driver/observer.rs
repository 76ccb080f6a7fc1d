//! What the driver tells whoever runs it: the CLI draws its progress bar and table from it, the
//! operator patches the job's status and records events.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use siren_crds::{EpochRecord, TaskResult, TrainingJobStatus};
use siren_scheduler::Action;

/// Notified as the job makes progress.
pub trait DriverObserver: Send {
    fn epoch_started(
        &mut self,
        _epoch: u32,
        _action: Action,
        _samples: u64,
        _progress: Arc<AtomicU64>,
    ) {
    }
    /// Every task result of the epoch (retries' included), before evaluation: what calibration
    /// measures functions from.
    fn tasks_finished(&mut self, _epoch: u32, _results: &[TaskResult]) {}
    fn epoch_finished(&mut self, _record: &EpochRecord, _status: &TrainingJobStatus) {}
    /// The 0-based `epoch` failed and is undone, to run again.
    fn epoch_failed(&mut self, _epoch: u32, _message: &str) {}
    /// The job entered a phase or started an epoch; what the operator reports to the API server.
    fn status_changed(&mut self, _status: &TrainingJobStatus) {}
}

/// Observes nothing.
pub struct Silent;
impl DriverObserver for Silent {}
