//! The seam between the HTTP layer and whatever sequences and stores entries.
//!
//! The node crate implements [`LogBackend`] over the replicated log; [`crate::memory_log`] is an
//! in-process implementation for tests and single-process development logs.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use rekor_storage::tiles::{parse_tile_path, BundleId, TileId, TilePath, TILE_WIDTH};
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

    /// The entry at `index` as a POST would have answered it, with an inclusion proof in the
    /// tree of the checkpoint this node serves; `None` when that checkpoint does not cover it.
    /// Read from this node's own tiles: no round trip to the leader.
    fn entry(&self, index: u64) -> BoxFuture<'_, Result<Option<StoredEntry>, ReadError>>;

    /// Whether this node can take writes and serve fresh reads now (`/healthz`): each check it
    /// ran, by name. The default has no checks, so it is always ready.
    fn readiness(&self) -> BoxFuture<'_, Readiness> {
        Box::pin(std::future::ready(Readiness::default()))
    }
}

/// The outcome of a backend's readiness checks (`/healthz`). Ready when every check passed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    pub checks: Vec<ReadinessCheck>,
}

/// One readiness check: its name (`quorum`, `tile_store`), whether it passed, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadinessCheck {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }
}

impl ReadinessCheck {
    pub fn passed(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            ok: false,
            detail: detail.into(),
        }
    }
}

/// An entry already in the log: what the entry lookup route answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub kind: EntryKind,
    pub canonical_body: Vec<u8>,
    pub logged: LoggedEntry,
}

/// The entry bundle that holds `index` in a tree of `size` entries (the full bundle, or the
/// partial one at the right edge), and the entry's position in it; `None` past the tree.
pub fn bundle_holding(index: u64, size: u64) -> Option<(TileRequest, usize)> {
    if index >= size {
        return None;
    }
    let width = u64::from(TILE_WIDTH);
    let bundle = index / width;
    let entries = (size - bundle * width).min(width);
    let id = BundleId::new(bundle, u16::try_from(entries).ok()?).ok()?;
    let position = usize::try_from(index % width).ok()?;
    Some((TileRequest(TilePath::Entries(id)), position))
}

/// The entry at `position` of an entry bundle, and its kind (read from its canonical body).
pub fn entry_in_bundle(bundle: &[u8], position: usize) -> Result<(EntryKind, Vec<u8>), ReadError> {
    let entries = rekor_storage::tiles::decode_bundle(bundle)
        .map_err(|e| ReadError::Storage(format!("undecodable entry bundle: {e}")))?;
    let body = entries.get(position).ok_or_else(|| {
        ReadError::Storage(format!(
            "entry bundle of {} entries has no entry {position}",
            entries.len()
        ))
    })?;
    let kind = EntryKind::of_canonical_body(body)
        .ok_or_else(|| ReadError::Storage("stored entry of an unknown kind".into()))?;
    Ok((kind, body.to_vec()))
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

    /// The kind a canonical body declares (`"kind"`, at `"apiVersion": "0.0.2"`).
    pub fn of_canonical_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Header<'a> {
            #[serde(rename = "apiVersion", borrow)]
            api_version: &'a str,
            #[serde(borrow)]
            kind: &'a str,
        }
        let header: Header<'_> = serde_json::from_slice(body).ok()?;
        if header.api_version != "0.0.2" {
            return None;
        }
        [EntryKind::HashedRekord, EntryKind::Dsse]
            .into_iter()
            .find(|kind| kind.kind() == header.kind)
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

/// A parsed read path below `tile/`: a hash tile or an entry bundle (tlog-tiles.md §2).
/// Parsing is the storage crate's strict parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest(pub TilePath);

impl TileRequest {
    /// Parses the part of the path after `tile/`; `None` if it is not canonical.
    pub fn parse(tail: &str) -> Option<TileRequest> {
        parse_tile_path(tail).ok().map(TileRequest)
    }

    /// Whether a tree of `tree_size` leaves contains this tile: its last hash (or entry) must be
    /// one of the tree's complete level-`L` subtrees. Tiles beyond the served checkpoint are 404.
    /// An older, narrower partial tile is "within" too (it is immutable; whether it is still
    /// stored is up to the backend).
    pub fn is_within(&self, tree_size: u64) -> bool {
        let (level, index, width) = match self.0 {
            TilePath::Hash(TileId {
                level,
                index,
                width,
            }) => (level, index, width),
            TilePath::Entries(BundleId { index, width }) => (0, index, width),
        };
        let level = u32::from(level);
        // Number of complete subtrees of 256^L leaves; zero once 256^L exceeds any u64 size.
        let units = if level >= 8 {
            0
        } else {
            tree_size >> (8 * level)
        };
        index
            .checked_mul(u64::from(TILE_WIDTH))
            .and_then(|start| start.checked_add(u64::from(width)))
            .is_some_and(|end| end <= units)
    }

    /// The C2SP path relative to the read prefix, e.g. `tile/0/x001/234.p/5`.
    pub fn path(&self) -> String {
        match self.0 {
            TilePath::Hash(id) => id.path(),
            TilePath::Entries(id) => id.path(),
        }
    }
}

impl fmt::Display for TileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(level: u8, index: u64, width: u16) -> TileRequest {
        TileRequest(TilePath::Hash(TileId {
            level,
            index,
            width,
        }))
    }

    fn bundle(index: u64, width: u16) -> TileRequest {
        TileRequest(TilePath::Entries(BundleId { index, width }))
    }

    #[test]
    fn paths_round_trip() {
        for (path, request) in [
            ("tile/0/000", hash(0, 0, 256)),
            ("tile/1/005.p/17", hash(1, 5, 17)),
            ("tile/0/x001/234", hash(0, 1234, 256)),
            ("tile/2/x001/x234/067", hash(2, 1_234_067, 256)),
            ("tile/entries/x019/669", bundle(19_669, 256)),
            ("tile/entries/000.p/1", bundle(0, 1)),
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
            "0/x018/x446/x744/x073/x709/x551/616",
        ] {
            assert_eq!(TileRequest::parse(tail), None, "{tail} was accepted");
        }
    }

    #[test]
    fn tiles_within_a_tree_size() {
        assert!(!hash(0, 0, 256).is_within(255));
        assert!(hash(0, 0, 256).is_within(256));
        assert!(!bundle(1, 5).is_within(260));
        assert!(bundle(1, 5).is_within(261));
        // Size 70,000 (tlog-tiles.md §3): level-1 tile 1 partial width 17, level-2 partial width 1.
        assert!(hash(1, 1, 17).is_within(70_000));
        assert!(!hash(1, 1, 18).is_within(70_000));
        assert!(hash(2, 0, 1).is_within(70_000));
        assert!(!hash(2, 0, 256).is_within(70_000));
        assert!(!hash(63, 0, 1).is_within(u64::MAX));
        assert!(!hash(0, u64::MAX, 256).is_within(u64::MAX));
    }
}
