//! Fits a [`LossCurve`] to real training curves measured at several numbers of functions, by
//! Levenberg-Marquardt least squares on per-epoch accuracy, then a linear fit of the loss.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::profile::LossCurve;

/// Test accuracy (and optionally loss) after each epoch of one run with a fixed number of functions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedCurve {
    pub functions: u32,
    pub accuracy: Vec<f64>,
    #[serde(default)]
    pub loss: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurveFit {
    pub curve: LossCurve,
    /// Root mean square error of the fitted accuracy.
    pub rmse: f64,
    pub points: usize,
}

#[derive(Debug, Error, PartialEq)]
pub enum FitError {
    #[error("need at least {needed} accuracy points to fit 5 parameters, got {got}")]
    TooFewPoints { needed: usize, got: usize },
    #[error("accuracy must be a finite number in [0, 1], got {0}")]
    BadAccuracy(f64),
    #[error("the fit did not converge to finite parameters")]
    Diverged,
}

const PARAMETERS: usize = 5;

/// Unconstrained parameters: a0, ln(a_inf - a0), ln rate, ln staleness, softplus^-1 decay.
fn curve_from(theta: &[f64; PARAMETERS]) -> LossCurve {
    let initial = theta[0];
    LossCurve {
        initial_accuracy: initial,
        final_accuracy: initial + theta[1].exp(),
        initial_loss: 1.0,
        final_loss: 0.0,
        rate: theta[2].exp(),
        staleness: theta[3].exp(),
        staleness_decay: theta[4].exp().ln_1p(),
        accuracy_noise: 0.0,
    }
}

fn residuals(theta: &[f64; PARAMETERS], curves: &[ObservedCurve], out: &mut Vec<f64>) {
    out.clear();
    let curve = curve_from(theta);
    for observed in curves {
        let mut progress = 0.0;
        for accuracy in &observed.accuracy {
            progress += curve.epoch_progress(observed.functions, progress);
            out.push(curve.accuracy_at(progress) - accuracy);
        }
    }
}

fn sum_of_squares(values: &[f64]) -> f64 {
    values.iter().map(|v| v * v).sum()
}

