//! Raft snapshots of the state machine: for now the whole replicated state except leaf bodies
//! this node has already integrated (DESIGN.md, "Snapshots and catch-up").
//!
//! A snapshot carries the compact range, the recent-roots table, the latest checkpoint, the
//! complete identity index (so dedup stays exact after an install, DESIGN.md "Dedup") and the
//! unintegrated leaf bodies `leaves_from..size`; the applied log id and membership travel in
//! openraft's `SnapshotMeta`. It is bincode-encoded behind a version byte.
//!
//! Known limit: the identity index grows with the log, so this snapshot is monolithic. It is
//! kept in its own module so it can be replaced by a small snapshot plus entry-bundle pulls
//! from peers. A node that installs a snapshot whose `leaves_from` is above its own integrated
//! size lacks those bodies ([`crate::state_machine::StateMachineError::LeafMissing`]) and must
//! fetch them from a peer's read API.

use std::io::Cursor;
use std::ops::Bound;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::{
    AnyError, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
};
use rekor_storage::merkle::CompactRange;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::engine::{index_key, parse_index_key, KeyValue, Keyspace, ScanOrder, WriteBatch};
use crate::state_machine::{
    get_record, identity_key, load_state, PublishedCheckpoint, Shared, StateMachineError,
    IDENTITY_PREFIX, KEY_APPLIED, KEY_CHECKPOINT, KEY_INTEGRATED, KEY_MEMBERSHIP, KEY_SNAPSHOT,
    KEY_TREE, LEAF_PREFIX, ROOT_PREFIX,
};
use crate::types::{NodeAddress, NodeId, TypeConfig};

/// The snapshot body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SnapshotPayload {
    /// `CompactRange::to_bytes`.
    tree: Vec<u8>,
    /// The recent-roots table, oldest first.
    recent_roots: Vec<(u64, [u8; 32])>,
    checkpoint: Option<PublishedCheckpoint>,
    /// Every identity and the index it was logged at.
    identities: Vec<([u8; 32], u64)>,
    /// Index of `leaves[0]`.
    leaves_from: u64,
    /// Bodies `leaves_from..size`.
    leaves: Vec<Vec<u8>>,
}

/// The stored current snapshot: its metadata and its bytes.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, NodeAddress>,
    data: Vec<u8>,
}

fn scan_prefix(keyspace: &dyn Keyspace, prefix: u8) -> Result<Vec<KeyValue>, StateMachineError> {
    let lower = [prefix];
    let upper = [prefix + 1];
    Ok(keyspace.scan(
        Bound::Included(&lower[..]),
        Bound::Excluded(&upper[..]),
        ScanOrder::Ascending,
        usize::MAX,
    )?)
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

    let mut recent_roots = Vec::with_capacity(state.recent_sizes.len());
    for (key, value) in scan_prefix(keyspace, ROOT_PREFIX)? {
        let size = parse_index_key(&key).ok_or_else(|| corrupt("recent-roots key"))?;
        let root: [u8; 32] = value
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("recent-roots value"))?;
        recent_roots.push((size, root));
    }
    let mut identities = Vec::new();
    for (key, value) in scan_prefix(keyspace, IDENTITY_PREFIX)? {
        let identity: [u8; 32] = key
            .get(1..)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| corrupt("identity key"))?;
        let index: [u8; 8] = value
            .as_slice()
            .try_into()
            .map_err(|_| corrupt("identity value"))?;
        identities.push((identity, u64::from_be_bytes(index)));
    }
    let size = state.tree.size();
    let integrated: u64 = get_record(keyspace, KEY_INTEGRATED)?.unwrap_or(0);
    // Bodies are held from this node's integrated size, or, right after this node installed a
    // snapshot itself, only from that snapshot's first leaf (the rest it pulls from peers).
    let mut leaves_from = integrated.min(size);
    let mut leaves = Vec::new();
    for (key, body) in scan_prefix(keyspace, LEAF_PREFIX)? {
        let index = parse_index_key(&key).ok_or_else(|| corrupt("leaf key"))?;
        if index < leaves_from {
            continue; // integrated, awaiting deletion
        }
        if leaves.is_empty() {
            leaves_from = index;
        }
        if index != leaves_from + leaves.len() as u64 {
            return Err(StateMachineError::LeafMissing {
                index: leaves_from + leaves.len() as u64,
            });
        }
        leaves.push(body);
    }
    if leaves.is_empty() {
        leaves_from = size;
    }
    if leaves_from + leaves.len() as u64 != size {
        return Err(StateMachineError::LeafMissing {
            index: leaves_from + leaves.len() as u64,
        });
    }
    let payload = SnapshotPayload {
        tree: state.tree.to_bytes(),
        recent_roots,
        checkpoint: state.checkpoint.clone(),
        identities,
        leaves_from,
        leaves,
    };
    let data = codec::encode(&payload)?;
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
    let mut batch = WriteBatch::new();
    batch.put(KEY_SNAPSHOT, codec::encode(&stored)?);
    keyspace.apply(batch)?;
    keyspace.flush()?;
    Ok(Snapshot {
        meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    })
}

