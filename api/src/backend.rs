//! The seam between the HTTP layer and whatever sequences and stores entries.
//!
//! The node crate implements [`LogBackend`] over the replicated log; [`crate::memory_log`] is an
//! in-process implementation for tests and single-process development logs.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A boxed, `Send` future: keeps [`LogBackend`] object-safe without an async-trait macro.
pub type BoxFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the HTTP layer needs from whatever sequences and stores entries.
pub trait LogBackend: Send + Sync + 'static {
    /// Sequence a validated entry; resolve once a committed, signed checkpoint covers it.
    /// The returned proof must be for `log_index` in the tree of `tree_size` leaves whose root
    /// is `root_hash`, and `checkpoint` must be the signed note of that tree.
    fn submit(&self, entry: ValidatedEntry) -> BoxFuture<'_, Result<LoggedEntry, SubmitError>>;

    /// The newest checkpoint this node serves (signed note text), if any.
    fn checkpoint(&self) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>>;

    /// A hash tile or entry bundle by its parsed id; `None` when absent or beyond the served
    /// checkpoint (use [`TileRequest::is_within`]).
    fn tile(&self, id: TileRequest) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>>;
}

/// The entry types the log accepts (rekor-v2-api.md §4, §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// `hashedrekord` v0.0.2.
    HashedRekord,
    /// Legacy `dsse` v0.0.2 (opt-in).
    Dsse,
}

impl EntryKind {
    /// `kindVersion.kind` in responses and `kind` in the canonical body.
    pub fn kind(self) -> &'static str {
        match self {
            EntryKind::HashedRekord => "hashedrekord",
            EntryKind::Dsse => "dsse",
        }
    }

    /// `kindVersion.version`.
    pub fn version(self) -> &'static str {
        "0.0.2"
    }
}

/// An entry that passed decoding, validation and signature verification: ready to log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatedEntry {
    pub kind: EntryKind,
    /// RFC 8785 canonical body: the leaf data, the entry-bundle record, `canonicalizedBody`.
    pub canonical_body: Vec<u8>,
    /// SHA-256(0x00 ‖ canonical_body).
    pub leaf_hash: [u8; 32],
    /// SHA-256(canonical_body): the dedup identity.
    pub identity: [u8; 32],
}

/// Where an entry landed, and the checkpoint that covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEntry {
    pub log_index: u64,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
    /// RFC 6962 audit path, leaf to root.
    pub inclusion_proof: Vec<[u8; 32]>,
    /// The full signed note text, all signature lines included.
    pub checkpoint: String,
}

/// Why an entry was not logged. Each maps to one HTTP answer (rekor-v2-api.md §10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// 409 with `x-log-index`.
    #[error("an equivalent entry already exists in the transparency log with index {log_index}")]
    Duplicate { log_index: u64 },
    /// 503 pushback.
    #[error("reached max pushback; retry")]
    Overloaded,
    /// 405, plain text.
    #[error("this log has been frozen")]
    Frozen,
    /// 503: the log cannot take writes right now (no leader, shutting down, ...).
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// 500 `failed to integrate entry`.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a read failed (500); an absent object is `Ok(None)`, not an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("storage error: {0}")]
    Storage(String),
}

/// C2SP tlog-tiles: tiles are 256 hashes (or entries) wide.
pub const TILE_WIDTH: u64 = 256;

/// A parsed read path: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]` (tlog-tiles.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileRequest {
    /// A hash tile at `level`; `width` 1–255 for a partial tile, `None` for a full one.
    Hash {
        level: u8,
        index: u64,
        width: Option<u8>,
    },
    /// An entry bundle; `width` as above.
    EntryBundle { index: u64, width: Option<u8> },
}

impl TileRequest {
    /// The level-0-equivalent level of the tile (entry bundles sit on level 0).
    fn level(&self) -> u8 {
        match self {
            TileRequest::Hash { level, .. } => *level,
            TileRequest::EntryBundle { .. } => 0,
        }
    }

    fn index_and_width(&self) -> (u64, Option<u8>) {
        match self {
            TileRequest::Hash { index, width, .. } | TileRequest::EntryBundle { index, width } => {
                (*index, *width)
            }
        }
    }

    /// Whether a tree of `tree_size` leaves contains this tile: its last hash (or entry) must be
    /// one of the tree's complete level-`L` subtrees. Tiles beyond the served checkpoint are 404.
    pub fn is_within(&self, tree_size: u64) -> bool {
        let level = u32::from(self.level());
        // Number of complete subtrees of 256^L leaves; zero once 256^L exceeds any u64 size.
        let units = if level >= 8 {
            0
        } else {
            tree_size >> (8 * level)
        };
        let (index, width) = self.index_and_width();
        let width = width.map_or(TILE_WIDTH, u64::from);
        index
            .checked_mul(TILE_WIDTH)
            .and_then(|start| start.checked_add(width))
            .is_some_and(|end| end <= units)
    }

    /// The path relative to the read prefix, e.g. `tile/0/x001/234.p/5` or `tile/entries/000`.
    pub fn path(&self) -> String {
        let (index, width) = self.index_and_width();
        let mut path = match self {
            TileRequest::Hash { level, .. } => format!("tile/{level}/"),
            TileRequest::EntryBundle { .. } => "tile/entries/".to_owned(),
        };
        path.push_str(&encode_index(index));
        if let Some(width) = width {
            path.push_str(&format!(".p/{width}"));
        }
        path
    }

