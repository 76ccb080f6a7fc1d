//! A greedy heuristic: the fastest next epoch whose predicted cost fits the budget spread evenly over
//! the epochs it expects are left, judged from how fast accuracy has been climbing. It knows the
//! platform profile but not the loss curve.

use crate::grid::ActionGrid;
use crate::policy::{Action, Observation, Scheduler};
use crate::profile::{JobProfile, PlatformProfile};
use crate::simulator::{EpochModel, WarmPool};

/// Epochs left assumed before any accuracy has been measured.
const FIRST_GUESS_EPOCHS: f64 = 20.0;

#[derive(Debug, Clone)]
pub struct GreedyScheduler {
    job: JobProfile,
    platform: PlatformProfile,
    actions: Vec<Action>,
    accuracies: Vec<f64>,
}

impl GreedyScheduler {
    pub fn new(job: JobProfile, platform: PlatformProfile, grid: &ActionGrid) -> Self {
        Self {
            job,
            platform,
            actions: grid.actions(),
            accuracies: Vec::new(),
        }
    }

    fn epochs_left(&self, observation: &Observation) -> f64 {
        let left_at_most = f64::from(
            observation
                .max_epochs
                .saturating_sub(observation.epoch)
                .max(1),
        );
        let (Some(accuracy), Some(target)) = (observation.accuracy, observation.target_accuracy)
        else {
            return FIRST_GUESS_EPOCHS.min(left_at_most);
        };
        // Climb per epoch over the last three epochs, which smooths the measurement noise.
        let window = self.accuracies.len().min(3);
        if window < 2 {
            return FIRST_GUESS_EPOCHS.min(left_at_most);
        }
        let recent = &self.accuracies[self.accuracies.len() - window..];
        let climb = (recent[window - 1] - recent[0]) / (window - 1) as f64;
        if climb <= 1e-6 {
            return left_at_most;
        }
        ((target - accuracy) / climb).clamp(1.0, left_at_most)
    }
}

impl Scheduler for GreedyScheduler {
    fn name(&self) -> &'static str {
        "greedy"
    }

    fn decide(&mut self, observation: &Observation) -> Action {
        if observation.epoch == 0 {
            self.accuracies.clear();
        }
        if let Some(accuracy) = observation.accuracy {
            self.accuracies.push(accuracy);
        }
        let model = EpochModel::new(&self.job, &self.platform);
        let warm = observation
            .last_action
            .map_or_else(WarmPool::default, |a| WarmPool {
                memory_mb: a.memory_mb,
                functions: a.functions,
            });
        let allowance = observation
            .budget_usd
            .map(|budget| (budget - observation.spent_usd) / self.epochs_left(observation));
        let candidates: Vec<(Action, f64, f64)> = self
            .actions
            .iter()
            .filter(|a| model.is_feasible(**a))
            .map(|a| {
                let p = model.predict(*a, warm);
                (*a, p.seconds, p.cost_usd)
            })
            .collect();
        let fastest_fitting = candidates
            .iter()
            .filter(|(_, _, cost)| allowance.is_none_or(|allowance| *cost <= allowance))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let cheapest = candidates.iter().min_by(|a, b| a.2.total_cmp(&b.2));
        fastest_fitting
            .or(cheapest)
            .map_or(self.actions[0], |(action, _, _)| *action)
    }
}
