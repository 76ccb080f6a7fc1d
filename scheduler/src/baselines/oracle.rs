//! Oracles that know the true job: exhaustive search over static configurations in the simulator,
//! and the best per-epoch schedule by dynamic programming on the mean dynamics.

use serde::{Deserialize, Serialize};

use crate::episode::run_episode;
use crate::grid::ActionGrid;
use crate::policy::{Action, StaticScheduler};
use crate::profile::{JobProfile, PlatformProfile};
use crate::simjob::SimJob;
use crate::simulator::{EpochModel, WarmPool};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StaticRun {
    pub action: Action,
    pub time_to_target: Option<f64>,
    pub seconds: f64,
    pub cost_usd: f64,
    pub violated: bool,
}

impl StaticRun {
    /// Reached the target without overspending.
    pub fn succeeded(&self) -> Option<f64> {
        self.time_to_target.filter(|_| !self.violated)
    }
}

/// Every feasible static configuration of the grid, run through the driver's loop on the same noise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticSearch {
    pub runs: Vec<StaticRun>,
}

impl StaticSearch {
    pub fn run(job: &SimJob, run: u64, grid: &ActionGrid) -> Self {
        let spec = job.spec();
        let runs = grid
            .actions()
            .into_iter()
            .filter(|a| EpochModel::new(&job.job, &job.platform).is_feasible(*a))
            .map(|action| {
                let result = run_episode(
                    &mut job.simulator(run),
                    &mut StaticScheduler::new(action),
                    &spec,
                );
                StaticRun {
                    action,
                    time_to_target: result.time_to_target(),
                    seconds: result.seconds,
                    cost_usd: result.cost_usd,
                    violated: result.violated(spec.budget_usd),
                }
            })
            .collect();
        Self { runs }
    }

    /// The oracle's best static configuration: fastest to the target within budget.
    pub fn best(&self) -> Option<&StaticRun> {
        self.runs
            .iter()
            .filter(|r| r.succeeded().is_some())
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
    }

    /// Median time to the target of the configurations that reach it within budget.
    pub fn median_time(&self) -> Option<f64> {
        let mut times: Vec<f64> = self.runs.iter().filter_map(StaticRun::succeeded).collect();
        if times.is_empty() {
            return None;
        }
        times.sort_by(f64::total_cmp);
        let mid = times.len() / 2;
        Some(if times.len() % 2 == 1 {
            times[mid]
        } else {
            0.5 * (times[mid - 1] + times[mid])
        })
    }

    pub fn run_for(&self, action: Action) -> Option<&StaticRun> {
        self.runs.iter().find(|r| r.action == action)
    }
}

/// The result of dynamic programming over (progress, budget left) on the mean dynamics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpPlan {
    pub schedule: Vec<Action>,
    pub seconds: f64,
    pub cost_usd: f64,
    /// The best static configuration under the same mean model and budget, for comparison.
    pub best_static_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// Progress bin width in effective epochs; must be below the smallest per-epoch progress.
    pub progress_step: f64,
    pub budget_bins: usize,
}

impl Default for DpConfig {
    fn default() -> Self {
        Self {
            progress_step: 0.05,
            budget_bins: 200,
        }
    }
}

