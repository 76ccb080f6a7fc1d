//! Offline training of the DRL policy in the simulator, across randomised jobs and platforms.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::drl::{DrlScheduler, LearningConfig, Policy, update_policy};
use crate::episode::run_episode;
use crate::grid::ActionGrid;
use crate::simjob::{SimJob, SimJobConfig};

/// Training draws job seeds below this; evaluation uses seeds from it upwards, so the agent is
/// always evaluated on jobs it never trained on.
pub const HELD_OUT_SEEDS: u64 = 1 << 62;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingConfig {
    pub iterations: usize,
    pub episodes_per_iteration: usize,
    pub hidden: usize,
    pub learning: LearningConfig,
    /// The entropy bonus decays linearly from `learning.entropy` to this.
    pub final_entropy: f64,
    pub jobs: SimJobConfig,
    pub grid: ActionGrid,
}

impl TrainingConfig {
    /// What ships in config/scheduler/: 48,000 simulated jobs, about 80 s on one core.
    pub fn standard() -> Self {
        Self {
            iterations: 1000,
            episodes_per_iteration: 48,
            hidden: 32,
            learning: LearningConfig::default(),
            final_entropy: 0.001,
            jobs: SimJobConfig::default(),
            grid: ActionGrid::default(),
        }
    }

    /// A few seconds: for tests.
    pub fn quick() -> Self {
        Self {
            iterations: 6,
            episodes_per_iteration: 4,
            hidden: 8,
            ..Self::standard()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationStats {
    pub iteration: usize,
    pub mean_return: f64,
    pub reached_fraction: f64,
    /// Mean time to the end of the job over the job's own time scale (best predicted time, any cost).
    pub mean_time_ratio: f64,
    pub budget_violations: usize,
    pub entropy: f64,
    pub value_loss: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingReport {
    pub seed: u64,
    pub episodes: u64,
    pub budget_violations: usize,
    pub iterations: Vec<IterationStats>,
}

pub fn train_offline(config: &TrainingConfig, seed: u64) -> (Policy, TrainingReport) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut policy = Policy::new(
        config.grid.clone(),
        config.hidden,
        config.learning.clone(),
        rng.random(),
    );
    let mut report = TrainingReport {
        seed,
        episodes: 0,
        budget_violations: 0,
        iterations: Vec::with_capacity(config.iterations),
    };
    for iteration in 0..config.iterations {
        let progress = iteration as f64 / config.iterations.max(1) as f64;
        let entropy =
            config.learning.entropy + (config.final_entropy - config.learning.entropy) * progress;
        let mut trajectories = Vec::with_capacity(config.episodes_per_iteration);
        let (mut reached, mut violations, mut time_ratio) = (0, 0, 0.0);
        for _ in 0..config.episodes_per_iteration {
            let job = SimJob::draw(
                rng.random_range(0..HELD_OUT_SEEDS),
                &config.jobs,
                &config.grid,
                None,
            );
            let mut scheduler = DrlScheduler::new(
                policy.clone(),
                job.believed_job.clone(),
                job.believed_platform.clone(),
            )
            .exploring(rng.random());
            let spec = job.spec();
            let result = run_episode(&mut job.simulator(rng.random()), &mut scheduler, &spec);
            reached += usize::from(result.reached());
            violations += usize::from(result.violated(spec.budget_usd));
            time_ratio -= scheduler_time_ratio(&scheduler, &result);
            trajectories.push(scheduler.take_trajectory());
        }
        let stats = update_policy(&mut policy, &trajectories, entropy, None);
        let episodes = config.episodes_per_iteration.max(1) as f64;
        report.episodes += config.episodes_per_iteration as u64;
        report.budget_violations += violations;
        report.iterations.push(IterationStats {
            iteration,
            mean_return: stats.mean_return,
            reached_fraction: reached as f64 / episodes,
            mean_time_ratio: -time_ratio / episodes,
            budget_violations: violations,
            entropy: stats.entropy,
            value_loss: stats.value_loss,
        });
    }
    (policy, report)
}

/// The job's elapsed time over its time scale, read before the trajectory is taken.
fn scheduler_time_ratio(scheduler: &DrlScheduler, result: &crate::episode::EpisodeResult) -> f64 {
    scheduler
        .time_scale()
        .map_or(0.0, |scale| result.seconds / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_is_deterministic_for_a_seed() {
        let config = TrainingConfig::quick();
        let (a, report_a) = train_offline(&config, 5);
        let (b, report_b) = train_offline(&config, 5);
        assert_eq!(a, b);
        assert_eq!(report_a, report_b);
        assert_eq!(report_a.budget_violations, 0);
        let (c, _) = train_offline(&config, 6);
        assert_ne!(a, c);
    }
}
