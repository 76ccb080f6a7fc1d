//! What the simulator and the agent know about a job and the platform it runs on. `siren calibrate`
//! measures these on a real machine; the Lambda defaults below come from published figures.

use serde::{Deserialize, Serialize};

use crate::cost::{MAX_LAMBDA_MEMORY_MB, MIN_LAMBDA_MEMORY_MB, Pricing};

/// How accuracy and loss grow with training progress under asynchronous SGD.
///
/// Progress `P` is counted in "effective epochs": one epoch on one function adds exactly 1. With `n`
/// functions pushing asynchronously each update is computed on parameters up to `n - 1` versions old,
/// so an epoch adds only `1 / (1 + staleness (n - 1) exp(-staleness_decay f))`, where `f` is the
/// fraction of the way to convergence. The decay term lets staleness hurt less late in training, when
/// the gradient noise scale has grown and parallel updates disagree less (McCandlish et al., 2018);
/// with `staleness_decay = 0` the penalty is constant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossCurve {
    pub initial_accuracy: f64,
    pub final_accuracy: f64,
    pub initial_loss: f64,
    pub final_loss: f64,
    /// Per effective epoch: `f(P) = 1 - exp(-rate P)`.
    pub rate: f64,
    pub staleness: f64,
    pub staleness_decay: f64,
    /// Standard deviation of the measured test accuracy around the curve (finite test set).
    pub accuracy_noise: f64,
}

impl LossCurve {
    pub fn fraction(&self, progress: f64) -> f64 {
        1.0 - (-self.rate * progress.max(0.0)).exp()
    }

    /// Progress one epoch with `functions` functions adds, starting from `progress`.
    pub fn epoch_progress(&self, functions: u32, progress: f64) -> f64 {
        let extra = f64::from(functions.max(1) - 1);
        let decay = (-self.staleness_decay * self.fraction(progress)).exp();
        1.0 / (1.0 + self.staleness.max(0.0) * extra * decay)
    }

    pub fn accuracy_at(&self, progress: f64) -> f64 {
        self.initial_accuracy
            + (self.final_accuracy - self.initial_accuracy) * self.fraction(progress)
    }

    pub fn loss_at(&self, progress: f64) -> f64 {
        self.initial_loss + (self.final_loss - self.initial_loss) * self.fraction(progress)
    }

    /// The progress at which the curve reaches `accuracy`, or None if it never does.
    pub fn progress_for_accuracy(&self, accuracy: f64) -> Option<f64> {
        let span = self.final_accuracy - self.initial_accuracy;
        if span <= 0.0 || self.rate <= 0.0 {
            return None;
        }
        let fraction = (accuracy - self.initial_accuracy) / span;
        if fraction >= 1.0 {
            return None;
        }
        Some((-(1.0 - fraction.max(0.0)).ln() / self.rate).max(0.0))
    }

    /// Epochs with a fixed number of functions from `progress` until accuracy reaches `target`
    /// (mean dynamics, no noise), or None if not within `limit` epochs.
    pub fn epochs_to(&self, functions: u32, progress: f64, target: f64, limit: u32) -> Option<u32> {
        let goal = self.progress_for_accuracy(target)?;
        let mut progress = progress;
        for epoch in 0..limit {
            if progress >= goal {
                return Some(epoch);
            }
            progress += self.epoch_progress(functions, progress);
        }
        (progress >= goal).then_some(limit)
    }
}

/// One training job as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobProfile {
    /// Seconds of one vCPU per training sample (forward, backward, optimiser).
    pub compute_seconds_per_sample: f64,
    /// How much of each vCPU beyond the first a training step uses (0: single-threaded, 1: perfect).
    pub parallel_efficiency: f64,
    pub parameter_bytes: f64,
    /// Bytes each function reads from the store per training sample (its shard of the data set).
    pub data_bytes_per_sample: f64,
    pub samples_per_epoch: u64,
    /// Samples between two parameter syncs (one pull and one push): batch size x steps per push.
    pub samples_per_sync: u64,
    /// Below this a function cannot hold the model and its shard.
    pub min_memory_mb: u32,
    pub max_epochs: u32,
    pub curve: LossCurve,
}

