//! An epoch that could not finish, run again when the job's failure policy allows: what it
//! applied is undone (the model goes back to the last finished epoch) and what it cost stays
//! spent.

use siren_crds::JobPhase;

use super::{DriverError, DriverObserver, JobDriver};

impl JobDriver {
    /// Whether `error` ended an epoch that the failure policy lets the job run again.
    pub(super) fn may_run_again(&self, error: &DriverError) -> bool {
        let policy = &self.spec.failure_policy;
        match error {
            DriverError::Task { failure, .. } => {
                !policy.is_final(failure)
                    && self.status.failed_epochs < policy.failed_epochs_allowed
            }
            _ => false,
        }
    }

    /// Puts the model back to where the epoch `epoch` (0-based) started and counts the failure.
    pub(super) async fn undo_failed_epoch(
        &mut self,
        epoch: u32,
        error: &DriverError,
        observer: &mut dyn DriverObserver,
    ) -> Result<(), DriverError> {
        if epoch == 0 {
            self.initialize_model().await?;
        } else {
            self.store.restore(epoch).await?;
        }
        self.status.failed_epochs += 1;
        // What the failed epoch spent is no longer there to spend.
        self.status.progress = self.forecast_progress();
        let allowed = self.spec.failure_policy.failed_epochs_allowed;
        let message = format!(
            "epoch {} failed ({} of {allowed} failed epochs allowed) and runs again from the last finished epoch: {error}",
            epoch + 1,
            self.status.failed_epochs
        );
        tracing::warn!(failed_epochs = self.status.failed_epochs, %error, "epoch failed; running it again");
        self.status
            .enter_phase(JobPhase::Running, "EpochFailed", &message);
        observer.epoch_failed(epoch, &message);
        observer.status_changed(&self.status);
        Ok(())
    }
}
