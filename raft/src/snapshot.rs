//! Raft snapshots of the state machine: the small state only, plus catch-up by pulling entry
//! bodies from peers (DESIGN.md, "Snapshots and catch-up", "Dedup").
//!
//! A snapshot (format [`SNAPSHOT_FORMAT`]) carries the compact range, the recent-roots table
//! (at most [`crate::state_machine::RECENT_ROOTS`] entries), the latest checkpoint, the
//! integrated size `leaves_from` of the node that built it, and the unintegrated leaf bodies
//! `leaves_from..size` (bounded by pushback); the applied log id and membership travel in
//! openraft's `SnapshotMeta`. Its size does not grow with the log. It carries no identity index:
//! building one never scans the index, and format 1 snapshots (which carried the whole index)
//! are rejected with [`StateMachineError::SnapshotFormat`]. The log's recorded key follows the
//! payload as a trailing record: a node that installs a snapshot must know the key the next
//! `Publish` is checked against, and builds that predate the key ignore trailing bytes, so the
//! format stays 2 and snapshots keep flowing both ways during an upgrade.
//!
//! Installing a snapshot on a node that has applied `k` leaves (a wiped node: 0) streams the
//! rest of the state from peers instead:
//! 1. if `k < leaves_from`, the bodies `k..leaves_from` are pulled through the injected
//!    [`SnapshotBackfill`], [`BACKFILL_CHUNK`] at a time, and staged (leaf records and identity
//!    records, see [`crate::backfill`]) while a compact range started from this node's own
//!    range at `k` is extended with their leaf hashes;
//! 2. the snapshot's own unintegrated leaves are appended, and the result must equal the
//!    snapshot's compact range (size and root). This also proves that this node's own prefix
//!    `0..k` agrees with the snapshot (Raft guarantees it; the check costs nothing);
//! 3. only then the applied state switches, in one atomic, fsynced batch. If a peer's bodies do
//!    not reproduce the root the next member is tried; if none does, everything staged is
//!    deleted and the install fails, leaving the previous state untouched.
//!
//! After an install the node holds every body from its own integrated size up, so its
//! integrator builds tiles and bundles from local leaves without pulling again.

use std::io::{Cursor, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bincode::Options;
use openraft::{
    AnyError, LogId, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
};
use rekor_storage::merkle::{leaf_hash, CompactRange};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::backfill::{
    discard_staged, stage_chunk, BackfillPeer, PeerRejected, SnapshotBackfill,
    SnapshotInstallReport, BACKFILL_CHUNK,
};
use crate::codec::{self, CodecError};
use crate::engine::{index_key, parse_index_key, scan_prefix, Keyspace, WriteBatch};
use crate::state_machine::{
    get_record, load_state, PublishedCheckpoint, Shared, StateMachineError, KEY_APPLIED,
    KEY_CHECKPOINT, KEY_INTEGRATED, KEY_LOG_KEY, KEY_MEMBERSHIP, KEY_SNAPSHOT, KEY_TREE,
    ROOT_PREFIX,
};
use crate::types::{identity_of, LogKey, NodeAddress, NodeId, TypeConfig};

/// First byte of every snapshot this build writes. Format 1 carried the whole identity index.
pub const SNAPSHOT_FORMAT: u8 = 2;

/// The snapshot body (after the format byte).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotPayload {
    /// `CompactRange::to_bytes`.
    tree: Vec<u8>,
    /// The recent-roots table, oldest first.
    recent_roots: Vec<(u64, [u8; 32])>,
    checkpoint: Option<PublishedCheckpoint>,
    /// The builder's integrated size: index of `leaves[0]`. Peers serve the bodies below it.
    leaves_from: u64,
    /// Bodies `leaves_from..size`.
    leaves: Vec<Vec<u8>>,
    /// The log's recorded key: encoded after the payload (see the module docs), not in it.
    #[serde(skip)]
    log_key: Option<LogKey>,
}

