//! Backfill of entry bodies while installing a snapshot (DESIGN.md, "Snapshots and catch-up" and
//! "Dedup").
//!
//! A snapshot ([`crate::snapshot`]) carries only the small state. A node that installs one and
//! has applied fewer leaves than the snapshot's integrated size `leaves_from` pulls the bodies
//! `applied..leaves_from` from peers through a [`SnapshotBackfill`] (the node implements it with
//! entry-bundle pulls from a peer's public read API), chunk by chunk, and *stages* them: each
//! chunk's leaf bodies and identity records are written in one engine batch together with a
//! staging marker `m/staging = (start, end)` that covers everything staged so far. Nothing
//! staged is trusted or used until the compact range rebuilt from it reaches the snapshot's
//! root; only then does the install switch the applied state (and drop the marker) in one batch.
//!
//! Staged identity records carry indices at or above the applied size, which readers and apply
//! ignore (no index can be known beyond what is applied). If the root does not match, or the
//! process dies while staging, [`discard_staged`] removes every staged record (at the next
//! attempt or at open), so no unverified identity can ever decide a duplicate.

use std::collections::HashSet;
use std::future::Future;
use std::ops::{Bound, Range};
use std::pin::Pin;

use rekor_storage::merkle::{leaf_hash, CompactRange};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::engine::{index_key, parse_index_key, KeyValue, Keyspace, ScanOrder, WriteBatch};
use crate::state_machine::{get_record, identity_key, StateMachineError, LEAF_PREFIX};
use crate::types::{identity_of, NodeAddress, NodeId};

/// Entries pulled, hashed and staged per step (16 entry bundles): bounds the memory of an
/// install whatever the log size.
pub const BACKFILL_CHUNK: u64 = 4096;

/// The staging marker: staged leaves and identities cover `start..end`.
pub(crate) const KEY_STAGING: &[u8] = b"m/staging";

/// A peer failed to serve entries (unreachable, missing bundle, bad encoding, ...).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BackfillError(pub String);

/// The future returned by [`SnapshotBackfill::pull`].
pub type PullFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, BackfillError>> + Send + 'a>>;

/// A member of the snapshot's membership to pull bodies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillPeer {
    /// Its node id.
    pub id: NodeId,
    /// Its addresses (the public one serves the read API).
    pub address: NodeAddress,
}

/// What one snapshot install did, for logs and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotInstallReport {
    /// Size of the snapshot payload in bytes.
    pub bytes: u64,
    /// Of which the carried unintegrated leaf bodies (with their length prefixes).
    pub leaf_bytes: u64,
    /// Entries of the recent-roots table it carried (40 bytes each).
    pub recent_roots: u64,
    /// Unintegrated leaves it carried.
    pub carried_leaves: u64,
    /// Tree size after the install.
    pub size: u64,
    /// Bodies pulled from a peer (`applied..leaves_from`).
    pub pulled: u64,
    /// The peer whose bodies reproduced the snapshot's root, if any were pulled.
    pub pulled_from: Option<NodeId>,
    /// Wall time of the install, pulls included.
    pub seconds: f64,
}

impl SnapshotInstallReport {
    /// Bytes other than leaf bodies and recent roots: compact range, checkpoint, framing. Small
    /// and independent of the log size.
    pub fn state_bytes(&self) -> u64 {
        self.bytes
            .saturating_sub(self.leaf_bytes)
            .saturating_sub(self.recent_roots.saturating_mul(40))
    }
}

/// Source of entry bodies for a snapshot install, injected into
/// [`crate::StateMachineStore::with_backfill`]. Object-safe: `pull` returns a boxed future.
pub trait SnapshotBackfill: Send + Sync + 'static {
    /// The peers to try, in order of preference, given the members of the snapshot being
    /// installed (this node included; filter it out).
    fn order_peers(&self, members: Vec<BackfillPeer>) -> Vec<BackfillPeer>;

    /// The entry bodies `from..to` (at most [`BACKFILL_CHUNK`] of them) as `peer` serves them.
    /// Nothing returned is trusted: the install checks it against the snapshot's root.
    fn pull<'a>(&'a self, peer: &'a BackfillPeer, from: u64, to: u64) -> PullFuture<'a>;

    /// Called after each staged chunk with its number of entries (for a progress counter).
    fn pulled(&self, _entries: u64) {}

    /// Called once a snapshot is installed.
    fn installed(&self, _report: &SnapshotInstallReport) {}
}

