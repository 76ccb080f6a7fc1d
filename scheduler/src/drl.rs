//! The DRL scheduler: a stochastic policy over the action grid, trained by REINFORCE with a learned
//! value baseline (see docs/scheduler.md for why), with the budget mask applied before sampling.

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::{AgentContext, INPUT_FEATURES, STATE_FEATURES};
use crate::grid::ActionGrid;
use crate::mask::LastEpoch;
use crate::nn::{Adam, Mlp};
use crate::policy::{Action, Decision, Observation, Scheduler};
use crate::profile::{JobProfile, PlatformProfile};

pub const POLICY_FORMAT: u32 = 1;

/// How a finished job turns into a learning signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningConfig {
    pub actor_learning_rate: f64,
    pub critic_learning_rate: f64,
    /// Learning rate of the update after each real job: small, one noisy episode at a time.
    pub online_learning_rate: f64,
    pub entropy: f64,
    /// Added (negatively) to the return of a job that stops short of its target, in units of the
    /// job's time scale, plus `miss_per_remaining` times the fraction of the way still to go, plus
    /// the time already spent.
    pub miss_penalty: f64,
    pub miss_per_remaining: f64,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            actor_learning_rate: 3e-3,
            critic_learning_rate: 3e-3,
            online_learning_rate: 5e-4,
            entropy: 0.01,
            miss_penalty: 6.0,
            miss_per_remaining: 8.0,
        }
    }
}

/// Everything needed to act and to keep learning; what `config/scheduler/` holds as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub format: u32,
    pub grid: ActionGrid,
    /// Scores one (state, action) row; softmax over the allowed rows gives the policy.
    pub actor: Mlp,
    /// Predicts the return from a state: the baseline.
    pub critic: Mlp,
    pub learning: LearningConfig,
    #[serde(default)]
    pub actor_optimizer: Option<Adam>,
    #[serde(default)]
    pub critic_optimizer: Option<Adam>,
    #[serde(default)]
    pub episodes: u64,
}

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("policy JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("policy format {found} is not the supported format {POLICY_FORMAT}")]
    Format { found: u32 },
    #[error("policy is malformed: {0}")]
    Malformed(&'static str),
}

impl Policy {
    pub fn new(grid: ActionGrid, hidden: usize, learning: LearningConfig, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            format: POLICY_FORMAT,
            grid,
            actor: Mlp::new(&[INPUT_FEATURES, hidden, hidden, 1], &mut rng),
            critic: Mlp::new(&[STATE_FEATURES, hidden, 1], &mut rng),
            learning,
            actor_optimizer: None,
            critic_optimizer: None,
            episodes: 0,
        }
    }

    pub fn to_json(&self) -> Result<String, PolicyError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses and checks a policy: a file that parses but does not fit the feature layout is refused
    /// here rather than panicking in the middle of a job.
    pub fn from_json(json: &str) -> Result<Self, PolicyError> {
        let policy: Policy = serde_json::from_str(json)?;
        if policy.format != POLICY_FORMAT {
            return Err(PolicyError::Format {
                found: policy.format,
            });
        }
        if policy.grid.is_empty() || policy.grid.functions.contains(&0) {
            return Err(PolicyError::Malformed("empty grid or zero functions"));
        }
        if !policy.actor.is_well_formed()
            || policy.actor.inputs() != INPUT_FEATURES
            || policy.actor.outputs() != 1
        {
            return Err(PolicyError::Malformed(
                "actor does not match the feature layout",
            ));
        }
        if !policy.critic.is_well_formed()
            || policy.critic.inputs() != STATE_FEATURES
            || policy.critic.outputs() != 1
        {
            return Err(PolicyError::Malformed(
                "critic does not match the feature layout",
            ));
        }
        if policy
            .actor_optimizer
            .as_ref()
            .is_some_and(|o| !o.fits(&policy.actor))
            || policy
                .critic_optimizer
                .as_ref()
                .is_some_and(|o| !o.fits(&policy.critic))
        {
            return Err(PolicyError::Malformed(
                "optimiser state does not match its network",
            ));
        }
        Ok(policy)
    }

    pub fn probabilities(&self, inputs: &Array2<f64>, allowed: &[bool]) -> Vec<f64> {
        let logits = self.actor.forward(inputs);
        masked_softmax(logits.column(0).iter().copied(), allowed)
    }

    pub fn value(&self, state: &[f64]) -> f64 {
        let input = Array2::from_shape_fn((1, state.len()), |(_, j)| state[j]);
        self.critic.forward(&input)[[0, 0]]
    }
}

