//! What the agent sees before an epoch: a state vector, and for every action on the grid a row of
//! features that includes what the (calibrated) profiles predict that action would take and cost,
//! now and if held until the target. The policy scores each row, so one small network serves any grid
//! and any job: everything job-specific enters as a prediction normalised by the job's own scale.

use ndarray::Array2;

use crate::grid::ActionGrid;
use crate::mask::{LastEpoch, affordable, assumed_warm_pool, cheapest, pessimistic_cost};
use crate::policy::{Action, Observation};
use crate::profile::{JobProfile, PlatformProfile};
use crate::simulator::EpochModel;

pub const STATE_FEATURES: usize = 14;
pub const ACTION_FEATURES: usize = 11;
pub const INPUT_FEATURES: usize = STATE_FEATURES + ACTION_FEATURES;

/// Step of the tabulated staleness integral, in effective epochs.
const INTEGRAL_STEP: f64 = 0.02;

/// The profiles the agent believes, and per-job constants derived from them.
#[derive(Debug, Clone)]
pub struct AgentContext {
    pub job: JobProfile,
    pub platform: PlatformProfile,
    pub actions: Vec<Action>,
    pub feasible: Vec<bool>,
    pub target: f64,
    /// Progress at which the believed curve reaches the target.
    pub goal_progress: f64,
    /// J(P) = integral from 0 to P of exp(-decay f(p)) dp, sampled every INTEGRAL_STEP.
    integral: Vec<f64>,
    /// Best predicted time to the target from scratch, any cost: the job's time scale.
    pub time_scale: f64,
    /// The predicted epoch time of the action that achieves `time_scale`.
    pub epoch_scale: f64,
    /// Progress the believed curve predicts for the actions taken so far.
    model_progress: f64,
    epochs_seen: u32,
    /// Measured over predicted progress so far: the online correction of the believed curve.
    pub progress_rate: f64,
}

/// One decision's inputs.
#[derive(Debug, Clone)]
pub struct Features {
    pub state: Vec<f64>,
    /// One row per grid action: the state followed by that action's features.
    pub inputs: Array2<f64>,
    pub allowed: Vec<bool>,
    pub pessimistic_costs: Vec<f64>,
    pub cheapest: Option<Action>,
    /// Believed fraction of the way from the start to the target's progress.
    pub progress_fraction: f64,
    pub outlooks: Vec<Outlook>,
    pub remaining_usd: Option<f64>,
}

/// Per action: predicted time and cost to the target if held fixed from now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outlook {
    pub epoch_seconds: f64,
    pub seconds: f64,
    pub cost_usd: f64,
    /// What the mask will demand on top of the expected cost before the last epoch: the last
    /// epoch's pessimistic cost less its expected cost. A plan that spends it cannot finish.
    pub reserve_usd: f64,
    /// Within the epochs the job has left.
    pub reachable: bool,
}

impl Outlook {
    /// Whether holding this action reaches the target with the budget left (None: no budget).
    pub fn fits(&self, remaining_usd: Option<f64>) -> bool {
        self.reachable && remaining_usd.is_none_or(|r| self.cost_usd + self.reserve_usd <= r)
    }
}

