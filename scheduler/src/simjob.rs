//! Random jobs and platforms for training and evaluating schedulers in the simulator, each with the
//! slightly wrong profiles a real calibration would give the agent.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::cost::{ClusterPricing, LambdaPricing, MB_PER_VCPU, Pricing};
use crate::episode::EpisodeSpec;
use crate::grid::ActionGrid;
use crate::profile::{ColdStart, JobProfile, LossCurve, PlatformProfile, StoreProfile, Stragglers};
use crate::simulator::{EpochModel, Simulator, WarmPool};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimJobConfig {
    /// Relative calibration error on everything that sets cost (compute, bytes, bandwidth, latency,
    /// cold starts, stragglers): the agent's profile is off by up to this much either way. The mask's
    /// PROFILE_MARGIN covers up to ~7%.
    pub cost_error: f64,
    /// Relative calibration error on the loss-curve parameters (rate, staleness, its decay).
    pub curve_error: f64,
    /// Budgets are drawn as this range (log-uniform) times the cheapest static way to the target.
    pub budget_factor_min: f64,
    pub budget_factor_max: f64,
    /// Fraction of jobs on a Kubernetes (Knative-style) platform rather than Lambda.
    pub cluster_share: f64,
}

impl Default for SimJobConfig {
    fn default() -> Self {
        Self {
            cost_error: 0.05,
            curve_error: 0.15,
            budget_factor_min: 1.2,
            budget_factor_max: 4.0,
            cluster_share: 0.3,
        }
    }
}

/// One randomised job: the truth the simulator runs, and what the agent believes about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimJob {
    pub seed: u64,
    pub job: JobProfile,
    pub platform: PlatformProfile,
    pub believed_job: JobProfile,
    pub believed_platform: PlatformProfile,
    pub target_accuracy: f64,
    /// Expected cost of the cheapest static configuration on the grid that reaches the target.
    pub min_cost_usd: f64,
    pub budget_factor: f64,
    pub budget_usd: f64,
}

fn log_uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    (rng.random_range(low.ln()..high.ln())).exp()
}

fn jitter(rng: &mut impl Rng, value: f64, error: f64) -> f64 {
    if error <= 0.0 {
        value
    } else {
        value * rng.random_range(1.0 - error..1.0 + error)
    }
}

fn draw_job(rng: &mut impl Rng) -> (JobProfile, f64) {
    let parameter_bytes = log_uniform(rng, 0.2e6, 60.0e6);
    let initial_accuracy = if rng.random_bool(0.7) { 0.1 } else { 0.01 };
    let final_accuracy = rng.random_range(0.75..0.98);
    let curve = LossCurve {
        initial_accuracy,
        final_accuracy,
        initial_loss: if initial_accuracy > 0.05 { 2.3 } else { 4.6 },
        final_loss: rng.random_range(0.1..0.6),
        rate: log_uniform(rng, 0.08, 0.6),
        staleness: log_uniform(rng, 0.005, 0.08),
        staleness_decay: rng.random_range(0.0..2.5),
        accuracy_noise: rng.random_range(0.001..0.004),
    };
    let target =
        initial_accuracy + (final_accuracy - initial_accuracy) * rng.random_range(0.85..0.97);
    let min_memory_mb = ((4.0 * parameter_bytes / 1.0e6 + 200.0).ceil() as u32).max(256);
    let job = JobProfile {
        compute_seconds_per_sample: log_uniform(rng, 0.1e-3, 4.0e-3),
        parallel_efficiency: rng.random_range(0.4..0.95),
        parameter_bytes,
        data_bytes_per_sample: log_uniform(rng, 300.0, 12_000.0),
        samples_per_epoch: log_uniform(rng, 20_000.0, 200_000.0) as u64,
        samples_per_sync: [256, 640, 1280, 2560][rng.random_range(0..4)],
        min_memory_mb,
        max_epochs: 300,
        curve,
    };
    (job, target)
}

