//! Feature standardisation fitted on the training split and applied to both splits, so that the
//! same learning rates work across datasets whose raw scales differ by orders of magnitude.

use super::Dataset;

#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    /// One entry for images (all pixels share a scale), one per feature otherwise.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Normalizer {
    pub fn fit(data: &Dataset) -> Self {
        let groups = if data.image.is_some() { 1 } else { data.dim };
        let mut sum = vec![0f64; groups];
        let mut sum_sq = vec![0f64; groups];
        for sample in data.features.chunks_exact(data.dim) {
            for (i, v) in sample.iter().enumerate() {
                let g = i % groups;
                sum[g] += *v as f64;
                sum_sq[g] += (*v as f64) * (*v as f64);
            }
        }
        let count = (data.len() * data.dim / groups).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let inv_std = sum_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                let std = (sq / count - m * m).max(0.0).sqrt();
                if std > 1e-8 { (1.0 / std) as f32 } else { 1.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_std,
        }
    }

    pub fn apply(&self, data: &mut Dataset) {
        let groups = self.mean.len();
        for sample in data.features.chunks_exact_mut(data.dim) {
            for (i, v) in sample.iter_mut().enumerate() {
                let g = i % groups;
                *v = (*v - self.mean[g]) * self.inv_std[g];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standardises_each_feature() {
        let mut data =
            Dataset::new(vec![1.0, 10.0, 3.0, 30.0], vec![0, 1], 2, 2, None).expect("data");
        Normalizer::fit(&data).apply(&mut data);
        assert_eq!(data.features, vec![-1.0, -1.0, 1.0, 1.0]);
    }

    #[test]
    fn constant_feature_is_left_finite() {
        let mut data = Dataset::new(vec![5.0, 5.0], vec![0, 1], 1, 2, None).expect("data");
        Normalizer::fit(&data).apply(&mut data);
        assert!(data.features.iter().all(|v| v.is_finite()));
    }
}
