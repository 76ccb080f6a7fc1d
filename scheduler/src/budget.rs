//! Whether the budget can pay for the next epoch, predicted from what earlier epochs cost.

use crate::cost::CostModel;
use crate::policy::Action;

/// The work of one epoch, measured on the last one: function-seconds scaled to one vCPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochCostEstimate {
    pub vcpu_seconds: f64,
}

impl EpochCostEstimate {
    /// From a finished epoch: each function's busy seconds at the vCPUs its memory bought.
    pub fn from_epoch(
        cost_model: &dyn CostModel,
        action: Action,
        function_seconds: &[f64],
    ) -> Self {
        let vcpus = cost_model.vcpus(action.memory_mb).max(f64::MIN_POSITIVE);
        Self {
            vcpu_seconds: function_seconds.iter().sum::<f64>() * vcpus,
        }
    }

    /// Predicted cost of running the same work with another action, assuming the work divides
    /// evenly and speeds up linearly with CPU (optimistic beyond one vCPU per thread; the margin
    /// in [`BudgetCheck`] absorbs it).
    pub fn predict(&self, cost_model: &dyn CostModel, action: Action) -> f64 {
        let n = f64::from(action.functions.max(1));
        let vcpus = cost_model.vcpus(action.memory_mb).max(f64::MIN_POSITIVE);
        let seconds_each = self.vcpu_seconds / n / vcpus;
        n * cost_model.invocation_cost(action.memory_mb, seconds_each)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetCheck {
    Affordable {
        predicted_usd: f64,
    },
    /// Running the epoch would (by prediction) take spending past the budget.
    Exhausted {
        predicted_usd: f64,
        remaining_usd: f64,
    },
}

/// Safety margin on predictions from the last epoch: epochs vary, and a budget is a promise.
pub const PREDICTION_MARGIN: f64 = 1.2;

/// Whether spending `predicted_usd` more (a pessimistic prediction: its margins already in) keeps
/// the job within its budget; with nothing predicted, only a spent budget refuses.
pub fn check_budget(
    budget_usd: Option<f64>,
    spent_usd: f64,
    predicted_usd: Option<f64>,
) -> BudgetCheck {
    let predicted_usd = predicted_usd.unwrap_or(0.0);
    match budget_usd {
        Some(budget) if spent_usd + predicted_usd > budget || spent_usd >= budget => {
            BudgetCheck::Exhausted {
                predicted_usd,
                remaining_usd: (budget - spent_usd).max(0.0),
            }
        }
        _ => BudgetCheck::Affordable { predicted_usd },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::LambdaPricing;

    #[test]
    fn same_action_predicts_the_same_cost() {
        let action = Action {
            functions: 4,
            memory_mb: 1769,
        };
        let seconds = [10.0, 10.0, 10.0, 10.0];
        let estimate = EpochCostEstimate::from_epoch(&LambdaPricing::X86, action, &seconds);
        let actual: f64 = seconds
            .iter()
            .map(|s| crate::cost::CostModel::invocation_cost(&LambdaPricing::X86, 1769, *s))
            .sum();
        let predicted = estimate.predict(&LambdaPricing::X86, action);
        assert!(
            (predicted - actual).abs() / actual < 1e-6,
            "{predicted} vs {actual}"
        );
    }

    #[test]
    fn budget_refuses_an_epoch_it_cannot_pay_for() {
        assert_eq!(
            check_budget(None, 100.0, Some(5.0)),
            BudgetCheck::Affordable { predicted_usd: 5.0 }
        );
        assert!(matches!(
            check_budget(Some(10.0), 5.5, Some(5.0)),
            BudgetCheck::Exhausted { .. }
        ));
        assert!(matches!(
            check_budget(Some(10.0), 3.0, Some(5.0)),
            BudgetCheck::Affordable { .. }
        ));
        assert!(matches!(
            check_budget(Some(10.0), 10.0, None),
            BudgetCheck::Exhausted { .. }
        ));
    }
}
