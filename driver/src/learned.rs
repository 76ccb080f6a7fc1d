//! The DRL scheduler for a real job: the policy it acts with, the profiles it predicts with
//! (calibrated by `siren calibrate`, or measured briefly at the job's start), and where what it
//! learns from the job is saved.

use std::path::{Path, PathBuf};
use std::time::Instant;

use siren_crds::TrainingJobSpec;
use siren_data::DataSplits;
use siren_scheduler::{
    Action, CalibratedProfile, Decision, DrlScheduler, JobProfile, LossCurve, Observation,
    PlatformProfile, Policy, Scheduler,
};
use siren_worker::model::{Architecture, GradientComputer};
use thiserror::Error;

use crate::pricing::pricing_of;

/// The policy trained by `siren scheduler train` and shipped with Siren.
pub const SHIPPED_POLICY: &str = include_str!("../../config/scheduler/drl-policy.json");

#[derive(Debug, Error)]
pub enum LearnedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a scheduler policy: {message}")]
    Policy { path: String, message: String },
    #[error("{path} is not a calibrated profile: {message}")]
    Profile { path: PathBuf, message: String },
    #[error("cannot measure the job's compute: {0}")]
    Probe(String),
}

/// Where the policy learned from this machine's jobs is kept: `$SIREN_STATE_DIR`, else
/// `$XDG_DATA_HOME/siren`, else `~/.local/share/siren`.
pub fn learned_policy_path() -> PathBuf {
    let dir = std::env::var_os("SIREN_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("siren")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/siren")))
        .unwrap_or_else(|| PathBuf::from(".siren"));
    dir.join("drl-policy.json")
}

