//! The serverless training simulator: what one epoch with n functions of m MB takes, costs and
//! achieves. [`EpochModel`] holds the deterministic model (also used for predictions and worst-case
//! bounds); [`Simulator`] adds seeded noise and the state that carries from epoch to epoch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use crate::cost::CostModel;
use crate::policy::Action;
use crate::profile::{JobProfile, PlatformProfile};
use crate::stats::{expected_max_half_normal, expected_max_normal};

/// Functions kept warm from earlier epochs: Lambda reuses an execution environment only for the
/// same configuration, so a change of memory size makes every function cold again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WarmPool {
    pub memory_mb: u32,
    pub functions: u32,
}

impl WarmPool {
    /// Functions of `action` that have to start cold.
    pub fn new_functions(&self, action: Action) -> u32 {
        if self.memory_mb == action.memory_mb {
            action.functions.saturating_sub(self.functions)
        } else {
            action.functions
        }
    }

    pub fn after(&self, action: Action) -> WarmPool {
        if self.memory_mb == action.memory_mb {
            WarmPool {
                memory_mb: action.memory_mb,
                functions: self.functions.max(action.functions),
            }
        } else {
            WarmPool {
                memory_mb: action.memory_mb,
                functions: action.functions,
            }
        }
    }
}

/// One function's time in an epoch, split into what noise touches and what it doesn't.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FunctionTimes {
    /// Invocation overhead, loading the shard, and every pull and push of the parameters.
    pub io_seconds: f64,
    /// Training compute at the function's effective speed, before straggling.
    pub compute_seconds: f64,
}

/// Expected duration and cost of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPrediction {
    pub seconds: f64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct EpochModel<'a> {
    pub job: &'a JobProfile,
    pub platform: &'a PlatformProfile,
}

impl<'a> EpochModel<'a> {
    pub fn new(job: &'a JobProfile, platform: &'a PlatformProfile) -> Self {
        Self { job, platform }
    }

    /// Training speed in vCPUs actually used, per function, when `functions` of this size run.
    pub fn speed_for(&self, vcpus: f64, functions: u32) -> f64 {
        let own = vcpus.min(1.0) + self.job.parallel_efficiency * (vcpus - 1.0).max(0.0);
        match self.platform.cpu_capacity_vcpus {
            Some(capacity) if f64::from(functions) * vcpus > capacity => {
                own * capacity / (f64::from(functions) * vcpus)
            }
            _ => own,
        }
    }

    pub fn speed(&self, action: Action) -> f64 {
        self.speed_for(
            self.platform.pricing.vcpus(action.memory_mb),
            action.functions,
        )
    }

    /// The store is shared: each function gets its own bandwidth until the aggregate cap is reached.
    pub fn bandwidth(&self, functions: u32) -> f64 {
        let store = &self.platform.store;
        store
            .function_bandwidth_bytes_per_second
            .min(store.aggregate_bandwidth_bytes_per_second / f64::from(functions.max(1)))
            .max(1.0)
    }

    pub fn function_times_for(&self, functions: u32, speed: f64, overhead: f64) -> FunctionTimes {
        let job = self.job;
        let latency = self.platform.store.latency_seconds;
        let bandwidth = self.bandwidth(functions);
        let samples = job.samples_per_epoch as f64 / f64::from(functions.max(1));
        let load = latency + samples * job.data_bytes_per_sample / bandwidth;
        // One initial pull, then a pull and a push per sync.
        let syncs = (samples / job.samples_per_sync.max(1) as f64)
            .ceil()
            .max(1.0);
        let transfer = latency + job.parameter_bytes / bandwidth;
        FunctionTimes {
            io_seconds: overhead + load + (2.0 * syncs + 1.0) * transfer,
            compute_seconds: samples * job.compute_seconds_per_sample / speed.max(1e-9),
        }
    }

    pub fn function_times(&self, action: Action) -> FunctionTimes {
        self.function_times_for(
            action.functions,
            self.speed(action),
            self.platform.invocation_overhead_seconds,
        )
    }

