//! Datasets in memory, the readers that produce them, and the fixed-size shards that tasks reference.

mod csv;
mod idx;
mod libsvm;
mod normalize;
mod source;
mod synthetic;

use std::ops::Range;
use std::path::PathBuf;

use thiserror::Error;

pub use self::csv::read_csv;
pub use idx::{read_idx_images, read_idx_labels};
pub use libsvm::read_libsvm;
pub use normalize::Normalizer;
pub use source::{DataSplits, builtin_dir, cached_splits, load_splits};
pub use synthetic::generate_synthetic;

/// At most this many classes: a label is a class index, and one stray huge label would otherwise
/// build a model with that many outputs.
pub const MAX_CLASSES: usize = 10_000;
/// At most this many feature values in one split (16 GiB of f32).
pub const MAX_VALUES: usize = 1 << 32;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error(
        "the built-in dataset fashion-mnist was not found in {dir}: install it with `apt-get install dataset-fashion-mnist` or point SIREN_DATA_DIR at a directory holding its four IDX files"
    )]
    BuiltinMissing { dir: PathBuf },
    #[error("dataset is unusable: {0}")]
    Invalid(String),
}

impl DataError {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        DataError::Corrupt {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

/// Samples in memory: row-major features and integer class labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub features: Vec<f32>,
    pub labels: Vec<u32>,
    /// Features per sample.
    pub dim: usize,
    pub classes: usize,
    /// Height and width when samples are single-channel images.
    pub image: Option<(usize, usize)>,
}

impl Dataset {
    pub fn new(
        features: Vec<f32>,
        labels: Vec<u32>,
        dim: usize,
        classes: usize,
        image: Option<(usize, usize)>,
    ) -> Result<Self, DataError> {
        if dim == 0 {
            return Err(DataError::Invalid("samples have no features".into()));
        }
        if features.len() != labels.len() * dim {
            return Err(DataError::Invalid(format!(
                "{} feature values do not make {} samples of {dim} features",
                features.len(),
                labels.len()
            )));
        }
        if classes > MAX_CLASSES {
            return Err(DataError::Invalid(format!(
                "{classes} classes (labels up to {}) is more than the {MAX_CLASSES} Siren supports",
                classes - 1
            )));
        }
        if let Some(bad) = labels.iter().find(|l| **l as usize >= classes) {
            return Err(DataError::Invalid(format!(
                "label {bad} is out of range for {classes} classes"
            )));
        }
        Ok(Self {
            features,
            labels,
            dim,
            classes,
            image,
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn sample(&self, index: usize) -> &[f32] {
        &self.features[index * self.dim..(index + 1) * self.dim]
    }

    /// Keeps the first `n` samples.
    pub fn truncate(&mut self, n: usize) {
        if n < self.len() {
            self.labels.truncate(n);
            self.features.truncate(n * self.dim);
        }
    }

    /// Splits off the last `fraction` of the samples (after a seeded shuffle) as a held-out set.
    pub fn split_off_fraction(&mut self, fraction: f64, seed: u64) -> Result<Dataset, DataError> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let held_out = ((self.len() as f64) * fraction).round() as usize;
        if held_out == 0 || held_out >= self.len() {
            return Err(DataError::Invalid(format!(
                "holding out a fraction of {fraction} of {} samples leaves an empty split",
                self.len()
            )));
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let (keep, out) = order.split_at(self.len() - held_out);
        let test = self.select(out);
        *self = self.select(keep);
        Ok(test)
    }

    fn select(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.dim);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            features.extend_from_slice(self.sample(i));
            labels.push(self.labels[i]);
        }
        Dataset {
            features,
            labels,
            dim: self.dim,
            classes: self.classes,
            image: self.image,
        }
    }

    pub fn shard_count(&self, shard_size: usize) -> usize {
        self.len().div_ceil(shard_size.max(1))
    }

    /// The sample indices of one shard; the last shard may be short.
    pub fn shard(&self, index: usize, shard_size: usize) -> Option<Range<usize>> {
        let start = index.checked_mul(shard_size)?;
        if start >= self.len() {
            return None;
        }
        Some(start..(start + shard_size).min(self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(n: usize) -> Dataset {
        let features = (0..n * 2).map(|v| v as f32).collect();
        let labels = (0..n as u32).map(|l| l % 3).collect();
        Dataset::new(features, labels, 2, 3, None).expect("valid dataset")
    }

    #[test]
    fn shards_cover_every_sample_once() {
        let data = tiny(10);
        assert_eq!(data.shard_count(4), 3);
        let covered: Vec<usize> = (0..3)
            .flat_map(|s| data.shard(s, 4).into_iter().flatten())
            .collect();
        assert_eq!(covered, (0..10).collect::<Vec<_>>());
        assert_eq!(data.shard(3, 4), None);
        assert_eq!(data.shard(usize::MAX, 4), None);
    }

    #[test]
    fn held_out_split_is_disjoint_and_seeded() {
        let mut train = tiny(100);
        let test = train.split_off_fraction(0.2, 7).expect("split");
        assert_eq!((train.len(), test.len()), (80, 20));
        let mut again = tiny(100);
        assert_eq!(again.split_off_fraction(0.2, 7).expect("split"), test);
        let firsts: Vec<f32> = train.features.chunks(2).map(|s| s[0]).collect();
        assert!(test.features.chunks(2).all(|s| !firsts.contains(&s[0])));
    }

    #[test]
    fn inconsistent_shapes_and_labels_are_rejected() {
        assert!(Dataset::new(vec![0.0; 5], vec![0, 1], 2, 2, None).is_err());
        assert!(Dataset::new(vec![0.0; 4], vec![0, 2], 2, 2, None).is_err());
    }
}