impl JobProfile {
    /// A Fashion-MNIST multilayer perceptron (784-256-128-10, f32) as Siren's worker trains it:
    /// about 0.25 ms of one vCPU per sample, 0.9 MB of parameters, 785 bytes per sample.
    pub fn fashion_mnist_mlp() -> Self {
        Self {
            compute_seconds_per_sample: 0.000_25,
            parallel_efficiency: 0.7,
            parameter_bytes: 945_000.0,
            data_bytes_per_sample: 785.0,
            samples_per_epoch: 60_000,
            samples_per_sync: 640,
            min_memory_mb: 256,
            max_epochs: 200,
            curve: LossCurve {
                initial_accuracy: 0.10,
                final_accuracy: 0.89,
                initial_loss: 2.30,
                final_loss: 0.30,
                rate: 0.45,
                staleness: 0.03,
                staleness_decay: 1.0,
                accuracy_noise: 0.002,
            },
        }
    }
}

/// Cold starts follow a log-normal distribution, truncated at `max_seconds`: the truncation is what
/// lets a worst-case cost be computed, and the budget guarantee rests on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    pub median_seconds: f64,
    pub sigma: f64,
    pub max_seconds: f64,
}

/// The parameter store as the functions see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreProfile {
    /// Round trip of one request, before any payload.
    pub latency_seconds: f64,
    /// What one function can move on its own.
    pub function_bandwidth_bytes_per_second: f64,
    /// What the store serves to everyone at once; past it, concurrent functions share it.
    pub aggregate_bandwidth_bytes_per_second: f64,
}

/// Each function's compute is slowed by a log-normal factor (noisy neighbours, throttling),
/// truncated to `[1, max_factor]` so that it only ever slows a function down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stragglers {
    pub sigma: f64,
    pub max_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlatformProfile {
    pub name: String,
    pub pricing: Pricing,
    pub cold_start: ColdStart,
    pub store: StoreProfile,
    pub stragglers: Stragglers,
    /// Invoking a function and returning its result, billed.
    pub invocation_overhead_seconds: f64,
    /// What the driver adds per epoch (fan-out, evaluation, checkpoint), not billed as function time.
    pub epoch_overhead_seconds: f64,
    pub min_memory_mb: u32,
    pub max_memory_mb: u32,
    pub max_functions: u32,
    /// The platform kills an invocation after this long (Lambda: 15 minutes).
    pub max_invocation_seconds: f64,
    /// vCPUs the whole pool shares (a single host); None on Lambda, where every function has its own.
    pub cpu_capacity_vcpus: Option<f64>,
}

impl PlatformProfile {
    /// AWS Lambda (x86) with S3 as the parameter store.
    ///
    /// - Cold start: a container-image function of ~40 MB takes 0.5-1.5 s to initialise (AWS's own
    ///   figures for image functions; init is billed since August 2025), so median 0.8 s, truncated at 4 s.
    /// - S3: first-byte latency of 20-40 ms per request; a Lambda function reads and writes at
    ///   ~75-90 MB/s; one object key is served at a few GB/s in aggregate before throttling (3,500 PUT and
    ///   5,500 GET per second per prefix), so 2 GB/s.
    /// - Stragglers: invocations of equal work vary by ~10% on Lambda, with a tail of up to 1.8x.
    pub fn lambda_default() -> Self {
        Self {
            name: "lambda-x86-s3".to_string(),
            pricing: Pricing::LambdaX86,
            cold_start: ColdStart {
                median_seconds: 0.8,
                sigma: 0.35,
                max_seconds: 4.0,
            },
            store: StoreProfile {
                latency_seconds: 0.03,
                function_bandwidth_bytes_per_second: 80.0e6,
                aggregate_bandwidth_bytes_per_second: 2.0e9,
            },
            stragglers: Stragglers {
                sigma: 0.1,
                max_factor: 1.8,
            },
            invocation_overhead_seconds: 0.03,
            epoch_overhead_seconds: 0.5,
            min_memory_mb: MIN_LAMBDA_MEMORY_MB,
            max_memory_mb: MAX_LAMBDA_MEMORY_MB,
            max_functions: 1000,
            max_invocation_seconds: 900.0,
            cpu_capacity_vcpus: None,
        }
    }

