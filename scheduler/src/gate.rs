//! The gate every epoch passes, in the operator's driver and in the simulator's episodes alike:
//! the scheduler decides, its choice is clamped to what the platform allows, and the budget check
//! refuses an epoch the remaining budget might not pay for. One function, so that the simulator
//! runs the loop the driver runs.

use serde::{Deserialize, Serialize};

use crate::budget::{BudgetCheck, EpochCostEstimate, PREDICTION_MARGIN, check_budget};
use crate::cost::{CostModel, MAX_LAMBDA_MEMORY_MB, MIN_LAMBDA_MEMORY_MB};
use crate::mask::{LastEpoch, PROFILE_MARGIN, assumed_warm_pool};
use crate::policy::{Action, Decision, Observation, Scheduler};
use crate::profile::PlatformProfile;
use crate::simulator::EpochModel;

/// Why a job, real or simulated, stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    TargetReached,
    MaxEpochs,
    /// The budget check refused the next epoch.
    BudgetExhausted,
    /// The scheduler asked to stop: nothing it may run is affordable. The simulator keeps this
    /// apart from the budget check's refusal; a real job reports either as `BudgetExhausted`.
    SchedulerStopped,
    /// `spec.suspend` was set: the job paused after its last finished epoch and can resume.
    Suspended,
}

impl StopReason {
    /// The reason of the job's final condition.
    pub fn condition_reason(self) -> &'static str {
        match self {
            StopReason::TargetReached => "TargetAccuracyReached",
            StopReason::MaxEpochs => "MaxEpochsReached",
            StopReason::BudgetExhausted | StopReason::SchedulerStopped => "BudgetExhausted",
            StopReason::Suspended => "Suspended",
        }
    }
}

/// What one epoch may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_functions: u32,
    pub min_memory_mb: u32,
    pub max_memory_mb: u32,
}

impl Limits {
    pub fn of(platform: &PlatformProfile) -> Self {
        Self {
            max_functions: platform.max_functions,
            min_memory_mb: platform.min_memory_mb,
            max_memory_mb: platform.max_memory_mb,
        }
    }

    /// Lambda's memory range, which the operator's driver applies on every backend, with as many
    /// functions as `max_functions`.
    pub fn lambda_memory(max_functions: u32) -> Self {
        Self {
            max_functions,
            min_memory_mb: MIN_LAMBDA_MEMORY_MB,
            max_memory_mb: MAX_LAMBDA_MEMORY_MB,
        }
    }

    pub fn clamp(&self, action: Action) -> Action {
        Action {
            functions: action.functions.clamp(1, self.max_functions.max(1)),
            memory_mb: action.memory_mb.clamp(
                self.min_memory_mb,
                self.max_memory_mb.max(self.min_memory_mb),
            ),
        }
    }
}

/// What the gate lets through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gate {
    Run(Action),
    /// The scheduler stopped; `cheapest` is the least it could have run.
    SchedulerStopped {
        cheapest: Action,
    },
    /// The budget check refused `action`.
    BudgetExhausted {
        action: Action,
        predicted_usd: f64,
        remaining_usd: f64,
    },
}

