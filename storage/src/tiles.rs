//! C2SP tlog-tiles layout: tile and entry-bundle identifiers, their paths, partial
//! widths, and the byte encodings of hash tiles and entry bundles.
//!
//! Pure path and size arithmetic, no IO (tlog-tiles.md §2–§5, C2SP tlog-tiles).

use crate::merkle::Hash;
use std::fmt;

/// C2SP tlog-tiles: a tile is 256 hashes wide (and a bundle holds 256 entries).
pub const TILE_WIDTH: u16 = 256;
/// Tile height in tree levels (log2 of [`TILE_WIDTH`]).
pub const TILE_HEIGHT: u32 = 8;
/// C2SP tlog-tiles: tile levels are 0..=63.
pub const MAX_TILE_LEVEL: u8 = 63;
/// C2SP tlog-tiles: bundle records have a u16 length, so an entry is at most 65,535 bytes.
pub const MAX_ENTRY_SIZE: usize = 65_535;

/// A hash tile: level, index within the level, and width (1..=256; 256 = full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
    pub width: u16,
}

/// An entry bundle: index (entries `[256·index, 256·index + width)`) and width
/// (1..=256; 256 = full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    pub index: u64,
    pub width: u16,
}

/// A parsed path below `tile/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`
    Hash(TileId),
    /// `tile/entries/<N>[.p/<W>]`
    Entries(BundleId),
}

/// Why a tile path, tile or bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The path does not follow tlog-tiles §2 exactly.
    #[error("malformed tile path {0:?}")]
    MalformedPath(String),
    /// Width must be 1..=256.
    #[error("invalid tile width {0}")]
    InvalidWidth(u16),
    /// Level must be 0..=63.
    #[error("invalid tile level {0}")]
    InvalidLevel(u8),
    /// A hash tile's length must be 32 × width.
    #[error("tile has {got} bytes, expected {expected}")]
    WrongTileLength { expected: usize, got: usize },
    /// An entry exceeds the u16 length prefix.
    #[error("entry of {0} bytes exceeds the 65,535-byte bundle limit")]
    EntryTooLarge(usize),
    /// A bundle ends in the middle of a record.
    #[error("entry bundle is truncated")]
    TruncatedBundle,
}

impl TileId {
    /// A tile id after checking level and width.
    pub fn new(level: u8, index: u64, width: u16) -> Result<Self, TileError> {
        if level > MAX_TILE_LEVEL {
            return Err(TileError::InvalidLevel(level));
        }
        if width == 0 || width > TILE_WIDTH {
            return Err(TileError::InvalidWidth(width));
        }
        Ok(Self {
            level,
            index,
            width,
        })
    }

    /// Whether this is a full (256-wide) tile.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The C2SP path, e.g. `tile/0/x001/234.p/5`.
    pub fn path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tile/{}/{}", self.level, IndexPath(self.index))?;
        write_width(f, self.width)
    }
}

impl BundleId {
    /// A bundle id after checking the width.
    pub fn new(index: u64, width: u16) -> Result<Self, TileError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(TileError::InvalidWidth(width));
        }
        Ok(Self { index, width })
    }

    /// Whether this is a full (256-entry) bundle.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// The C2SP path, e.g. `tile/entries/000.p/3`.
    pub fn path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tile/entries/{}", IndexPath(self.index))?;
        write_width(f, self.width)
    }
}

fn write_width(f: &mut fmt::Formatter<'_>, width: u16) -> fmt::Result {
    if width < TILE_WIDTH {
        write!(f, ".p/{width}")
    } else {
        Ok(())
    }
}

/// tlog-tiles §2: `N` in 3-digit groups, most significant first, all but the last
/// prefixed with `x` (1234067 → `x001/x234/067`).
struct IndexPath(u64);

impl fmt::Display for IndexPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups = Vec::with_capacity(7);
        let mut n = self.0;
        loop {
            groups.push(n % 1000);
            n /= 1000;
            if n == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                write!(f, "x{g:03}/")?;
            } else {
                write!(f, "{g:03}")?;
            }
        }
        Ok(())
    }
}

