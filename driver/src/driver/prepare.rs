//! The store made ready for a run's first epoch: the training shards uploaded where functions
//! outside this process need them, and the model initialised, or restored from the checkpoint of
//! the last finished epoch when the job resumes.

use std::time::Instant;

use siren_crds::{JobPhase, StoreKind, StoredDataset};
use siren_store::upload_dataset;

use super::{DriverError, JobDriver};

impl JobDriver {
    /// The dataset's place in the store, if its functions read it from there.
    pub(super) async fn prepare_store(
        &mut self,
        first_epoch: u32,
    ) -> Result<Option<StoredDataset>, DriverError> {
        let stored_data = self.upload_dataset().await?;
        if first_epoch == 0 {
            self.initialize_model().await?;
        } else {
            self.restore_finished_epoch(first_epoch).await?;
        }
        Ok(stored_data)
    }

    /// The store's model back to the job's initial values, as before its first epoch. (`&mut`
    /// because the driver is Send but not Sync, and the future must be Send.)
    pub(super) async fn initialize_model(&mut self) -> Result<(), DriverError> {
        let initial = self
            .data
            .architecture
            .initial_params(self.spec.training.seed);
        Ok(self.store.initialize(&initial).await?)
    }

    /// Functions outside the driver's process have no dataset files: a network store carries the
    /// training split to them. The in-process store's functions share the driver's loaded copy.
    async fn upload_dataset(&mut self) -> Result<Option<StoredDataset>, DriverError> {
        if self.spec.store.kind == StoreKind::Memory {
            return Ok(None);
        }
        self.status.enter_phase(
            JobPhase::Initializing,
            "UploadingData",
            "writing the training shards to the store",
        );
        let started = Instant::now();
        let report = upload_dataset(
            self.store.as_ref(),
            &self.data.splits.train,
            self.spec.dataset.shard_size,
        )
        .await?;
        tracing::info!(
            fingerprint = %report.stored.fingerprint,
            shards = report.stored.shards,
            written = report.shards_written,
            bytes = report.bytes_written,
            seconds = started.elapsed().as_secs_f64(),
            "dataset in the store"
        );
        Ok(Some(report.stored))
    }

    /// Puts the model back to the checkpoint taken after `epoch`. A store that lost it (a Redis
    /// restarted without persistence, a wiped bucket) fails the job rather than restarting it
    /// from scratch under the same history and spend.
    async fn restore_finished_epoch(&mut self, epoch: u32) -> Result<(), DriverError> {
        let latest = self.store.latest_checkpoint().await?;
        match latest {
            Some(checkpoint) if checkpoint.epoch >= epoch => {
                self.store.restore(epoch).await?;
                tracing::info!(
                    finished_epoch = epoch,
                    "resumed from the checkpoint of the last finished epoch"
                );
                Ok(())
            }
            Some(checkpoint) => Err(DriverError::ResumeImpossible {
                epoch,
                reason: format!(
                    "the store's latest checkpoint is of epoch {}",
                    checkpoint.epoch
                ),
            }),
            None => Err(DriverError::ResumeImpossible {
                epoch,
                reason: "the store holds no checkpoint of this job".to_string(),
            }),
        }
    }
}