/// bincode 1.3 as `bincode::serialize` writes it, with the input length as the decoding limit,
/// so a bad length prefix cannot make the decoder allocate more than the input.
fn bincode_options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(limit)
}

fn encode_payload(payload: &SnapshotPayload) -> Result<Vec<u8>, StateMachineError> {
    let mut out = vec![SNAPSHOT_FORMAT];
    bincode::serialize_into(&mut out, payload).map_err(CodecError::from)?;
    if payload.log_key.is_some() {
        bincode::serialize_into(&mut out, &payload.log_key).map_err(CodecError::from)?;
    }
    Ok(out)
}

fn decode_payload(data: &[u8]) -> Result<SnapshotPayload, StateMachineError> {
    match data.split_first() {
        None => Err(CodecError::Empty.into()),
        Some((&SNAPSHOT_FORMAT, rest)) => {
            let mut reader = rest;
            let mut payload: SnapshotPayload = bincode_options(rest.len() as u64)
                .deserialize_from(&mut reader)
                .map_err(CodecError::from)?;
            if !reader.is_empty() {
                payload.log_key = bincode_options(reader.len() as u64)
                    .deserialize(reader)
                    .map_err(CodecError::from)?;
            }
            Ok(payload)
        }
        Some((&found, _)) => Err(StateMachineError::SnapshotFormat {
            found,
            expected: SNAPSHOT_FORMAT,
        }),
    }
}

/// The stored current snapshot: its metadata and its bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeAddress>,
    data: Vec<u8>,
}

/// Name of the current snapshot's file in the state machine's directory. It is a file, not an
/// engine record: a snapshot carries the unintegrated bodies (megabytes under load), and sled
/// grew by about that much memory for every rewrite of such a record.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot";

fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> StateMachineError {
    StateMachineError::File {
        op,
        path: path.to_path_buf(),
        source: e,
    }
}

/// Replace the current snapshot durably: written beside it, fsynced, renamed over it, the
/// directory fsynced.
fn store_snapshot(path: &Path, stored: &StoredSnapshot) -> Result<(), StateMachineError> {
    let bytes = codec::encode(stored)?;
    let temporary = path.with_extension("tmp");
    let mut file =
        std::fs::File::create(&temporary).map_err(|e| io_error("create", &temporary, e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("write", &temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| io_error("rename", path, e))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error("fsync", parent, e))?;
    }
    Ok(())
}