/// Formats the `N` part of a tile path.
pub fn index_path(index: u64) -> String {
    IndexPath(index).to_string()
}

/// Parses the part of a path after `tile/` strictly: `<L>/<N>[.p/<W>]` or
/// `entries/<N>[.p/<W>]`. Rejects leading zeros, levels above 63, widths outside
/// 1..=255 in `.p/`, groups that are not exactly 3 digits, an `x` on the last group
/// or a missing one on earlier groups, non-canonical (zero) leading groups, and
/// index overflow.
pub fn parse_tile_path(rest: &str) -> Result<TilePath, TileError> {
    let bad = || TileError::MalformedPath(rest.to_string());
    let (head, tail) = rest.split_once('/').ok_or_else(bad)?;
    let (index_part, width) = match tail.split_once(".p/") {
        Some((n, w)) => {
            let w = parse_decimal(w).ok_or_else(bad)?;
            if w == 0 || w >= u64::from(TILE_WIDTH) {
                return Err(bad());
            }
            (n, w as u16)
        }
        None => (tail, TILE_WIDTH),
    };
    let index = parse_index(index_part).ok_or_else(bad)?;
    if head == "entries" {
        return Ok(TilePath::Entries(BundleId { index, width }));
    }
    let level = parse_decimal(head).ok_or_else(bad)?;
    if level > u64::from(MAX_TILE_LEVEL) {
        return Err(bad());
    }
    Ok(TilePath::Hash(TileId {
        level: level as u8,
        index,
        width,
    }))
}

/// A canonical non-negative decimal: digits only, no leading zeros (except "0").
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    let last = groups.len() - 1;
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i < last { g.strip_prefix('x')? } else { g };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = digits.parse().ok()?;
        // The first of several groups must be non-zero, or the path is not canonical.
        if i == 0 && i < last && v == 0 {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(v)?;
    }
    Some(n)
}

/// tlog-tiles §3: the width of the partial tile at `level` for tree `size`
/// (`floor(size / 256^level) mod 256`); 0 means no partial tile exists.
pub fn partial_tile_width(level: u8, size: u64) -> u16 {
    (nodes_at_level(level, size) % u64::from(TILE_WIDTH)) as u16
}

/// The number of complete tile entries at tile `level` for tree `size`.
fn nodes_at_level(level: u8, size: u64) -> u64 {
    let shift = u32::from(level) * TILE_HEIGHT;
    if shift >= 64 {
        0
    } else {
        size >> shift
    }
}

/// The tile with index `index` at `level` as of tree `size`: full or partial.
/// `None` if that tile holds nothing at that size.
pub fn tile_at_size(level: u8, index: u64, size: u64) -> Option<TileId> {
    let count = nodes_at_level(level, size);
    width_at(index, count).map(|width| TileId {
        level,
        index,
        width,
    })
}

/// The entry bundle with `index` as of tree `size`, full or partial.
pub fn bundle_at_size(index: u64, size: u64) -> Option<BundleId> {
    width_at(index, size).map(|width| BundleId { index, width })
}

fn width_at(index: u64, count: u64) -> Option<u16> {
    let full = count / u64::from(TILE_WIDTH);
    if index < full {
        Some(TILE_WIDTH)
    } else if index == full && !count.is_multiple_of(u64::from(TILE_WIDTH)) {
        Some((count % u64::from(TILE_WIDTH)) as u16)
    } else {
        None
    }
}

/// The hash tiles written when the tree grows from `from` to `to` leaves: every tile
/// whose content at `to` differs from `from`, at its width as of `to`, level by level.
pub fn tiles_touched(from: u64, to: u64) -> impl Iterator<Item = TileId> {
    (0..=MAX_TILE_LEVEL).flat_map(move |level| {
        let a = nodes_at_level(level, from);
        let b = nodes_at_level(level, to);
        touched(a, b).map(move |(index, width)| TileId {
            level,
            index,
            width,
        })
    })
}

