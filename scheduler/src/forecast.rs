//! When a job will end, and what getting there will cost, predicted after every epoch from the
//! epochs it has run. What ends it is whichever comes first of its target accuracy, its epoch limit
//! and its budget. The epochs to the target come from the scheduler's model of the job (its loss
//! curve, placed where the last measured accuracy says the job is) until enough epochs have been
//! seen to fit a curve of the job's own; time and money per epoch are the pace of the last epochs.

use crate::gate::StopReason;
use crate::profile::LossCurve;
use crate::record::EpochRecord;

/// Epochs whose pace (seconds and dollars) predicts the next ones: recent enough to follow the
/// scheduler's latest choices, several to smooth one slow epoch out.
const PACE_EPOCHS: usize = 3;
/// Epochs the fitted trend needs, one more than it has parameters, so that it is checked by at
/// least one point it did not have to pass through.
const TREND_MIN_EPOCHS: usize = 4;
/// Only the latest epochs shape the trend: the scheduler may have changed the pool since.
const TREND_EPOCHS: usize = 20;

/// What predicted the epochs to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The scheduler's loss curve of the job, placed at the last measured accuracy.
    Scheduler,
    /// A saturating curve fitted to the accuracies measured so far.
    Trend,
    /// No target (or none predictable): the epoch limit or the budget ends the job.
    Epochs,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Scheduler => "scheduler",
            Basis::Trend => "trend",
            Basis::Epochs => "epochs",
        }
    }
}

/// Where a job stands after its finished epochs.
#[derive(Debug, Clone)]
pub struct JobState<'a> {
    /// The finished epochs (the newest last); the status keeps a bounded tail of them.
    pub history: &'a [EpochRecord],
    /// Epochs finished, which may exceed the history's length.
    pub epochs_done: u32,
    pub max_epochs: u32,
    pub target_accuracy: Option<f64>,
    pub budget_usd: Option<f64>,
    pub spent_usd: f64,
    /// The scheduler's belief about the job, when it has one.
    pub curve: Option<&'a LossCurve>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// 0-100: epochs done over epochs done plus the epochs predicted.
    pub percent: f64,
    pub ends_by: StopReason,
    pub remaining_epochs: u32,
    pub seconds: f64,
    pub cost_usd: f64,
    pub basis: Basis,
}