fn load_snapshot(path: &Path) -> Result<Option<StoredSnapshot>, StateMachineError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(codec::decode(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// At open: drop a stored snapshot that is ahead of the applied state (an install that wrote
/// it and died before switching the state), and the engine record of the old layout.
pub(crate) fn reconcile_stored(
    keyspace: &dyn Keyspace,
    path: &Path,
    applied: Option<LogId<NodeId>>,
) -> Result<(), StateMachineError> {
    if keyspace.get(KEY_SNAPSHOT)?.is_some() {
        let mut batch = WriteBatch::new();
        batch.delete(KEY_SNAPSHOT);
        keyspace.apply(batch)?;
        info!("dropped the snapshot record of the engine-only layout; the next one is a file");
    }
    let _ = std::fs::remove_file(path.with_extension("tmp"));
    if let Some(stored) = load_snapshot(path)? {
        if stored.meta.last_log_id > applied {
            warn!(
                snapshot_id = %stored.meta.snapshot_id,
                "the stored snapshot is ahead of the applied state (an install did not finish); dropped"
            );
            std::fs::remove_file(path).map_err(|e| io_error("remove", path, e))?;
        }
    }
    Ok(())
}

fn corrupt(what: &str) -> StateMachineError {
    StateMachineError::Corrupt(what.to_string())
}

/// Build a snapshot of the current state, store it as the current snapshot (fsynced, which
/// also makes all applied state durable before openraft purges the log behind it).
fn build(shared: &Shared) -> Result<Snapshot<TypeConfig>, StateMachineError> {
    // Lock order: integration, then state (as in mark_integrated). Holding both makes the
    // snapshot one consistent cut; apply waits meanwhile.
    let _integration = shared.lock_integration()?;
    let state = shared.lock_state()?;
    let keyspace = shared.keyspace.as_ref();

    // Bounded by RECENT_ROOTS.
    let mut recent_roots = Vec::with_capacity(state.recent_sizes.len());
    for (key, value) in scan_prefix(keyspace, ROOT_PREFIX, usize::MAX)? {
        let size = parse_index_key(&key).ok_or_else(|| corrupt("recent-roots key"))?;
        let root: [u8; 32] = value
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("recent-roots value"))?;
        recent_roots.push((size, root));
    }
    let size = state.tree.size();
    let integrated: u64 = get_record(keyspace, KEY_INTEGRATED)?.unwrap_or(0);
    // The unintegrated bodies (bounded by pushback). Bodies are held from this node's
    // integrated size; the scan stops at the applied size, so records staged by an unfinished
    // install above it are never included.
    let leaves_from = integrated.min(size);
    let leaves = shared.files.read(leaves_from..size)?;
    let payload = SnapshotPayload {
        tree: state.tree.to_bytes(),
        recent_roots,
        checkpoint: state.checkpoint.clone(),
        leaves_from,
        leaves,
        log_key: state.log_key.clone(),
    };
    let data = encode_payload(&payload)?;
    let seq = shared.snapshot_seq.fetch_add(1, Ordering::Relaxed);
    let snapshot_id = match state.applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, seq),
        None => format!("none-{seq}"),
    };
    let meta = SnapshotMeta {
        last_log_id: state.applied,
        last_membership: state.membership.clone(),
        snapshot_id,
    };
    drop(state);

    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    // The state it describes is durable before the snapshot is (openraft purges the log
    // behind it).
    keyspace.flush()?;
    store_snapshot(&shared.snapshot_path, &stored)?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    })
}

async fn blocking<T, F>(f: F) -> Result<T, StateMachineError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StateMachineError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StateMachineError::Task)?
}

