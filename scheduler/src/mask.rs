//! The budget guarantee: which actions the agent may take next. Pure functions, so the guarantee can
//! be argued from this file alone.
//!
//! An action is allowed only if a pessimistic prediction of its cost still fits the remaining budget.
//! The prediction is the larger of
//! - the platform profile's worst case (every function straggles by the profile's maximum factor, every
//!   function not known to be warm pays the longest cold start), times [`PROFILE_MARGIN`] to absorb
//!   calibration error in the profile, and
//! - the driver's own estimate from the last epoch ([`EpochCostEstimate`]) times
//!   [`PREDICTION_MARGIN`], so the driver never refuses what the agent chose.
//!
//! If the true platform stays within the profile's bounds after the margin, then each epoch costs at
//! most what was predicted, spent + predicted <= budget before every epoch, and by induction no job
//! ever spends more than its budget. When nothing is allowed the agent stops the job.

use crate::budget::{EpochCostEstimate, PREDICTION_MARGIN};
use crate::cost::CostModel;
use crate::episode::billed_seconds_from_cost;
use crate::policy::Action;
use crate::simulator::{EpochModel, WarmPool};

/// Covers profile parameters that are off by up to ~7% each in the unfavourable direction
/// (worst-case cost is a product of at most three of them: compute, speed and straggling).
pub const PROFILE_MARGIN: f64 = 1.25;

/// What the agent knows about the last epoch from its observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LastEpoch {
    pub action: Action,
    pub cost_usd: f64,
}

/// Only functions that ran in the last epoch with the same memory are assumed warm: the platform may
/// keep more, never fewer, so this can only overstate cold starts.
pub fn assumed_warm_pool(last: Option<LastEpoch>) -> WarmPool {
    last.map_or_else(WarmPool::default, |last| WarmPool {
        memory_mb: last.action.memory_mb,
        functions: last.action.functions,
    })
}

/// The pessimistic cost of running `action` next.
pub fn pessimistic_cost(model: &EpochModel<'_>, action: Action, last: Option<LastEpoch>) -> f64 {
    let profile = model.worst_case_cost(action, assumed_warm_pool(last)) * PROFILE_MARGIN;
    let observed = last.map_or(0.0, |last| {
        let pricing = &model.platform.pricing;
        let billed = billed_seconds_from_cost(pricing, last.action, last.cost_usd);
        let estimate = EpochCostEstimate {
            vcpu_seconds: billed * pricing.vcpus(last.action.memory_mb).max(f64::MIN_POSITIVE),
        };
        // The tiny relative slack keeps float rounding from putting us a hair under the driver.
        estimate.predict(pricing, action) * PREDICTION_MARGIN * (1.0 + 1e-9)
    });
    profile.max(observed)
}

/// Which actions fit: feasible on the platform, and affordable by their pessimistic cost.
pub fn affordable(
    pessimistic_costs: &[f64],
    feasible: &[bool],
    spent_usd: f64,
    budget_usd: Option<f64>,
) -> Vec<bool> {
    pessimistic_costs
        .iter()
        .zip(feasible)
        .map(|(&cost, &feasible)| {
            feasible
                && match budget_usd {
                    None => true,
                    Some(budget) => spent_usd < budget && spent_usd + cost <= budget,
                }
        })
        .collect()
}

/// The feasible action with the lowest pessimistic cost: what to report when stopping.
pub fn cheapest(
    actions: &[Action],
    pessimistic_costs: &[f64],
    feasible: &[bool],
) -> Option<Action> {
    actions
        .iter()
        .zip(pessimistic_costs)
        .zip(feasible)
        .filter(|(_, feasible)| **feasible)
        .min_by(|((_, a), _), ((_, b), _)| a.total_cmp(b))
        .map(|((action, _), _)| *action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{BudgetCheck, check_budget};
    use crate::profile::{JobProfile, PlatformProfile};

    #[test]
    fn masks_what_does_not_fit_and_everything_once_spent() {
        let costs = [1.0, 2.0, 3.0];
        let feasible = [true, true, false];
        assert_eq!(
            affordable(&costs, &feasible, 0.0, Some(2.5)),
            [true, true, false]
        );
        assert_eq!(
            affordable(&costs, &feasible, 1.0, Some(2.5)),
            [true, false, false]
        );
        assert_eq!(
            affordable(&costs, &feasible, 2.5, Some(2.5)),
            [false, false, false]
        );
        assert_eq!(
            affordable(&costs, &feasible, 9.0, None),
            [true, true, false]
        );
        let actions = [
            Action {
                functions: 1,
                memory_mb: 512,
            },
            Action {
                functions: 2,
                memory_mb: 512,
            },
            Action {
                functions: 4,
                memory_mb: 512,
            },
        ];
        assert_eq!(
            cheapest(&actions, &[3.0, 2.0, 1.0], &feasible),
            Some(actions[1])
        );
        assert_eq!(cheapest(&actions, &costs, &[false; 3]), None);
    }

    #[test]
    fn allowed_actions_pass_the_drivers_own_check() {
        let job = JobProfile::fashion_mnist_mlp();
        let platform = PlatformProfile::lambda_default();
        let model = EpochModel::new(&job, &platform);
        let last_action = Action {
            functions: 8,
            memory_mb: 1769,
        };
        let billed = [3.0, 3.1, 2.9, 3.3, 3.0, 3.0, 3.2, 3.05];
        let cost: f64 = billed
            .iter()
            .map(|s| platform.pricing.invocation_cost(1769, *s))
            .sum();
        let last = Some(LastEpoch {
            action: last_action,
            cost_usd: cost,
        });
        let driver = EpochCostEstimate::from_epoch(&platform.pricing, last_action, &billed);
        for functions in [1, 4, 16, 64] {
            for memory_mb in [512, 1769, 10_240] {
                let action = Action {
                    functions,
                    memory_mb,
                };
                let pessimistic = pessimistic_cost(&model, action, last);
                let budget = 1.0;
                let spent = budget - pessimistic;
                assert_eq!(
                    affordable(&[pessimistic], &[true], spent, Some(budget)),
                    [true]
                );
                assert!(matches!(
                    check_budget(
                        Some(budget),
                        spent,
                        Some(driver.predict(&platform.pricing, action) * PREDICTION_MARGIN)
                    ),
                    BudgetCheck::Affordable { .. }
                ));
            }
        }
    }
}
