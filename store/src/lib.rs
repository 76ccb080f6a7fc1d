//! The parameter store: a versioned model that functions pull from and push updates to.
//!
//! An update is an additive delta. Applying it is atomic and exactly-once (a retried push with the
//! same `(task_id, seq)` is recognised and not applied twice), the version counts applied updates,
//! and each update's staleness is the number of versions applied by others between its pull and
//! its push. Network stores (Redis, S3) implement the same trait; it is async for them.

#[cfg(any(feature = "redis", feature = "s3"))]
mod blob;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
mod credentials;
mod dataset;
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "s3")]
mod s3;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use siren_crds::{StoreKind, StoreRef};
use thiserror::Error;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use credentials::{
    STORE_CA_FILE_ENV, STORE_PASSWORD_ENV, STORE_USERNAME_ENV, StoreCredentials,
};
pub use dataset::{
    MAX_SHARD_BYTES, UploadReport, dataset_fingerprint, fetch_shards, upload_dataset,
};
pub use memory::MemoryStore;
#[cfg(feature = "s3")]
pub use s3::{Objects as S3Objects, S3Options, S3Store, StaticCredentials};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the store holds no model for this job (was it initialised, or was the store wiped?)")]
    NoModel,
    #[error("update has {found} values but the model has {expected}")]
    LengthMismatch { expected: usize, found: usize },
    #[error("update was built on version {base}, which is newer than the store's {current}")]
    FutureVersion { base: u64, current: u64 },
    #[error("no checkpoint for epoch {0}")]
    NoCheckpoint(u32),
    #[error("store unavailable (retryable): {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The store's settings cannot work as they are: no URL, a missing bucket, an unreadable CA
    /// file, a job name that cannot prefix keys, a store this build was made without.
    #[error("{0}")]
    Config(String),
    #[error("the store holds no {0} (was the store wiped, or the dataset never uploaded?)")]
    MissingData(String),
}

impl StoreError {
    /// Whether a task that hit this error may be retried elsewhere without losing correctness.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// The condition reason of a job this error ended.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Config(_) => "StoreMisconfigured",
            _ => "StoreFailed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: u64,
    pub params: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// With `seq`, identifies the update so that a retried push is applied once.
    pub task_id: String,
    pub seq: u64,
    /// The version the delta was computed from.
    pub base_version: u64,
    pub delta: Vec<f32>,
}

impl Update {
    pub fn new(task_id: impl Into<String>, seq: u64, base_version: u64, delta: Vec<f32>) -> Self {
        Self {
            task_id: task_id.into(),
            seq,
            base_version,
            delta,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushReceipt {
    /// Version after this update.
    pub version: u64,
    pub staleness: u64,
    /// The update had been applied before; this push changed nothing.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub epoch: u32,
    pub version: u64,
}

/// Counters since the model was initialised (or restored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    pub version: u64,
    pub updates: u64,
    pub staleness_sum: u64,
    pub staleness_max: u64,
}

/// Values per chunk by default: 1 MiB of parameters.
pub const DEFAULT_CHUNK_VALUES: usize = 256 * 1024;

/// The URL without credentials, for messages (whether or not it names a scheme).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}"),
        None => url.to_string(),
    }
}

/// Checkpoints every store keeps per job; older ones are dropped as new epochs finish.
pub const CHECKPOINTS_KEPT: usize = 3;

#[async_trait]
pub trait ParameterStore: Send + Sync {
    /// Creates (or replaces) the job's model at version 0 and resets its counters.
    async fn initialize(&self, params: &[f32]) -> Result<(), StoreError>;
    async fn pull(&self) -> Result<Snapshot, StoreError>;
    async fn push(&self, update: &Update) -> Result<PushReceipt, StoreError>;
    /// Saves the current model as the checkpoint of a finished epoch.
    async fn checkpoint(&self, epoch: u32) -> Result<CheckpointInfo, StoreError>;
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointInfo>, StoreError>;
    /// Makes an epoch's checkpoint the current model again.
    async fn restore(&self, epoch: u32) -> Result<CheckpointInfo, StoreError>;
    async fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Removes everything the job keeps in the store, its data area included.
    async fn clear(&self) -> Result<(), StoreError>;
    /// Writes one named blob to the job's data area (dataset shards), replacing an earlier one.
    /// The data area outlives `initialize` and `restore`: a job's dataset is uploaded once.
    async fn put_data(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn get_data(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// How long a network store may take to answer one call before it counts as unreachable.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the store a task names, as a function does. The memory store lives inside the driver's
/// process, so only the local backend can hand it to its functions; it cannot be opened by name.
#[cfg_attr(
    not(any(feature = "redis", feature = "s3")),
    allow(
        unused_variables,
        reason = "only the network stores are opened by job name"
    )
)]
pub async fn connect_store(
    store: &StoreRef,
    job: &str,
    credentials: &StoreCredentials,
) -> Result<Arc<dyn ParameterStore>, StoreError> {
    match store.kind {
        StoreKind::Memory => Err(StoreError::Config(
            "the memory store exists only inside the driver's process: use the local backend, or a redis store"
                .into(),
        )),
        #[cfg(feature = "redis")]
        StoreKind::Redis => {
            let url = store
                .url
                .as_deref()
                .ok_or_else(|| StoreError::Config("a redis store needs a url".into()))?;
            let redis = RedisStore::connect_with(
                url,
                job,
                store.chunk_values as usize,
                STORE_TIMEOUT,
                credentials,
            )
            .await?;
            Ok(Arc::new(redis))
        }
        #[cfg(feature = "s3")]
        StoreKind::S3 => {
            let url = store
                .url
                .as_deref()
                .ok_or_else(|| StoreError::Config("an s3 store needs a url".into()))?;
            let options = S3Options {
                endpoint: store.endpoint.clone(),
                region: store.region.clone(),
                credentials: None,
            };
            let s3 = S3Store::connect(
                url,
                job,
                store.chunk_values as usize,
                &options,
                STORE_TIMEOUT,
            )
            .await?;
            Ok(Arc::new(s3))
        }
        #[cfg(not(all(feature = "redis", feature = "s3")))]
        kind => Err(StoreError::Config(format!(
            "this build of Siren has no {kind:?} store: build it with the default features \
             (`cargo build --release`), as scripts/test.sh does; the quickstart's build leaves \
             the network stores out"
        ))),
    }
}