/// The most the next epoch may cost if it runs `action`: the larger of the profiles' worst case
/// (every function straggling, every function not known warm starting cold, times
/// [`PROFILE_MARGIN`]) when the job has profiles, and the last epoch's cost scaled to `action`
/// (times [`PREDICTION_MARGIN`]) once there is one. The DRL agent's mask allows only what this
/// allows; every other scheduler is held to it here.
pub fn pessimistic_epoch_cost(
    worst_case: Option<&EpochModel<'_>>,
    estimate: Option<&EpochCostEstimate>,
    pricing: &dyn CostModel,
    action: Action,
    last_action: Option<Action>,
) -> Option<f64> {
    let warm = assumed_warm_pool(last_action.map(|action| LastEpoch {
        action,
        cost_usd: 0.0,
    }));
    let profile = worst_case.map(|model| model.worst_case_cost(action, warm) * PROFILE_MARGIN);
    let observed = estimate.map(|e| e.predict(pricing, action) * PREDICTION_MARGIN);
    match (profile, observed) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Asks `scheduler` for the next epoch of the job `observation` describes and checks its choice:
/// whatever the scheduler, the epoch runs only if its pessimistic cost
/// ([`pessimistic_epoch_cost`]) fits the remaining budget. `worst_case` is the job's profiles
/// (calibrated, or from the compute probe), which bound the first epoch too; `estimate` is the
/// last epoch's cost (none before the first epoch).
pub fn open_epoch(
    scheduler: &mut dyn Scheduler,
    observation: &Observation,
    limits: &Limits,
    pricing: &dyn CostModel,
    worst_case: Option<&EpochModel<'_>>,
    estimate: Option<&EpochCostEstimate>,
) -> Gate {
    let action = match scheduler.decide_or_stop(observation) {
        Decision::Run(action) => limits.clamp(action),
        Decision::Stop { cheapest } => return Gate::SchedulerStopped { cheapest },
    };
    let predicted = pessimistic_epoch_cost(
        worst_case,
        estimate,
        pricing,
        action,
        observation.last_action,
    );
    match check_budget(observation.budget_usd, observation.spent_usd, predicted) {
        BudgetCheck::Affordable { .. } => Gate::Run(action),
        BudgetCheck::Exhausted {
            predicted_usd,
            remaining_usd,
        } => Gate::BudgetExhausted {
            action,
            predicted_usd,
            remaining_usd,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::LambdaPricing;
    use crate::policy::StaticScheduler;
    use crate::profile::JobProfile;
    use crate::simulator::WarmPool;

    fn observation(spent_usd: f64, budget_usd: Option<f64>) -> Observation {
        Observation {
            epoch: 1,
            max_epochs: 10,
            loss: Some(1.0),
            previous_loss: None,
            accuracy: Some(0.5),
            target_accuracy: None,
            spent_usd,
            budget_usd,
            elapsed_seconds: 1.0,
            last_action: None,
            last_epoch_seconds: None,
        }
    }

    #[test]
    fn clamps_to_the_limits_before_the_budget_check() {
        let mut scheduler = StaticScheduler::new(Action {
            functions: 64,
            memory_mb: 20_000,
        });
        let limits = Limits::lambda_memory(8);
        let gate = open_epoch(
            &mut scheduler,
            &observation(0.0, None),
            &limits,
            &LambdaPricing::X86,
            None,
            None,
        );
        assert_eq!(
            gate,
            Gate::Run(Action {
                functions: 8,
                memory_mb: MAX_LAMBDA_MEMORY_MB
            })
        );
    }

    #[test]
    fn refuses_what_the_remaining_budget_might_not_pay_for() {
        let action = Action {
            functions: 4,
            memory_mb: 1769,
        };
        let pricing = LambdaPricing::X86;
        let estimate = EpochCostEstimate::from_epoch(&pricing, action, &[10.0; 4]);
        let epoch_usd = estimate.predict(&pricing, action);
        let mut scheduler = StaticScheduler::new(action);
        let limits = Limits::lambda_memory(16);
        // One more epoch fits with its margin; with a little less left it does not.
        let roomy = observation(0.0, Some(epoch_usd * 1.25));
        assert_eq!(
            open_epoch(
                &mut scheduler,
                &roomy,
                &limits,
                &pricing,
                None,
                Some(&estimate)
            ),
            Gate::Run(action)
        );
        let tight = observation(0.0, Some(epoch_usd * 1.15));
        assert!(matches!(
            open_epoch(
                &mut scheduler,
                &tight,
                &limits,
                &pricing,
                None,
                Some(&estimate)
            ),
            Gate::BudgetExhausted { .. }
        ));
        // Nothing to predict from before the first epoch: only a spent budget refuses it.
        assert_eq!(
            open_epoch(&mut scheduler, &tight, &limits, &pricing, None, None),
            Gate::Run(action)
        );
    }

    /// A static scheduler is held to the profiles' worst case from its first epoch on, as the
    /// DRL agent's mask holds the agent: a budget that cannot pay for the worst case of the
    /// first epoch stops the job before it.
    #[test]
    fn the_first_epoch_of_any_scheduler_is_checked_against_the_worst_case() {
        let job = JobProfile::fashion_mnist_mlp();
        let platform = PlatformProfile::lambda_default();
        let model = EpochModel::new(&job, &platform);
        let action = Action {
            functions: 8,
            memory_mb: 1769,
        };
        let pricing = platform.pricing;
        let worst = pessimistic_epoch_cost(Some(&model), None, &pricing, action, None)
            .expect("a worst case");
        let expected = model.worst_case_cost(action, WarmPool::default()) * PROFILE_MARGIN;
        assert!((worst - expected).abs() < 1e-12, "{worst} vs {expected}");
        let limits = Limits::of(&platform);
        let mut scheduler = StaticScheduler::new(action);
        let first = |budget: f64| {
            let mut observation = observation(0.0, Some(budget));
            observation.epoch = 0;
            observation.last_action = None;
            observation
        };
        assert_eq!(
            open_epoch(
                &mut scheduler,
                &first(worst * 1.001),
                &limits,
                &pricing,
                Some(&model),
                None
            ),
            Gate::Run(action)
        );
        assert!(matches!(
            open_epoch(
                &mut scheduler,
                &first(worst * 0.999),
                &limits,
                &pricing,
                Some(&model),
                None
            ),
            Gate::BudgetExhausted { .. }
        ));
    }
}
