//! IDX, the MNIST file format: a big-endian magic (0x0000 type rank), the dimensions, then the data.
//! Files may be gzip-compressed; compression is recognised by its magic bytes, not the file name.

use std::io::Read;
use std::path::Path;

use super::DataError;

const UNSIGNED_BYTE: u8 = 0x08;
const MAX_INFLATED_BYTES: u64 = 8 << 30;

/// Reads the whole file, transparently inflating gzip.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = Vec::with_capacity(raw.len() * 4);
        // Bounded, so that a small malicious file cannot inflate into all of memory.
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(MAX_INFLATED_BYTES + 1)
            .read_to_end(&mut inflated)
            .map_err(|e| DataError::corrupt(path, format!("gzip stream is damaged: {e}")))?;
        if inflated.len() as u64 > MAX_INFLATED_BYTES {
            return Err(DataError::corrupt(
                path,
                format!("inflates to more than {MAX_INFLATED_BYTES} bytes"),
            ));
        }
        Ok(inflated)
    } else {
        Ok(raw)
    }
}

/// Parses the header and returns the dimensions and the payload, checking its exact length.
fn parse(bytes: &[u8], path: &Path, rank: u8) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.len() < 4 {
        return Err(DataError::corrupt(
            path,
            "file is too short to hold an IDX header",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UNSIGNED_BYTE || bytes[3] != rank {
        return Err(DataError::corrupt(
            path,
            format!(
                "wrong magic number 0x{:02x}{:02x}{:02x}{:02x}: expected 0x000008{rank:02x} (unsigned bytes, {rank} dimensions)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let header_len = 4 + 4 * rank as usize;
    if bytes.len() < header_len {
        return Err(DataError::corrupt(
            path,
            "file is truncated inside its header",
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| DataError::corrupt(path, "dimensions overflow"))?;
    let payload = &bytes[header_len..];
    if payload.len() < expected {
        return Err(DataError::corrupt(
            path,
            format!(
                "file is truncated: header promises {expected} bytes of data, found {}",
                payload.len()
            ),
        ));
    }
    if payload.len() > expected {
        return Err(DataError::corrupt(
            path,
            format!(
                "{} unexpected bytes after the {expected} bytes the header describes",
                payload.len() - expected
            ),
        ));
    }
    Ok((dims, payload.to_vec()))
}

/// Images as `(count, height, width, pixels)`, pixels row-major.
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let bytes = read_maybe_gzip(path)?;
    let (dims, pixels) = parse(&bytes, path, 3)?;
    Ok((dims[0], dims[1], dims[2], pixels))
}

pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gzip(path)?;
    Ok(parse(&bytes, path, 1)?.1)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn idx_bytes(rank: u8, dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, UNSIGNED_BYTE, rank];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(payload);
        bytes
    }

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    fn message(result: Result<impl std::fmt::Debug, DataError>) -> String {
        result.expect_err("should be rejected").to_string()
    }

    #[test]
    fn reads_raw_and_gzip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = idx_bytes(3, &[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let raw = write(&dir, "raw", &bytes);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).expect("compress");
        let gzip = write(&dir, "compressed", &gz.finish().expect("compress"));
        for path in [raw, gzip] {
            let (n, h, w, pixels) = read_idx_images(&path).expect("valid file");
            assert_eq!((n, h, w), (2, 2, 3));
            assert_eq!(pixels[11], 12);
        }
    }

    #[test]
    fn wrong_magic_names_file_and_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = write(&dir, "labels", &idx_bytes(1, &[3], &[0, 1, 2]));
        let text = message(read_idx_images(&labels));
        assert!(
            text.contains("labels") && text.contains("wrong magic number"),
            "{text}"
        );
    }

    #[test]
    fn truncated_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "short", &idx_bytes(3, &[10, 28, 28], &[0; 100]));
        assert!(message(read_idx_images(&path)).contains("truncated"));
        let header = write(&dir, "header", &idx_bytes(3, &[10], &[]));
        assert!(message(read_idx_images(&header)).contains("truncated inside its header"));
        let empty = write(&dir, "empty", &[]);
        assert!(message(read_idx_labels(&empty)).contains("too short"));
    }

    #[test]
    fn damaged_gzip_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
        assert!(message(read_idx_labels(&path)).contains("gzip"));
    }

    #[test]
    fn missing_file_is_reported() {
        let text = message(read_idx_labels(Path::new("/nonexistent/labels.idx")));
        assert!(text.contains("/nonexistent/labels.idx"), "{text}");
    }
}
