//! LibSVM's sparse text format: `label index:value index:value ...`, indices 1-based.
//! Binary sets labelled -1/+1 map to classes 0/1; otherwise labels are non-negative integers.

use std::io::BufRead;
use std::path::Path;

use super::csv::parse_label;
use super::{DataError, Dataset};

/// Dense rows are built from the sparse ones, so the feature count bounds memory.
const MAX_FEATURES: usize = 1 << 24;

struct Row {
    label: u32,
    entries: Vec<(usize, f32)>,
}

pub fn read_libsvm(path: &Path, features: Option<usize>) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    let mut max_index = 0usize;
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_number = number + 1;
        let line =
            line.map_err(|e| DataError::corrupt(path, format!("line {line_number}: {e}")))?;
        let content = line.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let mut tokens = content.split_whitespace();
        let label_text = tokens.next().unwrap_or("");
        let label = match label_text {
            "-1" => 0,
            "+1" => 1,
            other => parse_label(other).ok_or_else(|| {
                DataError::corrupt(
                    path,
                    format!(
                        "line {line_number}: the label is not -1, +1 or a non-negative integer"
                    ),
                )
            })?,
        };
        let mut entries = Vec::new();
        // Positions only: a message never quotes what a file holds (it may not be a dataset).
        for (position, token) in tokens.enumerate() {
            let bad = |why: &str| {
                DataError::corrupt(
                    path,
                    format!("line {line_number}, feature {}: {why}", position + 1),
                )
            };
            let (index, value) = token
                .split_once(':')
                .ok_or_else(|| bad("is not an index:value pair"))?;
            let index: usize = index
                .parse()
                .map_err(|_| bad("has an index that is not a positive integer"))?;
            if index == 0 {
                return Err(bad("uses index 0, but LibSVM indices start at 1"));
            }
            if index > MAX_FEATURES {
                return Err(bad(&format!(
                    "has an index beyond the {MAX_FEATURES} features Siren supports"
                )));
            }
            let value: f32 = value
                .parse()
                .map_err(|_| bad("has a value that is not a number"))?;
            if !value.is_finite() {
                return Err(bad("has a value that is not finite"));
            }
            if let Some(limit) = features
                && index > limit
            {
                return Err(bad(&format!("is beyond the {limit} declared features")));
            }
            max_index = max_index.max(index);
            entries.push((index - 1, value));
        }
        rows.push(Row { label, entries });
    }
    if rows.is_empty() {
        return Err(DataError::corrupt(path, "no samples in file"));
    }
    let dim = features.unwrap_or(max_index);
    if dim == 0 {
        return Err(DataError::corrupt(path, "no features in file"));
    }
    let cells = rows
        .len()
        .checked_mul(dim)
        .filter(|c| *c <= super::MAX_VALUES)
        .ok_or_else(|| {
            DataError::corrupt(
                path,
                format!(
                    "{} rows of {dim} features are too large to hold in memory",
                    rows.len()
                ),
            )
        })?;
    let mut dense = vec![0.0f32; cells];
    for (r, row) in rows.iter().enumerate() {
        for (index, value) in &row.entries {
            dense[r * dim + index] = *value;
        }
    }
    let labels: Vec<u32> = rows.iter().map(|r| r.label).collect();
    let classes = labels.iter().max().map_or(0, |m| *m as usize + 1).max(2);
    Dataset::new(dense, labels, dim, classes, None)
        .map_err(|e| DataError::corrupt(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.svm");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn reads_sparse_rows() {
        let (_dir, path) = file("+1 1:0.5 3:2\n-1 2:1 # comment\n\n+1\n");
        let data = read_libsvm(&path, None).expect("valid");
        assert_eq!(data.labels, vec![1, 0, 1]);
        assert_eq!(data.dim, 3);
        assert_eq!(data.sample(0), &[0.5, 0.0, 2.0]);
        assert_eq!(data.sample(2), &[0.0, 0.0, 0.0]);
        let wide = read_libsvm(&path, Some(5)).expect("valid");
        assert_eq!(wide.dim, 5);
    }

    #[test]
    fn bad_tokens_are_reported_with_their_line() {
        for (text, needle) in [
            ("1 1:0.5\n2 0:1\n", "line 2, feature 1: uses index 0"),
            ("1 1-0.5\n", "not an index:value pair"),
            ("1 1:abc\n", "value that is not a number"),
            ("1 1:nan\n", "not finite"),
            ("x 1:1\n", "line 1: the label is not"),
            ("", "no samples"),
        ] {
            let (_dir, path) = file(text);
            let message = read_libsvm(&path, None).expect_err(text).to_string();
            assert!(message.contains(needle), "{message}");
        }
        let (_dir, path) = file("1 7:1\n");
        let message = read_libsvm(&path, Some(4)).expect_err("beyond").to_string();
        assert!(
            message.contains("beyond the 4 declared features"),
            "{message}"
        );
    }
}
