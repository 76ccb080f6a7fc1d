//! The contract between the driver and a function: one task in, one result out, both small versioned
//! JSON documents. Tasks carry references (dataset, shard indices, store), never data or parameters,
//! so they stay far below Lambda's 6 MB synchronous payload limit.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::spec::{DatasetSpec, ModelSpec, StoreKind};

/// Bumped on any incompatible change to [`Task`] or [`TaskResult`].
pub const TASK_PROTOCOL_VERSION: u32 = 1;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    pub protocol_version: u32,
    /// Namespaces everything the job keeps in the parameter store.
    pub job: String,
    /// Unique per job, epoch, function and attempt; it names the task's updates in the store.
    pub task_id: String,
    /// 0-based epoch index.
    pub epoch: u32,
    pub function: u32,
    pub model: ModelSpec,
    pub dataset: DatasetSpec,
    /// Indices of the training shards this task works through, in order.
    pub shards: Vec<u32>,
    pub store: StoreRef,
    pub hyper: HyperParameters,
    /// Compute threads the function may use (its CPU share).
    pub threads: u32,
    pub memory_mb: u32,
    pub seed: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreRef {
    pub kind: StoreKind,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HyperParameters {
    pub batch_size: u32,
    /// Already decayed for this epoch.
    pub learning_rate: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub steps_per_push: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskResult {
    pub protocol_version: u32,
    pub task_id: String,
    pub epoch: u32,
    pub function: u32,
    pub samples: u64,
    pub batches: u64,
    /// Updates pushed to (and applied by) the store.
    pub updates: u64,
    pub mean_loss: f64,
    pub staleness: StalenessStats,
    pub timing: Timing,
    /// First task of a fresh function instance.
    pub cold_start: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StalenessStats {
    /// Versions applied by others between a pull and the push built on it, averaged over updates.
    pub mean: f64,
    pub max: u64,
}

/// Seconds spent in each part of a task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timing {
    /// Loading and preparing shards (zero on a warm function that has them cached).
    pub data: f64,
    pub pull: f64,
    pub compute: f64,
    pub push: f64,
    pub total: f64,
}

#[derive(Debug, Error)]
pub enum TaskDecodeError {
    #[error("task payload is not valid JSON for a task at `{path}`: {message}")]
    Malformed { path: String, message: String },
    #[error("task protocol version {found} is not supported (this function speaks {expected})")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("task field `{field}` is invalid: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl Task {
    /// Decodes and checks a task payload; never panics, whatever the bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Task, TaskDecodeError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let task: Task = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            TaskDecodeError::Malformed {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })?;
        deserializer.end().map_err(|e| TaskDecodeError::Malformed {
            path: ".".into(),
            message: e.to_string(),
        })?;
        if task.protocol_version != TASK_PROTOCOL_VERSION {
            return Err(TaskDecodeError::UnsupportedVersion {
                found: task.protocol_version,
                expected: TASK_PROTOCOL_VERSION,
            });
        }
        task.check()?;
        Ok(task)
    }

    fn check(&self) -> Result<(), TaskDecodeError> {
        let invalid = |field, message: &str| {
            Err(TaskDecodeError::Invalid {
                field,
                message: message.to_string(),
            })
        };
        if self.shards.is_empty() {
            return invalid("shards", "a task needs at least one shard");
        }
        if self.hyper.batch_size == 0 {
            return invalid("hyper.batchSize", "must be at least 1");
        }
        if self.hyper.steps_per_push == 0 {
            return invalid("hyper.stepsPerPush", "must be at least 1");
        }
        if !(self.hyper.learning_rate.is_finite() && self.hyper.learning_rate > 0.0) {
            return invalid("hyper.learningRate", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.hyper.momentum) {
            return invalid("hyper.momentum", "must be in [0, 1)");
        }
        if !(self.hyper.weight_decay.is_finite() && self.hyper.weight_decay >= 0.0) {
            return invalid("hyper.weightDecay", "must be a non-negative number");
        }
        if self.threads == 0 {
            return invalid("threads", "must be at least 1");
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}
