//! One finished epoch, as the driver records it in a job's status and the simulator in an
//! episode: the one record both keep, so what the scheduler learns from has one shape.

use serde::{Deserialize, Serialize};

use crate::policy::Action;

/// One finished epoch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: u32,
    pub functions: u32,
    pub memory_mb: u32,
    /// Mean training loss the functions reported.
    pub train_loss: f64,
    /// Loss on the test split after the epoch.
    pub loss: f64,
    pub accuracy: f64,
    /// Wall time of the epoch (fan-out to last result), without evaluation.
    pub seconds: f64,
    pub cost_usd: f64,
    pub cumulative_cost_usd: f64,
    pub samples: u64,
    pub updates: u64,
    pub mean_staleness: f64,
    pub max_staleness: u64,
}

impl EpochRecord {
    /// The functions and memory the epoch ran with.
    pub fn action(&self) -> Action {
        Action {
            functions: self.functions,
            memory_mb: self.memory_mb,
        }
    }
}