/// Solves a small symmetric positive definite system by Gaussian elimination with pivoting.
fn solve(
    mut a: [[f64; PARAMETERS]; PARAMETERS],
    mut b: [f64; PARAMETERS],
) -> Option<[f64; PARAMETERS]> {
    for col in 0..PARAMETERS {
        let pivot =
            (col..PARAMETERS).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..PARAMETERS {
            let factor = a[row][col] / pivot_row[col];
            for (value, above) in a[row].iter_mut().zip(pivot_row.iter()).skip(col) {
                *value -= factor * above;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = [0.0; PARAMETERS];
    for row in (0..PARAMETERS).rev() {
        let tail: f64 = (row + 1..PARAMETERS).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

fn levenberg_marquardt(
    start: [f64; PARAMETERS],
    curves: &[ObservedCurve],
) -> ([f64; PARAMETERS], f64) {
    let mut theta = start;
    let mut r = Vec::new();
    residuals(&theta, curves, &mut r);
    let mut cost = sum_of_squares(&r);
    let mut lambda = 1e-3;
    let mut shifted = Vec::new();
    for _ in 0..200 {
        // Forward-difference Jacobian: five parameters, so five extra curve evaluations.
        let mut jacobian = vec![[0.0; PARAMETERS]; r.len()];
        for p in 0..PARAMETERS {
            let h = 1e-6 * theta[p].abs().max(1.0);
            let mut moved = theta;
            moved[p] += h;
            residuals(&moved, curves, &mut shifted);
            for (row, (after, before)) in jacobian.iter_mut().zip(shifted.iter().zip(&r)) {
                row[p] = (after - before) / h;
            }
        }
        let mut jtj = [[0.0; PARAMETERS]; PARAMETERS];
        let mut jtr = [0.0; PARAMETERS];
        for (row, residual) in jacobian.iter().zip(&r) {
            for i in 0..PARAMETERS {
                jtr[i] += row[i] * residual;
                for j in 0..PARAMETERS {
                    jtj[i][j] += row[i] * row[j];
                }
            }
        }
        let mut improved = false;
        for _ in 0..20 {
            let mut damped = jtj;
            for (i, row) in damped.iter_mut().enumerate() {
                row[i] += lambda * (jtj[i][i] + 1e-9);
            }
            let Some(step) = solve(damped, jtr.map(|v| -v)) else {
                lambda *= 10.0;
                continue;
            };
            let mut candidate = theta;
            for (value, delta) in candidate.iter_mut().zip(step) {
                *value += delta;
            }
            residuals(&candidate, curves, &mut shifted);
            let candidate_cost = sum_of_squares(&shifted);
            if candidate_cost.is_finite() && candidate_cost < cost {
                let gain = cost - candidate_cost;
                theta = candidate;
                std::mem::swap(&mut r, &mut shifted);
                cost = candidate_cost;
                lambda = (lambda / 3.0).max(1e-12);
                improved = gain > 1e-14 * cost.max(1e-30);
                break;
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    (theta, cost)
}

/// Least-squares fit of the asynchronous-SGD curve to runs at (ideally) several numbers of functions:
/// one run can't tell staleness from a slow learning rate, and the fit will say so by putting all of
/// it in whichever it reaches first.
pub fn fit_loss_curve(curves: &[ObservedCurve]) -> Result<CurveFit, FitError> {
    let points: usize = curves.iter().map(|c| c.accuracy.len()).sum();
    if points < 2 * PARAMETERS {
        return Err(FitError::TooFewPoints {
            needed: 2 * PARAMETERS,
            got: points,
        });
    }
    if let Some(bad) = curves
        .iter()
        .flat_map(|c| c.accuracy.iter())
        .find(|a| !a.is_finite() || !(0.0..=1.0).contains(*a))
    {
        return Err(FitError::BadAccuracy(*bad));
    }
    let highest = curves
        .iter()
        .flat_map(|c| c.accuracy.iter())
        .copied()
        .fold(0.0, f64::max);
    let lowest = curves
        .iter()
        .flat_map(|c| c.accuracy.first())
        .copied()
        .fold(1.0, f64::min);
    let initial = (lowest - 0.1).max(0.0);
    let span = (highest - initial + 0.01).max(0.01);
    let mut best: Option<([f64; PARAMETERS], f64)> = None;
    // A few starts: the staleness and rate directions trade off early in the fit.
    for rate in [0.1_f64, 0.4, 1.0] {
        for staleness in [0.01_f64, 0.1] {
            for decay in [-2.0_f64, 1.0] {
                let start = [initial, span.ln(), rate.ln(), staleness.ln(), decay];
                let (theta, cost) = levenberg_marquardt(start, curves);
                if cost.is_finite() && best.is_none_or(|(_, b)| cost < b) {
                    best = Some((theta, cost));
                }
            }
        }
    }
    let (theta, cost) = best.ok_or(FitError::Diverged)?;
    let mut curve = curve_from(&theta);
    if ![
        curve.initial_accuracy,
        curve.final_accuracy,
        curve.rate,
        curve.staleness,
        curve.staleness_decay,
    ]
    .iter()
    .all(|v| v.is_finite())
    {
        return Err(FitError::Diverged);
    }
    let rmse = (cost / points as f64).sqrt();
    curve.accuracy_noise = rmse;
    fit_loss_endpoints(&mut curve, curves);
    Ok(CurveFit {
        curve,
        rmse,
        points,
    })
}

/// Loss is linear in the fitted convergence fraction: ordinary least squares for its two ends.
fn fit_loss_endpoints(curve: &mut LossCurve, curves: &[ObservedCurve]) {
    let mut pairs = Vec::new();
    for observed in curves {
        let mut progress = 0.0;
        for loss in observed.loss.iter().take(observed.accuracy.len()) {
            progress += curve.epoch_progress(observed.functions, progress);
            if loss.is_finite() {
                pairs.push((curve.fraction(progress), *loss));
            }
        }
    }
    let count = pairs.len() as f64;
    if pairs.len() < 2 {
        return;
    }
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx < 1e-12 {
        return;
    }
    let slope = pairs
        .iter()
        .map(|p| (p.0 - mean_x) * (p.1 - mean_y))
        .sum::<f64>()
        / sxx;
    curve.initial_loss = mean_y - slope * mean_x;
    curve.final_loss = curve.initial_loss + slope;
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::StandardNormal;

    use super::*;
    use crate::profile::JobProfile;

    fn observe(
        curve: &LossCurve,
        functions: u32,
        epochs: usize,
        rng: &mut ChaCha8Rng,
    ) -> ObservedCurve {
        let mut progress = 0.0;
        let mut accuracy = Vec::new();
        let mut loss = Vec::new();
        for _ in 0..epochs {
            progress += curve.epoch_progress(functions, progress);
            let noise: f64 = rng.sample(StandardNormal);
            accuracy.push(curve.accuracy_at(progress) + 0.002 * noise);
            loss.push(curve.loss_at(progress) + 0.01 * noise);
        }
        ObservedCurve {
            functions,
            accuracy,
            loss,
        }
    }

    #[test]
    fn recovers_the_curve_from_runs_at_several_widths() {
        let truth = JobProfile::fashion_mnist_mlp().curve;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let curves: Vec<ObservedCurve> = [1, 4, 16, 64]
            .iter()
            .map(|&n| observe(&truth, n, 25, &mut rng))
            .collect();
        let fit = fit_loss_curve(&curves).expect("fits");
        assert!(fit.rmse < 0.004, "rmse {}", fit.rmse);
        let fitted = &fit.curve;
        assert!(
            (fitted.final_accuracy - truth.final_accuracy).abs() < 0.01,
            "{fitted:?}"
        );
        assert!(
            (fitted.staleness / truth.staleness - 1.0).abs() < 0.3,
            "{fitted:?}"
        );
        assert!(
            (fitted.initial_loss - truth.initial_loss).abs() < 0.1,
            "{fitted:?}"
        );
        // What matters to the scheduler: epochs to the target at each width.
        for n in [1, 8, 32, 64] {
            let want = truth.epochs_to(n, 0.0, 0.85, 500).expect("truth reaches");
            let got = fitted.epochs_to(n, 0.0, 0.85, 500).expect("fit reaches");
            assert!(
                want.abs_diff(got) <= 1 + want / 10,
                "n={n}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert!(matches!(
            fit_loss_curve(&[ObservedCurve {
                functions: 1,
                accuracy: vec![0.5; 3],
                loss: vec![]
            }]),
            Err(FitError::TooFewPoints { .. })
        ));
        assert_eq!(
            fit_loss_curve(&[ObservedCurve {
                functions: 1,
                accuracy: vec![0.5, 1.5, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7, 0.7],
                loss: vec![]
            }]),
            Err(FitError::BadAccuracy(1.5))
        );
    }
}