/// Install a snapshot: pull and stage what this node lacks, check the root, then switch the
/// applied state atomically and durably, reload the in-memory state and notify watchers.
pub(crate) async fn install(
    shared: Arc<Shared>,
    backfill: Option<Arc<dyn SnapshotBackfill>>,
    meta: SnapshotMeta<NodeId, NodeAddress>,
    data: Vec<u8>,
) -> Result<SnapshotInstallReport, StateMachineError> {
    let started = Instant::now();
    let payload = Arc::new(decode_payload(&data)?);
    let target = CompactRange::from_bytes(&payload.tree)
        .map_err(|e| StateMachineError::Corrupt(format!("snapshot compact range: {e}")))?;
    if payload.leaves_from + payload.leaves.len() as u64 != target.size() {
        return Err(corrupt("snapshot leaves do not end at the tree size"));
    }
    // The leaves held change under a snapshot: the integrator hashes the new ones itself.
    shared.leaf_hashes.clear();
    // Leftovers of an earlier attempt go first: staging restarts from this node's own state.
    let cleaner = shared.clone();
    blocking(move || discard_staged(&cleaner)).await?;

    // Apply and install never run concurrently (openraft's state-machine worker serialises
    // them), so the applied state read here is the one the final switch replaces.
    let own = shared.lock_state()?.tree.clone();
    let applied = own.size();
    if applied > target.size() {
        return Err(StateMachineError::SnapshotBehind {
            snapshot: target.size(),
            applied,
        });
    }

    let observer = backfill.clone();
    let mut pulled_from = None;
    let mut pulled = 0;
    if applied < payload.leaves_from {
        let backfill = backfill.ok_or(StateMachineError::BackfillUnavailable {
            from: applied,
            to: payload.leaves_from,
        })?;
        let members = meta
            .last_membership
            .nodes()
            .map(|(id, address)| BackfillPeer {
                id: *id,
                address: address.clone(),
            })
            .collect();
        let mut failures = Vec::new();
        for peer in backfill.order_peers(members) {
            let attempt = backfill_from(
                &shared,
                backfill.as_ref(),
                &peer,
                own.clone(),
                &payload,
                &target,
            )
            .await;
            match attempt {
                Ok(()) => {
                    pulled_from = Some(peer.id);
                    break;
                }
                Err(rejected) => {
                    warn!(peer = peer.id, error = %rejected, "snapshot backfill from this peer failed");
                    let cleaner = shared.clone();
                    blocking(move || discard_staged(&cleaner)).await?;
                    if let PeerRejected::Local(error) = rejected {
                        return Err(error);
                    }
                    failures.push(format!("node {}: {rejected}", peer.id));
                }
            }
        }
        if pulled_from.is_none() {
            return Err(StateMachineError::Backfill {
                from: applied,
                to: payload.leaves_from,
                failures: if failures.is_empty() {
                    "no peer to pull from".into()
                } else {
                    failures.join("; ")
                },
            });
        }
        pulled = payload.leaves_from - applied;
    } else {
        // Nothing to pull: this node's own prefix plus the carried leaves must give the root.
        let tail = payload.clone();
        let expected = target.clone();
        let matches =
            blocking(move || tail_matches(own, tail.leaves_from, &tail.leaves, &expected)).await?;
        if !matches {
            return Err(StateMachineError::SnapshotMismatch { applied });
        }
    }

    let committer = shared.clone();
    let staged_payload = payload.clone();
    let bytes =
        match blocking(move || commit(&committer, &meta, &staged_payload, applied, data)).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let cleaner = shared.clone();
                blocking(move || discard_staged(&cleaner)).await?;
                return Err(error);
            }
        };
    let report = SnapshotInstallReport {
        bytes,
        leaf_bytes: payload
            .leaves
            .iter()
            .map(|leaf| 8 + leaf.len() as u64)
            .sum(),
        recent_roots: payload.recent_roots.len() as u64,
        carried_leaves: payload.leaves.len() as u64,
        size: target.size(),
        pulled,
        pulled_from,
        seconds: started.elapsed().as_secs_f64(),
    };
    info!(
        snapshot_bytes = report.bytes,
        state_bytes = report.state_bytes(),
        recent_roots = report.recent_roots,
        carried_leaves = report.carried_leaves,
        size = report.size,
        pulled = report.pulled,
        pulled_from = ?report.pulled_from,
        seconds = report.seconds,
        "installed snapshot"
    );
    if let Some(observer) = observer {
        observer.installed(&report);
    }
    Ok(report)
}

/// Whether `range` (this node's own compact range, or one extended with pulled bodies up to at
/// least `leaves_from`) extended with the snapshot's leaves from its size on equals `target`.
fn tail_matches(
    mut range: CompactRange,
    leaves_from: u64,
    leaves: &[Vec<u8>],
    target: &CompactRange,
) -> Result<bool, StateMachineError> {
    let Some(skip) = range.size().checked_sub(leaves_from) else {
        return Ok(false);
    };
    for body in leaves.iter().skip(skip as usize) {
        range
            .append(leaf_hash(body))
            .map_err(|e| StateMachineError::Corrupt(format!("compact range: {e}")))?;
    }
    Ok(range.size() == target.size() && range.root() == target.root())
}

