//! CSV: one sample per row, an integer class label in one column and numeric features in the others.

use std::path::Path;

use super::{DataError, Dataset};

pub(crate) fn parse_label(text: &str) -> Option<u32> {
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= u32::MAX as f64)
        .then_some(value as u32)
}

pub fn read_csv(path: &Path, label_column: usize, header: bool) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut width: Option<usize> = None;
    for (row, record) in reader.records().enumerate() {
        let record =
            record.map_err(|e| DataError::corrupt(path, format!("unreadable CSV: {e}")))?;
        let line = record
            .position()
            .map_or(row + 1 + usize::from(header), |p| p.line() as usize);
        if record.len() == 1 && record.get(0).is_some_and(str::is_empty) {
            continue;
        }
        let expected = *width.get_or_insert(record.len());
        if record.len() != expected {
            return Err(DataError::corrupt(
                path,
                format!(
                    "line {line}: {} columns where earlier rows have {expected}",
                    record.len()
                ),
            ));
        }
        if label_column >= record.len() {
            return Err(DataError::corrupt(
                path,
                format!(
                    "line {line}: label column {label_column} does not exist in a row of {} columns",
                    record.len()
                ),
            ));
        }
        for (column, field) in record.iter().enumerate() {
            if column == label_column {
                let label = parse_label(field).ok_or_else(|| {
                    DataError::corrupt(
                        path,
                        format!(
                            "line {line}, column {}: the label is not a non-negative integer",
                            column + 1
                        ),
                    )
                })?;
                labels.push(label);
                continue;
            }
            let value: f32 = field.parse().map_err(|_| {
                DataError::corrupt(
                    path,
                    format!("line {line}, column {}: not a number", column + 1),
                )
            })?;
            if !value.is_finite() {
                return Err(DataError::corrupt(
                    path,
                    format!("line {line}, column {}: not a finite number", column + 1),
                ));
            }
            features.push(value);
        }
    }
    let Some(width) = width else {
        return Err(DataError::corrupt(path, "no samples in file"));
    };
    if width < 2 {
        return Err(DataError::corrupt(
            path,
            "rows need a label and at least one feature",
        ));
    }
    let classes = labels.iter().max().map_or(0, |m| *m as usize + 1);
    Dataset::new(features, labels, width - 1, classes, None)
        .map_err(|e| DataError::corrupt(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.csv");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    fn error(text: &str, header: bool) -> String {
        let (_dir, path) = csv_file(text);
        read_csv(&path, 0, header)
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn reads_labels_and_features() {
        let (_dir, path) = csv_file("label,a,b\n1,0.5,2\n0,-1,3e2\n2,0,0\n");
        let data = read_csv(&path, 0, true).expect("valid csv");
        assert_eq!(data.labels, vec![1, 0, 2]);
        assert_eq!(data.dim, 2);
        assert_eq!(data.classes, 3);
        assert_eq!(data.sample(1), &[-1.0, 300.0]);
    }

    #[test]
    fn label_column_can_be_last() {
        let (_dir, path) = csv_file("0.5,2,1\n-1,3,0\n");
        let data = read_csv(&path, 2, false).expect("valid csv");
        assert_eq!(data.labels, vec![1, 0]);
        assert_eq!(data.sample(0), &[0.5, 2.0]);
    }

    #[test]
    fn nan_is_rejected_with_line_and_column() {
        let text = error("1,0.5,2\n0,NaN,3\n", false);
        assert!(
            text.contains("data.csv") && text.contains("line 2, column 2"),
            "{text}"
        );
    }

    #[test]
    fn short_row_is_rejected() {
        let text = error("1,0.5,2\n0,3\n", false);
        assert!(
            text.contains("line 2: 2 columns where earlier rows have 3"),
            "{text}"
        );
    }

    #[test]
    fn bad_label_and_garbage_are_rejected() {
        // Positions only: a message never quotes what a file holds (it may not be a dataset at all).
        let label = error("secret-x,1,2\n", false);
        assert!(
            label.contains("line 1, column 1: the label is not"),
            "{label}"
        );
        assert!(!label.contains("secret-x"), "{label}");
        assert!(error("-1,1,2\n", false).contains("line 1, column 1: the label"));
        let value = error("1,secret-abc,2\n", false);
        assert!(value.contains("line 1, column 2: not a number"), "{value}");
        assert!(!value.contains("secret-abc"), "{value}");
        assert!(error("", false).contains("no samples"));
        assert!(error("a,b\n", true).contains("no samples"));
    }
}