/// The forecast after the history's last epoch; `None` before the first.
pub fn forecast(state: &JobState<'_>) -> Option<Forecast> {
    let last = state.history.last()?;
    let pace = &state.history[state.history.len().saturating_sub(PACE_EPOCHS)..];
    let seconds_per_epoch = mean(pace.iter().map(|r| r.seconds));
    let usd_per_epoch = mean(pace.iter().map(|r| r.cost_usd));

    let mut ends = vec![(
        StopReason::MaxEpochs,
        state.max_epochs.saturating_sub(state.epochs_done),
    )];
    if let Some(budget) = state.budget_usd {
        let left = (budget - state.spent_usd).max(0.0);
        if usd_per_epoch > 0.0 {
            let affordable = (left / usd_per_epoch).floor().min(f64::from(u32::MAX)) as u32;
            ends.push((StopReason::BudgetExhausted, affordable));
        }
    }
    let mut basis = Basis::Epochs;
    if let Some(target) = state.target_accuracy {
        if last.accuracy >= target {
            ends.push((StopReason::TargetReached, 0));
        } else if let Some((epochs, from)) = epochs_to_target(state, target) {
            ends.push((StopReason::TargetReached, epochs));
            basis = from;
        } else if state.history.len() >= TREND_MIN_EPOCHS
            && fit_trend(state.history).is_some_and(|trend| trend.ceiling <= target)
        {
            // The trend levels off below the target: the limit or the budget ends the job.
            basis = Basis::Trend;
        }
    }
    // The first end to come; on a tie, the target (it is checked after the epoch that reaches it).
    let (ends_by, remaining) = ends
        .into_iter()
        .min_by_key(|(reason, epochs)| (*epochs, *reason != StopReason::TargetReached))?;
    let done = f64::from(state.epochs_done);
    let total = done + f64::from(remaining);
    let cost_usd = f64::from(remaining) * usd_per_epoch;
    let cost_usd = match state.budget_usd {
        Some(budget) => cost_usd.min((budget - state.spent_usd).max(0.0)),
        None => cost_usd,
    };
    Some(Forecast {
        percent: if total > 0.0 {
            100.0 * done / total
        } else {
            100.0
        },
        ends_by,
        remaining_epochs: remaining,
        seconds: f64::from(remaining) * seconds_per_epoch,
        cost_usd,
        basis,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// Epochs still needed to reach `target`, and what says so: the job's own trend once it has been
/// seen long enough, the scheduler's curve before. `None` when neither predicts the target.
fn epochs_to_target(state: &JobState<'_>, target: f64) -> Option<(u32, Basis)> {
    if state.history.len() >= TREND_MIN_EPOCHS
        && let Some(trend) = fit_trend(state.history)
    {
        return trend
            .epochs_to(target, state.epochs_done)
            .map(|epochs| (epochs, Basis::Trend));
    }
    let curve = state.curve?;
    let last = state.history.last()?;
    // Where the job is on the believed curve, from what was measured rather than what was
    // predicted: the curve's shape is trusted, its position is not.
    let progress = curve.progress_for_accuracy(last.accuracy)?;
    let limit = state.max_epochs.saturating_sub(state.epochs_done);
    curve
        .epochs_to(last.functions, progress, target, limit)
        .map(|epochs| (epochs.max(1), Basis::Scheduler))
}

/// `accuracy(epoch) = ceiling - gap * exp(-rate * epoch)`, fitted to the latest epochs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trend {
    ceiling: f64,
    gap: f64,
    rate: f64,
}

impl Trend {
    /// Epochs after `done` until the trend reaches `target`; `None` if it never does.
    fn epochs_to(&self, target: f64, done: u32) -> Option<u32> {
        if target >= self.ceiling || self.gap <= 0.0 {
            return None;
        }
        let epoch = ((self.gap / (self.ceiling - target)).ln() / self.rate).ceil();
        let remaining = (epoch - f64::from(done)).max(1.0);
        (remaining < f64::from(u32::MAX)).then_some(remaining as u32)
    }
}

/// Least squares over a log-spaced grid of rates, refined around the best; for each rate the
/// ceiling and the gap solve a linear least-squares problem, so the fit has no starting point to
/// get wrong.
fn fit_trend(history: &[EpochRecord]) -> Option<Trend> {
    let recent = &history[history.len().saturating_sub(TREND_EPOCHS)..];
    if recent.len() < 3 {
        return None;
    }
    let points: Vec<(f64, f64)> = recent
        .iter()
        .map(|r| (f64::from(r.epoch), r.accuracy))
        .collect();
    const STEPS: i32 = 400;
    let spacing = 5000f64.powf(1.0 / f64::from(STEPS));
    let (best, best_residual) = (0..=STEPS)
        .filter_map(|step| fit_at(1e-3 * spacing.powi(step), &points))
        .min_by(|a, b| a.1.total_cmp(&b.1))?;
    // Golden-section search between the best grid point's neighbours.
    let (mut low, mut high) = (best.rate / spacing, best.rate * spacing);
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..40 {
        let (left, right) = (high - golden * (high - low), low + golden * (high - low));
        let residual = |rate| fit_at(rate, &points).map_or(f64::INFINITY, |(_, r)| r);
        if residual(left) < residual(right) {
            high = right;
        } else {
            low = left;
        }
    }
    Some(match fit_at((low + high) / 2.0, &points) {
        Some((refined, residual)) if residual < best_residual => refined,
        _ => best,
    })
}

/// The best ceiling and gap for `rate`, and the squared residual; `None` for a falling or
/// impossible curve.
fn fit_at(rate: f64, points: &[(f64, f64)]) -> Option<(Trend, f64)> {
    let n = points.len() as f64;
    // accuracy = ceiling + slope * x with x = exp(-rate * epoch) and gap = -slope.
    let xs: Vec<f64> = points.iter().map(|(e, _)| (-rate * e).exp()).collect();
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, a)| a).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if sxx < 1e-12 {
        return None;
    }
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, (_, a))| (x - mean_x) * (a - mean_y))
        .sum();
    let slope = sxy / sxx;
    let trend = Trend {
        ceiling: mean_y - slope * mean_x,
        gap: -slope,
        rate,
    };
    if trend.gap <= 0.0 || trend.ceiling > 1.0 {
        return None;
    }
    let residual = xs
        .iter()
        .zip(points)
        .map(|(x, (_, a))| (a - (trend.ceiling + slope * x)).powi(2))
        .sum();
    Some((trend, residual))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u32, accuracy: f64, seconds: f64, cost_usd: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            functions: 4,
            memory_mb: 1769,
            accuracy,
            seconds,
            cost_usd,
            ..Default::default()
        }
    }

    fn state<'a>(history: &'a [EpochRecord], max_epochs: u32) -> JobState<'a> {
        JobState {
            history,
            epochs_done: history.len() as u32,
            max_epochs,
            target_accuracy: None,
            budget_usd: None,
            spent_usd: history.iter().map(|r| r.cost_usd).sum(),
            curve: None,
        }
    }

    #[test]
    fn without_a_target_the_epoch_limit_ends_the_job_at_the_last_epochs_pace() {
        let history: Vec<_> = (1..=4)
            .map(|e| record(e, 0.5, if e == 1 { 9.0 } else { 2.0 }, 0.01))
            .collect();
        let forecast = forecast(&state(&history, 10)).expect("a forecast");
        assert_eq!(forecast.ends_by, StopReason::MaxEpochs);
        assert_eq!(forecast.remaining_epochs, 6);
        assert_eq!(forecast.basis, Basis::Epochs);
        assert!((forecast.seconds - 12.0).abs() < 1e-9, "{forecast:?}");
        assert!((forecast.cost_usd - 0.06).abs() < 1e-9, "{forecast:?}");
        assert!((forecast.percent - 40.0).abs() < 1e-9, "{forecast:?}");
    }

    #[test]
    fn the_budget_ends_the_job_when_it_pays_for_fewer_epochs() {
        let history: Vec<_> = (1..=2).map(|e| record(e, 0.5, 2.0, 0.01)).collect();
        let mut state = state(&history, 100);
        state.budget_usd = Some(0.055);
        let forecast = forecast(&state).expect("a forecast");
        assert_eq!(forecast.ends_by, StopReason::BudgetExhausted);
        assert_eq!(forecast.remaining_epochs, 3);
        assert!(forecast.cost_usd <= 0.035 + 1e-12, "{forecast:?}");
    }

    #[test]
    fn the_trend_of_the_epochs_seen_predicts_the_epochs_to_the_target() {
        // accuracy = 0.9 - 0.5 exp(-0.5 e) reaches 0.88 at e = ln(25) / 0.5 = 6.44, so epoch 7.
        let history: Vec<_> = (1..=5)
            .map(|e| record(e, 0.9 - 0.5 * (-0.5 * f64::from(e)).exp(), 2.0, 0.01))
            .collect();
        let mut state = state(&history, 50);
        state.target_accuracy = Some(0.88);
        let forecast = forecast(&state).expect("a forecast");
        assert_eq!(forecast.basis, Basis::Trend);
        assert_eq!(forecast.ends_by, StopReason::TargetReached);
        assert_eq!(forecast.remaining_epochs, 2, "{forecast:?}");
        assert!((forecast.percent - 500.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn a_trend_that_levels_off_below_the_target_runs_to_the_epoch_limit() {
        let history: Vec<_> = (1..=5)
            .map(|e| record(e, 0.8 - 0.3 * (-0.7 * f64::from(e)).exp(), 2.0, 0.01))
            .collect();
        let mut state = state(&history, 30);
        state.target_accuracy = Some(0.9);
        let forecast = forecast(&state).expect("a forecast");
        assert_eq!(forecast.ends_by, StopReason::MaxEpochs);
        assert_eq!(forecast.remaining_epochs, 25);
        assert_eq!(forecast.basis, Basis::Trend);
    }

    #[test]
    fn before_a_trend_the_schedulers_curve_placed_at_the_measured_accuracy_predicts() {
        let curve = LossCurve {
            initial_accuracy: 0.1,
            final_accuracy: 0.9,
            initial_loss: 2.3,
            final_loss: 0.3,
            rate: 0.3,
            staleness: 0.0,
            staleness_decay: 0.0,
            accuracy_noise: 0.0,
        };
        // The job is further along than one epoch of the curve: it measured the accuracy of
        // progress 3. From there 0.85 (progress ln(16) / 0.3 = 9.24) is 7 epochs away.
        let history = vec![record(1, curve.accuracy_at(3.0), 2.0, 0.01)];
        let mut state = state(&history, 50);
        state.target_accuracy = Some(0.85);
        state.curve = Some(&curve);
        let forecast = forecast(&state).expect("a forecast");
        assert_eq!(forecast.basis, Basis::Scheduler);
        assert_eq!(forecast.remaining_epochs, 7, "{forecast:?}");
        assert_eq!(forecast.ends_by, StopReason::TargetReached);
    }

    #[test]
    fn a_reached_target_leaves_nothing_to_do() {
        let history = vec![record(1, 0.95, 2.0, 0.01)];
        let mut state = state(&history, 50);
        state.target_accuracy = Some(0.9);
        let forecast = forecast(&state).expect("a forecast");
        assert_eq!(forecast.remaining_epochs, 0);
        assert_eq!(forecast.percent, 100.0);
        assert_eq!(forecast.ends_by, StopReason::TargetReached);
    }

    #[test]
    fn no_epoch_no_forecast() {
        assert!(forecast(&state(&[], 10)).is_none());
    }
}
