//! What the driver reports about a job: phase, progress, spend, a bounded per-epoch history and
//! standard conditions (so that `kubectl wait --for=condition=Succeeded` and Argo CD work).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many epochs of history the status keeps; older entries are dropped first.
pub const HISTORY_LIMIT: usize = 100;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum JobPhase {
    #[default]
    Pending,
    Initializing,
    Running,
    Succeeded,
    Failed,
    Suspended,
}

impl JobPhase {
    pub fn is_finished(self) -> bool {
        matches!(self, JobPhase::Succeeded | JobPhase::Failed)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
    #[serde(default)]
    pub phase: JobPhase,
    /// Epochs completed.
    #[serde(default)]
    pub epoch: u32,
    /// Test loss after the last completed epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Test accuracy (0-1) after the last completed epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub elapsed_seconds: f64,
    /// Functions of the current (or last) epoch.
    #[serde(default)]
    pub functions: u32,
    /// Memory per function of the current (or last) epoch.
    #[serde(default)]
    pub memory_mb: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<EpochRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// When the job first started running (reset when it resumes from a suspension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job reached Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Fingerprints of the spec's sections as the job started (`model`, `dataset`, `training`,
    /// `scheduler`, `backend`, `store`): a started job whose sections no longer match ends
    /// `Failed` with reason `SpecChanged`, since its checkpoints belong to the old ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spec_fingerprint: BTreeMap<String, String>,
    /// Epochs that failed and were run again (`spec.failurePolicy.failedEpochsAllowed`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_epochs: u32,
    /// How far the job is from its end and what getting there should take, as predicted after
    /// the last finished epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<JobProgress>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A forecast of the job's end, recomputed after every epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    /// Percent of the way to the job's end: epochs done over epochs done plus the epochs still
    /// predicted.
    pub percent: f64,
    /// How the job is predicted to end, as the reason its final condition would give:
    /// `TargetAccuracyReached`, `MaxEpochsReached` or `BudgetExhausted`.
    pub ends_by: String,
    /// Epochs predicted before it ends.
    pub remaining_epochs: u32,
    /// Seconds predicted before it ends, at the pace of its last epochs.
    pub eta_seconds: f64,
    /// Dollars predicted to be spent before it ends.
    pub eta_cost_usd: f64,
    /// What predicted the epochs to the target: `scheduler` (the scheduler's model of the job,
    /// corrected by the epochs seen), `trend` (a curve fitted to the epochs seen) or `epochs`
    /// (no target: the epoch limit or the budget ends the job).
    pub basis: String,
    pub computed_at: Time,
}

pub use siren_scheduler::EpochRecord;

/// Standard condition types, as Kubeflow's training operator uses them.
pub mod condition_type {
    pub const READY: &str = "Ready";
    pub const RUNNING: &str = "Running";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const SUSPENDED: &str = "Suspended";
}

impl TrainingJobStatus {
    pub fn push_history(&mut self, record: EpochRecord) {
        self.history.push(record);
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
    }

    /// Sets a condition; its transition time only moves when its status changes.
    pub fn set_condition(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" }.to_string();
        let observed_generation = self.observed_generation;
        match self.conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(existing) => {
                if existing.status != status {
                    existing.last_transition_time = Time(Timestamp::now());
                }
                existing.status = status;
                existing.reason = reason.to_string();
                existing.message = message.to_string();
                existing.observed_generation = observed_generation;
            }
            None => self.conditions.push(Condition {
                type_: type_.to_string(),
                status,
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: Time(Timestamp::now()),
                observed_generation,
            }),
        }
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Moves to a phase and keeps the phase conditions consistent with it.
    pub fn enter_phase(&mut self, phase: JobPhase, reason: &str, message: &str) {
        use condition_type::*;
        self.phase = phase;
        match phase {
            JobPhase::Initializing | JobPhase::Running if self.start_time.is_none() => {
                self.start_time = Some(Time(Timestamp::now()));
            }
            // A suspended job's deadline starts again when it resumes, as a Kubernetes Job's does.
            JobPhase::Suspended => self.start_time = None,
            _ if phase.is_finished() && self.completion_time.is_none() => {
                self.completion_time = Some(Time(Timestamp::now()));
            }
            _ => {}
        }
        let running = matches!(phase, JobPhase::Initializing | JobPhase::Running);
        self.set_condition(RUNNING, running, reason, message);
        if phase == JobPhase::Running {
            self.set_condition(READY, true, reason, message);
        }
        if phase.is_finished() {
            self.set_condition(READY, false, reason, message);
        }
        match phase {
            JobPhase::Succeeded => self.set_condition(SUCCEEDED, true, reason, message),
            JobPhase::Failed => self.set_condition(FAILED, true, reason, message),
            JobPhase::Suspended => self.set_condition(SUSPENDED, true, reason, message),
            _ => {}
        }
        if phase != JobPhase::Suspended && self.condition(SUSPENDED).is_some() {
            self.set_condition(SUSPENDED, false, reason, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_keeps_the_newest() {
        let mut status = TrainingJobStatus::default();
        for epoch in 1..=(HISTORY_LIMIT as u32 + 7) {
            status.push_history(EpochRecord {
                epoch,
                ..Default::default()
            });
        }
        assert_eq!(status.history.len(), HISTORY_LIMIT);
        assert_eq!(status.history[0].epoch, 8);
        assert_eq!(
            status.history.last().map(|r| r.epoch),
            Some(HISTORY_LIMIT as u32 + 7)
        );
    }

    #[test]
    fn phases_drive_conditions() {
        let mut status = TrainingJobStatus::default();
        status.enter_phase(JobPhase::Running, "EpochStarted", "epoch 1");
        assert_eq!(
            status.condition("Running").map(|c| c.status.as_str()),
            Some("True")
        );
        status.enter_phase(JobPhase::Succeeded, "TargetReached", "accuracy 0.9");
        assert_eq!(
            status.condition("Running").map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(
            status.condition("Succeeded").map(|c| c.status.as_str()),
            Some("True")
        );
        assert_eq!(
            status.condition("Ready").map(|c| c.status.as_str()),
            Some("False")
        );
        assert!(status.condition("Failed").is_none());
    }
}