impl AgentContext {
    pub fn new(
        job: JobProfile,
        platform: PlatformProfile,
        grid: &ActionGrid,
        target: Option<f64>,
    ) -> Self {
        let curve = &job.curve;
        let target = target.unwrap_or(
            curve.initial_accuracy + 0.95 * (curve.final_accuracy - curve.initial_accuracy),
        );
        let goal_progress = curve
            .progress_for_accuracy(target)
            .unwrap_or_else(|| -(0.01_f64).ln() / curve.rate.max(1e-6))
            .min(10_000.0);
        let steps = (goal_progress / INTEGRAL_STEP).ceil() as usize + 2;
        let mut integral = Vec::with_capacity(steps);
        let mut sum = 0.0;
        let weight = |p: f64| (-curve.staleness_decay * curve.fraction(p)).exp();
        for i in 0..steps {
            integral.push(sum);
            let p = i as f64 * INTEGRAL_STEP;
            sum += 0.5 * INTEGRAL_STEP * (weight(p) + weight(p + INTEGRAL_STEP));
        }
        let actions = grid.actions();
        let model = EpochModel::new(&job, &platform);
        let feasible = actions.iter().map(|a| model.is_feasible(*a)).collect();
        let mut context = Self {
            job: job.clone(),
            platform: platform.clone(),
            actions,
            feasible,
            target,
            goal_progress,
            integral,
            time_scale: 1.0,
            epoch_scale: 1.0,
            model_progress: 0.0,
            epochs_seen: 0,
            progress_rate: 1.0,
        };
        let outlooks = context.outlooks(0.0, None, u32::MAX);
        let best = outlooks
            .iter()
            .zip(&context.feasible)
            .filter(|(o, f)| o.reachable && **f)
            .min_by(|(a, _), (b, _)| a.seconds.total_cmp(&b.seconds))
            .map(|(o, _)| *o);
        if let Some(best) = best.filter(|b| b.seconds > 0.0) {
            context.time_scale = best.seconds;
            context.epoch_scale = best.epoch_seconds.max(1e-3);
        } else if let Some(any) = outlooks.first() {
            context.epoch_scale = any.epoch_seconds.max(1e-3);
            context.time_scale = context.epoch_scale * 10.0;
        }
        context
    }

    fn staleness_integral(&self, progress: f64) -> f64 {
        let position = (progress.max(0.0) / INTEGRAL_STEP).min((self.integral.len() - 1) as f64);
        let low = position.floor() as usize;
        let high = (low + 1).min(self.integral.len() - 1);
        let t = position - low as f64;
        self.integral[low] * (1.0 - t) + self.integral[high] * t
    }

    /// Epochs (fractional) with `functions` functions from `progress` to the target: the continuous
    /// form of the curve's per-epoch progress, dP/de = 1 / (1 + s (n - 1) exp(-decay f(P))).
    pub fn epochs_to_go(&self, functions: u32, progress: f64) -> f64 {
        let from = progress.min(self.goal_progress);
        let extra = self.job.curve.staleness * f64::from(functions.max(1) - 1);
        ((self.goal_progress - from)
            + extra * (self.staleness_integral(self.goal_progress) - self.staleness_integral(from)))
            / self.progress_rate
    }

    /// Learns from the job as it runs: compares the progress measured so far with what the believed
    /// curve predicted for the same actions, and scales the remaining-epoch predictions by it. The
    /// correction is phased in over the first epochs, whose accuracy says little.
    pub fn observe(&mut self, observation: &Observation) {
        let Some(last) = observation.last_action else {
            return;
        };
        if observation.epoch <= self.epochs_seen {
            return;
        }
        self.model_progress += self
            .job
            .curve
            .epoch_progress(last.functions, self.model_progress);
        self.epochs_seen = observation.epoch;
        let measured = self.progress_from(observation);
        if self.model_progress > 0.0 && measured > 0.0 {
            let weight = (f64::from(self.epochs_seen) / 4.0).min(1.0);
            let ratio = measured / self.model_progress;
            self.progress_rate = (1.0 + weight * (ratio - 1.0)).clamp(0.5, 2.0);
        }
    }

    /// Believed progress so far, from the last measured accuracy.
    pub fn progress_from(&self, observation: &Observation) -> f64 {
        match observation.accuracy {
            None => 0.0,
            Some(accuracy) => self
                .job
                .curve
                .progress_for_accuracy(accuracy)
                .unwrap_or(self.goal_progress)
                .min(self.goal_progress * 1.5),
        }
    }

