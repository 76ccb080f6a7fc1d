//! Checks every parameter store must pass, shared by the stores' own tests so that each new store
//! (memory, Redis, S3, ...) is held to the same contract.

use std::sync::Arc;

use super::{ParameterStore, StoreStats, Update};

/// `writers` clients push `updates` updates each, all at once. Asserts that the final version is
/// `writers * updates`, that the parameters are the initial ones plus the exact sum of all deltas
/// (small integers add exactly in f32, in any order), and that the store's staleness statistics
/// agree with what the pushes were told. `open` gives each writer its client (a shared one, or a
/// connection of its own). Returns the store's statistics.
pub async fn concurrent_writers_lose_nothing(
    open: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Arc<dyn ParameterStore>> + Send>>,
    writers: usize,
    updates: usize,
    len: usize,
) -> StoreStats {
    let initial: Vec<f32> = (0..len).map(|i| i as f32).collect();
    let reader = open().await;
    reader.initialize(&initial).await.expect("initialize");
    let delta_of = |w: usize, u: usize, i: usize| ((w * 7 + u * 3 + i) % 5) as f32 - 2.0;
    let mut handles = Vec::new();
    for w in 0..writers {
        let client = open().await;
        handles.push(tokio::spawn(async move {
            let mut max_staleness = 0;
            for u in 0..updates {
                let base = client.pull().await.expect("pull").version;
                let delta = (0..len).map(|i| delta_of(w, u, i)).collect();
                let update = Update {
                    task_id: format!("w{w}"),
                    seq: u as u64,
                    base_version: base,
                    delta,
                };
                let receipt = client.push(&update).await.expect("push");
                assert!(!receipt.duplicate, "a fresh update is never a duplicate");
                max_staleness = max_staleness.max(receipt.staleness);
            }
            max_staleness
        }));
    }
    let mut observed_max = 0;
    for handle in handles {
        observed_max = observed_max.max(handle.await.expect("writer"));
    }
    let snapshot = reader.pull().await.expect("pull");
    assert_eq!(snapshot.version, (writers * updates) as u64);
    for (i, value) in snapshot.params.iter().enumerate() {
        let sum: f32 = (0..writers)
            .flat_map(|w| (0..updates).map(move |u| (w, u)))
            .map(|(w, u)| delta_of(w, u, i))
            .sum();
        assert_eq!(*value, initial[i] + sum, "parameter {i}");
    }
    let stats = reader.stats().await.expect("stats");
    assert_eq!(stats.updates, (writers * updates) as u64);
    assert_eq!(stats.staleness_max, observed_max);
    stats
}

/// The data area: a dataset uploaded to the store comes back shard for shard, survives
/// `initialize` (a job's model is reset, its dataset is not) and goes with `clear`.
pub async fn dataset_round_trips_until_clear(store: &dyn ParameterStore) {
    use crate::{StoreError, fetch_shards, upload_dataset};
    use siren_data::Dataset;

    let samples = 50;
    let features: Vec<f32> = (0..samples * 4).map(|v| v as f32 / 7.0).collect();
    let labels: Vec<u32> = (0..samples as u32).map(|l| l % 3).collect();
    let train = Dataset::new(features, labels, 4, 3, Some((2, 2))).expect("dataset");
    let report = upload_dataset(store, &train, 16).await.expect("upload");
    assert_eq!(report.stored.shards, 4);
    assert_eq!(report.shards_written, 4);
    store.initialize(&[0.0; 8]).await.expect("initialize");
    let again = upload_dataset(store, &train, 16).await.expect("re-upload");
    assert_eq!(again.shards_written, 0, "initialize kept the dataset");

    // A job name of its own: the process-wide shard cache must not answer for the store.
    let job = format!("conformance-{}", report.stored.fingerprint);
    let (back, fetched) = fetch_shards(store, &job, &report.stored, &[3, 0, 1, 2], 64)
        .await
        .expect("fetch");
    assert_eq!(fetched, 4);
    assert_eq!(back.len(), samples);
    assert_eq!(back.sample(0), train.sample(48), "shard 3 first");
    assert_eq!(back.sample(2), train.sample(0));
    assert_eq!(back.image, Some((2, 2)));

    store.clear().await.expect("clear");
    let gone = fetch_shards(store, &format!("{job}-after"), &report.stored, &[0], 64).await;
    assert!(
        matches!(gone, Err(StoreError::MissingData(_))),
        "clear removes the dataset"
    );
}
