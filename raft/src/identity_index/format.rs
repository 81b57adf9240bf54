//! The bytes an identity index puts on disk: file names, the shard header (page 0), the 40-byte
//! slot with its self-check, where an identity's shard and home slot are, and the watermark
//! file. Pure encoding and decoding; reading and writing the files is the parent module's,
//! [`super::table`]'s and [`super::recovery`]'s.

use std::path::{Path, PathBuf};

use super::{corrupt, Result};

/// Number of shard files; a shard is chosen by the top 6 bits of the identity's first byte.
pub const SHARD_COUNT: usize = 64;

/// Size of an I/O page: probes read one page, slots never straddle one.
pub(super) const PAGE: usize = 4096;

/// A slot is `[identity 32][value u64 LE]`.
pub(super) const SLOT: usize = 40;

/// Slots per 4 KiB page (102 × 40 = 4080 bytes; the last 16 bytes of each page are padding).
pub const SLOTS_PER_PAGE: u64 = (PAGE / SLOT) as u64;

/// Largest log index the index can store: the value word keeps 40 bits for `index + 1`.
pub const MAX_LOG_INDEX: u64 = (1 << INDEX_BITS) - 2;

pub(super) const INDEX_BITS: u32 = 40;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

const SHARD_MAGIC: [u8; 8] = *b"RKIDXSH\0";
const SHARD_VERSION: u32 = 1;
/// Bytes of page 0 covered by the header (the rest of the page is zero).
pub(super) const HEADER_LEN: usize = 48;

/// The watermark file: magic, the watermark u64 LE, CRC32 u32 LE of the first 16 bytes.
const WATERMARK_MAGIC: [u8; 8] = *b"RKIDXWM\0";
pub(super) const WATERMARK_LEN: usize = 20;
pub(super) const WATERMARK_FILE: &str = "watermark";
pub(super) const LOCK_FILE: &str = "LOCK";
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// Shard of an identity: the top 6 bits of its first byte.
pub(super) fn shard_of(identity: &[u8; 32]) -> usize {
    usize::from(identity[0] >> 2)
}

/// The probe hash: identity bytes 8..16. Identities are SHA-256 outputs, hence uniform; these
/// bytes do not overlap the shard bits.
pub(super) fn home_hash(identity: &[u8; 32]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&identity[8..16]);
    u64::from_le_bytes(bytes)
}

/// Home slot by multiply-shift: monotone in the hash, so doubling a table keeps entry order
/// (which is what makes the resize write-back buffer effective).
pub(super) fn home_slot(hash: u64, slot_count: u64) -> u64 {
    ((u128::from(hash) * u128::from(slot_count)) >> 64) as u64
}

/// The file of shard `number`.
pub(super) fn shard_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("shard-{number:02x}.idx"))
}

/// Where a replacement for `path` is written before it is renamed over it.
pub(super) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// The 24-bit check stored above the index in a slot's value word.
fn slot_check(identity: &[u8; 32], index_plus_one: u64) -> u64 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(identity);
    hasher.update(&index_plus_one.to_le_bytes());
    u64::from(hasher.finalize() >> 8)
}

/// A slot holding `identity → index`, with its check.
pub(super) fn encode_slot(identity: &[u8; 32], index: u64) -> [u8; SLOT] {
    let index_plus_one = index + 1;
    let value = index_plus_one | (slot_check(identity, index_plus_one) << INDEX_BITS);
    let mut slot = [0u8; SLOT];
    slot[..32].copy_from_slice(identity);
    slot[32..].copy_from_slice(&value.to_le_bytes());
    slot
}

/// What a slot holds.
pub(super) enum SlotState<'a> {
    Empty,
    Live {
        identity: &'a [u8; 32],
        index: u64,
    },
    /// Written, but the check does not match: a torn write from before a crash.
    Torn,
}

/// Reads a slot, telling an empty one and a torn one (its check fails) from a live one.
pub(super) fn decode_slot(slot: &[u8]) -> SlotState<'_> {
    let mut value_bytes = [0u8; 8];
    value_bytes.copy_from_slice(&slot[32..SLOT]);
    let value = u64::from_le_bytes(value_bytes);
    if value == 0 {
        return SlotState::Empty;
    }
    let Ok(identity) = <&[u8; 32]>::try_from(&slot[..32]) else {
        return SlotState::Torn;
    };
    let index_plus_one = value & INDEX_MASK;
    if index_plus_one == 0 || value >> INDEX_BITS != slot_check(identity, index_plus_one) {
        return SlotState::Torn;
    }
    SlotState::Live {
        identity,
        index: index_plus_one - 1,
    }
}

/// Byte offset of a slot in a shard file (page 0 is the header).
pub(super) fn slot_offset(slot: u64) -> u64 {
    (1 + slot / SLOTS_PER_PAGE) * PAGE as u64 + (slot % SLOTS_PER_PAGE) * SLOT as u64
}

/// Shard header (page 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// The shard's number, which is also in its file name.
    pub(super) shard: u32,
    /// Slot pages after the header page.
    pub(super) pages: u64,
    /// Live entries; exact only while `clean`.
    pub(super) live: u64,
    /// Live entries plus tombstones; exact only while `clean`.
    pub(super) occupied: u64,
    /// The counts are exact (the shard was closed cleanly, or never written).
    pub(super) clean: bool,
}

impl Header {
    pub(super) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&SHARD_MAGIC);
        out[8..12].copy_from_slice(&SHARD_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.shard.to_le_bytes());
        out[16..24].copy_from_slice(&self.pages.to_le_bytes());
        out[24..32].copy_from_slice(&self.live.to_le_bytes());
        out[32..40].copy_from_slice(&self.occupied.to_le_bytes());
        out[40..44].copy_from_slice(&u32::from(self.clean).to_le_bytes());
        let crc = crc32fast::hash(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode page 0. `Ok(None)` means the checksum does not match: a header rewrite (which only
    /// ever changes the counts and the clean flag) was torn by a crash.
    pub(super) fn decode(bytes: &[u8; HEADER_LEN], path: &Path) -> Result<Option<Self>> {
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if bytes[0..8] != SHARD_MAGIC {
            return Err(corrupt(path, "bad shard magic"));
        }
        if crc32fast::hash(&bytes[..44]) != u32_at(44) {
            return Ok(None);
        }
        let version = u32_at(8);
        if version != SHARD_VERSION {
            return Err(corrupt(
                path,
                format!("unsupported shard version {version}"),
            ));
        }
        let clean = match u32_at(40) {
            0 => false,
            1 => true,
            other => return Err(corrupt(path, format!("bad clean flag {other}"))),
        };
        Ok(Some(Self {
            shard: u32_at(12),
            pages: u64_at(16),
            live: u64_at(24),
            occupied: u64_at(32),
            clean,
        }))
    }
}

/// Contents of the watermark file for `watermark`.
pub(super) fn encode_watermark(watermark: u64) -> [u8; WATERMARK_LEN] {
    let mut bytes = [0u8; WATERMARK_LEN];
    bytes[..8].copy_from_slice(&WATERMARK_MAGIC);
    bytes[8..16].copy_from_slice(&watermark.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The watermark stored in `bytes`, read from the watermark file at `path`.
pub(super) fn decode_watermark(bytes: &[u8], path: &Path) -> Result<u64> {
    if bytes.len() != WATERMARK_LEN || bytes[..8] != WATERMARK_MAGIC {
        return Err(corrupt(path, "bad watermark file"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    if crc32fast::hash(&bytes[..16]) != u32::from_le_bytes(crc) {
        return Err(corrupt(path, "watermark checksum mismatch"));
    }
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(value))
}