    /// Siren's local backend on one host: functions are threads or processes sharing its cores,
    /// the store is in-process or a loopback Redis (0.2 ms round trips, ~1 GB/s per connection,
    /// ~2 GB/s in total since Redis serves from one thread). Pods-style pricing at roughly on-demand
    /// VM rates: $0.04 per vCPU-hour and $0.005 per GB-hour. `siren calibrate` replaces these.
    pub fn local_default() -> Self {
        Self {
            name: "local".to_string(),
            pricing: Pricing::Cluster(crate::cost::ClusterPricing::new(
                0.04 / 3600.0,
                0.005 / 3600.0,
                crate::cost::MB_PER_VCPU,
            )),
            cold_start: ColdStart {
                median_seconds: 0.05,
                sigma: 0.3,
                max_seconds: 0.5,
            },
            store: StoreProfile {
                latency_seconds: 0.0002,
                function_bandwidth_bytes_per_second: 1.0e9,
                aggregate_bandwidth_bytes_per_second: 2.0e9,
            },
            stragglers: Stragglers {
                sigma: 0.05,
                max_factor: 1.5,
            },
            invocation_overhead_seconds: 0.002,
            epoch_overhead_seconds: 0.2,
            min_memory_mb: 128,
            max_memory_mb: 8192,
            max_functions: 16,
            max_invocation_seconds: 3600.0,
            cpu_capacity_vcpus: Some(2.0),
        }
    }
}

/// What `siren calibrate` writes and the DRL scheduler of a real job reads: the job and the
/// platform as measured on a real machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedProfile {
    pub job: JobProfile,
    pub platform: PlatformProfile,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("profile field `{field}` is {value}: {expected}")]
pub struct ProfileError {
    pub field: &'static str,
    pub value: f64,
    pub expected: &'static str,
}

