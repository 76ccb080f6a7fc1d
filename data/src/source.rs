//! Turns a manifest's dataset section into normalised train and test splits in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use siren_crds::{BuiltinDataset, DatasetSpec};

use super::{
    DataError, Dataset, Normalizer, generate_synthetic, read_csv, read_idx_images, read_idx_labels,
    read_libsvm,
};

pub const DEFAULT_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
const FASHION_MNIST_CLASSES: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct DataSplits {
    pub train: Dataset,
    pub test: Dataset,
}

/// Where the built-in Fashion-MNIST lives: `$SIREN_DATA_DIR`, or Debian's package location.
pub fn builtin_dir() -> PathBuf {
    std::env::var_os("SIREN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_FASHION_MNIST_DIR))
}

/// Finds `name` in `dir` with or without a `.gz` suffix.
fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(format!("{name}.gz")), dir.join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

fn load_idx_pair(
    images: &Path,
    labels: &Path,
    classes: Option<usize>,
) -> Result<Dataset, DataError> {
    let (count, height, width, pixels) = read_idx_images(images)?;
    let labels_raw = read_idx_labels(labels)?;
    if labels_raw.len() != count {
        return Err(DataError::corrupt(
            labels,
            format!(
                "holds {} labels but {} holds {count} images",
                labels_raw.len(),
                images.display()
            ),
        ));
    }
    let labels_u32: Vec<u32> = labels_raw.iter().map(|l| u32::from(*l)).collect();
    let max_label = labels_u32.iter().max().map_or(0, |m| *m as usize);
    let classes = classes.unwrap_or(max_label + 1);
    if max_label >= classes {
        return Err(DataError::corrupt(
            labels,
            format!("label {max_label} is out of range for {classes} classes"),
        ));
    }
    let features = pixels.iter().map(|p| f32::from(*p) / 255.0).collect();
    Dataset::new(
        features,
        labels_u32,
        height * width,
        classes,
        Some((height, width)),
    )
    .map_err(|e| DataError::corrupt(images, e.to_string()))
}

fn load_builtin(which: BuiltinDataset) -> Result<DataSplits, DataError> {
    match which {
        BuiltinDataset::FashionMnist => load_fashion_mnist(&builtin_dir()),
    }
}

fn load_fashion_mnist(dir: &Path) -> Result<DataSplits, DataError> {
    let files: Option<Vec<PathBuf>> = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    .iter()
    .map(|name| find_idx(dir, name))
    .collect();
    let Some(files) = files else {
        return Err(DataError::BuiltinMissing {
            dir: dir.to_path_buf(),
        });
    };
    Ok(DataSplits {
        train: load_idx_pair(&files[0], &files[1], Some(FASHION_MNIST_CLASSES))?,
        test: load_idx_pair(&files[2], &files[3], Some(FASHION_MNIST_CLASSES))?,
    })
}

fn held_out(
    mut train: Dataset,
    test: Option<Dataset>,
    fraction: f64,
    seed: u64,
) -> Result<DataSplits, DataError> {
    let test = match test {
        Some(test) => test,
        None => train.split_off_fraction(fraction, seed)?,
    };
    Ok(DataSplits { train, test })
}

/// Loads, limits and normalises both splits. `seed` drives the held-out split of single-file sets.
pub fn load_splits(spec: &DatasetSpec, seed: u64) -> Result<DataSplits, DataError> {
    let mut splits = if let Some(builtin) = spec.builtin {
        load_builtin(builtin)?
    } else if let Some(idx) = &spec.idx {
        let train = load_idx_pair(
            Path::new(&idx.train_images),
            Path::new(&idx.train_labels),
            None,
        )?;
        let test = load_idx_pair(
            Path::new(&idx.test_images),
            Path::new(&idx.test_labels),
            None,
        )?;
        DataSplits { train, test }
    } else if let Some(csv) = &spec.csv {
        let label_column = csv.label_column as usize;
        let train = read_csv(Path::new(&csv.train), label_column, csv.header)?;
        let test = match &csv.test {
            Some(test) => Some(read_csv(Path::new(test), label_column, csv.header)?),
            None => None,
        };
        held_out(train, test, csv.test_fraction, seed)?
    } else if let Some(libsvm) = &spec.libsvm {
        let train = read_libsvm(
            Path::new(&libsvm.train),
            libsvm.features.map(|f| f as usize),
        )?;
        let test = match &libsvm.test {
            Some(test) => Some(read_libsvm(Path::new(test), Some(train.dim))?),
            None => None,
        };
        held_out(train, test, libsvm.test_fraction, seed)?
    } else if let Some(synthetic) = &spec.synthetic {
        let (train, test) = generate_synthetic(
            synthetic.samples as usize,
            synthetic.test_samples as usize,
            synthetic.features as usize,
            synthetic.classes as usize,
            synthetic.noise as f32,
            synthetic.seed,
        )?;
        DataSplits { train, test }
    } else {
        return Err(DataError::Invalid(
            "the dataset names no source (builtin, idx, csv, libsvm or synthetic)".into(),
        ));
    };
    if splits.train.dim != splits.test.dim {
        return Err(DataError::Invalid(format!(
            "train samples have {} features but test samples have {}",
            splits.train.dim, splits.test.dim
        )));
    }
    let classes = splits.train.classes.max(splits.test.classes);
    splits.train.classes = classes;
    splits.test.classes = classes;
    if let Some(limit) = spec.max_train_samples {
        splits.train.truncate(limit as usize);
    }
    if let Some(limit) = spec.max_test_samples {
        splits.test.truncate(limit as usize);
    }
    if splits.train.is_empty() || splits.test.is_empty() {
        return Err(DataError::Invalid("a split has no samples".into()));
    }
    let normalizer = Normalizer::fit(&splits.train);
    normalizer.apply(&mut splits.train);
    normalizer.apply(&mut splits.test);
    Ok(splits)
}

type CacheKey = (String, u64);

/// Datasets this process has loaded, held weakly: a dataset lives exactly as long as some run (or
/// warm function) holds it, and every run that asks for it meanwhile shares that one copy. An
/// operator that runs jobs for days keeps only the datasets of the jobs it runs now.
///
/// The lock is held while a dataset loads, so that jobs asking for the same dataset at once load
/// it once. Loads of different datasets wait for each other too, which only costs when jobs over
/// different large datasets start at the same moment.
static CACHE: Mutex<Option<HashMap<CacheKey, Weak<DataSplits>>>> = Mutex::new(None);

/// Loads the splits, or shares the copy some holder of the same dataset (and seed) keeps alive;
/// the boolean says whether they were shared rather than loaded.
pub fn cached_splits(spec: &DatasetSpec, seed: u64) -> Result<(Arc<DataSplits>, bool), DataError> {
    let key = (
        serde_json::to_string(spec).map_err(|e| DataError::Invalid(e.to_string()))?,
        seed,
    );
    let mut guard = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(splits) = cache.get(&key).and_then(Weak::upgrade) {
        return Ok((splits, true));
    }
    // Entries of datasets nobody holds any more go as others load.
    cache.retain(|_, splits| splits.strong_count() > 0);
    let splits = Arc::new(load_splits(spec, seed)?);
    cache.insert(key, Arc::downgrade(&splits));
    Ok((splits, false))
}

#[cfg(test)]
mod tests {
    use super::super::idx::tests::idx_bytes;
    use super::*;

    fn spec_with_idx(dir: &Path) -> DatasetSpec {
        let path = |name: &str| dir.join(name).display().to_string();
        serde_json::from_value(serde_json::json!({
            "idx": {
                "trainImages": path("train-images"),
                "trainLabels": path("train-labels"),
                "testImages": path("test-images"),
                "testLabels": path("test-labels"),
            }
        }))
        .expect("spec")
    }

    fn write_idx_set(dir: &Path, train_images: u32, train_labels: u32) {
        let images = |n: u32| idx_bytes(3, &[n, 2, 2], &vec![7u8; (n * 4) as usize]);
        let labels =
            |n: u32| idx_bytes(1, &[n], &(0..n).map(|i| (i % 3) as u8).collect::<Vec<_>>());
        std::fs::write(dir.join("train-images"), images(train_images)).expect("write");
        std::fs::write(dir.join("train-labels"), labels(train_labels)).expect("write");
        std::fs::write(dir.join("test-images"), images(2)).expect("write");
        std::fs::write(dir.join("test-labels"), labels(2)).expect("write");
    }

    #[test]
    fn idx_set_loads_with_image_shape() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_idx_set(dir.path(), 6, 6);
        let splits = load_splits(&spec_with_idx(dir.path()), 0).expect("load");
        assert_eq!(splits.train.len(), 6);
        assert_eq!(splits.train.image, Some((2, 2)));
        assert_eq!(splits.train.classes, 3);
    }

    #[test]
    fn image_label_count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_idx_set(dir.path(), 6, 5);
        let message = load_splits(&spec_with_idx(dir.path()), 0)
            .expect_err("mismatch")
            .to_string();
        assert!(
            message.contains("train-labels: holds 5 labels")
                && message.contains("train-images holds 6 images"),
            "{message}"
        );
    }

    #[test]
    fn missing_builtin_says_how_to_install() {
        let message = load_fashion_mnist(Path::new("/nonexistent-siren-data"))
            .expect_err("missing")
            .to_string();
        assert!(
            message.contains("apt-get install dataset-fashion-mnist"),
            "{message}"
        );
        assert!(message.contains("SIREN_DATA_DIR"), "{message}");
    }

    fn synthetic_spec(seed: u64) -> DatasetSpec {
        serde_json::from_value(serde_json::json!({
            "synthetic": {
                "samples": 200, "testSamples": 50, "features": 3, "classes": 2, "seed": seed
            },
            "shardSize": 50,
        }))
        .expect("spec")
    }

    /// Shared while someone holds it, loaded once even when asked for at the same moment, and
    /// gone (loaded afresh) once nobody does.
    #[test]
    fn a_held_dataset_is_shared_and_a_released_one_is_loaded_afresh() {
        // A seed no other test uses: the cache is the process's.
        let spec = synthetic_spec(0x5EED_CAC4E);
        let barrier = std::sync::Barrier::new(4);
        let loads: Vec<(Arc<DataSplits>, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        cached_splits(&spec, 11).expect("load")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().expect("loader"))
                .collect()
        });
        assert_eq!(
            loads.iter().filter(|(_, cached)| !cached).count(),
            1,
            "four loads at once load it once"
        );
        assert!(
            loads
                .iter()
                .all(|(splits, _)| Arc::ptr_eq(splits, &loads[0].0)),
            "one copy for all"
        );
        let (other_seed, cached) = cached_splits(&spec, 12).expect("load");
        assert!(!cached, "another seed is another dataset");
        assert!(!Arc::ptr_eq(&other_seed, &loads[0].0));

        let (held, cached) = cached_splits(&spec, 11).expect("load");
        assert!(cached && Arc::ptr_eq(&held, &loads[0].0));
        let before = DataSplits::clone(&held);
        drop(loads);
        drop(held);
        let (again, cached) = cached_splits(&spec, 11).expect("load");
        assert!(!cached, "nobody held it: loaded afresh");
        assert_eq!(*again, before, "the same data again");
    }

    #[test]
    fn csv_without_test_file_holds_out_a_fraction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.csv");
        let rows: String = (0..50)
            .map(|i| format!("{},{},{}\n", i % 2, i, i * 2))
            .collect();
        std::fs::write(&path, rows).expect("write");
        let spec: DatasetSpec = serde_json::from_value(serde_json::json!({
            "csv": {"train": path.display().to_string(), "testFraction": 0.2}
        }))
        .expect("spec");
        let splits = load_splits(&spec, 3).expect("load");
        assert_eq!((splits.train.len(), splits.test.len()), (40, 10));
        let mean: f32 = splits.train.features.iter().step_by(2).sum::<f32>() / 40.0;
        assert!(
            mean.abs() < 1e-4,
            "train features are standardised, mean {mean}"
        );
    }
}