fn draw_platform(rng: &mut impl Rng, cluster_share: f64) -> PlatformProfile {
    if rng.random_bool(cluster_share.clamp(0.0, 1.0)) {
        // Knative on Kubernetes with Redis: pods start slower, the store is close but single-threaded.
        PlatformProfile {
            name: "cluster-redis".to_string(),
            pricing: Pricing::Cluster(ClusterPricing::new(
                log_uniform(rng, 0.02, 0.06) / 3600.0,
                log_uniform(rng, 0.003, 0.008) / 3600.0,
                MB_PER_VCPU,
            )),
            cold_start: ColdStart {
                median_seconds: rng.random_range(1.5..5.0),
                sigma: rng.random_range(0.2..0.5),
                max_seconds: 15.0,
            },
            store: StoreProfile {
                latency_seconds: rng.random_range(0.0005..0.003),
                function_bandwidth_bytes_per_second: log_uniform(rng, 100.0e6, 500.0e6),
                aggregate_bandwidth_bytes_per_second: log_uniform(rng, 0.4e9, 1.5e9),
            },
            stragglers: Stragglers {
                sigma: rng.random_range(0.03..0.2),
                max_factor: rng.random_range(1.4..2.2),
            },
            invocation_overhead_seconds: rng.random_range(0.005..0.03),
            epoch_overhead_seconds: rng.random_range(0.2..1.0),
            min_memory_mb: 128,
            max_memory_mb: 10_240,
            max_functions: 64,
            max_invocation_seconds: 3600.0,
            cpu_capacity_vcpus: None,
        }
    } else {
        let arm = rng.random_bool(0.3);
        PlatformProfile {
            name: if arm {
                "lambda-arm-s3"
            } else {
                "lambda-x86-s3"
            }
            .to_string(),
            pricing: Pricing::Lambda(if arm {
                LambdaPricing::ARM
            } else {
                LambdaPricing::X86
            }),
            cold_start: ColdStart {
                median_seconds: rng.random_range(0.3..2.0),
                sigma: rng.random_range(0.2..0.5),
                max_seconds: rng.random_range(3.0..8.0),
            },
            store: StoreProfile {
                latency_seconds: rng.random_range(0.01..0.06),
                function_bandwidth_bytes_per_second: log_uniform(rng, 40.0e6, 150.0e6),
                aggregate_bandwidth_bytes_per_second: log_uniform(rng, 0.5e9, 5.0e9),
            },
            stragglers: Stragglers {
                sigma: rng.random_range(0.03..0.25),
                max_factor: rng.random_range(1.5..2.5),
            },
            invocation_overhead_seconds: rng.random_range(0.01..0.06),
            epoch_overhead_seconds: rng.random_range(0.2..1.0),
            min_memory_mb: 128,
            max_memory_mb: 10_240,
            max_functions: 1000,
            max_invocation_seconds: 900.0,
            cpu_capacity_vcpus: None,
        }
    }
}

/// The calibrated view: every parameter off by a bounded random relative error.
fn believe(
    rng: &mut impl Rng,
    job: &JobProfile,
    platform: &PlatformProfile,
    config: &SimJobConfig,
) -> (JobProfile, PlatformProfile) {
    let (e, c) = (config.cost_error, config.curve_error);
    let mut believed_job = job.clone();
    believed_job.compute_seconds_per_sample = jitter(rng, job.compute_seconds_per_sample, e);
    believed_job.parallel_efficiency = jitter(rng, job.parallel_efficiency, e).min(1.0);
    believed_job.parameter_bytes = jitter(rng, job.parameter_bytes, e);
    believed_job.data_bytes_per_sample = jitter(rng, job.data_bytes_per_sample, e);
    let curve = &mut believed_job.curve;
    curve.rate = jitter(rng, curve.rate, c);
    curve.staleness = jitter(rng, curve.staleness, c);
    curve.staleness_decay = jitter(rng, curve.staleness_decay, c);
    curve.final_accuracy = (curve.final_accuracy + rng.random_range(-0.005..0.005)).min(0.999);
    let mut believed_platform = platform.clone();
    let cold = &mut believed_platform.cold_start;
    cold.median_seconds = jitter(rng, cold.median_seconds, e);
    cold.max_seconds = jitter(rng, cold.max_seconds, e);
    let store = &mut believed_platform.store;
    store.latency_seconds = jitter(rng, store.latency_seconds, e);
    store.function_bandwidth_bytes_per_second =
        jitter(rng, store.function_bandwidth_bytes_per_second, e);
    store.aggregate_bandwidth_bytes_per_second =
        jitter(rng, store.aggregate_bandwidth_bytes_per_second, e);
    let stragglers = &mut believed_platform.stragglers;
    stragglers.sigma = jitter(rng, stragglers.sigma, e);
    stragglers.max_factor = jitter(rng, stragglers.max_factor, e).max(1.0);
    believed_platform.invocation_overhead_seconds =
        jitter(rng, platform.invocation_overhead_seconds, e);
    believed_platform.epoch_overhead_seconds = jitter(rng, platform.epoch_overhead_seconds, e);
    (believed_job, believed_platform)
}

