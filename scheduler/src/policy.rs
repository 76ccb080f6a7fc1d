//! The scheduling interface the driver calls before every epoch, and the static policy.

use serde::{Deserialize, Serialize};

/// How many functions run the next epoch, and with how much memory each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Action {
    pub functions: u32,
    pub memory_mb: u32,
}

/// What the scheduler sees before an epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// 0-based index of the epoch about to run.
    pub epoch: u32,
    pub max_epochs: u32,
    /// Test loss after the last epoch, and after the one before it.
    pub loss: Option<f64>,
    pub previous_loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub target_accuracy: Option<f64>,
    pub spent_usd: f64,
    pub budget_usd: Option<f64>,
    pub elapsed_seconds: f64,
    pub last_action: Option<Action>,
    pub last_epoch_seconds: Option<f64>,
}

/// What a scheduler wants for the next epoch: run it, or stop because no action it may take is
/// affordable (the budget guarantee). `cheapest` is what it would run if the driver insisted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    Run(Action),
    Stop { cheapest: Action },
}

impl Decision {
    pub fn action(&self) -> Action {
        match *self {
            Decision::Run(action) => action,
            Decision::Stop { cheapest } => cheapest,
        }
    }
}

/// A policy choosing (functions, memory) per epoch. Implementations learn from outcomes through
/// `record`; the driver separately refuses any action the budget cannot pay for.
pub trait Scheduler: Send {
    fn name(&self) -> &'static str;
    fn decide(&mut self, observation: &Observation) -> Action;
    /// Like `decide`, but a scheduler that guarantees its budget can ask to stop. Drivers should call
    /// this one; the default never stops.
    fn decide_or_stop(&mut self, observation: &Observation) -> Decision {
        Decision::Run(self.decide(observation))
    }
    /// Called after each epoch with what the chosen action led to.
    fn record(&mut self, _before: &Observation, _action: Action, _after: &Observation) {}
    /// Called once when the job has ended. A scheduler that learns from real jobs updates itself
    /// from this one and returns its new state (JSON) for the caller to persist.
    fn job_finished(&mut self) -> Option<String> {
        None
    }
}

/// The user's fixed choice, every epoch.
#[derive(Debug, Clone)]
pub struct StaticScheduler {
    action: Action,
}

impl StaticScheduler {
    pub fn new(action: Action) -> Self {
        Self { action }
    }
}

impl Scheduler for StaticScheduler {
    fn name(&self) -> &'static str {
        "static"
    }

    fn decide(&mut self, _observation: &Observation) -> Action {
        self.action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_policy_never_changes_its_mind() {
        let action = Action {
            functions: 4,
            memory_mb: 1769,
        };
        let mut scheduler = StaticScheduler::new(action);
        for epoch in 0..5 {
            let observation = Observation {
                epoch,
                spent_usd: f64::from(epoch),
                ..Observation::default()
            };
            assert_eq!(scheduler.decide(&observation), action);
        }
    }
}
