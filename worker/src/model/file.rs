//! A trained model on disk: one JSON header line (architecture, parameter count, CRC-32), then the
//! parameters as little-endian `f32`. Small, self-describing, and checked on load.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Architecture, ModelError};

const FORMAT: &str = "siren-model";
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    architecture: Architecture,
    params: usize,
    crc32: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    pub architecture: Architecture,
    pub params: Vec<f32>,
}

fn file_error(path: &Path, problem: impl Into<String>) -> ModelError {
    ModelError::File {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

pub fn save_model(
    path: &Path,
    architecture: &Architecture,
    params: &[f32],
) -> Result<(), ModelError> {
    let bytes: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        architecture: architecture.clone(),
        params: params.len(),
        crc32: crc32fast::hash(&bytes),
    };
    let mut out = serde_json::to_vec(&header).map_err(|e| file_error(path, e.to_string()))?;
    out.push(b'\n');
    out.extend_from_slice(&bytes);
    std::fs::write(path, out).map_err(|e| file_error(path, e.to_string()))
}

pub fn load_model(path: &Path) -> Result<ModelFile, ModelError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| file_error(path, "no header line: not a siren model file"))?;
    let header: Header = serde_json::from_slice(&bytes[..newline])
        .map_err(|e| file_error(path, format!("unreadable header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(file_error(
            path,
            format!(
                "format {} version {} is not {FORMAT} version {VERSION}",
                header.format, header.version
            ),
        ));
    }
    let body = &bytes[newline + 1..];
    // The header is untrusted: rebuild the architecture through its checks before sizing anything.
    let spec = siren_crds::ModelSpec {
        kind: header.architecture.kind,
        hidden: (header.architecture.kind == siren_crds::ModelKind::Mlp).then(|| {
            header
                .architecture
                .hidden
                .iter()
                .map(|w| *w as u32)
                .collect()
        }),
    };
    let checked = Architecture::new(
        &spec,
        header.architecture.input_dim,
        header.architecture.classes,
        None,
    )
    .map_err(|e| file_error(path, format!("describes an impossible model: {e}")))?;
    if checked != header.architecture {
        return Err(file_error(path, "describes an impossible model"));
    }
    if Some(body.len()) != header.params.checked_mul(4) {
        return Err(file_error(
            path,
            format!(
                "truncated: header promises {} parameters, file holds {} bytes",
                header.params,
                body.len()
            ),
        ));
    }
    if crc32fast::hash(body) != header.crc32 {
        return Err(file_error(
            path,
            "checksum mismatch: the parameters are corrupt",
        ));
    }
    let expected = header.architecture.param_count();
    if expected != header.params {
        return Err(file_error(
            path,
            format!(
                "the architecture has {expected} parameters, the file {}",
                header.params
            ),
        ));
    }
    let params = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(ModelFile {
        architecture: header.architecture,
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use siren_crds::{ModelKind, ModelSpec};

    fn arch() -> Architecture {
        let spec = ModelSpec {
            kind: ModelKind::Mlp,
            hidden: Some(vec![4]),
        };
        Architecture::new(&spec, 3, 2, None).expect("arch")
    }

    #[test]
    fn round_trip_and_corruption_detection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.siren");
        let params = arch().initial_params(3);
        save_model(&path, &arch(), &params).expect("save");
        let loaded = load_model(&path).expect("load");
        assert_eq!(loaded.params, params);
        assert_eq!(loaded.architecture, arch());

        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        assert!(
            load_model(&path)
                .expect_err("flipped")
                .to_string()
                .contains("checksum mismatch")
        );

        bytes.truncate(last);
        std::fs::write(&path, &bytes).expect("write");
        assert!(
            load_model(&path)
                .expect_err("short")
                .to_string()
                .contains("truncated")
        );

        std::fs::write(&path, b"garbage").expect("write");
        assert!(
            load_model(&path)
                .expect_err("garbage")
                .to_string()
                .contains("no header line")
        );
    }
}