/// Softmax over the allowed entries; masked entries get probability exactly zero.
pub fn masked_softmax(logits: impl Iterator<Item = f64>, allowed: &[bool]) -> Vec<f64> {
    let logits: Vec<f64> = logits.collect();
    let max = logits
        .iter()
        .zip(allowed)
        .filter(|(_, a)| **a)
        .map(|(l, _)| *l)
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits
        .iter()
        .zip(allowed)
        .map(|(l, a)| if *a { (l - max).exp() } else { 0.0 })
        .collect();
    let total: f64 = exps.iter().sum();
    if total > 0.0 && total.is_finite() {
        exps.iter().map(|e| e / total).collect()
    } else {
        vec![0.0; logits.len()]
    }
}

/// One decision and what it earned.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub state: Vec<f64>,
    pub inputs: Array2<f64>,
    pub allowed: Vec<bool>,
    pub chosen: usize,
    pub reward: f64,
}

/// A finished job as the learner sees it; the miss penalty is already in the last reward.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trajectory {
    pub steps: Vec<Step>,
    pub reached_target: bool,
}

impl Trajectory {
    pub fn total_reward(&self) -> f64 {
        self.steps.iter().map(|s| s.reward).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct UpdateStats {
    pub steps: usize,
    pub mean_return: f64,
    pub value_loss: f64,
    pub entropy: f64,
}

/// One REINFORCE step with a learned baseline over a batch of finished jobs (undiscounted returns:
/// the objective is total time). Advantages are divided by their spread but not centred: the
/// critic already centres them, and with a single job centring would erase its signal.
pub fn update_policy(
    policy: &mut Policy,
    trajectories: &[Trajectory],
    entropy: f64,
    learning_rate: Option<f64>,
) -> UpdateStats {
    let steps: Vec<(&Step, f64)> = trajectories
        .iter()
        .flat_map(|t| {
            let mut to_go = t.total_reward();
            t.steps.iter().map(move |s| {
                let g = to_go;
                to_go -= s.reward;
                (s, g)
            })
        })
        .collect();
    if steps.is_empty() {
        return UpdateStats::default();
    }
    let count = steps.len() as f64;
    let states = Array2::from_shape_fn((steps.len(), STATE_FEATURES), |(i, j)| steps[i].0.state[j]);
    let (values, critic_cache) = policy.critic.forward_cached(&states);
    let advantages: Vec<f64> = steps
        .iter()
        .zip(values.column(0))
        .map(|((_, g), v)| g - v)
        .collect();
    let spread = (advantages.iter().map(|a| a * a).sum::<f64>() / count).sqrt();
    let scale = if spread > 1e-8 { 1.0 / spread } else { 0.0 };

    let rows: usize = steps.iter().map(|(s, _)| s.inputs.nrows()).sum();
    let mut inputs = Array2::zeros((rows, INPUT_FEATURES));
    let mut offset = 0;
    for (step, _) in &steps {
        let n = step.inputs.nrows();
        inputs
            .slice_mut(ndarray::s![offset..offset + n, ..])
            .assign(&step.inputs);
        offset += n;
    }
    let (logits, actor_cache) = policy.actor.forward_cached(&inputs);
    let mut grad = Array2::zeros((rows, 1));
    let mut total_entropy = 0.0;
    offset = 0;
    for ((step, _), advantage) in steps.iter().zip(&advantages) {
        let n = step.inputs.nrows();
        let probabilities = masked_softmax(
            logits.column(0).iter().skip(offset).take(n).copied(),
            &step.allowed,
        );
        let h: f64 = -probabilities
            .iter()
            .filter(|p| **p > 0.0)
            .map(|p| p * p.ln())
            .sum::<f64>();
        total_entropy += h;
        let a = advantage * scale;
        for (i, p) in probabilities.iter().enumerate() {
            if !step.allowed[i] {
                continue;
            }
            let chosen = if i == step.chosen { 1.0 } else { 0.0 };
            // d/dz of -(A log pi(a)) - beta H.
            let mut g = -a * (chosen - p);
            if *p > 0.0 {
                g += entropy * p * (p.ln() + h);
            }
            grad[[offset + i, 0]] = g / count;
        }
        offset += n;
    }
    let actor_grads = policy.actor.backward(&actor_cache, &grad);
    let critic_grad = Array2::from_shape_fn((steps.len(), 1), |(i, _)| {
        (values[[i, 0]] - steps[i].1) / count
    });
    let critic_grads = policy.critic.backward(&critic_cache, &critic_grad);
    let learning = policy.learning.clone();
    let actor_optimizer = match policy.actor_optimizer.take() {
        Some(o) if o.fits(&policy.actor) => o,
        _ => Adam::new(&policy.actor, learning.actor_learning_rate),
    };
    let critic_optimizer = match policy.critic_optimizer.take() {
        Some(o) if o.fits(&policy.critic) => o,
        _ => Adam::new(&policy.critic, learning.critic_learning_rate),
    };
    let (mut actor_optimizer, mut critic_optimizer) = (actor_optimizer, critic_optimizer);
    actor_optimizer.learning_rate = learning_rate.unwrap_or(learning.actor_learning_rate);
    critic_optimizer.learning_rate = learning_rate.map_or(learning.critic_learning_rate, |lr| {
        lr.max(learning.critic_learning_rate / 3.0)
    });
    actor_optimizer.step(&mut policy.actor, &actor_grads);
    critic_optimizer.step(&mut policy.critic, &critic_grads);
    policy.actor_optimizer = Some(actor_optimizer);
    policy.critic_optimizer = Some(critic_optimizer);
    policy.episodes += trajectories.len() as u64;
    UpdateStats {
        steps: steps.len(),
        mean_return: trajectories
            .iter()
            .map(Trajectory::total_reward)
            .sum::<f64>()
            / trajectories.len() as f64,
        value_loss: steps
            .iter()
            .zip(values.column(0))
            .map(|((_, g), v)| (g - v).powi(2))
            .sum::<f64>()
            / count,
        entropy: total_entropy / count,
    }
}

#[derive(Debug, Clone)]
enum Exploration {
    Greedy,
    Sample(Box<ChaCha8Rng>),
}

/// The learned scheduler. It knows the job and platform through their (calibrated) profiles, reads
/// the budget from each observation, and never picks an action the mask forbids.
#[derive(Debug, Clone)]
pub struct DrlScheduler {
    policy: Policy,
    job: JobProfile,
    platform: PlatformProfile,
    context: Option<AgentContext>,
    exploration: Exploration,
    steps: Vec<Step>,
    pending: Option<(Step, Action)>,
    spent_at_decision: f64,
    last_observation: Option<Observation>,
}

impl DrlScheduler {
    /// Acts greedily (most probable allowed action): for real jobs and evaluation.
    pub fn new(policy: Policy, job: JobProfile, platform: PlatformProfile) -> Self {
        Self {
            policy,
            job,
            platform,
            context: None,
            exploration: Exploration::Greedy,
            steps: Vec::new(),
            pending: None,
            spent_at_decision: 0.0,
            last_observation: None,
        }
    }

    pub fn from_policy_json(
        json: &str,
        job: JobProfile,
        platform: PlatformProfile,
    ) -> Result<Self, PolicyError> {
        Ok(Self::new(Policy::from_json(json)?, job, platform))
    }

    /// Samples from the policy instead of taking its mode: for training, and for online learning
    /// when exploring is acceptable.
    pub fn exploring(mut self, seed: u64) -> Self {
        self.exploration = Exploration::Sample(Box::new(ChaCha8Rng::seed_from_u64(seed)));
        self
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn into_policy(self) -> Policy {
        self.policy
    }

    /// The current job's time scale (best predicted time to the target, any cost), once known.
    pub fn time_scale(&self) -> Option<f64> {
        self.context.as_ref().map(|c| c.time_scale)
    }

    /// Ends the job: returns what was recorded (with the miss penalty if the target was not reached)
    /// and forgets it, ready for the next job.
    pub fn take_trajectory(&mut self) -> Trajectory {
        let mut steps = std::mem::take(&mut self.steps);
        let reached = match (&self.last_observation, &self.context) {
            (Some(last), Some(context)) => last.accuracy.is_some_and(|a| a >= context.target),
            _ => false,
        };
        if !reached
            && let (Some(last), Some(context), Some(step)) =
                (&self.last_observation, &self.context, steps.last_mut())
        {
            let fraction =
                (context.progress_from(last) / context.goal_progress.max(1e-9)).clamp(0.0, 1.0);
            // Stopping short wastes the time already spent as well: a miss costs it again.
            let elapsed = last.elapsed_seconds / context.time_scale;
            step.reward -= self.policy.learning.miss_penalty
                + self.policy.learning.miss_per_remaining * (1.0 - fraction)
                + elapsed;
        }
        self.context = None;
        self.pending = None;
        self.last_observation = None;
        self.spent_at_decision = 0.0;
        Trajectory {
            steps,
            reached_target: reached,
        }
    }

    /// Online learning: one policy-gradient step from the job just finished, at the online learning
    /// rate. The caller persists the policy afterwards.
    pub fn learn_from_job(&mut self) -> UpdateStats {
        let trajectory = self.take_trajectory();
        let rate = self.policy.learning.online_learning_rate;
        let entropy = self.policy.learning.entropy;
        update_policy(&mut self.policy, &[trajectory], entropy, Some(rate))
    }
}

impl Scheduler for DrlScheduler {
    fn name(&self) -> &'static str {
        "drl"
    }

    fn decide(&mut self, observation: &Observation) -> Action {
        self.decide_or_stop(observation).action()
    }

    fn decide_or_stop(&mut self, observation: &Observation) -> Decision {
        if observation.epoch == 0 {
            // A new job: whatever an earlier one left unfinished is dropped.
            self.steps.clear();
            self.context = None;
            self.spent_at_decision = 0.0;
        }
        let context = self.context.get_or_insert_with(|| {
            AgentContext::new(
                self.job.clone(),
                self.platform.clone(),
                &self.policy.grid,
                observation.target_accuracy,
            )
        });
        context.observe(observation);
        let last = observation.last_action.and_then(|action| {
            let cost_usd = observation.spent_usd - self.spent_at_decision;
            (cost_usd > 0.0).then_some(LastEpoch { action, cost_usd })
        });
        let features = context.features(observation, last);
        self.pending = None;
        if !features.allowed.iter().any(|a| *a) {
            let fallback = context.actions.first().copied().unwrap_or(Action {
                functions: 1,
                memory_mb: 128,
            });
            return Decision::Stop {
                cheapest: features.cheapest.unwrap_or(fallback),
            };
        }
        // A diverging loss (NaN, infinity) must not reach the network: it would make every
        // probability NaN and the choice arbitrary.
        let mut features = features;
        features
            .inputs
            .mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
        for value in &mut features.state {
            if !value.is_finite() {
                *value = 0.0;
            }
        }
        let probabilities = self
            .policy
            .probabilities(&features.inputs, &features.allowed);
        let usable = probabilities
            .iter()
            .zip(&features.allowed)
            .any(|(p, allowed)| *allowed && p.is_finite() && *p > 0.0);
        let chosen = match &mut self.exploration {
            _ if !usable => features
                .cheapest
                .and_then(|cheapest| context.actions.iter().position(|a| *a == cheapest)),
            Exploration::Greedy => probabilities
                .iter()
                .enumerate()
                .filter(|(i, _)| features.allowed[*i])
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i),
            Exploration::Sample(rng) => {
                let mut draw: f64 = rng.random();
                let mut pick = None;
                for (i, p) in probabilities.iter().enumerate() {
                    if features.allowed[i] {
                        pick = Some(i);
                        draw -= p;
                        if draw <= 0.0 {
                            break;
                        }
                    }
                }
                pick
            }
        };
        let Some(chosen) = chosen else {
            return Decision::Stop {
                cheapest: features.cheapest.unwrap_or(context.actions[0]),
            };
        };
        let action = context.actions[chosen];
        self.spent_at_decision = observation.spent_usd;
        self.pending = Some((
            Step {
                state: features.state,
                inputs: features.inputs,
                allowed: features.allowed,
                chosen,
                reward: 0.0,
            },
            action,
        ));
        Decision::Run(action)
    }

    fn record(&mut self, before: &Observation, action: Action, after: &Observation) {
        if let (Some((mut step, decided)), Some(context)) = (self.pending.take(), &self.context) {
            // An action the driver changed (clamped) is not one the policy chose: don't learn from it.
            if decided == action {
                step.reward =
                    -(after.elapsed_seconds - before.elapsed_seconds) / context.time_scale;
                self.steps.push(step);
            }
        }
        self.last_observation = Some(after.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_actions_get_zero_probability() {
        let p = masked_softmax(
            [1.0, 5.0, 2.0, 0.0].into_iter(),
            &[true, false, true, false],
        );
        assert_eq!(p[1], 0.0);
        assert_eq!(p[3], 0.0);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(p[2] > p[0]);
        assert_eq!(masked_softmax([1.0].into_iter(), &[false]), vec![0.0]);
    }

    #[test]
    fn policy_round_trips_through_json_and_refuses_garbage() {
        let policy = Policy::new(ActionGrid::default(), 16, LearningConfig::default(), 9);
        let json = policy.to_json().expect("serialises");
        assert_eq!(Policy::from_json(&json).expect("parses"), policy);
        assert!(matches!(Policy::from_json("{"), Err(PolicyError::Json(_))));
        let mut wrong = policy.clone();
        wrong.format = 99;
        assert!(matches!(
            Policy::from_json(&wrong.to_json().expect("serialises")),
            Err(PolicyError::Format { found: 99 })
        ));
        let mut small = policy.clone();
        small.critic = Mlp::new(&[3, 4, 1], &mut ChaCha8Rng::seed_from_u64(1));
        assert!(matches!(
            Policy::from_json(&small.to_json().expect("serialises")),
            Err(PolicyError::Malformed(_))
        ));
    }
}
