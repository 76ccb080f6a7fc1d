//! The contract between the driver and a function: one task in, one result out, both small versioned
//! JSON documents. Tasks carry references (dataset, shard indices, store), never data or parameters,
//! so they stay far below Lambda's 6 MB synchronous payload limit.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::spec::{DatasetSpec, ModelSpec, StoreKind};

/// Bumped on any incompatible change to [`Task`] or [`TaskResult`].
pub const TASK_PROTOCOL_VERSION: u32 = 2;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Task {
    pub protocol_version: u32,
    /// Namespaces everything the job keeps in the parameter store.
    pub job: String,
    /// Unique per job, epoch and function, and the same for every attempt: it names the task's
    /// updates in the store, so a retried attempt cannot apply an update an earlier one applied.
    pub task_id: String,
    /// 1 for the first attempt, 2 for the first retry, ...
    #[serde(default = "first_attempt")]
    pub attempt: u32,
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
    /// Set when the driver put the training shards into the store: the function reads its shards
    /// from there instead of loading `dataset` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_data: Option<StoredDataset>,
}

/// A dataset's training split as the driver wrote it to the parameter store: normalised shards of
/// `shardSize` samples under a name derived from their content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredDataset {
    /// Names the upload; it changes whenever the samples, their normalisation or the shard size do.
    pub fingerprint: String,
    pub samples: u64,
    pub shards: u32,
    pub shard_size: u32,
    /// Features per sample.
    pub dim: u32,
    pub classes: u32,
    /// Height and width of single-channel image samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<[u32; 2]>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreRef {
    pub kind: StoreKind,
    /// Where a network store is. Never credentials: a function takes those, and a private CA, from
    /// its own environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default = "crate::spec::default_chunk_values")]
    pub chunk_values: u32,
}

fn first_attempt() -> u32 {
    1
}

impl StoreRef {
    pub fn from_spec(spec: &crate::spec::StoreSpec) -> Self {
        Self {
            kind: spec.kind,
            url: spec.url.clone(),
            endpoint: spec.endpoint.clone(),
            region: spec.region.clone(),
            chunk_values: spec.chunk_values,
        }
    }
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
    /// Shards this task fetched from the store; the others were cached by the function.
    #[serde(default)]
    pub shards_fetched: u32,
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
    /// A cold function's start-up before its first task (process start to serving); 0 when warm.
    #[serde(default)]
    pub init: f64,
    /// Loading and preparing shards (zero on a warm function that has them cached).
    pub data: f64,
    pub pull: f64,
    pub compute: f64,
    pub push: f64,
    pub total: f64,
}

/// A task that produced no result, as a function answers it and as a backend reports it: what went
/// wrong and whether the same task may succeed on another function. The one failure type on the
/// wire, whatever carried the task (HTTP, Lambda, a thread of the driver's process).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Error)]
#[serde(rename_all = "camelCase")]
#[error("{error}")]
pub struct TaskFailure {
    pub error: String,
    pub retryable: bool,
    /// Absent from the answers of functions older than the failure kinds: they were function errors.
    #[serde(default)]
    pub kind: FailureKind,
}

/// What kind of failure a task met, as `spec.failurePolicy.finalFailures` names them.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The function ran the task and failed it: a crash, an out-of-memory kill, a store it could
    /// not reach.
    #[default]
    FunctionError,
    /// No answer within `backend.taskTimeoutSeconds`.
    Timeout,
    /// No function could be reached: connection refused, a gateway's error page, throttling that
    /// lasted the task's whole time, an empty pool.
    Unreachable,
    /// The task itself is wrong (an invalid payload, corrupt data, a refused signature): every
    /// function fails it, so it is never retried.
    Rejected,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::FunctionError => "functionError",
            FailureKind::Timeout => "timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::Rejected => "rejected",
        }
    }
}

