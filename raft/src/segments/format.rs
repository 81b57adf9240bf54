//! The bytes a segment log puts on disk, and the checks that read them back.
//!
//! A record is `[index u64 LE][len u32 LE][crc32 u32 LE][payload; len]`, the CRC covering
//! `index || len || payload`; a segment file is named `{first:020}.seg` after its first record's
//! index; `reset.intent` holds the index a reset restarts at, with its CRC. What the log does
//! with these bytes (and in which order it makes them durable) lives in the parent module and
//! in [`super::recovery`].

use std::path::{Path, PathBuf};

use super::{Result, SegmentError};

/// Record header: index u64 LE, payload length u32 LE, CRC32 u32 LE.
pub(super) const HEADER_LEN: usize = 16;
/// Length of the header prefix the CRC covers (index and length), before the payload.
const CRC_COVERED_HEADER_LEN: usize = 12;
const SEGMENT_SUFFIX: &str = ".seg";
/// Digits in a segment file name: enough for `u64::MAX`, so names sort like indices.
const SEGMENT_NAME_DIGITS: usize = 20;
/// Name of the file that marks a reset in progress.
pub(super) const RESET_INTENT: &str = "reset.intent";
/// Suffix of a file written before it is renamed into place; one left over is removed on open.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// A decoded record header.
pub(super) struct Header {
    pub(super) index: u64,
    pub(super) len: u32,
    pub(super) crc: u32,
}

pub(super) fn decode_header(bytes: &[u8; HEADER_LEN]) -> Header {
    let [i0, i1, i2, i3, i4, i5, i6, i7, l0, l1, l2, l3, c0, c1, c2, c3] = *bytes;
    Header {
        index: u64::from_le_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
    }
}

/// A CRC hasher already fed the part of `header` the record checksum covers (index and
/// length); feed it the payload, then compare with the header's CRC.
pub(super) fn record_hasher(header: &[u8; HEADER_LEN]) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_COVERED_HEADER_LEN]);
    hasher
}

/// Header for `payload` at `index`. Callers have checked that the length fits a u32.
pub(super) fn encode_header(index: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let len = payload.len() as u32;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&index.to_le_bytes());
    header[8..12].copy_from_slice(&len.to_le_bytes());
    let mut hasher = record_hasher(&header);
    hasher.update(payload);
    header[12..].copy_from_slice(&hasher.finalize().to_le_bytes());
    header
}

/// Checks a whole record (header + payload) read back from `path` at `offset`.
pub(super) fn verify_record(
    path: &Path,
    offset: u64,
    bytes: &[u8],
    expected_index: u64,
) -> Result<()> {
    let corrupt = |reason: String| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let Some((header_bytes, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(corrupt("record shorter than its header".into()));
    };
    let header = decode_header(header_bytes);
    if header.len as usize != payload.len() {
        return Err(corrupt(format!(
            "record length {} does not match the indexed length {}",
            header.len,
            payload.len()
        )));
    }
    let mut hasher = record_hasher(header_bytes);
    hasher.update(payload);
    if hasher.finalize() != header.crc {
        return Err(corrupt("record checksum mismatch".into()));
    }
    if header.index != expected_index {
        return Err(corrupt(format!(
            "record has index {}, expected {expected_index}",
            header.index
        )));
    }
    Ok(())
}

/// The file of the segment whose first record is `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!(
        "{first:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

/// The first index a segment file name stands for; `None` for any other name.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Contents of `reset.intent`: the index the log restarts at, u64 LE, then its CRC32 u32 LE.
pub(super) fn encode_reset_intent(next: u64) -> Vec<u8> {
    let mut contents = next.to_le_bytes().to_vec();
    contents.extend_from_slice(&crc32fast::hash(&next.to_le_bytes()).to_le_bytes());
    contents
}

/// The index a `reset.intent` names, `None` if its bytes are not an index with its checksum.
pub(super) fn decode_reset_intent(bytes: &[u8]) -> Option<u64> {
    let (next_bytes, crc_bytes) = bytes.split_first_chunk::<8>()?;
    let crc: [u8; 4] = crc_bytes.try_into().ok()?;
    if crc32fast::hash(next_bytes) != u32::from_le_bytes(crc) {
        return None;
    }
    Some(u64::from_le_bytes(*next_bytes))
}