/// Replace the whole state with the snapshot, atomically (one batch) and durably (fsync), then
/// reload the in-memory state and notify watchers.
pub(crate) fn install(
    shared: &Shared,
    meta: &SnapshotMeta<NodeId, NodeAddress>,
    data: Vec<u8>,
) -> Result<(), StateMachineError> {
    let payload: SnapshotPayload = codec::decode(&data)?;
    let tree = CompactRange::from_bytes(&payload.tree)
        .map_err(|e| StateMachineError::Corrupt(format!("snapshot compact range: {e}")))?;
    if payload.leaves_from + payload.leaves.len() as u64 != tree.size() {
        return Err(corrupt("snapshot leaves do not end at the tree size"));
    }

    let _integration = shared.lock_integration()?;
    let mut state = shared.lock_state()?;
    let keyspace = shared.keyspace.as_ref();

    let mut batch = WriteBatch::new();
    // Drop every replicated record; keep this node's integrated size (local).
    for prefix in [LEAF_PREFIX, IDENTITY_PREFIX, ROOT_PREFIX] {
        for (key, _) in scan_prefix(keyspace, prefix)? {
            batch.delete(key);
        }
    }
    batch.delete(KEY_CHECKPOINT);
    for (identity, index) in &payload.identities {
        batch.put(
            identity_key(identity).to_vec(),
            index.to_be_bytes().to_vec(),
        );
    }
    for (size, root) in &payload.recent_roots {
        batch.put(index_key(ROOT_PREFIX, *size).to_vec(), root.to_vec());
    }
    for (offset, body) in payload.leaves.iter().enumerate() {
        let index = payload.leaves_from + offset as u64;
        batch.put(index_key(LEAF_PREFIX, index).to_vec(), body.clone());
    }
    if payload.checkpoint.is_some() {
        batch.put(KEY_CHECKPOINT, codec::encode(&payload.checkpoint)?);
    }
    batch.put(KEY_TREE, payload.tree.clone());
    batch.put(KEY_APPLIED, codec::encode(&meta.last_log_id)?);
    batch.put(KEY_MEMBERSHIP, codec::encode(&meta.last_membership)?);
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    batch.put(KEY_SNAPSHOT, codec::encode(&stored)?);
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
    Ok(())
}

/// The stored current snapshot, if any.
pub(crate) fn current(
    keyspace: &dyn Keyspace,
) -> Result<Option<Snapshot<TypeConfig>>, StateMachineError> {
    let stored: Option<StoredSnapshot> = get_record(keyspace, KEY_SNAPSHOT)?;
    Ok(stored.map(|s| Snapshot {
        meta: s.meta,
        snapshot: Box::new(Cursor::new(s.data)),
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
            .map_err(|e| StateMachineError::Task(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)).into())
    }
}