/// Pull `applied..leaves_from` from `peer`, chunk by chunk, staging each chunk, and check the
/// final root. On error the caller discards what was staged.
async fn backfill_from(
    shared: &Arc<Shared>,
    backfill: &dyn SnapshotBackfill,
    peer: &BackfillPeer,
    own: CompactRange,
    payload: &Arc<SnapshotPayload>,
    target: &CompactRange,
) -> Result<(), PeerRejected> {
    let start = own.size();
    let end = payload.leaves_from;
    let started = Instant::now();
    let mut range = own;
    let mut from = start;
    info!(
        peer = peer.id,
        from,
        to = end,
        "pulling entries below the snapshot from a peer"
    );
    while from < end {
        let to = end.min(from + BACKFILL_CHUNK);
        let bodies = backfill.pull(peer, from, to).await?;
        if bodies.len() as u64 != to - from {
            return Err(PeerRejected::WrongCount {
                from,
                to,
                got: bodies.len(),
            });
        }
        let stager = shared.clone();
        range = tokio::task::spawn_blocking(move || {
            let mut range = range;
            stage_chunk(&stager.files, from, bodies, &mut range).map(|()| range)
        })
        .await
        .map_err(StateMachineError::Task)??;
        backfill.pulled(to - from);
        let seconds = started.elapsed().as_secs_f64();
        info!(
            peer = peer.id,
            staged = to,
            target = end,
            entries_per_second = ((to - start) as f64 / seconds.max(1e-6)).round(),
            "snapshot backfill progress"
        );
        from = to;
    }
    let tail = payload.clone();
    let expected = target.clone();
    let matches = tokio::task::spawn_blocking(move || {
        tail_matches(range, tail.leaves_from, &tail.leaves, &expected)
    })
    .await
    .map_err(StateMachineError::Task)??;
    if !matches {
        return Err(PeerRejected::RootMismatch {
            from: start,
            to: target.size(),
        });
    }
    Ok(())
}

/// Switch the applied state to the snapshot's in one fsynced batch: recent roots, checkpoint,
/// compact range, applied id, membership, the carried leaves and their identities, the stored
/// snapshot, and the end of staging (the staged records become part of the applied state).
/// Returns the payload size.
fn commit(
    shared: &Shared,
    meta: &SnapshotMeta<NodeId, NodeAddress>,
    payload: &SnapshotPayload,
    applied: u64,
    data: Vec<u8>,
) -> Result<u64, StateMachineError> {
    let _integration = shared.lock_integration()?;
    let mut state = shared.lock_state()?;
    let keyspace = shared.keyspace.as_ref();
    if state.tree.size() != applied {
        return Err(corrupt("applied state changed during a snapshot install"));
    }

    let mut batch = WriteBatch::new();
    for (key, _) in scan_prefix(keyspace, ROOT_PREFIX, usize::MAX)? {
        batch.delete(key);
    }
    for (size, root) in &payload.recent_roots {
        batch.put(index_key(ROOT_PREFIX, *size).to_vec(), root.to_vec());
    }
    // Carried leaves this node does not hold yet. Below `applied` this node has its own (equal,
    // as the root check showed) leaves and identities; from `applied` on, the staged and carried
    // bodies reproduced the snapshot's root, so their identities can now be recorded.
    let carried_from = applied.max(payload.leaves_from);
    let skip = (carried_from - payload.leaves_from) as usize;
    let carried = payload.leaves.get(skip..).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    for (offset, body) in carried.iter().enumerate() {
        let index = carried_from + offset as u64;
        let identity = identity_of(body);
        let earlier = shared
            .files
            .recorded(&identity)?
            .is_some_and(|first| first < applied);
        if earlier || !seen.insert(identity) {
            return Err(StateMachineError::Corrupt(format!(
                "snapshot leaf {index} repeats an earlier entry"
            )));
        }
    }
    shared.files.stage(carried_from, carried)?;
    shared
        .files
        .adopt_staged(applied..carried_from + carried.len() as u64)?;
    match &payload.checkpoint {
        Some(_) => batch.put(KEY_CHECKPOINT, codec::encode(&payload.checkpoint)?),
        None => batch.delete(KEY_CHECKPOINT),
    }
    // A snapshot from a build before keys were recorded carries none: keep ours, if any.
    if payload.log_key.is_some() {
        batch.put(KEY_LOG_KEY, codec::encode(&payload.log_key)?);
    }
    batch.put(KEY_TREE, payload.tree.clone());
    batch.put(KEY_APPLIED, codec::encode(&meta.last_log_id)?);
    batch.put(KEY_MEMBERSHIP, codec::encode(&meta.last_membership)?);
    let bytes = data.len() as u64;
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    // Snapshot first: if the process dies before the state switch below is durable, the open
    // finds a snapshot ahead of the applied state and drops it (`reconcile_stored`).
    store_snapshot(&shared.snapshot_path, &stored)?;
    keyspace.apply(batch)?;
    keyspace.flush()?;

    *state = load_state(keyspace)?;
    shared
        .applied_tx
        .send_replace(crate::state_machine::AppliedState {
            size: state.tree.size(),
            root: state.tree.root(),
            checkpoint_size: state.checkpoint.as_ref().map(|c| c.size),
        });
    Ok(bytes)
}

