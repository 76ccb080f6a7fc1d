//! CherryPick-style Bayesian optimisation over static configurations across repeated runs of a job:
//! a Gaussian process (Matérn 5/2) on log time to target, expected improvement to pick the next
//! configuration. Each run is static; what it learns carries over to the next run.

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::policy::{Action, Observation, Scheduler};
use crate::stats::normal_cdf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoConfig {
    /// Configurations of the first runs, before the model has anything to go on.
    pub initial: Vec<Action>,
    /// Kernel length scale in the unit square of (log functions, log memory).
    pub length_scale: f64,
    /// Observation noise variance on the standardised objective.
    pub noise: f64,
}

impl Default for BoConfig {
    fn default() -> Self {
        Self {
            initial: vec![
                Action {
                    functions: 8,
                    memory_mb: 1769,
                },
                Action {
                    functions: 2,
                    memory_mb: 1024,
                },
                Action {
                    functions: 32,
                    memory_mb: 3008,
                },
            ],
            length_scale: 0.35,
            noise: 0.01,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoObservation {
    pub action: Action,
    /// Time to the target; None if the run stopped short (budget or epochs).
    pub time_to_target: Option<f64>,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct BayesOptScheduler {
    candidates: Vec<Action>,
    config: BoConfig,
    observations: Vec<BoObservation>,
    current: Option<Action>,
}

fn coordinates(action: Action) -> [f64; 2] {
    [
        f64::from(action.functions.max(1)).log2() / 6.0,
        (f64::from(action.memory_mb) / 512.0).log2() / 20_f64.log2(),
    ]
}

fn matern52(a: [f64; 2], b: [f64; 2], length_scale: f64) -> f64 {
    let r = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() / length_scale;
    let s = 5_f64.sqrt() * r;
    (1.0 + s + s * s / 3.0) * (-s).exp()
}

/// Lower-triangular L with L L^T = matrix, or None if it is not positive definite.
fn cholesky(matrix: &Array2<f64>) -> Option<Array2<f64>> {
    let n = matrix.nrows();
    let mut l = Array2::zeros((n, n));
    for i in 0..n {
        for j in 0..=i {
            let sum: f64 = (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum();
            if i == j {
                let d = matrix[[i, i]] - sum;
                if d <= 0.0 {
                    return None;
                }
                l[[i, j]] = d.sqrt();
            } else {
                l[[i, j]] = (matrix[[i, j]] - sum) / l[[j, j]];
            }
        }
    }
    Some(l)
}

fn forward_substitute(l: &Array2<f64>, b: &Array1<f64>) -> Array1<f64> {
    let n = b.len();
    let mut x = Array1::zeros(n);
    for i in 0..n {
        let sum: f64 = (0..i).map(|k| l[[i, k]] * x[k]).sum();
        x[i] = (b[i] - sum) / l[[i, i]];
    }
    x
}

fn back_substitute_transposed(l: &Array2<f64>, b: &Array1<f64>) -> Array1<f64> {
    let n = b.len();
    let mut x = Array1::zeros(n);
    for i in (0..n).rev() {
        let sum: f64 = (i + 1..n).map(|k| l[[k, i]] * x[k]).sum();
        x[i] = (b[i] - sum) / l[[i, i]];
    }
    x
}

impl BayesOptScheduler {
    /// `candidates`: the configurations allowed on this job and platform.
    pub fn new(candidates: Vec<Action>, config: BoConfig) -> Self {
        Self {
            candidates,
            config,
            observations: Vec::new(),
            current: None,
        }
    }

    pub fn observations(&self) -> &[BoObservation] {
        &self.observations
    }

    /// Log time to target; a run that stopped short counts as twice the slowest run seen.
    fn objectives(&self) -> Vec<f64> {
        let worst = self
            .observations
            .iter()
            .map(|o| o.time_to_target.unwrap_or(o.seconds).max(1e-9).ln())
            .fold(f64::NEG_INFINITY, f64::max);
        self.observations
            .iter()
            .map(|o| match o.time_to_target {
                Some(t) => t.max(1e-9).ln(),
                None => worst + 2_f64.ln(),
            })
            .collect()
    }

    /// The configuration for the next run: the initial design first, then maximum expected
    /// improvement among untried candidates.
    pub fn next_configuration(&self) -> Action {
        let tried = |a: &Action| self.observations.iter().any(|o| o.action == *a);
        if let Some(initial) = self
            .config
            .initial
            .iter()
            .find(|a| self.candidates.contains(a) && !tried(a))
        {
            return *initial;
        }
        let untried: Vec<Action> = self
            .candidates
            .iter()
            .copied()
            .filter(|a| !tried(a))
            .collect();
        let pool = if untried.is_empty() {
            self.candidates.clone()
        } else {
            untried
        };
        let Some(&first) = pool.first() else {
            return Action {
                functions: 1,
                memory_mb: 1769,
            };
        };
        if self.observations.is_empty() {
            return first;
        }
        let y = self.objectives();
        let n = y.len();
        let mean = y.iter().sum::<f64>() / n as f64;
        let spread = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        let spread = if spread > 1e-9 { spread } else { 1.0 };
        let z = Array1::from_iter(y.iter().map(|v| (v - mean) / spread));
        let x: Vec<[f64; 2]> = self
            .observations
            .iter()
            .map(|o| coordinates(o.action))
            .collect();
        let ell = self.config.length_scale;
        let k = Array2::from_shape_fn((n, n), |(i, j)| {
            matern52(x[i], x[j], ell) + if i == j { self.config.noise } else { 0.0 }
        });
        let Some(l) = cholesky(&k) else {
            return first;
        };
        let alpha = back_substitute_transposed(&l, &forward_substitute(&l, &z));
        let best = z.iter().copied().fold(f64::INFINITY, f64::min);
        let mut chosen = first;
        let mut chosen_ei = f64::NEG_INFINITY;
        for candidate in pool {
            let c = coordinates(candidate);
            let k_star = Array1::from_iter(x.iter().map(|xi| matern52(*xi, c, ell)));
            let mu = k_star.dot(&alpha);
            let v = forward_substitute(&l, &k_star);
            let sigma = (1.0 - v.dot(&v)).max(1e-12).sqrt();
            let improvement = best - mu;
            let u = improvement / sigma;
            let density = (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
            let ei = improvement * normal_cdf(u) + sigma * density;
            if ei > chosen_ei {
                chosen_ei = ei;
                chosen = candidate;
            }
        }
        chosen
    }

    /// Records how a run went; call once per finished run.
    pub fn observe_run(&mut self, observation: BoObservation) {
        self.observations.push(observation);
        self.current = None;
    }

    /// The fastest configuration that reached the target so far.
    pub fn best(&self) -> Option<(Action, f64)> {
        self.observations
            .iter()
            .filter_map(|o| o.time_to_target.map(|t| (o.action, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

impl Scheduler for BayesOptScheduler {
    fn name(&self) -> &'static str {
        "bayesian-optimisation"
    }

    fn decide(&mut self, observation: &Observation) -> Action {
        if observation.epoch == 0 || self.current.is_none() {
            self.current = Some(self.next_configuration());
        }
        self.current.unwrap_or(Action {
            functions: 1,
            memory_mb: 1769,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::ActionGrid;

    #[test]
    fn finds_the_minimum_of_a_smooth_objective() {
        let candidates = ActionGrid::default().actions();
        let mut bo = BayesOptScheduler::new(candidates.clone(), BoConfig::default());
        // Fastest at 16 functions of 3,008 MB.
        let objective = |a: Action| {
            let [x, y] = coordinates(a);
            let [bx, by] = coordinates(Action {
                functions: 16,
                memory_mb: 3008,
            });
            100.0 * (1.0 + 4.0 * ((x - bx).powi(2) + (y - by).powi(2)))
        };
        for _ in 0..10 {
            let action = bo.next_configuration();
            bo.observe_run(BoObservation {
                action,
                time_to_target: Some(objective(action)),
                seconds: objective(action),
            });
        }
        let (best, _) = bo.best().expect("runs reached the target");
        let optimum = candidates
            .iter()
            .map(|a| objective(*a))
            .fold(f64::INFINITY, f64::min);
        assert!(objective(best) <= optimum * 1.05, "{best:?}");
        assert!(cholesky(&Array2::from_elem((2, 2), 1.0)).is_none());
    }
}
