//! The end of a run: the phase and message it ends with, the model it leaves, and what a
//! learning scheduler learned, saved.

use std::path::{Path, PathBuf};

use siren_crds::JobPhase;
use siren_scheduler::StopReason;

use super::{DriverError, EpochLoop, JobDriver, JobOutcome};

impl JobDriver {
    /// The outcome of a run that stopped for `stop_reason`.
    pub(super) async fn finish(
        &mut self,
        stop_reason: StopReason,
        run: &EpochLoop,
    ) -> Result<JobOutcome, DriverError> {
        let params = self.store.pull().await?.params;
        self.status.elapsed_seconds = run.elapsed();
        if stop_reason == StopReason::Suspended {
            let message = format!(
                "suspended after {} epoch(s); clear spec.suspend to resume",
                self.status.epoch
            );
            self.status
                .enter_phase(JobPhase::Suspended, "Suspended", &message);
        } else {
            self.save_scheduler_state();
            // The forecast ends where the job did, whatever it predicted.
            if let Some(progress) = &mut self.status.progress {
                progress.percent = 100.0;
                progress.ends_by = stop_reason.condition_reason().to_string();
                progress.remaining_epochs = 0;
                progress.eta_seconds = 0.0;
                progress.eta_cost_usd = 0.0;
            }
            let message = match self.status.accuracy {
                Some(accuracy) => format!(
                    "{} after {} epoch(s): test accuracy {:.2}%, cost ${:.6}",
                    stop_reason.condition_reason(),
                    self.status.epoch,
                    accuracy * 100.0,
                    self.status.cost_usd
                ),
                None => format!("{} before the first epoch", stop_reason.condition_reason()),
            };
            let phase = if self.status.epoch == 0 {
                JobPhase::Failed
            } else {
                JobPhase::Succeeded
            };
            self.status
                .enter_phase(phase, stop_reason.condition_reason(), &message);
        }
        Ok(JobOutcome {
            status: self.status.clone(),
            stop_reason,
            architecture: self.data.architecture.clone(),
            params,
        })
    }

    /// A learning scheduler's update is worth keeping, but not worth failing a finished job for.
    fn save_scheduler_state(&mut self) {
        let Some(state) = self.scheduler.job_finished() else {
            return;
        };
        let Some(path) = &self.scheduler_state else {
            return;
        };
        if let Err(error) = write_atomically(path, state.as_bytes()) {
            tracing::warn!(path = %path.display(), %error, "cannot save the scheduler's learned policy");
        } else {
            tracing::info!(path = %path.display(), "saved the scheduler's learned policy");
        }
    }
}

/// Written beside the target and renamed over it, so a crash never leaves half a policy.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per process: two jobs finishing at once each rename a whole file into place.
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}