/// Expected cost of the cheapest static grid configuration that reaches `target`.
pub fn cheapest_static_cost(
    job: &JobProfile,
    platform: &PlatformProfile,
    grid: &ActionGrid,
    target: f64,
) -> Option<f64> {
    let model = EpochModel::new(job, platform);
    grid.actions()
        .into_iter()
        .filter(|a| model.is_feasible(*a))
        .filter_map(|a| model.predict_static(a, WarmPool::default(), 0.0, target, job.max_epochs))
        .map(|p| p.cost_usd)
        .reduce(f64::min)
}

impl SimJob {
    /// A job from its seed; draws again (deterministically) until the grid can reach the target.
    pub fn draw(
        seed: u64,
        config: &SimJobConfig,
        grid: &ActionGrid,
        budget_factor: Option<f64>,
    ) -> SimJob {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5151_7e57_0b5e_55ed);
        loop {
            let (job, target) = draw_job(&mut rng);
            let platform = draw_platform(&mut rng, config.cluster_share);
            let (believed_job, believed_platform) = believe(&mut rng, &job, &platform, config);
            let factor = budget_factor.unwrap_or_else(|| {
                log_uniform(&mut rng, config.budget_factor_min, config.budget_factor_max)
            });
            if let Some(min_cost_usd) = cheapest_static_cost(&job, &platform, grid, target) {
                return SimJob {
                    seed,
                    job,
                    platform,
                    believed_job,
                    believed_platform,
                    target_accuracy: target,
                    min_cost_usd,
                    budget_factor: factor,
                    budget_usd: factor * min_cost_usd,
                };
            }
        }
    }

    pub fn with_budget_factor(&self, factor: f64) -> SimJob {
        SimJob {
            budget_factor: factor,
            budget_usd: factor * self.min_cost_usd,
            ..self.clone()
        }
    }

    pub fn spec(&self) -> EpisodeSpec {
        EpisodeSpec {
            target_accuracy: self.target_accuracy,
            budget_usd: Some(self.budget_usd),
            max_epochs: self.job.max_epochs,
            believed: Some((self.believed_job.clone(), self.believed_platform.clone())),
        }
    }

    /// A fresh simulation of this job; `run` picks the noise, so repeated runs differ.
    pub fn simulator(&self, run: u64) -> Simulator {
        Simulator::new(
            self.job.clone(),
            self.platform.clone(),
            self.seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(run),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_deterministic_and_reachable() {
        let config = SimJobConfig::default();
        let grid = ActionGrid::default();
        for seed in 0..20 {
            let a = SimJob::draw(seed, &config, &grid, None);
            assert_eq!(a, SimJob::draw(seed, &config, &grid, None));
            assert!(
                a.min_cost_usd > 0.0 && a.budget_usd >= a.min_cost_usd * config.budget_factor_min
            );
            assert!(a.target_accuracy < a.job.curve.final_accuracy);
        }
        assert_ne!(
            SimJob::draw(1, &config, &grid, None),
            SimJob::draw(2, &config, &grid, None)
        );
    }
}
