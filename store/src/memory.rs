//! The in-process store: the embedded default, for functions that share the driver's process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    CheckpointInfo, ParameterStore, PushReceipt, Snapshot, StoreError, StoreStats, Update,
};

use crate::CHECKPOINTS_KEPT;

#[derive(Default)]
struct Model {
    params: Vec<f32>,
    stats: StoreStats,
    applied: HashSet<(String, u64)>,
}

#[derive(Default)]
struct State {
    model: Option<Model>,
    checkpoints: BTreeMap<u32, (u64, Vec<f32>)>,
    data: HashMap<String, Vec<u8>>,
}

/// One mutex makes every push atomic; a push is a single vector addition, so the critical section
/// is short (about 20 us for LeNet-5's 61,706 parameters).
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot leave a half-applied update: additions
        // happen after all checks, and f32 addition does not panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ParameterStore for MemoryStore {
    async fn initialize(&self, params: &[f32]) -> Result<(), StoreError> {
        self.lock().model = Some(Model {
            params: params.to_vec(),
            ..Model::default()
        });
        Ok(())
    }

    async fn pull(&self) -> Result<Snapshot, StoreError> {
        let state = self.lock();
        let model = state.model.as_ref().ok_or(StoreError::NoModel)?;
        Ok(Snapshot {
            version: model.stats.version,
            params: model.params.clone(),
        })
    }

    async fn push(&self, update: &Update) -> Result<PushReceipt, StoreError> {
        let mut state = self.lock();
        let model = state.model.as_mut().ok_or(StoreError::NoModel)?;
        if update.delta.len() != model.params.len() {
            return Err(StoreError::LengthMismatch {
                expected: model.params.len(),
                found: update.delta.len(),
            });
        }
        let current = model.stats.version;
        if update.base_version > current {
            return Err(StoreError::FutureVersion {
                base: update.base_version,
                current,
            });
        }
        let staleness = current - update.base_version;
        if !model.applied.insert((update.task_id.clone(), update.seq)) {
            return Ok(PushReceipt {
                version: current,
                staleness,
                duplicate: true,
            });
        }
        for (p, d) in model.params.iter_mut().zip(&update.delta) {
            *p += d;
        }
        let stats = &mut model.stats;
        stats.version += 1;
        stats.updates += 1;
        stats.staleness_sum += staleness;
        stats.staleness_max = stats.staleness_max.max(staleness);
        Ok(PushReceipt {
            version: stats.version,
            staleness,
            duplicate: false,
        })
    }

    async fn checkpoint(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let mut state = self.lock();
        let model = state.model.as_ref().ok_or(StoreError::NoModel)?;
        let version = model.stats.version;
        let params = model.params.clone();
        state.checkpoints.insert(epoch, (version, params));
        while state.checkpoints.len() > CHECKPOINTS_KEPT {
            state.checkpoints.pop_first();
        }
        Ok(CheckpointInfo { epoch, version })
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointInfo>, StoreError> {
        Ok(self
            .lock()
            .checkpoints
            .last_key_value()
            .map(|(epoch, (version, _))| CheckpointInfo {
                epoch: *epoch,
                version: *version,
            }))
    }

    async fn restore(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let mut state = self.lock();
        let (version, params) = state
            .checkpoints
            .get(&epoch)
            .cloned()
            .ok_or(StoreError::NoCheckpoint(epoch))?;
        state.model = Some(Model {
            params,
            stats: StoreStats {
                version,
                ..StoreStats::default()
            },
            applied: HashSet::new(),
        });
        Ok(CheckpointInfo { epoch, version })
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let state = self.lock();
        Ok(state.model.as_ref().ok_or(StoreError::NoModel)?.stats)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        *self.lock() = State::default();
        Ok(())
    }

    async fn put_data(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.lock().data.insert(name.to_string(), bytes.to_vec());
        Ok(())
    }

    async fn get_data(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().data.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// 16 writers push 200 updates each at the same time: nothing is lost, nothing applied twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_pushes_are_all_applied_exactly_once() {
        let store: Arc<dyn ParameterStore> = Arc::new(MemoryStore::new());
        let open = move || {
            let store = Arc::clone(&store);
            Box::pin(async move { store }) as std::pin::Pin<Box<dyn Future<Output = _> + Send>>
        };
        crate::conformance::concurrent_writers_lose_nothing(open, 16, 200, 1000).await;
    }

    #[tokio::test]
    async fn dataset_round_trips_until_clear() {
        crate::conformance::dataset_round_trips_until_clear(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn retried_push_is_applied_once() {
        let store = MemoryStore::new();
        store.initialize(&[1.0, 1.0]).await.expect("init");
        let first = store
            .push(&Update::new("t", 0, 0, vec![1.0, 2.0]))
            .await
            .expect("push");
        let retry = store
            .push(&Update::new("t", 0, 0, vec![1.0, 2.0]))
            .await
            .expect("push");
        assert!(!first.duplicate && retry.duplicate);
        assert_eq!(store.pull().await.expect("pull").params, vec![2.0, 3.0]);
        assert_eq!(store.stats().await.expect("stats").version, 1);
    }

    #[tokio::test]
    async fn bad_updates_are_rejected_without_effect() {
        let store = MemoryStore::new();
        assert!(matches!(store.pull().await, Err(StoreError::NoModel)));
        store.initialize(&[0.0; 3]).await.expect("init");
        let short = store.push(&Update::new("t", 0, 0, vec![1.0])).await;
        assert!(matches!(
            short,
            Err(StoreError::LengthMismatch {
                expected: 3,
                found: 1
            })
        ));
        let future = store.push(&Update::new("t", 1, 9, vec![1.0; 3])).await;
        assert!(matches!(future, Err(StoreError::FutureVersion { .. })));
        assert_eq!(
            store.pull().await.expect("pull"),
            Snapshot {
                version: 0,
                params: vec![0.0; 3]
            }
        );
    }

    #[tokio::test]
    async fn checkpoints_restore_params_and_version() {
        let store = MemoryStore::new();
        store.initialize(&[0.0]).await.expect("init");
        store
            .push(&Update::new("t", 0, 0, vec![1.0]))
            .await
            .expect("push");
        assert_eq!(
            store.checkpoint(1).await.expect("ckpt"),
            CheckpointInfo {
                epoch: 1,
                version: 1
            }
        );
        store
            .push(&Update::new("t", 1, 1, vec![5.0]))
            .await
            .expect("push");
        assert_eq!(
            store
                .latest_checkpoint()
                .await
                .expect("latest")
                .map(|c| c.epoch),
            Some(1)
        );
        store.restore(1).await.expect("restore");
        assert_eq!(
            store.pull().await.expect("pull"),
            Snapshot {
                version: 1,
                params: vec![1.0]
            }
        );
        assert!(matches!(
            store.restore(7).await,
            Err(StoreError::NoCheckpoint(7))
        ));
        for epoch in 2..=6 {
            store.checkpoint(epoch).await.expect("ckpt");
        }
        assert!(matches!(
            store.restore(1).await,
            Err(StoreError::NoCheckpoint(1))
        ));
        store.clear().await.expect("clear");
        assert!(matches!(store.pull().await, Err(StoreError::NoModel)));
    }
}