impl CalibratedProfile {
    /// Rejects values no measurement gives, which would otherwise make predictions (and so the
    /// budget mask) meaningless: non-finite, negative, or inverted bounds.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let (job, platform) = (&self.job, &self.platform);
        let positive = [
            (
                "job.compute_seconds_per_sample",
                job.compute_seconds_per_sample,
            ),
            ("job.parameter_bytes", job.parameter_bytes),
            (
                "platform.store.function_bandwidth_bytes_per_second",
                platform.store.function_bandwidth_bytes_per_second,
            ),
            (
                "platform.store.aggregate_bandwidth_bytes_per_second",
                platform.store.aggregate_bandwidth_bytes_per_second,
            ),
            (
                "platform.cold_start.max_seconds",
                platform.cold_start.max_seconds,
            ),
            (
                "platform.max_invocation_seconds",
                platform.max_invocation_seconds,
            ),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(ProfileError {
                    field,
                    value,
                    expected: "must be a positive number",
                });
            }
        }
        let non_negative = [
            ("job.data_bytes_per_sample", job.data_bytes_per_sample),
            // An in-process store answers in nanoseconds: a fitted latency of 0 is honest.
            (
                "platform.store.latency_seconds",
                platform.store.latency_seconds,
            ),
            ("job.parallel_efficiency", job.parallel_efficiency),
            (
                "platform.cold_start.median_seconds",
                platform.cold_start.median_seconds,
            ),
            ("platform.cold_start.sigma", platform.cold_start.sigma),
            ("platform.stragglers.sigma", platform.stragglers.sigma),
            (
                "platform.invocation_overhead_seconds",
                platform.invocation_overhead_seconds,
            ),
            (
                "platform.epoch_overhead_seconds",
                platform.epoch_overhead_seconds,
            ),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ProfileError {
                    field,
                    value,
                    expected: "must be a non-negative number",
                });
            }
        }
        if platform.cold_start.max_seconds < platform.cold_start.median_seconds {
            return Err(ProfileError {
                field: "platform.cold_start.max_seconds",
                value: platform.cold_start.max_seconds,
                expected: "must be at least the median cold start",
            });
        }
        if !(platform.stragglers.max_factor.is_finite() && platform.stragglers.max_factor >= 1.0) {
            return Err(ProfileError {
                field: "platform.stragglers.max_factor",
                value: platform.stragglers.max_factor,
                expected: "must be at least 1",
            });
        }
        if platform.max_functions == 0 || platform.min_memory_mb > platform.max_memory_mb {
            return Err(ProfileError {
                field: "platform.max_functions",
                value: f64::from(platform.max_functions),
                expected: "needs at least one function and min memory <= max memory",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_inverts_and_staleness_slows_progress() {
        let curve = JobProfile::fashion_mnist_mlp().curve;
        let progress = curve.progress_for_accuracy(0.8).expect("reachable");
        assert!((curve.accuracy_at(progress) - 0.8).abs() < 1e-12);
        assert_eq!(curve.progress_for_accuracy(0.95), None);
        assert_eq!(curve.epoch_progress(1, 0.0), 1.0);
        assert!(curve.epoch_progress(32, 0.0) < curve.epoch_progress(8, 0.0));
        // Later in training staleness hurts less (staleness_decay > 0).
        assert!(curve.epoch_progress(32, 5.0) > curve.epoch_progress(32, 0.0));
        let one = curve.epochs_to(1, 0.0, 0.85, 500).expect("reaches");
        let many = curve.epochs_to(64, 0.0, 0.85, 500).expect("reaches");
        assert!(many > one, "{many} vs {one}");
    }

    #[test]
    fn profiles_round_trip_through_json() {
        for platform in [
            PlatformProfile::lambda_default(),
            PlatformProfile::local_default(),
        ] {
            let json = serde_json::to_string(&platform).expect("serialises");
            let back: PlatformProfile = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, platform);
        }
        let job = JobProfile::fashion_mnist_mlp();
        let back: JobProfile =
            serde_json::from_str(&serde_json::to_string(&job).expect("serialises"))
                .expect("parses");
        assert_eq!(back, job);
    }

    #[test]
    fn impossible_profiles_are_rejected() {
        let good = CalibratedProfile {
            job: JobProfile::fashion_mnist_mlp(),
            platform: PlatformProfile::local_default(),
        };
        assert_eq!(good.validate(), Ok(()));
        let mut nan = good.clone();
        nan.job.compute_seconds_per_sample = f64::NAN;
        assert_eq!(
            nan.validate().map_err(|e| e.field),
            Err("job.compute_seconds_per_sample")
        );
        let mut inverted = good.clone();
        inverted.platform.cold_start.max_seconds = 0.01;
        assert_eq!(
            inverted.validate().map_err(|e| e.field),
            Err("platform.cold_start.max_seconds")
        );
        let mut speedup = good;
        speedup.platform.stragglers.max_factor = 0.5;
        assert!(speedup.validate().is_err());
    }

    #[test]
    fn shipped_lambda_profile_is_the_default() {
        let shipped: PlatformProfile =
            serde_json::from_str(include_str!("../../config/scheduler/lambda-platform.json"))
                .expect("the shipped profile parses");
        assert_eq!(shipped, PlatformProfile::lambda_default());
    }
}