impl TaskFailure {
    /// A failure of the function or its platform (a crash, an unreachable store): another
    /// function may well succeed.
    pub fn retryable(error: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::FunctionError, error)
    }

    /// No answer in time; another function may be faster.
    pub fn timeout(error: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Timeout, error)
    }

    /// The function could not be reached; another may be.
    pub fn unreachable(error: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Unreachable, error)
    }

    /// A failure of the task itself (an invalid payload, corrupt data): every function fails it.
    pub fn fatal(error: impl Into<String>) -> Self {
        Self::of_kind(FailureKind::Rejected, error)
    }

    fn of_kind(kind: FailureKind, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            retryable: kind != FailureKind::Rejected,
            kind,
        }
    }

    /// The same failure, explained by `context` first.
    pub fn in_context(self, context: impl std::fmt::Display) -> Self {
        Self {
            error: format!("{context}: {}", self.error),
            ..self
        }
    }
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
        if !crate::is_dns_name(&self.job) {
            return invalid(
                "job",
                "must be a DNS-1123 name (lowercase letters, digits, '-' and '.')",
            );
        }
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
        if let Some(stored) = &self.stored_data {
            let name_ok = !stored.fingerprint.is_empty()
                && stored.fingerprint.len() <= 64
                && stored
                    .fingerprint
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !name_ok {
                return invalid(
                    "storedData.fingerprint",
                    "must be 1-64 letters, digits or '-'",
                );
            }
            if stored.shards == 0 || stored.shard_size == 0 || stored.dim == 0 {
                return invalid("storedData", "shards, shardSize and dim must be at least 1");
            }
            if let Some(bad) = self.shards.iter().find(|s| **s >= stored.shards) {
                return Err(TaskDecodeError::Invalid {
                    field: "shards",
                    message: format!(
                        "shard {bad} does not exist: the stored dataset has {} shards",
                        stored.shards
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ModelKind, SyntheticSource};

    fn task() -> Task {
        Task {
            protocol_version: TASK_PROTOCOL_VERSION,
            job: "job".into(),
            task_id: "job-e1-f0".into(),
            attempt: 1,
            epoch: 0,
            function: 0,
            model: ModelSpec {
                kind: ModelKind::Mlp,
                hidden: Some(vec![8]),
            },
            dataset: DatasetSpec::synthetic(
                SyntheticSource {
                    samples: 10,
                    test_samples: 10,
                    features: 2,
                    classes: 2,
                    noise: 1.0,
                    seed: 0,
                },
                5,
            ),
            shards: vec![0, 1],
            store: StoreRef::from_spec(&crate::spec::StoreSpec::default()),
            hyper: HyperParameters {
                batch_size: 4,
                learning_rate: 0.1,
                momentum: 0.9,
                weight_decay: 0.0,
                steps_per_push: 1,
            },
            threads: 1,
            memory_mb: 1769,
            seed: 1,
            stored_data: None,
        }
    }

    fn json() -> serde_json::Value {
        serde_json::to_value(task()).expect("task serialises")
    }

    fn decode(value: &serde_json::Value) -> Result<Task, TaskDecodeError> {
        Task::from_json(value.to_string().as_bytes())
    }

    #[test]
    fn round_trip() {
        let bytes = task().to_json().expect("encode");
        assert_eq!(Task::from_json(&bytes).expect("decode"), task());
        assert!(bytes.len() < 1024, "tasks carry references, not data");
    }

    #[test]
    fn malformed_payloads_name_the_problem() {
        let mut wrong_type = json();
        wrong_type["hyper"]["batchSize"] = serde_json::json!("big");
        let message = decode(&wrong_type).expect_err("wrong type").to_string();
        assert!(message.contains("hyper.batchSize"), "{message}");

        let mut unknown = json();
        unknown["surprise"] = serde_json::json!(1);
        assert!(
            decode(&unknown)
                .expect_err("unknown field")
                .to_string()
                .contains("surprise")
        );

        let mut missing = json();
        if let Some(object) = missing.as_object_mut() {
            object.remove("shards");
        }
        assert!(
            decode(&missing)
                .expect_err("missing")
                .to_string()
                .contains("shards")
        );

        assert!(Task::from_json(b"{\"protocolVersion\": 1").is_err());
        assert!(Task::from_json(b"").is_err());
        let trailing = format!("{} x", json());
        assert!(Task::from_json(trailing.as_bytes()).is_err());
    }

    #[test]
    fn unsupported_version_is_its_own_error() {
        let mut future = json();
        future["protocolVersion"] = serde_json::json!(99);
        assert!(matches!(
            decode(&future),
            Err(TaskDecodeError::UnsupportedVersion { found: 99, .. })
        ));
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for (pointer, value, field) in [
            ("/shards", serde_json::json!([]), "shards"),
            ("/hyper/batchSize", serde_json::json!(0), "hyper.batchSize"),
            (
                "/hyper/learningRate",
                serde_json::json!(-1.0),
                "hyper.learningRate",
            ),
            ("/hyper/momentum", serde_json::json!(1.0), "hyper.momentum"),
            ("/threads", serde_json::json!(0), "threads"),
        ] {
            let mut bad = json();
            if let Some(slot) = bad.pointer_mut(pointer) {
                *slot = value;
            }
            let message = decode(&bad).expect_err(pointer).to_string();
            assert!(message.contains(field), "{message}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic fuzz: mutate a valid payload byte by byte and decode every variant.
        let valid = task().to_json().expect("encode");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = valid.clone();
            let position = (state as usize) % bytes.len();
            bytes[position] = (state >> 32) as u8;
            if state.is_multiple_of(3) {
                bytes.truncate(position);
            }
            let _ = Task::from_json(&bytes);
        }
    }
}
