//! Runs one scheduler through one simulated job the way the operator's driver runs a real one:
//! observe, decide, refuse what the budget check refuses, run the epoch, record.

use serde::{Deserialize, Serialize};

use crate::budget::EpochCostEstimate;
use crate::cost::CostModel;
use crate::gate::{Gate, Limits, StopReason, open_epoch};
use crate::policy::{Action, Observation, Scheduler};
use crate::profile::{JobProfile, PlatformProfile};
use crate::record::EpochRecord;
use crate::simulator::{EpochModel, Simulator};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSpec {
    pub target_accuracy: f64,
    pub budget_usd: Option<f64>,
    pub max_epochs: u32,
    /// What the driver believes of the job and its platform (a calibrated profile, with its
    /// error): the budget check's worst case for every scheduler, as in a real job.
    pub believed: Option<(JobProfile, PlatformProfile)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeResult {
    pub stop: StopReason,
    pub seconds: f64,
    pub cost_usd: f64,
    pub epochs: Vec<EpochRecord>,
    pub final_accuracy: f64,
}

impl EpisodeResult {
    pub fn reached(&self) -> bool {
        self.stop == StopReason::TargetReached
    }

    /// Wall-clock time to the target, None if the job never got there.
    pub fn time_to_target(&self) -> Option<f64> {
        self.reached().then_some(self.seconds)
    }

    pub fn violated(&self, budget_usd: Option<f64>) -> bool {
        budget_usd.is_some_and(|budget| self.cost_usd > budget * (1.0 + 1e-12))
    }
}

pub fn run_episode(
    sim: &mut Simulator,
    scheduler: &mut dyn Scheduler,
    spec: &EpisodeSpec,
) -> EpisodeResult {
    let platform = sim.platform().clone();
    let pricing = platform.pricing;
    let limits = Limits::of(&platform);
    let mut spent = 0.0;
    let mut elapsed = 0.0;
    let mut epochs: Vec<EpochRecord> = Vec::new();
    let mut estimate: Option<EpochCostEstimate> = None;
    let mut stop = StopReason::MaxEpochs;
    let observe = |epochs: &[EpochRecord], spent: f64, elapsed: f64| {
        let last = epochs.last();
        Observation {
            epoch: epochs.len() as u32,
            max_epochs: spec.max_epochs,
            loss: last.map(|r| r.loss),
            previous_loss: epochs.len().checked_sub(2).map(|i| epochs[i].loss),
            accuracy: last.map(|r| r.accuracy),
            target_accuracy: Some(spec.target_accuracy),
            spent_usd: spent,
            budget_usd: spec.budget_usd,
            elapsed_seconds: elapsed,
            last_action: last.map(EpochRecord::action),
            last_epoch_seconds: last.map(|r| r.seconds),
        }
    };
    for _ in 0..spec.max_epochs {
        let before = observe(&epochs, spent, elapsed);
        let worst_case = spec
            .believed
            .as_ref()
            .map(|(job, platform)| EpochModel::new(job, platform));
        let action = match open_epoch(
            scheduler,
            &before,
            &limits,
            &pricing,
            worst_case.as_ref(),
            estimate.as_ref(),
        ) {
            Gate::Run(action) => action,
            Gate::SchedulerStopped { .. } => {
                stop = StopReason::SchedulerStopped;
                break;
            }
            Gate::BudgetExhausted { .. } => {
                stop = StopReason::BudgetExhausted;
                break;
            }
        };
        let outcome = sim.step(action);
        spent += outcome.cost_usd;
        elapsed += outcome.seconds;
        estimate = Some(EpochCostEstimate::from_epoch(
            &pricing,
            action,
            &outcome.function_seconds,
        ));
        // The simulator models one loss curve and neither updates nor staleness: those fields
        // stay as the driver's record would have them for an epoch that pushed nothing.
        epochs.push(EpochRecord {
            epoch: epochs.len() as u32 + 1,
            functions: action.functions,
            memory_mb: action.memory_mb,
            train_loss: outcome.loss,
            loss: outcome.loss,
            accuracy: outcome.accuracy,
            seconds: outcome.seconds,
            cost_usd: outcome.cost_usd,
            cumulative_cost_usd: spent,
            samples: sim.job().samples_per_epoch,
            ..EpochRecord::default()
        });
        let after = observe(&epochs, spent, elapsed);
        scheduler.record(&before, action, &after);
        if outcome.accuracy >= spec.target_accuracy {
            stop = StopReason::TargetReached;
            break;
        }
    }
    EpisodeResult {
        stop,
        seconds: elapsed,
        cost_usd: spent,
        final_accuracy: epochs.last().map_or(0.0, |r| r.accuracy),
        epochs,
    }
}

/// What an invocation-linear cost model says the last epoch's total billed seconds were, from its
/// cost alone: the driver's estimate can be rebuilt from what an [`Observation`] carries.
pub fn billed_seconds_from_cost(pricing: &dyn CostModel, action: Action, cost_usd: f64) -> f64 {
    let fixed = pricing.invocation_cost(action.memory_mb, 0.0);
    let per_second = pricing.invocation_cost(action.memory_mb, 1.0) - fixed;
    if per_second <= 0.0 {
        return 0.0;
    }
    ((cost_usd - f64::from(action.functions) * fixed) / per_second).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::StaticScheduler;

    #[test]
    fn static_job_runs_to_its_target() {
        let job = JobProfile::fashion_mnist_mlp();
        let mut sim = Simulator::new(job, PlatformProfile::lambda_default(), 2);
        let action = Action {
            functions: 8,
            memory_mb: 1769,
        };
        let spec = EpisodeSpec {
            target_accuracy: 0.85,
            budget_usd: None,
            max_epochs: 100,
            believed: None,
        };
        let result = run_episode(&mut sim, &mut StaticScheduler::new(action), &spec);
        assert!(result.reached());
        assert!(result.epochs.iter().all(|r| r.action() == action));
        let total: f64 = result.epochs.iter().map(|r| r.cost_usd).sum();
        assert!((total - result.cost_usd).abs() < 1e-12);
    }

    #[test]
    fn driver_check_stops_a_static_job_at_its_budget() {
        let job = JobProfile::fashion_mnist_mlp();
        let mut sim = Simulator::new(job, PlatformProfile::lambda_default(), 2);
        let action = Action {
            functions: 8,
            memory_mb: 1769,
        };
        let spec = EpisodeSpec {
            target_accuracy: 0.99,
            budget_usd: Some(0.01),
            max_epochs: 100,
            believed: None,
        };
        let result = run_episode(&mut sim, &mut StaticScheduler::new(action), &spec);
        assert_eq!(result.stop, StopReason::BudgetExhausted);
        assert!(!result.violated(spec.budget_usd), "{}", result.cost_usd);
    }

    #[test]
    fn billed_seconds_invert_the_lambda_price() {
        let pricing = crate::cost::LambdaPricing::X86;
        let action = Action {
            functions: 3,
            memory_mb: 2048,
        };
        let cost: f64 = [1.5, 2.0, 2.5]
            .iter()
            .map(|s| pricing.invocation_cost(2048, *s))
            .sum();
        assert!((billed_seconds_from_cost(&pricing, action, cost) - 6.0).abs() < 1e-9);
    }
}