    /// Parses the part after `tile/`. Strict: no leading zeros in `L` or `W`, 3-digit groups,
    /// `x` on every group but the last, `W` in 1–255, `L` in 0–63, no overflow.
    pub fn parse(tail: &str) -> Option<TileRequest> {
        if let Some(rest) = tail.strip_prefix("entries/") {
            let (index, width) = parse_index_and_width(rest)?;
            return Some(TileRequest::EntryBundle { index, width });
        }
        let (level_text, rest) = tail.split_once('/')?;
        let level = parse_decimal(level_text)?;
        if level > 63 {
            return None;
        }
        let (index, width) = parse_index_and_width(rest)?;
        Some(TileRequest::Hash {
            level: level as u8,
            index,
            width,
        })
    }
}

impl fmt::Display for TileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `N` as 3-digit groups, every group but the last prefixed with `x`.
fn encode_index(mut index: u64) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    index /= 1000;
    while index > 0 {
        groups.push(format!("x{:03}", index % 1000));
        index /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

/// A decimal without leading zeros (a lone `0` is fine).
fn parse_decimal(text: &str) -> Option<u64> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse().ok()
}

fn parse_index_and_width(text: &str) -> Option<(u64, Option<u8>)> {
    let (index_text, width) = match text.split_once(".p/") {
        Some((index_text, width_text)) => {
            let width = parse_decimal(width_text)?;
            if !(1..=255).contains(&width) {
                return None;
            }
            (index_text, Some(width as u8))
        }
        None => (text, None),
    };
    let groups: Vec<&str> = index_text.split('/').collect();
    let mut index: u64 = 0;
    for (i, group) in groups.iter().enumerate() {
        let last = i + 1 == groups.len();
        let digits = if last {
            *group
        } else {
            group.strip_prefix('x')?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value: u64 = digits.parse().ok()?;
        index = index.checked_mul(1000)?.checked_add(value)?;
    }
    // A leading zero group (`x000/...`) would give a second spelling of the same index.
    if groups.len() > 1 && groups[0] == "x000" {
        return None;
    }
    Some((index, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for (path, request) in [
            (
                "tile/0/000",
                TileRequest::Hash {
                    level: 0,
                    index: 0,
                    width: None,
                },
            ),
            (
                "tile/1/005.p/17",
                TileRequest::Hash {
                    level: 1,
                    index: 5,
                    width: Some(17),
                },
            ),
            (
                "tile/0/x001/234",
                TileRequest::Hash {
                    level: 0,
                    index: 1234,
                    width: None,
                },
            ),
            (
                "tile/2/x001/x234/067",
                TileRequest::Hash {
                    level: 2,
                    index: 1_234_067,
                    width: None,
                },
            ),
            (
                "tile/entries/x019/669",
                TileRequest::EntryBundle {
                    index: 19_669,
                    width: None,
                },
            ),
            (
                "tile/entries/000.p/1",
                TileRequest::EntryBundle {
                    index: 0,
                    width: Some(1),
                },
            ),
        ] {
            assert_eq!(
                TileRequest::parse(path.strip_prefix("tile/").unwrap()),
                Some(request),
                "{path}"
            );
            assert_eq!(request.path(), path);
        }
    }

    #[test]
    fn malformed_paths_are_rejected() {
        for tail in [
            "0/x000",
            "0/00",
            "0/0000",
            "00/000",
            "01/000",
            "64/000",
            "0/001/234",
            "0/x001/x234",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "0/000.p/",
            "0/000/",
            "0/",
            "0",
            "entries/",
            "entries/x1/000",
            "0/x000/001",
            "a/000",
            "-1/000",
            "0/+12",
            "0/ 12",
        ] {
            assert_eq!(TileRequest::parse(tail), None, "{tail} was accepted");
        }
        // u64::MAX = 18446744073709551615 parses; one more overflows.
        assert_eq!(
            TileRequest::parse("0/x018/x446/x744/x073/x709/x551/615"),
            Some(TileRequest::Hash {
                level: 0,
                index: u64::MAX,
                width: None
            })
        );
        assert!(TileRequest::parse("0/x018/x446/x744/x073/x709/x551/616").is_none());
    }

    #[test]
    fn tiles_within_a_tree_size() {
        let full0 = TileRequest::Hash {
            level: 0,
            index: 0,
            width: None,
        };
        assert!(!full0.is_within(255));
        assert!(full0.is_within(256));
        let partial = TileRequest::EntryBundle {
            index: 1,
            width: Some(5),
        };
        assert!(!partial.is_within(260));
        assert!(partial.is_within(261));
        // Size 70,000 (tlog-tiles.md §3): level-1 tile 1 partial width 17, level-2 partial width 1.
        assert!(TileRequest::Hash {
            level: 1,
            index: 1,
            width: Some(17)
        }
        .is_within(70_000));
        assert!(!TileRequest::Hash {
            level: 1,
            index: 1,
            width: Some(18)
        }
        .is_within(70_000));
        assert!(TileRequest::Hash {
            level: 2,
            index: 0,
            width: Some(1)
        }
        .is_within(70_000));
        assert!(!TileRequest::Hash {
            level: 2,
            index: 0,
            width: None
        }
        .is_within(70_000));
        assert!(!TileRequest::Hash {
            level: 63,
            index: 0,
            width: Some(1)
        }
        .is_within(u64::MAX));
        assert!(!TileRequest::Hash {
            level: 0,
            index: u64::MAX,
            width: None
        }
        .is_within(u64::MAX));
    }
}