/// Why one peer's bodies were not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerRejected {
    #[error("pull failed: {0}")]
    Pull(#[from] BackfillError),
    #[error("served {got} entries for {from}..{to}")]
    WrongCount { from: u64, to: u64, got: usize },
    #[error("entry {index} repeats the body of entry {first} (a log holds each body once)")]
    Duplicate { index: u64, first: u64 },
    #[error("entries {from}..{to} do not reproduce the snapshot's root")]
    RootMismatch { from: u64, to: u64 },
    #[error(transparent)]
    Local(#[from] StateMachineError),
}

/// Hash `bodies` (the entries `from..`), extend `range` (at size `from`) with them, and write
/// them as leaves with their identity records plus the staging marker `(start, end)`, in one
/// batch. A body whose identity is already recorded at a lower index is a duplicate, which a
/// log never holds, so the peer is lying: nothing of this chunk is written.
pub(crate) fn stage_chunk(
    keyspace: &dyn Keyspace,
    start: u64,
    from: u64,
    bodies: Vec<Vec<u8>>,
    range: &mut CompactRange,
) -> Result<(), PeerRejected> {
    let mut next = range.clone();
    let mut batch = WriteBatch::new();
    let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(bodies.len());
    let end = from + bodies.len() as u64;
    for (offset, body) in bodies.into_iter().enumerate() {
        let index = from + offset as u64;
        let identity = identity_of(&body);
        if let Some(first) = recorded_index(keyspace, &identity)? {
            if first < index {
                return Err(PeerRejected::Duplicate { index, first });
            }
        }
        if !seen.insert(identity) {
            return Err(PeerRejected::Duplicate { index, first: from });
        }
        next.append(leaf_hash(&body))
            .map_err(|e| StateMachineError::Corrupt(format!("compact range: {e}")))?;
        batch.put(
            identity_key(&identity).to_vec(),
            index.to_be_bytes().to_vec(),
        );
        batch.put(index_key(LEAF_PREFIX, index).to_vec(), body);
    }
    batch.put(
        KEY_STAGING,
        codec::encode(&StagingMarker { start, end }).map_err(StateMachineError::from)?,
    );
    keyspace.apply(batch).map_err(StateMachineError::from)?;
    *range = next;
    Ok(())
}

/// The raw identity record (no applied-size filter).
fn recorded_index(
    keyspace: &dyn Keyspace,
    identity: &[u8; 32],
) -> Result<Option<u64>, StateMachineError> {
    match keyspace.get(&identity_key(identity))? {
        None => Ok(None),
        Some(value) => {
            let raw: [u8; 8] = value.as_slice().try_into().map_err(|_| {
                StateMachineError::Corrupt("identity index value is not 8 bytes".into())
            })?;
            Ok(Some(u64::from_be_bytes(raw)))
        }
    }
}

/// The staged range, persisted with every staged chunk.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct StagingMarker {
    pub(crate) start: u64,
    pub(crate) end: u64,
}

/// Remove every staged leaf and identity record (an install that failed or was interrupted),
/// chunk by chunk, then the marker. Identity records are removed only if they still point into
/// the staged range, so an identity of the applied prefix is never touched.
pub(crate) fn discard_staged(keyspace: &dyn Keyspace) -> Result<(), StateMachineError> {
    let Some(marker) = get_record::<StagingMarker>(keyspace, KEY_STAGING)? else {
        return Ok(());
    };
    let mut from = marker.start;
    while from < marker.end {
        let to = marker.end.min(from + BACKFILL_CHUNK);
        let mut batch = WriteBatch::new();
        for (key, body) in scan_leaves(keyspace, from..to)? {
            let identity = identity_of(&body);
            let index = parse_index_key(&key);
            if index.is_some() && recorded_index(keyspace, &identity)? == index {
                batch.delete(identity_key(&identity).to_vec());
            }
            batch.delete(key);
        }
        keyspace.apply(batch)?;
        from = to;
    }
    let mut batch = WriteBatch::new();
    batch.delete(KEY_STAGING);
    keyspace.apply(batch)?;
    keyspace.flush()?;
    tracing::info!(
        from = marker.start,
        to = marker.end,
        "discarded entries staged by an unfinished snapshot install"
    );
    Ok(())
}

pub(crate) fn scan_leaves(
    keyspace: &dyn Keyspace,
    range: Range<u64>,
) -> Result<Vec<KeyValue>, StateMachineError> {
    let lower = index_key(LEAF_PREFIX, range.start);
    let upper = index_key(LEAF_PREFIX, range.end);
    Ok(keyspace.scan(
        Bound::Included(&lower[..]),
        Bound::Excluded(&upper[..]),
        ScanOrder::Ascending,
        usize::MAX,
    )?)
}
