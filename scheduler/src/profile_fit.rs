//! Turns measurements into profile parameters. `siren calibrate` (siren-driver's `calibrate`) takes the
//! measurements on a real machine (training steps, store round trips, cold starts, per-function
//! durations) and hands them here; the arithmetic stays pure and tested.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::profile::{ColdStart, StoreProfile, Stragglers};

#[derive(Debug, Error, PartialEq)]
pub enum CalibrationError {
    #[error("need at least {needed} measurements, got {got}")]
    TooFew { needed: usize, got: usize },
    #[error("measurement {0} is not a finite positive number")]
    BadValue(f64),
    #[error("round trips of different sizes are needed to tell latency from bandwidth")]
    Degenerate,
}

/// One store round trip: bytes moved (pull or push) and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub bytes: f64,
    pub seconds: f64,
}

fn check(
    values: impl IntoIterator<Item = f64>,
    needed: usize,
) -> Result<Vec<f64>, CalibrationError> {
    let values: Vec<f64> = values.into_iter().collect();
    if values.len() < needed {
        return Err(CalibrationError::TooFew {
            needed,
            got: values.len(),
        });
    }
    match values.iter().find(|v| !v.is_finite() || **v <= 0.0) {
        Some(bad) => Err(CalibrationError::BadValue(*bad)),
        None => Ok(values),
    }
}

/// Latency and single-client bandwidth by least squares on `seconds = latency + bytes / bandwidth`.
/// The aggregate cap comes from `aggregate_bandwidth`, measured with many clients at once.
pub fn fit_store(
    single: &[Transfer],
    aggregate_bytes_per_second: f64,
) -> Result<StoreProfile, CalibrationError> {
    check(single.iter().flat_map(|t| [t.bytes, t.seconds]), 4)?;
    check([aggregate_bytes_per_second], 1)?;
    let n = single.len() as f64;
    let mean_x = single.iter().map(|t| t.bytes).sum::<f64>() / n;
    let mean_y = single.iter().map(|t| t.seconds).sum::<f64>() / n;
    let sxx: f64 = single.iter().map(|t| (t.bytes - mean_x).powi(2)).sum();
    if sxx <= 0.0 {
        return Err(CalibrationError::Degenerate);
    }
    let slope = single
        .iter()
        .map(|t| (t.bytes - mean_x) * (t.seconds - mean_y))
        .sum::<f64>()
        / sxx;
    if slope <= 0.0 {
        return Err(CalibrationError::Degenerate);
    }
    Ok(StoreProfile {
        latency_seconds: (mean_y - slope * mean_x).max(0.0),
        function_bandwidth_bytes_per_second: 1.0 / slope,
        aggregate_bandwidth_bytes_per_second: aggregate_bytes_per_second,
    })
}

/// Aggregate bandwidth from a burst: `clients` transfers of `bytes` each, all done in `seconds`.
pub fn aggregate_bandwidth(
    clients: u32,
    bytes: f64,
    seconds: f64,
) -> Result<f64, CalibrationError> {
    let values = check([f64::from(clients), bytes, seconds], 3)?;
    Ok(values[0] * values[1] / values[2])
}

