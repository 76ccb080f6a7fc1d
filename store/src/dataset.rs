//! Datasets through the store. Functions on Lambda or in pods have no dataset files, so the driver
//! writes the normalised training split to the job's data area once, as shards, and functions read
//! the shards their tasks name and keep them while they stay warm.
//!
//! A shard blob is a fixed header (magic, shard index, sample count, features per sample, CRC-32 of
//! the payload) and then the labels (`u32`) and features (`f32`), little-endian. The manifest, a
//! [`StoredDataset`] as JSON, is written last, so a manifest in the store means every shard is there.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use siren_crds::StoredDataset;

use super::{ParameterStore, StoreError};
use siren_data::Dataset;

/// Larger shard blobs are refused: each moves in one store call, which has the store's timeout
/// (10 s), and a function must hold its shards in memory.
pub const MAX_SHARD_BYTES: usize = 64 << 20;
const MAGIC: &[u8; 4] = b"SRD1";
const HEADER_LEN: usize = 20;
/// Shards in flight at once, per upload or per task.
const CONCURRENT_TRANSFERS: usize = 4;

/// Names an upload after what it holds, so a changed file, normalisation or shard size is uploaded
/// again and an unchanged one is not.
pub fn dataset_fingerprint(train: &Dataset, shard_size: u32) -> String {
    let features = crc32fast::hash(&le_bytes(&train.features));
    let labels = crc32fast::hash(&le_bytes(&train.labels));
    format!(
        "d{}x{}s{}-{features:08x}{labels:08x}",
        train.len(),
        train.dim,
        shard_size
    )
}

fn le_bytes<T: bytemuck::Pod>(values: &[T]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        let size = std::mem::size_of::<T>();
        std::borrow::Cow::Owned(
            bytemuck::cast_slice::<T, u8>(values)
                .chunks(size)
                .flat_map(|value| value.iter().rev().copied())
                .collect(),
        )
    }
}

fn shard_name(fingerprint: &str, index: u32) -> String {
    format!("{fingerprint}/shard-{index:06}")
}

fn manifest_name(fingerprint: &str) -> String {
    format!("{fingerprint}/manifest")
}

fn encode_shard(train: &Dataset, index: u32, shard_size: u32) -> Option<Vec<u8>> {
    let range = train.shard(index as usize, shard_size as usize)?;
    let labels = le_bytes(&train.labels[range.clone()]);
    let features = le_bytes(&train.features[range.start * train.dim..range.end * train.dim]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&labels);
    hasher.update(&features);
    let mut blob = Vec::with_capacity(HEADER_LEN + labels.len() + features.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&index.to_le_bytes());
    blob.extend_from_slice(&(range.len() as u32).to_le_bytes());
    blob.extend_from_slice(&(train.dim as u32).to_le_bytes());
    blob.extend_from_slice(&hasher.finalize().to_le_bytes());
    blob.extend_from_slice(&labels);
    blob.extend_from_slice(&features);
    Some(blob)
}

/// One shard as a function holds it.
struct Shard {
    labels: Vec<u32>,
    features: Vec<f32>,
}

impl Shard {
    fn bytes(&self) -> usize {
        (self.labels.len() + self.features.len()) * 4
    }
}

fn word(blob: &[u8], at: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&blob[at..at + 4]);
    u32::from_le_bytes(bytes)
}

