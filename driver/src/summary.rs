//! The final summary of a job, as `siren train --summary-json` writes it.

use serde::{Deserialize, Serialize};
use siren_crds::EpochRecord;

use crate::driver::{JobOutcome, StopReason};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job: String,
    pub model: String,
    pub final_accuracy: f64,
    pub final_loss: f64,
    pub epochs: u32,
    pub seconds: f64,
    pub cost_usd: f64,
    pub stop_reason: StopReason,
    pub history: Vec<EpochRecord>,
}

impl JobSummary {
    pub fn new(job: &str, outcome: &JobOutcome) -> Self {
        let status = &outcome.status;
        Self {
            job: job.to_string(),
            model: outcome.architecture.kind.as_str().to_string(),
            final_accuracy: status.accuracy.unwrap_or(0.0),
            final_loss: status.loss.unwrap_or(f64::NAN),
            epochs: status.epoch,
            seconds: status.elapsed_seconds,
            cost_usd: status.cost_usd,
            stop_reason: outcome.stop_reason,
            history: status.history.clone(),
        }
    }
}
