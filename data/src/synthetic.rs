//! Seeded synthetic classification data: Gaussian clouds around random class centres.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

use super::{DataError, Dataset};

/// Train and test sets drawn from the same class centres; the same seed gives the same data.
pub fn generate_synthetic(
    samples: usize,
    test_samples: usize,
    features: usize,
    classes: usize,
    noise: f32,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    if classes < 2 || features == 0 {
        return Err(DataError::Invalid(
            "synthetic data needs at least 2 classes and 1 feature".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..classes * features)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    let pick_class = Uniform::new(0, classes as u32)
        .map_err(|e| DataError::Invalid(format!("synthetic classes: {e}")))?;
    let mut draw = |n: usize| {
        let mut xs = Vec::with_capacity(n * features);
        let mut ys = Vec::with_capacity(n);
        for _ in 0..n {
            let class = pick_class.sample(&mut rng);
            let centre = &centres[class as usize * features..(class as usize + 1) * features];
            xs.extend(centre.iter().map(|c| {
                let z: f32 = StandardNormal.sample(&mut rng);
                c + noise * z
            }));
            ys.push(class);
        }
        Dataset::new(xs, ys, features, classes, None)
    };
    let train = draw(samples)?;
    let test = draw(test_samples)?;
    Ok((train, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = generate_synthetic(50, 10, 4, 3, 0.5, 1).expect("generate");
        let b = generate_synthetic(50, 10, 4, 3, 0.5, 1).expect("generate");
        let c = generate_synthetic(50, 10, 4, 3, 0.5, 2).expect("generate");
        assert_eq!(a, b);
        assert_ne!(a.0.features, c.0.features);
        assert_eq!(a.0.len(), 50);
        assert_eq!(a.1.len(), 10);
        assert!(a.0.labels.iter().all(|l| *l < 3));
    }
}