fn decode_shard(blob: &[u8], stored: &StoredDataset, index: u32) -> Result<Shard, StoreError> {
    let corrupt = |problem: String| {
        StoreError::Corrupt(format!(
            "shard {index} of dataset {}: {problem}",
            stored.fingerprint
        ))
    };
    if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
        return Err(corrupt("not a shard blob (bad header)".into()));
    }
    let (found_index, samples, dim, crc) = (
        word(blob, 4),
        word(blob, 8) as usize,
        word(blob, 12),
        word(blob, 16),
    );
    let expected_samples = stored
        .samples
        .saturating_sub(u64::from(index) * u64::from(stored.shard_size))
        .min(u64::from(stored.shard_size)) as usize;
    if found_index != index || dim != stored.dim || samples != expected_samples {
        return Err(corrupt(format!(
            "holds shard {found_index} of {samples} samples x {dim} features, expected {expected_samples} x {}",
            stored.dim
        )));
    }
    let payload = &blob[HEADER_LEN..];
    let expected_len = samples * (1 + dim as usize) * 4;
    if payload.len() != expected_len {
        return Err(corrupt(format!(
            "{} payload bytes, expected {expected_len} (truncated?)",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let (label_bytes, feature_bytes) = payload.split_at(samples * 4);
    let labels: Vec<u32> = label_bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(bad) = labels.iter().find(|l| **l >= stored.classes) {
        return Err(corrupt(format!(
            "label {bad} is out of range for {} classes",
            stored.classes
        )));
    }
    let features = feature_bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Shard { labels, features })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReport {
    pub stored: StoredDataset,
    /// Shards written by this upload: 0 when the store already held the same dataset.
    pub shards_written: u32,
    pub bytes_written: u64,
}

/// Writes the training split's shards and then the manifest, unless the store already holds this
/// exact dataset (same fingerprint and manifest), as after `siren data upload` or a driver restart.
pub async fn upload_dataset(
    store: &dyn ParameterStore,
    train: &Dataset,
    shard_size: u32,
) -> Result<UploadReport, StoreError> {
    let stored = StoredDataset {
        fingerprint: dataset_fingerprint(train, shard_size),
        samples: train.len() as u64,
        shards: train.shard_count(shard_size as usize) as u32,
        shard_size,
        dim: train.dim as u32,
        classes: train.classes as u32,
        image: train.image.map(|(h, w)| [h as u32, w as u32]),
    };
    let manifest = serde_json::to_vec(&stored)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode the dataset manifest: {e}")))?;
    if store.get_data(&manifest_name(&stored.fingerprint)).await? == Some(manifest.clone()) {
        return Ok(UploadReport {
            stored,
            shards_written: 0,
            bytes_written: 0,
        });
    }
    let largest = shard_size as usize * (train.dim + 1) * 4 + HEADER_LEN;
    if largest > MAX_SHARD_BYTES {
        return Err(StoreError::Config(format!(
            "a shard of {shard_size} samples x {} features is {} MB, more than the {} MB a stored shard may be: lower dataset.shardSize",
            train.dim,
            largest >> 20,
            MAX_SHARD_BYTES >> 20
        )));
    }
    let bytes_written: u64 = futures::stream::iter(0..stored.shards)
        .map(|index| {
            let fingerprint = &stored.fingerprint;
            async move {
                let blob = encode_shard(train, index, shard_size).ok_or_else(|| {
                    StoreError::Corrupt(format!("shard {index} is outside the dataset"))
                })?;
                store
                    .put_data(&shard_name(fingerprint, index), &blob)
                    .await?;
                Ok::<u64, StoreError>(blob.len() as u64)
            }
        })
        .buffer_unordered(CONCURRENT_TRANSFERS)
        .try_fold(0u64, |total, bytes| async move { Ok(total + bytes) })
        .await?;
    store
        .put_data(&manifest_name(&stored.fingerprint), &manifest)
        .await?;
    Ok(UploadReport {
        shards_written: stored.shards,
        bytes_written: bytes_written + manifest.len() as u64,
        stored,
    })
}

type ShardKey = (String, String, u32);

/// Shards this process has read, oldest first, within a byte budget. A warm function (a process
/// that served a task before) finds its shards here instead of reading them again.
#[derive(Default)]
struct ShardCache {
    shards: HashMap<ShardKey, Arc<Shard>>,
    order: VecDeque<ShardKey>,
    bytes: usize,
}

impl ShardCache {
    fn insert(&mut self, key: ShardKey, shard: Arc<Shard>, budget: usize) {
        if self.shards.contains_key(&key) {
            return;
        }
        self.bytes += shard.bytes();
        self.shards.insert(key.clone(), shard);
        self.order.push_back(key);
        while self.bytes > budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.shards.remove(&oldest) {
                self.bytes -= evicted.bytes();
            }
        }
    }
}

static CACHE: Mutex<Option<ShardCache>> = Mutex::new(None);

fn with_cache<T>(f: impl FnOnce(&mut ShardCache) -> T) -> T {
    let mut guard = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(ShardCache::default))
}

/// The task's shards, in the order given, as one dataset; also how many were read from the store
/// (the rest came from this process's cache). The cache keeps at most half of `memory_mb`.
pub async fn fetch_shards(
    store: &dyn ParameterStore,
    job: &str,
    stored: &StoredDataset,
    shards: &[u32],
    memory_mb: u32,
) -> Result<(Dataset, u32), StoreError> {
    let key = |index: u32| (job.to_string(), stored.fingerprint.clone(), index);
    let mut held: HashMap<u32, Arc<Shard>> = with_cache(|cache| {
        shards
            .iter()
            .filter_map(|&i| cache.shards.get(&key(i)).map(|s| (i, Arc::clone(s))))
            .collect()
    });
    let mut missing: Vec<u32> = shards
        .iter()
        .copied()
        .filter(|i| !held.contains_key(i))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    let fetched: Vec<(u32, Arc<Shard>)> = futures::stream::iter(missing)
        .map(|index| async move {
            let name = shard_name(&stored.fingerprint, index);
            let blob = store.get_data(&name).await?.ok_or_else(|| {
                StoreError::MissingData(format!("shard {index} of dataset {}", stored.fingerprint))
            })?;
            Ok::<_, StoreError>((index, Arc::new(decode_shard(&blob, stored, index)?)))
        })
        .buffer_unordered(CONCURRENT_TRANSFERS)
        .try_collect()
        .await?;
    let fetched_count = fetched.len() as u32;
    let budget = (memory_mb as usize) << 19;
    with_cache(|cache| {
        for (index, shard) in &fetched {
            cache.insert(key(*index), Arc::clone(shard), budget);
        }
    });
    held.extend(fetched);

    let dim = stored.dim as usize;
    let total: usize = shards.iter().map(|i| held[i].labels.len()).sum();
    let mut labels = Vec::with_capacity(total);
    let mut features = Vec::with_capacity(total * dim);
    for index in shards {
        let shard = &held[index];
        labels.extend_from_slice(&shard.labels);
        features.extend_from_slice(&shard.features);
    }
    let image = stored.image.map(|[h, w]| (h as usize, w as usize));
    let dataset = Dataset::new(features, labels, dim, stored.classes as usize, image)
        .map_err(|e| StoreError::Corrupt(format!("dataset {}: {e}", stored.fingerprint)))?;
    Ok((dataset, fetched_count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn dataset(samples: usize) -> Dataset {
        let features = (0..samples * 3).map(|v| v as f32 * 0.5).collect();
        let labels = (0..samples as u32).map(|l| l % 4).collect();
        Dataset::new(features, labels, 3, 4, None).expect("dataset")
    }

    #[tokio::test]
    async fn shards_come_back_exactly_and_in_task_order() {
        let store = MemoryStore::new();
        let train = dataset(25);
        let report = upload_dataset(&store, &train, 10).await.expect("upload");
        assert_eq!(report.stored.shards, 3);
        assert_eq!(report.shards_written, 3);
        let (data, fetched) = fetch_shards(&store, "order", &report.stored, &[2, 0], 1024)
            .await
            .expect("fetch");
        assert_eq!(fetched, 2);
        assert_eq!(data.len(), 15, "5 samples of the short last shard and 10");
        assert_eq!(data.sample(0), train.sample(20));
        assert_eq!(data.sample(5), train.sample(0));
        assert_eq!(data.labels[5..], train.labels[..10]);
    }

    #[tokio::test]
    async fn an_unchanged_dataset_is_not_uploaded_twice_and_a_changed_one_is() {
        let store = MemoryStore::new();
        let mut train = dataset(20);
        upload_dataset(&store, &train, 10).await.expect("upload");
        let again = upload_dataset(&store, &train, 10).await.expect("again");
        assert_eq!(again.shards_written, 0);
        let resharded = upload_dataset(&store, &train, 5).await.expect("resharded");
        assert_eq!(resharded.shards_written, 4);
        train.features[7] += 1.0;
        let changed = upload_dataset(&store, &train, 10).await.expect("changed");
        assert_eq!(changed.shards_written, 2);
        assert_ne!(changed.stored.fingerprint, again.stored.fingerprint);
    }

    #[tokio::test]
    async fn a_warm_process_reads_each_shard_once() {
        let store = MemoryStore::new();
        let report = upload_dataset(&store, &dataset(30), 10)
            .await
            .expect("upload");
        let stored = &report.stored;
        let (_, first) = fetch_shards(&store, "warm", stored, &[0, 1], 1024)
            .await
            .expect("cold");
        let (_, second) = fetch_shards(&store, "warm", stored, &[1, 2], 1024)
            .await
            .expect("warm");
        assert_eq!((first, second), (2, 1), "shard 1 was cached");
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_budget() {
        let mut cache = ShardCache::default();
        let shard = || {
            Arc::new(Shard {
                labels: vec![0; 10],
                features: vec![0.0; 30],
            })
        };
        for i in 0..5 {
            cache.insert(("j".into(), "f".into(), i), shard(), 400);
        }
        assert_eq!(cache.bytes, 320, "two shards of 160 bytes fit in 400");
        assert!(cache.shards.contains_key(&("j".into(), "f".into(), 4)));
        assert!(!cache.shards.contains_key(&("j".into(), "f".into(), 0)));
    }

    #[tokio::test]
    async fn missing_and_corrupt_shards_are_reported() {
        let store = MemoryStore::new();
        let train = dataset(20);
        let report = upload_dataset(&store, &train, 10).await.expect("upload");
        let stored = &report.stored;
        let name = shard_name(&stored.fingerprint, 1);
        let good = store.get_data(&name).await.expect("get").expect("present");

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("bitflip", flipped, "checksum mismatch"),
            ("truncated", good[..good.len() - 4].to_vec(), "truncated"),
            ("foreign", b"hello".to_vec(), "bad header"),
            (
                "wrong-shard",
                store
                    .get_data(&shard_name(&stored.fingerprint, 0))
                    .await
                    .expect("get")
                    .expect("present"),
                "holds shard 0",
            ),
        ];
        for (job, blob, expected) in cases {
            store.put_data(&name, &blob).await.expect("put");
            let error = fetch_shards(&store, job, stored, &[1], 1024)
                .await
                .err()
                .unwrap_or_else(|| panic!("{job}: corrupt shard accepted"));
            assert!(matches!(error, StoreError::Corrupt(_)), "{job}: {error}");
            assert!(error.to_string().contains(expected), "{job}: {error}");
        }

        store.clear().await.expect("clear");
        let error = fetch_shards(&store, "gone", stored, &[0], 1024)
            .await
            .expect_err("wiped store");
        assert!(matches!(error, StoreError::MissingData(_)), "{error}");
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn oversized_shards_are_refused_before_anything_is_written() {
        let store = MemoryStore::new();
        let wide = Dataset::new(vec![0.0; 2 * 20_000], vec![0, 1], 20_000, 2, None).expect("wide");
        let error = upload_dataset(&store, &wide, 1_000)
            .await
            .expect_err("too big");
        assert!(
            error.to_string().contains("lower dataset.shardSize"),
            "{error}"
        );
    }
}