/// The policy to act with and the file its updates go to: `policyFile` when set (it must exist),
/// else this machine's learned policy when there is one, else the shipped policy.
pub fn load_policy(spec: &TrainingJobSpec) -> Result<(Policy, PathBuf), LearnedError> {
    let (path, json) = match &spec.scheduler.policy_file {
        Some(file) => {
            let path = PathBuf::from(file);
            let json = std::fs::read_to_string(&path).map_err(|source| LearnedError::Read {
                path: path.clone(),
                source,
            })?;
            (path, json)
        }
        None => {
            let path = learned_policy_path();
            let learned = match std::fs::read_to_string(&path) {
                Ok(json) => match Policy::from_json(&json) {
                    Ok(policy) => Some(policy),
                    Err(error) => {
                        // What this machine learned is lost, but no job should fail for it.
                        tracing::warn!(path = %path.display(), %error, "the learned policy is unreadable; acting with the shipped one");
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => return Err(LearnedError::Read { path, source }),
            };
            let policy = match learned {
                Some(policy) => policy,
                None => Policy::from_json(SHIPPED_POLICY).map_err(|e| LearnedError::Policy {
                    path: "the shipped policy".into(),
                    message: e.to_string(),
                })?,
            };
            return Ok((policy, path));
        }
    };
    let policy = Policy::from_json(&json).map_err(|e| LearnedError::Policy {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((policy, path))
}

pub fn read_profile(path: &Path) -> Result<CalibratedProfile, LearnedError> {
    let json = std::fs::read_to_string(path).map_err(|source| LearnedError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let profile: CalibratedProfile =
        serde_json::from_str(&json).map_err(|e| LearnedError::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    profile.validate().map_err(|e| LearnedError::Profile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(profile)
}

/// Wall seconds per training sample on `threads` compute threads, from the job's own model on its
/// own data, in rounds of about `seconds / ROUNDS` each. Every round builds its own model buffers
/// and trains on its own batch, because one set of buffers can be a tenth faster or slower than
/// another (placement in memory), while an epoch runs through many; the median round is kept, so
/// a burst of load from elsewhere on the machine does not skew it either.
pub fn measure_compute(
    architecture: &Architecture,
    splits: &DataSplits,
    batch_size: usize,
    threads: usize,
    seconds: f64,
) -> Result<f64, LearnedError> {
    const ROUNDS: usize = 7;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| LearnedError::Probe(e.to_string()))?;
    pool.install(|| {
        let train = &splits.train;
        let batch = batch_size.clamp(1, train.len());
        let batches = (train.len() / batch).max(1);
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            let first = (round % batches) * batch;
            let x = &train.features[first * train.dim..(first + batch) * train.dim];
            let y = &train.labels[first..first + batch];
            let mut computer = GradientComputer::new(architecture.clone());
            let params = architecture.initial_params(round as u64);
            let mut grad = Vec::new();
            let mut step = || {
                computer
                    .gradient(&params, x, y, &mut grad)
                    .map_err(|e| LearnedError::Probe(e.to_string()))
            };
            for _ in 0..2 {
                step()?;
            }
            let started = Instant::now();
            let mut samples = 0usize;
            while samples == 0 || started.elapsed().as_secs_f64() < seconds / ROUNDS as f64 {
                step()?;
                samples += batch;
            }
            rounds.push(started.elapsed().as_secs_f64() / samples as f64);
        }
        rounds.sort_by(f64::total_cmp);
        Ok(rounds[ROUNDS / 2])
    })
}

/// A prior for a job never calibrated: the target is taken as reachable, in about five epochs of
/// one function; the agent's online progress correction adjusts it as the epochs come in.
fn prior_curve(classes: usize, target: f64) -> LossCurve {
    let chance = 1.0 / classes.max(2) as f64;
    LossCurve {
        initial_accuracy: chance,
        final_accuracy: (target + (1.0 - target) * 0.5).min(0.999),
        initial_loss: (classes.max(2) as f64).ln(),
        final_loss: 0.3,
        rate: 0.45,
        staleness: 0.03,
        staleness_decay: 1.0,
        accuracy_noise: 0.003,
    }
}

/// The job's profile for the agent: sizes from the job itself, compute from a calibration or
/// from `compute_seconds_per_sample`, and the platform with the job's own prices.
pub fn profiles(
    spec: &TrainingJobSpec,
    architecture: &Architecture,
    splits: &DataSplits,
    calibrated: Option<CalibratedProfile>,
    compute_seconds_per_sample: impl FnOnce() -> Result<f64, LearnedError>,
) -> Result<(JobProfile, PlatformProfile), LearnedError> {
    let target = spec.training.target_accuracy.unwrap_or(0.9);
    let (mut job, mut platform) = match calibrated {
        Some(profile) => (profile.job, profile.platform),
        None => {
            let mut job = JobProfile::fashion_mnist_mlp();
            job.compute_seconds_per_sample = compute_seconds_per_sample()?;
            job.curve = prior_curve(splits.train.classes, target);
            (job, PlatformProfile::local_default())
        }
    };
    let shards = splits
        .train
        .shard_count(spec.dataset.shard_size as usize)
        .max(1);
    job.parameter_bytes = (architecture.param_count() * 4) as f64;
    job.data_bytes_per_sample = ((splits.train.dim + 1) * 4) as f64;
    job.samples_per_epoch = splits.train.len() as u64;
    job.samples_per_sync =
        u64::from(spec.training.batch_size) * u64::from(spec.training.steps_per_push);
    job.max_epochs = spec.training.max_epochs;
    job.min_memory_mb = job.min_memory_mb.max(128);
    platform.pricing = pricing_of(&spec.backend.pricing);
    // The driver never runs more functions than there are shards.
    platform.max_functions = platform.max_functions.min(shards as u32).max(1);
    if let Some(cap) = spec.backend.max_functions() {
        platform.max_functions = platform.max_functions.min(cap).max(1);
    }
    Ok((job, platform))
}

/// The DRL agent as a real job's scheduler: it acts greedily and, when the job asks for it,
/// learns from the job once it ends.
pub struct LearningScheduler {
    agent: DrlScheduler,
    online_learning: bool,
}

impl LearningScheduler {
    pub fn new(agent: DrlScheduler, online_learning: bool) -> Self {
        Self {
            agent,
            online_learning,
        }
    }
}

impl Scheduler for LearningScheduler {
    fn name(&self) -> &'static str {
        self.agent.name()
    }

    fn decide(&mut self, observation: &Observation) -> Action {
        self.agent.decide(observation)
    }

    fn decide_or_stop(&mut self, observation: &Observation) -> Decision {
        self.agent.decide_or_stop(observation)
    }

    fn record(&mut self, before: &Observation, action: Action, after: &Observation) {
        self.agent.record(before, action, after);
    }

    fn job_finished(&mut self) -> Option<String> {
        if !self.online_learning {
            return None;
        }
        let stats = self.agent.learn_from_job();
        tracing::info!(
            steps = stats.steps,
            mean_return = stats.mean_return,
            "the scheduler learned from this job"
        );
        match self.agent.policy().to_json() {
            Ok(json) => Some(json),
            Err(error) => {
                tracing::warn!(%error, "cannot encode the updated policy");
                None
            }
        }
    }
}
