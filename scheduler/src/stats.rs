//! Expected maxima of independent normal draws, which set how long an epoch waits for its slowest
//! function. Computed once by numerical integration, then looked up.

use std::sync::OnceLock;

/// Largest n the tables cover; beyond it the expectation grows by less than 1% per doubling.
const TABLE_SIZE: usize = 1024;
const STEP: f64 = 0.002;
const LIMIT: f64 = 8.0;

/// Standard normal CDF through erf (Abramowitz & Stegun 7.1.26, |error| < 1.5e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

struct Tables {
    /// E[max of n standard normals], index n - 1.
    normal: Vec<f64>,
    /// E[max of n |standard normal|], index n - 1.
    half_normal: Vec<f64>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        // E[max] = integral over x >= 0 of (1 - F^n) minus integral over x < 0 of F^n.
        let steps = (LIMIT / STEP) as usize;
        let mut normal = vec![0.0; TABLE_SIZE];
        let mut half_normal = vec![0.0; TABLE_SIZE];
        for i in 0..steps {
            let x = (i as f64 + 0.5) * STEP;
            let upper = normal_cdf(x);
            let lower = normal_cdf(-x);
            let half = 2.0 * upper - 1.0;
            let (mut up_n, mut low_n, mut half_n) = (1.0, 1.0, 1.0);
            for n in 0..TABLE_SIZE {
                up_n *= upper;
                low_n *= lower;
                half_n *= half;
                normal[n] += (1.0 - up_n - low_n) * STEP;
                half_normal[n] += (1.0 - half_n) * STEP;
            }
        }
        Tables {
            normal,
            half_normal,
        }
    })
}

fn lookup(table: &[f64], n: u32) -> f64 {
    let index = (n.max(1) as usize).min(table.len()) - 1;
    table[index]
}

pub fn expected_max_normal(n: u32) -> f64 {
    lookup(&tables().normal, n)
}

pub fn expected_max_half_normal(n: u32) -> f64 {
    lookup(&tables().half_normal, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_known_order_statistics() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        assert!(expected_max_normal(1).abs() < 1e-3);
        assert!((expected_max_normal(2) - 0.5642).abs() < 1e-3);
        assert!((expected_max_normal(32) - 2.0697).abs() < 2e-3);
        // |Z| has mean sqrt(2 / pi).
        assert!((expected_max_half_normal(1) - 0.797_88).abs() < 1e-3);
        assert!(expected_max_half_normal(64) > expected_max_half_normal(8));
    }
}
