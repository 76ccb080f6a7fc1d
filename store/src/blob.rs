//! Parameter chunks as stored blobs: a fixed header (magic, chunk index and count, model version,
//! value count, CRC-32 of the values) followed by little-endian `f32`. A torn, truncated or foreign
//! blob is detected instead of silently becoming parameters.

use super::StoreError;

const MAGIC: &[u8; 4] = b"SRN1";
pub const HEADER_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub index: u32,
    pub chunks: u32,
    pub version: u64,
    pub values: u32,
}

/// How a model of `params` values is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub params: usize,
    pub chunk_values: usize,
}

impl Layout {
    pub fn chunks(&self) -> usize {
        self.params.div_ceil(self.chunk_values).max(1)
    }

    pub fn header(&self, index: usize, version: u64) -> ChunkHeader {
        let start = index * self.chunk_values;
        ChunkHeader {
            index: index as u32,
            chunks: self.chunks() as u32,
            version,
            values: (self.params.min(start + self.chunk_values) - start) as u32,
        }
    }
}

/// The values as little-endian bytes: a view where the machine is little-endian, a copy elsewhere.
fn value_bytes(values: &[f32]) -> std::borrow::Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

fn header_bytes(header: ChunkHeader, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[..4].copy_from_slice(MAGIC);
    bytes[4..8].copy_from_slice(&header.index.to_le_bytes());
    bytes[8..12].copy_from_slice(&header.chunks.to_le_bytes());
    bytes[12..20].copy_from_slice(&header.version.to_le_bytes());
    bytes[20..24].copy_from_slice(&((payload.len() / 4) as u32).to_le_bytes());
    bytes[24..28].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes
}

/// A chunk as a Redis command argument, written straight into the command buffer (no blob copy).
#[cfg(feature = "redis")]
pub struct ChunkArg<'a> {
    pub header: ChunkHeader,
    pub values: &'a [f32],
}

#[cfg(feature = "redis")]
impl redis::ToRedisArgs for ChunkArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let payload = value_bytes(self.values);
        let mut writer = out.writer_for_next_arg();
        // The writer appends to an in-memory command buffer, which cannot fail.
        let _ = writer.write_all(&header_bytes(self.header, &payload));
        let _ = writer.write_all(&payload);
    }
}

#[cfg(test)]
pub fn encode_chunk(header: ChunkHeader, values: &[f32]) -> Vec<u8> {
    let payload = value_bytes(values);
    let mut blob = Vec::with_capacity(HEADER_LEN + payload.len());
    blob.extend_from_slice(&header_bytes(header, &payload));
    blob.extend_from_slice(&payload);
    blob
}

/// A whole model as one blob: its chunks back to back, each with its own header and checksum.
pub fn encode_model(layout: Layout, params: &[f32], version: u64) -> Vec<u8> {
    let mut blob = Vec::with_capacity(layout.chunks() * HEADER_LEN + params.len() * 4);
    for (i, values) in params.chunks(layout.chunk_values.max(1)).enumerate() {
        let payload = value_bytes(values);
        blob.extend_from_slice(&header_bytes(layout.header(i, version), &payload));
        blob.extend_from_slice(&payload);
    }
    blob
}

/// Reads a blob written by `encode_model`, checking every chunk against the layout and version.
pub fn decode_model(blob: &[u8], layout: Layout, version: u64) -> Result<Vec<f32>, StoreError> {
    let mut params = Vec::with_capacity(layout.params);
    let mut offset = 0;
    for i in 0..layout.chunks() {
        let expected = layout.header(i, version);
        let end = offset + HEADER_LEN + expected.values as usize * 4;
        let chunk = blob.get(offset..end).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "model blob truncated in chunk {i}: {} bytes",
                blob.len()
            ))
        })?;
        decode_chunk(chunk, expected, &mut params)?;
        offset = end;
    }
    if offset != blob.len() {
        return Err(StoreError::Corrupt(format!(
            "model blob has {} bytes after its last chunk",
            blob.len() - offset
        )));
    }
    Ok(params)
}

fn u32_at(blob: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]])
}

/// Checks a blob against what the reader expects and appends its values to `out`.
pub fn decode_chunk(
    blob: &[u8],
    expected: ChunkHeader,
    out: &mut Vec<f32>,
) -> Result<(), StoreError> {
    let corrupt =
        |problem: String| StoreError::Corrupt(format!("chunk {}: {problem}", expected.index));
    if blob.len() < HEADER_LEN || &blob[..4] != MAGIC {
        return Err(corrupt("wrong header: not a siren parameter chunk".into()));
    }
    let header = ChunkHeader {
        index: u32_at(blob, 4),
        chunks: u32_at(blob, 8),
        version: u64::from_le_bytes([
            blob[12], blob[13], blob[14], blob[15], blob[16], blob[17], blob[18], blob[19],
        ]),
        values: u32_at(blob, 20),
    };
    if header != expected {
        return Err(corrupt(format!(
            "header says {header:?}, expected {expected:?}"
        )));
    }
    let payload = &blob[HEADER_LEN..];
    if payload.len() != header.values as usize * 4 {
        return Err(corrupt(format!(
            "wrong length: {} bytes for {} values",
            payload.len(),
            header.values
        )));
    }
    if crc32fast::hash(payload) != u32_at(blob, 24) {
        return Err(corrupt("bad checksum".into()));
    }
    out.extend(
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            index: 1,
            chunks: 3,
            version: 7,
            values: 3,
        }
    }

    #[test]
    fn round_trip_and_every_kind_of_damage() {
        let blob = encode_chunk(header(), &[1.0, -2.5, 3.0]);
        let mut out = Vec::new();
        decode_chunk(&blob, header(), &mut out).expect("valid");
        assert_eq!(out, vec![1.0, -2.5, 3.0]);

        let check = |blob: &[u8], expected: ChunkHeader, needle: &str| {
            let message = decode_chunk(blob, expected, &mut Vec::new())
                .expect_err(needle)
                .to_string();
            assert!(message.contains(needle), "{message}");
        };
        let mut flipped = blob.clone();
        flipped[HEADER_LEN + 2] ^= 1;
        check(&flipped, header(), "bad checksum");
        check(&blob[..blob.len() - 4], header(), "wrong length");
        check(&blob[..blob.len() - 1], header(), "wrong length");
        check(b"junk", header(), "wrong header");
        check(
            &blob,
            ChunkHeader {
                version: 8,
                ..header()
            },
            "expected",
        );
    }
}