/// The stored current snapshot, if any. A stored snapshot of an older format is not offered
/// (no follower could install it); openraft then builds a new one.
pub(crate) fn current(path: &Path) -> Result<Option<Snapshot<TypeConfig>>, StateMachineError> {
    let stored = load_snapshot(path)?;
    Ok(stored.and_then(|s| {
        if s.data.first() != Some(&SNAPSHOT_FORMAT) {
            warn!(
                snapshot_id = %s.meta.snapshot_id,
                "stored snapshot has an old format; it will be rebuilt"
            );
            return None;
        }
        Some(Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        })
    }))
}

/// openraft's snapshot builder: runs [`build`] on a blocking thread.
pub struct SnapshotBuilder {
    shared: Arc<Shared>,
}

impl SnapshotBuilder {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || build(&shared))
            .await
            .map_err(StateMachineError::Task)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_one_payloads_are_rejected_not_misread() {
        let payload = SnapshotPayload {
            tree: CompactRange::new().to_bytes(),
            recent_roots: Vec::new(),
            checkpoint: None,
            leaves_from: 0,
            leaves: Vec::new(),
            log_key: None,
        };
        let mut bytes = encode_payload(&payload).unwrap();
        assert_eq!(decode_payload(&bytes).unwrap(), payload);
        bytes[0] = 1;
        assert!(matches!(
            decode_payload(&bytes),
            Err(StateMachineError::SnapshotFormat {
                found: 1,
                expected: SNAPSHOT_FORMAT
            })
        ));
        assert!(decode_payload(&[]).is_err());
    }

    /// The key rides after the payload: a reader of the payload alone (a build before keys were
    /// recorded) decodes the same payload, and a payload without a key decodes to `None`.
    #[test]
    fn the_log_key_trails_the_payload_and_old_payloads_have_none() {
        let mut payload = SnapshotPayload {
            tree: CompactRange::new().to_bytes(),
            recent_roots: vec![(3, [7; 32])],
            checkpoint: None,
            leaves_from: 0,
            leaves: vec![b"leaf".to_vec()],
            log_key: None,
        };
        let old = encode_payload(&payload).unwrap();
        assert_eq!(decode_payload(&old).unwrap().log_key, None);
        payload.log_key = Some(LogKey {
            origin: "log.example".into(),
            public_key: vec![1, 2, 3],
        });
        let new = encode_payload(&payload).unwrap();
        assert_eq!(decode_payload(&new).unwrap(), payload);
        let old_reader: SnapshotPayload = bincode_options(new.len() as u64)
            .deserialize(&new[1..])
            .unwrap();
        assert_eq!(old_reader.log_key, None);
        assert_eq!(old_reader.leaves, payload.leaves);
    }

    #[test]
    fn a_huge_length_prefix_is_an_error_not_an_allocation() {
        let mut bytes = vec![SNAPSHOT_FORMAT];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_payload(&bytes).is_err());
    }
}