    /// The longest a function of this action can run: slowest straggler, longest cold start.
    pub fn worst_case_function_seconds(&self, action: Action, cold: bool) -> f64 {
        let times = self.function_times(action);
        let cold_seconds = if cold {
            self.platform.cold_start.max_seconds
        } else {
            0.0
        };
        times.io_seconds
            + times.compute_seconds * self.platform.stragglers.max_factor.max(1.0)
            + cold_seconds
    }

    /// An upper bound on what the epoch can cost: every function at its worst.
    pub fn worst_case_cost(&self, action: Action, warm: WarmPool) -> f64 {
        let pricing = &self.platform.pricing;
        let new = warm.new_functions(action);
        let warm_count = action.functions - new;
        f64::from(new)
            * pricing.invocation_cost(
                action.memory_mb,
                self.worst_case_function_seconds(action, true),
            )
            + f64::from(warm_count)
                * pricing.invocation_cost(
                    action.memory_mb,
                    self.worst_case_function_seconds(action, false),
                )
    }

    /// Whether the platform and the job allow this action at all.
    pub fn is_feasible(&self, action: Action) -> bool {
        let platform = self.platform;
        action.functions >= 1
            && action.functions <= platform.max_functions
            && action.memory_mb >= platform.min_memory_mb.max(self.job.min_memory_mb)
            && action.memory_mb <= platform.max_memory_mb
            && self.worst_case_function_seconds(action, true) <= platform.max_invocation_seconds
    }

    /// Expected duration and cost of one epoch.
    pub fn predict(&self, action: Action, warm: WarmPool) -> EpochPrediction {
        let platform = self.platform;
        let stragglers = &platform.stragglers;
        let cold = &platform.cold_start;
        let times = self.function_times(action);
        let n = action.functions.max(1);
        let new = warm.new_functions(action);
        let straggle = |k: u32| {
            (stragglers.sigma * expected_max_half_normal(k))
                .exp()
                .min(stragglers.max_factor.max(1.0))
        };
        let mut slowest = times.io_seconds + times.compute_seconds * straggle(n);
        let mean_cold =
            (cold.median_seconds * (cold.sigma * cold.sigma / 2.0).exp()).min(cold.max_seconds);
        if new > 0 {
            let cold_slowest = (cold.median_seconds
                * (cold.sigma * expected_max_normal(new)).exp())
            .min(cold.max_seconds);
            slowest = slowest
                .max(times.io_seconds + times.compute_seconds * straggle(new) + cold_slowest);
        }
        let mean_function = times.io_seconds + times.compute_seconds * straggle(1);
        let pricing = &platform.pricing;
        let cost = f64::from(n - new) * pricing.invocation_cost(action.memory_mb, mean_function)
            + f64::from(new) * pricing.invocation_cost(action.memory_mb, mean_function + mean_cold);
        EpochPrediction {
            seconds: slowest + platform.epoch_overhead_seconds,
            cost_usd: cost,
        }
    }