/// A log-normal fitted to cold-start samples; the truncation point is the slowest one seen plus
/// `headroom` (e.g. 0.5 for 50%), since the budget guarantee relies on it.
pub fn fit_cold_start(samples: &[f64], headroom: f64) -> Result<ColdStart, CalibrationError> {
    let samples = check(samples.iter().copied(), 3)?;
    let logs: Vec<f64> = samples.iter().map(|s| s.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let variance = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
    let slowest = samples.iter().copied().fold(0.0, f64::max);
    Ok(ColdStart {
        median_seconds: mean.exp(),
        sigma: variance.sqrt(),
        max_seconds: slowest * (1.0 + headroom.max(0.0)),
    })
}

/// Straggling from the compute times of functions that did equal work in the same epoch: each
/// epoch's fastest is the reference, the log-ratios fit a half-normal, and the cap is the worst
/// ratio seen plus `headroom`.
pub fn fit_stragglers(epochs: &[Vec<f64>], headroom: f64) -> Result<Stragglers, CalibrationError> {
    let mut logs = Vec::new();
    let mut worst: f64 = 1.0;
    for times in epochs {
        let times = check(times.iter().copied(), 1)?;
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
        for t in &times {
            logs.push((t / fastest).ln());
            worst = worst.max(t / fastest);
        }
    }
    if logs.len() < 3 {
        return Err(CalibrationError::TooFew {
            needed: 3,
            got: logs.len(),
        });
    }
    // For a half-normal |Z| sigma, E[x^2] = sigma^2.
    let sigma = (logs.iter().map(|l| l * l).sum::<f64>() / logs.len() as f64).sqrt();
    Ok(Stragglers {
        sigma,
        max_factor: worst * (1.0 + headroom.max(0.0)),
    })
}

/// Seconds of one vCPU per sample from timed training steps on `vcpus` threads, given the job's
/// parallel efficiency (measure it as the ratio of speed-ups at 1 and k threads).
pub fn compute_seconds_per_sample(
    seconds: f64,
    samples: u64,
    vcpus: f64,
    parallel_efficiency: f64,
) -> Result<f64, CalibrationError> {
    let values = check([seconds, samples as f64, vcpus], 3)?;
    let speed = vcpus.min(1.0) + parallel_efficiency.clamp(0.0, 1.0) * (vcpus - 1.0).max(0.0);
    Ok(values[0] * speed / values[1])
}

/// Parallel efficiency from the time of the same work on one thread and on `threads` threads.
pub fn parallel_efficiency(
    one_thread_seconds: f64,
    threads: u32,
    threads_seconds: f64,
) -> Result<f64, CalibrationError> {
    check([one_thread_seconds, f64::from(threads), threads_seconds], 3)?;
    if threads <= 1 {
        return Ok(1.0);
    }
    let speedup = one_thread_seconds / threads_seconds;
    Ok(((speedup - 1.0) / f64::from(threads - 1)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_fit_recovers_latency_and_bandwidth() {
        let transfers: Vec<Transfer> = [1.0e3, 1.0e5, 1.0e6, 1.0e7]
            .iter()
            .map(|&bytes| Transfer {
                bytes,
                seconds: 0.002 + bytes / 5.0e8,
            })
            .collect();
        let store = fit_store(&transfers, 1.0e9).expect("fits");
        assert!((store.latency_seconds - 0.002).abs() < 1e-9);
        assert!((store.function_bandwidth_bytes_per_second / 5.0e8 - 1.0).abs() < 1e-9);
        assert_eq!(
            fit_store(&transfers[..1], 1.0e9),
            Err(CalibrationError::TooFew { needed: 4, got: 2 })
        );
        let same = [Transfer {
            bytes: 10.0,
            seconds: 1.0,
        }; 3];
        assert_eq!(fit_store(&same, 1.0e9), Err(CalibrationError::Degenerate));
        assert!((aggregate_bandwidth(8, 1.0e6, 0.01).expect("valid") - 8.0e8).abs() < 1e-3);
    }

    #[test]
    fn cold_starts_and_stragglers_fit_their_distributions() {
        let cold = fit_cold_start(&[0.5, 1.0, 2.0], 0.5).expect("fits");
        assert!((cold.median_seconds - 1.0).abs() < 1e-12);
        assert!((cold.max_seconds - 3.0).abs() < 1e-12);
        assert_eq!(
            fit_cold_start(&[1.0, -1.0, 2.0], 0.5),
            Err(CalibrationError::BadValue(-1.0))
        );
        let stragglers =
            fit_stragglers(&[vec![1.0, 1.1, 1.2], vec![2.0, 2.0, 3.0]], 0.2).expect("fits");
        assert!((stragglers.max_factor - 1.8).abs() < 1e-12);
        assert!(stragglers.sigma > 0.0 && stragglers.sigma < 0.5);
    }

    #[test]
    fn compute_is_normalised_to_one_vcpu() {
        // 2 vCPUs at efficiency 0.5 run at 1.5 vCPUs: 1,000 samples in 1 s is 1.5 ms per sample.
        let per_sample = compute_seconds_per_sample(1.0, 1000, 2.0, 0.5).expect("valid");
        assert!((per_sample - 0.0015).abs() < 1e-12);
        assert!((parallel_efficiency(4.0, 4, 1.6).expect("valid") - 0.5).abs() < 1e-12);
    }
}