    fn outlooks(&self, progress: f64, last: Option<LastEpoch>, epochs_left: u32) -> Vec<Outlook> {
        let model = EpochModel::new(&self.job, &self.platform);
        let warm = assumed_warm_pool(last);
        self.actions
            .iter()
            .map(|&action| {
                let first = model.predict(action, warm);
                let rest = model.predict(action, warm.after(action));
                let epochs = self.epochs_to_go(action.functions, progress).max(1.0);
                // Time stays smooth in progress; cost counts whole epochs, since a budget plan that
                // is short by a fraction of an epoch still stops short.
                let more = epochs - 1.0;
                let more_paid = epochs.ceil() - 1.0;
                let last_epoch = LastEpoch {
                    action,
                    cost_usd: rest.cost_usd,
                };
                let reserve = pessimistic_cost(&model, action, Some(last_epoch)) - rest.cost_usd;
                Outlook {
                    epoch_seconds: first.seconds,
                    seconds: first.seconds + more * rest.seconds,
                    cost_usd: first.cost_usd + more_paid * rest.cost_usd,
                    reserve_usd: reserve.max(0.0),
                    reachable: epochs <= f64::from(epochs_left),
                }
            })
            .collect()
    }

    pub fn features(&self, observation: &Observation, last: Option<LastEpoch>) -> Features {
        let model = EpochModel::new(&self.job, &self.platform);
        let pessimistic_costs: Vec<f64> = self
            .actions
            .iter()
            .map(|a| pessimistic_cost(&model, *a, last))
            .collect();
        let allowed = affordable(
            &pessimistic_costs,
            &self.feasible,
            observation.spent_usd,
            observation.budget_usd,
        );
        let cheapest = cheapest(&self.actions, &pessimistic_costs, &self.feasible);
        let progress = self.progress_from(observation);
        let epochs_left = observation
            .max_epochs
            .saturating_sub(observation.epoch)
            .max(1);
        let outlooks = self.outlooks(progress, last, epochs_left);
        let remaining = observation
            .budget_usd
            .map(|budget| (budget - observation.spent_usd).max(1e-12));

        let cheapest_to_target = outlooks
            .iter()
            .zip(&self.feasible)
            .filter(|(_, f)| **f)
            .map(|(o, _)| o.cost_usd + o.reserve_usd)
            .fold(f64::INFINITY, f64::min);
        let fits = |o: &Outlook| o.fits(remaining);
        let best_affordable = outlooks
            .iter()
            .zip(&allowed)
            .filter(|(o, a)| **a && fits(o))
            .map(|(o, _)| o.seconds)
            .fold(f64::INFINITY, f64::min);
        let best_any = outlooks
            .iter()
            .zip(&allowed)
            .filter(|(_, a)| **a)
            .map(|(o, _)| o.seconds)
            .fold(f64::INFINITY, f64::min);
        let best_time = if best_affordable.is_finite() {
            best_affordable
        } else {
            best_any
        };

        let log_ratio = |value: f64, scale: f64| {
            if value.is_finite() && scale > 0.0 && value > 0.0 {
                (value / scale).ln().clamp(-3.0, 3.0)
            } else {
                3.0
            }
        };
        let budget = observation.budget_usd;
        let last_action = observation.last_action;
        let state = vec![
            f64::from(observation.epoch) / f64::from(observation.max_epochs.max(1)),
            (progress / self.goal_progress.max(1e-9)).clamp(0.0, 1.5),
            match (observation.accuracy, observation.target_accuracy) {
                (Some(a), Some(t)) if t > 0.0 => (a / t).clamp(0.0, 1.5),
                _ => 0.0,
            },
            observation.loss.map_or(1.0, |l| {
                (l / self.job.curve.initial_loss.max(1e-9)).clamp(0.0, 2.0)
            }),
            match (observation.loss, observation.previous_loss) {
                (Some(l), Some(p)) if p > 0.0 => ((p - l) / p).clamp(-1.0, 1.0),
                _ => 0.0,
            },
            budget.map_or(0.0, |b| (observation.spent_usd / b).clamp(0.0, 1.5)),
            budget.map_or(1.0, |b| ((b - observation.spent_usd) / b).clamp(0.0, 1.0)),
            (observation.elapsed_seconds / self.time_scale).clamp(0.0, 5.0),
            last_action.map_or(0.0, |a| f64::from(a.functions.max(1)).log2() / 6.0),
            last_action.map_or(0.0, |a| f64::from(a.memory_mb) / 10_240.0),
            observation
                .last_epoch_seconds
                .map_or(0.0, |s| (s / self.epoch_scale).clamp(0.0, 10.0) / 5.0),
            remaining.map_or(3.0, |r| -log_ratio(cheapest_to_target, r)),
            log_ratio(best_time, self.time_scale),
            self.progress_rate.ln(),
        ];
        debug_assert_eq!(state.len(), STATE_FEATURES);

        let mut inputs = Array2::zeros((self.actions.len(), INPUT_FEATURES));
        for (row, ((action, outlook), pessimistic)) in self
            .actions
            .iter()
            .zip(&outlooks)
            .zip(&pessimistic_costs)
            .enumerate()
        {
            let warm = assumed_warm_pool(last);
            let features = [
                f64::from(action.functions.max(1)).log2() / 6.0,
                (f64::from(action.memory_mb) / 512.0).log2() / 20_f64.log2(),
                log_ratio(outlook.seconds, self.time_scale),
                remaining.map_or(-3.0, |r| log_ratio(outlook.cost_usd, r)),
                log_ratio(outlook.epoch_seconds, self.epoch_scale),
                remaining.map_or(0.0, |r| (pessimistic / r).clamp(0.0, 2.0)),
                f64::from(warm.new_functions(*action)) / f64::from(action.functions.max(1)),
                f64::from(u8::from(last_action == Some(*action))),
                f64::from(u8::from(fits(outlook))),
                if best_time.is_finite() && outlook.seconds.is_finite() {
                    (outlook.seconds / best_time - 1.0).clamp(0.0, 3.0)
                } else {
                    3.0
                },
                remaining.map_or(-1.0, |r| {
                    ((outlook.cost_usd + outlook.reserve_usd) / r - 1.0).clamp(-1.0, 2.0)
                }),
            ];
            debug_assert_eq!(features.len(), ACTION_FEATURES);
            for (column, value) in state.iter().chain(features.iter()).enumerate() {
                inputs[[row, column]] = *value;
            }
        }
        Features {
            state,
            inputs,
            allowed,
            pessimistic_costs,
            cheapest,
            progress_fraction: (progress / self.goal_progress.max(1e-9)).clamp(0.0, 1.0),
            outlooks,
            remaining_usd: remaining,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuous_epochs_agree_with_the_discrete_curve() {
        let job = JobProfile::fashion_mnist_mlp();
        let context = AgentContext::new(
            job.clone(),
            PlatformProfile::lambda_default(),
            &ActionGrid::default(),
            Some(0.85),
        );
        for n in [1, 8, 64] {
            let discrete = f64::from(job.curve.epochs_to(n, 0.0, 0.85, 1000).expect("reaches"));
            let continuous = context.epochs_to_go(n, 0.0);
            assert!(
                (continuous - discrete).abs() <= 1.0 + 0.1 * discrete,
                "n={n}: {continuous} vs {discrete}"
            );
        }
    }

    #[test]
    fn features_are_finite_and_bounded() {
        let context = AgentContext::new(
            JobProfile::fashion_mnist_mlp(),
            PlatformProfile::lambda_default(),
            &ActionGrid::default(),
            Some(0.85),
        );
        let observation = Observation {
            epoch: 3,
            max_epochs: 100,
            loss: Some(0.6),
            previous_loss: Some(0.7),
            accuracy: Some(0.7),
            target_accuracy: Some(0.85),
            spent_usd: 0.01,
            budget_usd: Some(0.05),
            elapsed_seconds: 30.0,
            last_action: Some(Action {
                functions: 8,
                memory_mb: 1769,
            }),
            last_epoch_seconds: Some(5.0),
        };
        let last = Some(LastEpoch {
            action: Action {
                functions: 8,
                memory_mb: 1769,
            },
            cost_usd: 0.003,
        });
        let features = context.features(&observation, last);
        assert_eq!(features.inputs.dim(), (42, INPUT_FEATURES));
        assert!(
            features
                .inputs
                .iter()
                .all(|v| v.is_finite() && v.abs() <= 10.0)
        );
        assert!(features.allowed.iter().any(|a| *a));
    }
}