/// Best per-epoch schedule on the mean model (warm functions, expected stragglers), or None if the
/// budget can't reach the target. Progress is rounded down and cost up, so the plan is feasible
/// under the model it was made with; it is replayed on exact progress to report its time.
/// Tractable because the mean dynamics are deterministic: states are bins x budget bins.
pub fn dp_oracle(
    job: &JobProfile,
    platform: &PlatformProfile,
    grid: &ActionGrid,
    target: f64,
    budget_usd: f64,
    config: DpConfig,
) -> Option<DpPlan> {
    let model = EpochModel::new(job, platform);
    let curve = &job.curve;
    let goal = curve.progress_for_accuracy(target)?;
    let actions: Vec<Action> = grid
        .actions()
        .into_iter()
        .filter(|a| model.is_feasible(*a))
        .collect();
    let warm = |a: Action| WarmPool {
        memory_mb: a.memory_mb,
        functions: a.functions,
    };
    let predictions: Vec<_> = actions
        .iter()
        .map(|a| model.predict(*a, warm(*a)))
        .collect();
    let step = config.progress_step;
    let bins = (goal / step).ceil() as usize;
    let budget_step = budget_usd / config.budget_bins as f64;
    let cost_bins: Vec<usize> = predictions
        .iter()
        .map(|p| (p.cost_usd / budget_step).ceil().max(1.0) as usize)
        .collect();
    let width = bins;
    let mut value = vec![f64::INFINITY; (config.budget_bins + 1) * width];
    let mut choice = vec![u16::MAX; (config.budget_bins + 1) * width];
    for b in 0..=config.budget_bins {
        for p in (0..bins).rev() {
            let progress = p as f64 * step;
            let mut best = f64::INFINITY;
            let mut best_action = u16::MAX;
            for (i, action) in actions.iter().enumerate() {
                if cost_bins[i] > b {
                    continue;
                }
                let next = progress + curve.epoch_progress(action.functions, progress);
                let rest = if next >= goal {
                    0.0
                } else {
                    let next_bin = (next / step).floor() as usize;
                    if next_bin <= p {
                        continue;
                    }
                    value[(b - cost_bins[i]) * width + next_bin]
                };
                let total = predictions[i].seconds + rest;
                if total < best {
                    best = total;
                    best_action = i as u16;
                }
            }
            value[b * width + p] = best;
            choice[b * width + p] = best_action;
        }
    }
    if !value[config.budget_bins * width].is_finite() {
        return None;
    }
    // Replay on exact progress and spend, following the policy table.
    let (mut progress, mut spent, mut seconds) = (0.0, 0.0, 0.0);
    let mut schedule = Vec::new();
    while progress < goal && schedule.len() < job.max_epochs as usize {
        let p = ((progress / step).floor() as usize).min(bins - 1);
        let b = (((budget_usd - spent) / budget_step).floor().max(0.0) as usize)
            .min(config.budget_bins);
        let i = choice[b * width + p];
        if i == u16::MAX {
            return None;
        }
        let i = usize::from(i);
        schedule.push(actions[i]);
        progress += curve.epoch_progress(actions[i].functions, progress);
        spent += predictions[i].cost_usd;
        seconds += predictions[i].seconds;
    }
    let best_static_seconds = actions
        .iter()
        .zip(&predictions)
        .filter_map(|(action, prediction)| {
            let epochs =
                f64::from(curve.epochs_to(action.functions, 0.0, target, job.max_epochs)?);
            (epochs * prediction.cost_usd <= budget_usd).then_some(epochs * prediction.seconds)
        })
        .reduce(f64::min);
    Some(DpPlan {
        schedule,
        seconds,
        cost_usd: spent,
        best_static_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simjob::SimJobConfig;

    #[test]
    fn static_search_finds_a_best_no_slower_than_the_median() {
        let grid = ActionGrid::default();
        let job = SimJob::draw(3, &SimJobConfig::default(), &grid, Some(2.0));
        let search = StaticSearch::run(&job, 0, &grid);
        let best = search
            .best()
            .expect("something reaches the target at twice the cheapest cost");
        let median = search.median_time().expect("a median");
        assert!(best.seconds <= median);
        assert!(
            search
                .runs
                .iter()
                .filter_map(StaticRun::succeeded)
                .all(|t| t >= best.seconds)
        );
    }

    #[test]
    fn dynamic_programming_is_no_worse_than_the_best_static_schedule() {
        let grid = ActionGrid::default();
        for seed in 0..3 {
            let job = SimJob::draw(seed, &SimJobConfig::default(), &grid, Some(2.0));
            let plan = dp_oracle(
                &job.job,
                &job.platform,
                &grid,
                job.target_accuracy,
                job.budget_usd,
                DpConfig::default(),
            )
            .expect("a plan exists at twice the cheapest cost");
            assert!(plan.cost_usd <= job.budget_usd * (1.0 + 1e-9));
            let best_static = plan.best_static_seconds.expect("a static schedule fits");
            // Rounding progress down costs the plan a little; it must still be close or better.
            assert!(
                plan.seconds <= best_static * 1.05,
                "{} vs {best_static}",
                plan.seconds
            );
        }
    }
}
