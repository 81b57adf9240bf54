//! Backfill of entry bodies while installing a snapshot (DESIGN.md, "Snapshots and catch-up" and
//! "Dedup").
//!
//! A snapshot ([`crate::snapshot`]) carries only the small state. A node that installs one and
//! has applied fewer leaves than the snapshot's integrated size `leaves_from` pulls the bodies
//! `applied..leaves_from` from peers through a [`SnapshotBackfill`] (the node implements it with
//! entry-bundle pulls from a peer's public read API), chunk by chunk, and *stages* them: each
//! chunk's bodies are appended to the leaf files beyond the applied size, where nothing reads
//! them. Nothing staged is trusted or used until the compact range rebuilt from it reaches the
//! snapshot's root; only then are their identities recorded and the applied state switched.
//!
//! If the root does not match, or the process dies while staging, [`discard_staged`] (or the
//! next open) drops every body beyond the applied size, so no unverified body can ever decide
//! a duplicate.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use rekor_storage::merkle::{leaf_hash, CompactRange};

use crate::entry_files::EntryFiles;
use crate::state_machine::{Shared, StateMachineError};
use crate::types::{identity_of, NodeAddress, NodeId};

/// Entries pulled, hashed and staged per step (16 entry bundles): bounds the memory of an
/// install whatever the log size.
pub const BACKFILL_CHUNK: u64 = 4096;

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
    /// Its addresses (catch-up reads go to the internal one).
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

/// Hash `bodies` (the entries `from..`), extend `range` (at size `from`) with them, and stage
/// them as leaves beyond the applied size. A body whose identity is already recorded at a lower
/// index is a duplicate, which a log never holds, so the peer is lying: nothing of this chunk
/// is staged.
pub(crate) fn stage_chunk(
    files: &EntryFiles,
    from: u64,
    bodies: Vec<Vec<u8>>,
    range: &mut CompactRange,
) -> Result<(), PeerRejected> {
    let mut next = range.clone();
    let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(bodies.len());
    for (offset, body) in bodies.iter().enumerate() {
        let index = from + offset as u64;
        let identity = identity_of(body);
        if let Some(first) = files.recorded(&identity)? {
            if first < index {
                return Err(PeerRejected::Duplicate { index, first });
            }
        }
        if !seen.insert(identity) {
            return Err(PeerRejected::Duplicate { index, first: from });
        }
        next.append(leaf_hash(body))
            .map_err(|e| StateMachineError::Corrupt(format!("compact range: {e}")))?;
    }
    files.stage(from, &bodies)?;
    *range = next;
    Ok(())
}

/// Drop every staged body (an install that failed): everything beyond the applied size.
pub(crate) fn discard_staged(shared: &Shared) -> Result<(), StateMachineError> {
    let applied = shared.lock_state()?.tree.size();
    shared.files.discard_beyond(applied)
}