/// The entry bundles written when the tree grows from `from` to `to` leaves.
pub fn bundles_touched(from: u64, to: u64) -> impl Iterator<Item = BundleId> {
    touched(from, to).map(|(index, width)| BundleId { index, width })
}

/// Tiles (index, width) over a row growing from `a` to `b` entries.
fn touched(a: u64, b: u64) -> impl Iterator<Item = (u64, u16)> {
    let w = u64::from(TILE_WIDTH);
    let (first, end) = if b > a {
        (a / w, b.div_ceil(w))
    } else {
        (0, 0)
    };
    (first..end).filter_map(move |index| width_at(index, b).map(|width| (index, width)))
}

/// Encodes a hash tile: the hashes concatenated, no framing.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    hashes.concat()
}

/// Decodes a hash tile of the given width (1..=256).
pub fn decode_tile(bytes: &[u8], width: u16) -> Result<Vec<Hash>, TileError> {
    if width == 0 || width > TILE_WIDTH {
        return Err(TileError::InvalidWidth(width));
    }
    let expected = usize::from(width) * 32;
    if bytes.len() != expected {
        return Err(TileError::WrongTileLength {
            expected,
            got: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// The first `width` hashes of a wider tile: the narrower partial tile of the same index
/// (tlog-tiles §3: a partial tile is a prefix of every wider version of it). `None` if
/// `bytes` holds fewer than `width` hashes or is not a whole number of hashes.
pub fn tile_prefix(bytes: &[u8], width: u16) -> Option<&[u8]> {
    if width == 0 || width > TILE_WIDTH || !bytes.len().is_multiple_of(32) {
        return None;
    }
    bytes.get(..usize::from(width) * 32)
}

/// The first `width` records of a wider entry bundle: the narrower partial bundle of the
/// same index. `None` if `bytes` holds fewer than `width` well-formed records.
pub fn bundle_prefix(bytes: &[u8], width: u16) -> Option<&[u8]> {
    if width == 0 || width > TILE_WIDTH {
        return None;
    }
    let mut end = 0usize;
    for _ in 0..width {
        let len = bytes.get(end..end + 2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        end = end.checked_add(2 + len)?;
        if end > bytes.len() {
            return None;
        }
    }
    Some(&bytes[..end])
}

/// Appends one bundle record (big-endian u16 length ‖ entry) to `out`.
pub fn append_bundle_entry(out: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge(entry.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entry);
    Ok(())
}

/// Encodes an entry bundle from its entries.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::new();
    for e in entries {
        append_bundle_entry(&mut out, e.as_ref())?;
    }
    Ok(out)
}

/// Decodes an entry bundle into its entries (borrowed from `bytes`).
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            return Err(TileError::TruncatedBundle);
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < len {
            return Err(TileError::TruncatedBundle);
        }
        let (entry, next) = tail.split_at(len);
        out.push(entry);
        rest = next;
    }
    Ok(out)
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn prefixes_of_wider_tiles_and_bundles_are_the_narrower_ones() {
        let hashes: Vec<Hash> = (0u8..10).map(|i| [i; 32]).collect();
        let wide = encode_tile(&hashes);
        assert_eq!(tile_prefix(&wide, 4), Some(&encode_tile(&hashes[..4])[..]));
        assert_eq!(tile_prefix(&wide, 10), Some(&wide[..]));
        assert_eq!(tile_prefix(&wide, 11), None);
        assert_eq!(tile_prefix(&wide, 0), None);
        assert_eq!(tile_prefix(&wide[..33], 1), None);

        let entries: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8; i * 7]).collect();
        let bundle = encode_bundle(&entries).unwrap();
        for width in 1..=10u16 {
            let expected = encode_bundle(&entries[..usize::from(width)]).unwrap();
            assert_eq!(bundle_prefix(&bundle, width), Some(&expected[..]));
        }
        assert_eq!(bundle_prefix(&bundle, 11), None);
        assert_eq!(bundle_prefix(&bundle[..bundle.len() - 1], 10), None);
    }
}