    /// Expected time and cost to reach `target` from `progress` holding `action` fixed, or None if
    /// the curve doesn't get there within `limit` epochs.
    pub fn predict_static(
        &self,
        action: Action,
        warm: WarmPool,
        progress: f64,
        target: f64,
        limit: u32,
    ) -> Option<StaticPrediction> {
        let epochs = self
            .job
            .curve
            .epochs_to(action.functions, progress, target, limit)?;
        if epochs == 0 {
            return Some(StaticPrediction::default());
        }
        let first = self.predict(action, warm);
        let rest = self.predict(action, warm.after(action));
        let more = f64::from(epochs - 1);
        Some(StaticPrediction {
            epochs,
            seconds: first.seconds + more * rest.seconds,
            cost_usd: first.cost_usd + more * rest.cost_usd,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StaticPrediction {
    pub epochs: u32,
    pub seconds: f64,
    pub cost_usd: f64,
}

/// What one simulated epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochOutcome {
    pub action: Action,
    pub seconds: f64,
    pub cost_usd: f64,
    /// Each invocation's billed duration.
    pub function_seconds: Vec<f64>,
    pub accuracy: f64,
    pub loss: f64,
    pub cold_starts: u32,
}

/// One job's training in the simulator. Deterministic for a seed and a sequence of actions.
#[derive(Debug, Clone)]
pub struct Simulator {
    job: JobProfile,
    platform: PlatformProfile,
    rng: ChaCha8Rng,
    progress: f64,
    warm: WarmPool,
}

impl Simulator {
    pub fn new(job: JobProfile, platform: PlatformProfile, seed: u64) -> Self {
        Self {
            job,
            platform,
            rng: ChaCha8Rng::seed_from_u64(seed),
            progress: 0.0,
            warm: WarmPool::default(),
        }
    }

    pub fn job(&self) -> &JobProfile {
        &self.job
    }

    pub fn platform(&self) -> &PlatformProfile {
        &self.platform
    }

    pub fn model(&self) -> EpochModel<'_> {
        EpochModel::new(&self.job, &self.platform)
    }

    /// Effective epochs of training done so far.
    pub fn progress(&self) -> f64 {
        self.progress
    }

    pub fn warm_pool(&self) -> WarmPool {
        self.warm
    }

    /// Runs one epoch. Every function pays its cold start if it has one, straggles by its own
    /// factor, and is billed for its own duration; the epoch lasts as long as its slowest function.
    pub fn step(&mut self, action: Action) -> EpochOutcome {
        let model = EpochModel::new(&self.job, &self.platform);
        let times = model.function_times(action);
        let new = self.warm.new_functions(action);
        let stragglers = &self.platform.stragglers;
        let cold = &self.platform.cold_start;
        let mut function_seconds = Vec::with_capacity(action.functions as usize);
        for function in 0..action.functions {
            let z: f64 = self.rng.sample(StandardNormal);
            let straggle = (stragglers.sigma * z.abs())
                .exp()
                .min(stragglers.max_factor.max(1.0));
            let cold_seconds = if function < new {
                let z: f64 = self.rng.sample(StandardNormal);
                (cold.median_seconds * (cold.sigma * z).exp()).min(cold.max_seconds)
            } else {
                0.0
            };
            function_seconds
                .push(times.io_seconds + times.compute_seconds * straggle + cold_seconds);
        }
        let cost_usd = function_seconds
            .iter()
            .map(|seconds| {
                self.platform
                    .pricing
                    .invocation_cost(action.memory_mb, *seconds)
            })
            .sum();
        let slowest = function_seconds.iter().copied().fold(0.0, f64::max);

        let curve = &self.job.curve;
        self.progress += curve.epoch_progress(action.functions, self.progress);
        let noise: f64 = self.rng.sample(StandardNormal);
        let accuracy =
            (curve.accuracy_at(self.progress) + curve.accuracy_noise * noise).clamp(0.0, 1.0);
        let loss_span = (curve.initial_loss - curve.final_loss).abs();
        let loss =
            (curve.loss_at(self.progress) - curve.accuracy_noise * noise * loss_span).max(0.0);
        self.warm = self.warm.after(action);
        EpochOutcome {
            action,
            seconds: slowest + self.platform.epoch_overhead_seconds,
            cost_usd,
            function_seconds,
            accuracy,
            loss,
            cold_starts: new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(functions: u32, memory_mb: u32) -> Action {
        Action {
            functions,
            memory_mb,
        }
    }

    fn lambda_job() -> (JobProfile, PlatformProfile) {
        (
            JobProfile::fashion_mnist_mlp(),
            PlatformProfile::lambda_default(),
        )
    }

    #[test]
    fn same_seed_same_epochs() {
        let (job, platform) = lambda_job();
        let mut a = Simulator::new(job.clone(), platform.clone(), 7);
        let mut b = Simulator::new(job, platform, 7);
        for n in [1, 4, 16, 16, 2] {
            assert_eq!(a.step(action(n, 1769)), b.step(action(n, 1769)));
        }
    }

    #[test]
    fn more_functions_are_faster_until_the_store_saturates() {
        let (mut job, mut platform) = lambda_job();
        let model = EpochModel::new(&job, &platform);
        let warm = |a: Action| WarmPool {
            memory_mb: a.memory_mb,
            functions: a.functions,
        };
        let t = |n| {
            model
                .predict(action(n, 1769), warm(action(n, 1769)))
                .seconds
        };
        assert!(t(8) < t(1) / 4.0, "{} vs {}", t(8), t(1));
        // A big model through a slow store: past saturation, parameter traffic stops shrinking.
        job.parameter_bytes = 50.0e6;
        platform.store.aggregate_bandwidth_bytes_per_second = 200.0e6;
        let model = EpochModel::new(&job, &platform);
        let io = |n| model.function_times(action(n, 1769)).io_seconds;
        assert!(io(64) > 0.9 * io(16), "{} vs {}", io(64), io(16));
        assert!(io(1) > 1.5 * io(2));
    }

    #[test]
    fn cold_starts_only_for_new_functions() {
        let (job, platform) = lambda_job();
        let mut sim = Simulator::new(job, platform, 1);
        assert_eq!(sim.step(action(4, 1769)).cold_starts, 4);
        assert_eq!(sim.step(action(4, 1769)).cold_starts, 0);
        assert_eq!(sim.step(action(8, 1769)).cold_starts, 4);
        assert_eq!(sim.step(action(2, 1769)).cold_starts, 0);
        assert_eq!(sim.step(action(2, 3008)).cold_starts, 2);
    }

    #[test]
    fn epochs_cost_what_their_invocations_bill_and_never_beat_the_worst_case() {
        let (job, platform) = lambda_job();
        let mut sim = Simulator::new(job.clone(), platform.clone(), 3);
        let model = EpochModel::new(&job, &platform);
        for a in [
            action(16, 1769),
            action(16, 1769),
            action(32, 512),
            action(1, 10_240),
        ] {
            let warm = sim.warm_pool();
            let bound = model.worst_case_cost(a, warm);
            let outcome = sim.step(a);
            let billed: f64 = outcome
                .function_seconds
                .iter()
                .map(|s| platform.pricing.invocation_cost(a.memory_mb, *s))
                .sum();
            assert!((billed - outcome.cost_usd).abs() < 1e-15);
            assert!(outcome.cost_usd <= bound, "{} > {bound}", outcome.cost_usd);
            let slowest = outcome.function_seconds.iter().copied().fold(0.0, f64::max);
            assert!((outcome.seconds - slowest - platform.epoch_overhead_seconds).abs() < 1e-12);
        }
    }

    #[test]
    fn prediction_tracks_the_simulated_mean() {
        let (job, platform) = lambda_job();
        let model = EpochModel::new(&job, &platform);
        for a in [action(1, 1769), action(8, 3008), action(64, 1024)] {
            let warm = WarmPool {
                memory_mb: a.memory_mb,
                functions: a.functions,
            };
            let predicted = model.predict(a, warm);
            let mut sim = Simulator::new(job.clone(), platform.clone(), 11);
            sim.step(a);
            let runs = 50;
            let (mut seconds, mut cost) = (0.0, 0.0);
            for _ in 0..runs {
                let outcome = sim.step(a);
                seconds += outcome.seconds / f64::from(runs);
                cost += outcome.cost_usd / f64::from(runs);
            }
            assert!(
                (predicted.seconds / seconds - 1.0).abs() < 0.05,
                "{a:?}: {} vs {seconds}",
                predicted.seconds
            );
            assert!(
                (predicted.cost_usd / cost - 1.0).abs() < 0.05,
                "{a:?}: {} vs {cost}",
                predicted.cost_usd
            );
        }
    }

    #[test]
    fn staleness_means_more_epochs_with_more_functions() {
        let (job, platform) = lambda_job();
        let target = 0.85;
        let epochs = |n| {
            let mut sim = Simulator::new(job.clone(), platform.clone(), 5);
            (1..200)
                .find(|_| sim.step(action(n, 1769)).accuracy >= target)
                .expect("reaches")
        };
        assert!(epochs(64) > epochs(1));
    }
}
