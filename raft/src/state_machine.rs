//! The replicated state machine of the log (DESIGN.md, "The replicated state machine", "Dedup").
//!
//! Applying a committed `Append` assigns indices deterministically from the committed order,
//! answers duplicates (by identity = SHA-256 of the canonical body) with the first index,
//! keeps each new body as an *unintegrated leaf* until this node's integrator has written it to
//! tiles, and extends the compact range so that every node knows the root after every batch
//! without reading a tile. The `(size, root)` of each batch boundary goes into a bounded
//! recent-roots table, against which `Publish` is checked: a checkpoint is recorded only if its
//! size does not go backwards and its root is the one the committed order implies. Every node
//! decides identically, so no checkpoint with a foreign root can ever be recorded.
//!
//! The log's identity (origin and public key, [`LogKey`]) is replicated state too: the first
//! accepted `SetLogKey` records it, and from then on a `Publish` is accepted only if its note
//! verifies under that key for exactly its size and root, so a member configured with another
//! key cannot get a checkpoint recorded. State written before the key existed has none: its
//! `Publish` entries keep the old rules (a replayed log decides as it did), and the first
//! `SetLogKey` is accepted only if it verifies the latest checkpoint already recorded.
//!
//! Layout of the `state_machine` keyspace:
//!
//! | key | value |
//! | --- | --- |
//! | `r` + BE size | root at that batch boundary |
//! | `m/applied`, `m/membership` | last applied log id, last membership |
//! | `m/tree` | compact range (`CompactRange::to_bytes`) |
//! | `m/checkpoint` | latest accepted checkpoint |
//! | `m/integrated` | local integrated size (not replicated) |
//! | `m/logkey` | the log's origin and public key, once recorded |
//!
//! The unintegrated leaf bodies and the identity index are files ([`crate::entry_files`]); an
//! identity record counts only if its index is below the applied size.
//!
//! Durability: one `apply` call is one atomic engine batch, including the applied log id and
//! membership, so the state and the applied id never diverge; its new leaf bodies are fsynced
//! before that batch is written. The batch is not fsynced: after a crash the state is some
//! earlier applied prefix, and openraft re-applies the committed log from there (the log is
//! durable and is only purged behind a snapshot, which is fsynced).

use std::collections::{HashMap, VecDeque};
use std::ops::{Bound, Range};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, Entry, EntryPayload, LogId, Snapshot, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use rekor_storage::merkle::{leaf_hash, CompactRange, Hash, EMPTY_ROOT};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::backfill::SnapshotBackfill;
use crate::codec::{self, CodecError};
use crate::engine::{index_key, EngineError, Keyspace, ScanOrder, WriteBatch};
use crate::entry_files::EntryFiles;
use crate::identity_index::IdentityIndexError;
use crate::leaf_hashes::RecentLeafHashes;
use crate::segments::SegmentError;
use crate::snapshot;
use crate::types::{
    identity_of, refusal_of, AppendOutcome, Command, CommandResponse, LogKey, NodeAddress, NodeId,
    SequencedEntry, TypeConfig,
};

/// Name of the engine keyspace that holds the state machine.
pub const STATE_MACHINE_KEYSPACE: &str = "state_machine";

/// How many batch boundaries the recent-roots table remembers. A `Publish` for an older size
/// is rejected; the publisher signs the current applied `(size, root)`, so only a checkpoint
/// delayed by more than this many batches is affected.
pub const RECENT_ROOTS: usize = 4096;

pub(crate) const ROOT_PREFIX: u8 = b'r';
pub(crate) const KEY_APPLIED: &[u8] = b"m/applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"m/membership";
pub(crate) const KEY_TREE: &[u8] = b"m/tree";
pub(crate) const KEY_CHECKPOINT: &[u8] = b"m/checkpoint";
pub(crate) const KEY_INTEGRATED: &[u8] = b"m/integrated";
pub(crate) const KEY_LOG_KEY: &[u8] = b"m/logkey";
/// The current snapshot as an engine record: the layout before snapshots became a file (removed
/// at open).
pub(crate) const KEY_SNAPSHOT: &[u8] = b"m/snapshot";

/// A state-machine failure, in the node's terms.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A stored record could not be decoded.
    #[error("corrupt state record: {0}")]
    Codec(#[from] CodecError),
    /// A stored value has an impossible shape.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// A leaf body asked for is not held here: already integrated and deleted, never applied,
    /// or below the start of an installed snapshot (fetch it from a peer).
    #[error("leaf {index} is not held by this node")]
    LeafMissing {
        /// The missing index.
        index: u64,
    },
    /// `mark_integrated` beyond the applied size.
    #[error("cannot mark {size} integrated: only {applied} leaves are applied")]
    BeyondApplied {
        /// Requested integrated size.
        size: u64,
        /// Applied size.
        applied: u64,
    },
    /// A panic happened while the state lock was held; the in-memory state is not trusted.
    #[error("state machine lock poisoned")]
    Poisoned,
    /// The leaf files failed; [`SegmentError::Poisoned`] means they must be reopened,
    /// [`SegmentError::Corrupt`] that their bytes are damaged.
    #[error("leaf files: {0}")]
    Leaves(#[from] SegmentError),
    /// The identity index files failed.
    #[error("identity index: {0}")]
    Identities(#[from] IdentityIndexError),
    /// A file of the state machine's own (the snapshot) failed.
    #[error("{op} {}: {source}", path.display())]
    File {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task failed to run.
    #[error("blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A snapshot payload of another format (format 1 carried the whole identity index).
    #[error("snapshot format {found} is not supported (this build reads format {expected}; format 1 carried the whole identity index and is no longer read)")]
    SnapshotFormat {
        /// The format byte found.
        found: u8,
        /// The format this build reads.
        expected: u8,
    },
    /// Installing the snapshot needs entry bodies from peers, but no backfill was configured.
    #[error("installing the snapshot needs entries {from}..{to} from peers, but this state machine has no snapshot backfill")]
    BackfillUnavailable {
        /// First missing index (this node's applied size).
        from: u64,
        /// The snapshot's integrated size.
        to: u64,
    },
    /// No peer served entry bodies that reproduce the snapshot's root; nothing was installed.
    #[error("no peer served entries {from}..{to} reproducing the snapshot's root: {failures}")]
    Backfill {
        /// First missing index.
        from: u64,
        /// The snapshot's integrated size.
        to: u64,
        /// What each peer did wrong.
        failures: String,
    },
    /// The snapshot is smaller than what this node has applied.
    #[error("snapshot of size {snapshot} is behind this node's applied size {applied}")]
    SnapshotBehind {
        /// The snapshot's tree size.
        snapshot: u64,
        /// This node's applied size.
        applied: u64,
    },
    /// This node's applied prefix plus the snapshot's leaves does not give the snapshot's root.
    #[error("this node's applied prefix of size {applied} does not lead to the snapshot's root")]
    SnapshotMismatch {
        /// This node's applied size.
        applied: u64,
    },
}

/// A checkpoint recorded by an accepted `Publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash at `size`.
    pub root: [u8; 32],
    /// The signed note text.
    pub text: String,
}

/// The applied state, broadcast through a `watch` after every apply and snapshot install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedState {
    /// Number of leaves applied.
    pub size: u64,
    /// Root of the tree of that size.
    pub root: [u8; 32],
    /// Size of the latest accepted checkpoint, if any.
    pub checkpoint_size: Option<u64>,
}

/// The in-memory mirror of the small state. Owned by [`Shared::state`]; mutated only by
/// `apply`, `install_snapshot` (holding the lock across the engine write) and loaded at open.
#[derive(Debug, Clone)]
pub(crate) struct SmState {
    pub(crate) applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, NodeAddress>,
    pub(crate) tree: CompactRange,
    /// Batch-boundary sizes in the recent-roots table, oldest first (≤ [`RECENT_ROOTS`]).
    pub(crate) recent_sizes: VecDeque<u64>,
    pub(crate) checkpoint: Option<PublishedCheckpoint>,
    /// The log's identity, once recorded.
    pub(crate) log_key: Option<LogKey>,
}

impl SmState {
    fn applied_state(&self) -> AppliedState {
        AppliedState {
            size: self.tree.size(),
            root: self.tree.root(),
            checkpoint_size: self.checkpoint.as_ref().map(|c| c.size),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) keyspace: Arc<dyn Keyspace>,
    /// Unintegrated leaf bodies and the identity index.
    pub(crate) files: EntryFiles,
    /// The current snapshot's file.
    pub(crate) snapshot_path: std::path::PathBuf,
    /// Held across every engine write that changes replicated state, and by the snapshot
    /// builder while it reads, so a snapshot is one consistent cut.
    pub(crate) state: Mutex<SmState>,
    /// Serialises `mark_integrated` calls (and excludes them from snapshot builds/installs).
    pub(crate) integration: Mutex<()>,
    pub(crate) applied_tx: watch::Sender<AppliedState>,
    /// Builds of this process, to make snapshot ids unique.
    pub(crate) snapshot_seq: std::sync::atomic::AtomicU64,
    /// The leaf hashes of the newest applied leaves, for the integrator.
    pub(crate) leaf_hashes: RecentLeafHashes,
}

impl Shared {
    pub(crate) fn lock_state(&self) -> Result<MutexGuard<'_, SmState>, StateMachineError> {
        self.state.lock().map_err(|_| StateMachineError::Poisoned)
    }

    pub(crate) fn lock_integration(&self) -> Result<MutexGuard<'_, ()>, StateMachineError> {
        self.integration
            .lock()
            .map_err(|_| StateMachineError::Poisoned)
    }
}

pub(crate) fn get_record<T: serde::de::DeserializeOwned>(
    keyspace: &dyn Keyspace,
    key: &[u8],
) -> Result<Option<T>, StateMachineError> {
    match keyspace.get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(codec::decode(&bytes)?)),
    }
}

fn decode_hash(bytes: &[u8]) -> Result<Hash, StateMachineError> {
    bytes
        .try_into()
        .map_err(|_| StateMachineError::Corrupt("root value is not 32 bytes".into()))
}

/// Load the small state from the engine (at open and after a snapshot install).
pub(crate) fn load_state(keyspace: &dyn Keyspace) -> Result<SmState, StateMachineError> {
    // Both are stored as `Option`s (a snapshot may carry `None`).
    let applied = get_record::<Option<LogId<NodeId>>>(keyspace, KEY_APPLIED)?.flatten();
    let membership = get_record(keyspace, KEY_MEMBERSHIP)?.unwrap_or_default();
    let tree = match keyspace.get(KEY_TREE)? {
        None => CompactRange::new(),
        Some(bytes) => CompactRange::from_bytes(&bytes)
            .map_err(|e| StateMachineError::Corrupt(format!("compact range: {e}")))?,
    };
    let checkpoint = get_record::<Option<PublishedCheckpoint>>(keyspace, KEY_CHECKPOINT)?.flatten();
    let rows = crate::engine::scan_prefix(keyspace, ROOT_PREFIX, usize::MAX)?;
    let recent_sizes = rows
        .iter()
        .map(|(k, _)| {
            crate::engine::parse_index_key(k)
                .ok_or_else(|| StateMachineError::Corrupt("recent-roots key".into()))
        })
        .collect::<Result<VecDeque<_>, _>>()?;
    let log_key = get_record::<Option<LogKey>>(keyspace, KEY_LOG_KEY)?.flatten();
    Ok(SmState {
        applied,
        membership,
        tree,
        recent_sizes,
        checkpoint,
        log_key,
    })
}

/// The root this state machine computed at `size`: the empty root, the current root, or a
/// batch boundary in the recent-roots table. `pending` holds boundaries of the apply call in
/// progress (not yet in the engine).
fn root_at(
    keyspace: &dyn Keyspace,
    tree: &CompactRange,
    pending: &[(u64, Hash)],
    size: u64,
) -> Result<Option<Hash>, StateMachineError> {
    if size == 0 {
        return Ok(Some(EMPTY_ROOT));
    }
    if size == tree.size() {
        return Ok(Some(tree.root()));
    }
    if let Some((_, root)) = pending.iter().find(|(s, _)| *s == size) {
        return Ok(Some(*root));
    }
    match keyspace.get(&index_key(ROOT_PREFIX, size))? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode_hash(&bytes)?)),
    }
}

/// Apply `entries` to a copy of `state`, collecting every change in one batch. The caller
/// writes the batch and, if that succeeds, adopts the returned state.
fn apply_entries(
    keyspace: &dyn Keyspace,
    files: &EntryFiles,
    state: &SmState,
    entries: Vec<Entry<TypeConfig>>,
) -> Result<(SmState, Applied), StateMachineError> {
    let mut next = state.clone();
    let mut batch = WriteBatch::new();
    let mut leaves = NewLeaves::default();
    // Identity records at or beyond this are not answers (see the module docs); the ones this
    // call logs are found in `fresh`.
    let applied_before = state.tree.size();
    let mut responses = Vec::with_capacity(entries.len());
    // Identities logged earlier in this apply call (not yet in the engine).
    let mut fresh: HashMap<[u8; 32], u64> = HashMap::new();
    // Batch boundaries recorded in this call.
    let mut boundaries: Vec<(u64, Hash)> = Vec::new();
    let mut checkpoint_changed = false;
    let mut log_key_changed = false;

    for entry in entries {
        next.applied = Some(entry.log_id);
        let response = match entry.payload {
            EntryPayload::Blank => CommandResponse::Empty,
            EntryPayload::Membership(membership) => {
                next.membership = StoredMembership::new(Some(entry.log_id), membership);
                CommandResponse::Empty
            }
            EntryPayload::Normal(Command::Append { .. }) if is_frozen(&next) => {
                CommandResponse::Frozen
            }
            EntryPayload::Normal(Command::Append { entries }) => {
                let outcomes = apply_append(
                    files,
                    applied_before,
                    &mut next,
                    &mut leaves,
                    &mut fresh,
                    entries,
                )?;
                boundaries.push((next.tree.size(), next.tree.root()));
                CommandResponse::Appended(outcomes)
            }
            EntryPayload::Normal(Command::Publish {
                size,
                root,
                checkpoint,
            }) => {
                let not_backwards = next.checkpoint.as_ref().is_none_or(|c| size >= c.size);
                // Without a recorded key (state from before keys were recorded) the old rules
                // hold, so a replayed log decides as it did.
                let signed = next
                    .log_key
                    .as_ref()
                    .is_none_or(|key| key.verifies(&checkpoint, size, &root));
                if !signed {
                    tracing::warn!(
                        size,
                        "Publish rejected: the checkpoint does not verify under the log's recorded key"
                    );
                }
                let accepted = not_backwards
                    && signed
                    && !is_frozen(&next)
                    && root_at(keyspace, &next.tree, &boundaries, size)? == Some(root);
                if accepted {
                    next.checkpoint = Some(PublishedCheckpoint {
                        size,
                        root,
                        text: checkpoint,
                    });
                    checkpoint_changed = true;
                }
                CommandResponse::Published { accepted }
            }
            EntryPayload::Normal(Command::SetLogKey(key)) => {
                let accepted = log_key_acceptable(&next, &key);
                if accepted && next.log_key.is_none() {
                    tracing::info!(log_key = %key, "log key recorded");
                    next.log_key = Some(key);
                    log_key_changed = true;
                } else if !accepted {
                    tracing::warn!(log_key = %key, "SetLogKey rejected");
                }
                CommandResponse::LogKeySet { accepted }
            }
        };
        responses.push(response);
    }

    // The recent-roots table: add this call's boundaries, drop the oldest beyond the bound.
    for (size, root) in boundaries {
        if next.recent_sizes.back() == Some(&size) {
            continue; // an empty Append: same boundary as before
        }
        batch.put(index_key(ROOT_PREFIX, size).to_vec(), root.to_vec());
        next.recent_sizes.push_back(size);
    }
    while next.recent_sizes.len() > RECENT_ROOTS {
        if let Some(old) = next.recent_sizes.pop_front() {
            batch.delete(index_key(ROOT_PREFIX, old).to_vec());
        }
    }

    batch.put(KEY_APPLIED, codec::encode(&next.applied)?);
    batch.put(KEY_MEMBERSHIP, codec::encode(&next.membership)?);
    batch.put(KEY_TREE, next.tree.to_bytes());
    if checkpoint_changed {
        batch.put(KEY_CHECKPOINT, codec::encode(&next.checkpoint)?);
    }
    if log_key_changed {
        batch.put(KEY_LOG_KEY, codec::encode(&next.log_key)?);
    }
    Ok((
        next,
        Applied {
            batch,
            leaves,
            responses,
        },
    ))
}

/// What one apply call writes.
struct Applied {
    /// The engine batch of the small state.
    batch: WriteBatch,
    /// The leaves it logged.
    leaves: NewLeaves,
    responses: Vec<CommandResponse>,
}

/// Leaves logged by one apply call, in index order from `first`.
#[derive(Default)]
struct NewLeaves {
    first: Option<u64>,
    bodies: Vec<Vec<u8>>,
    /// `leaf_hash` of each body, computed once for the compact range and kept for the
    /// integrator ([`RecentLeafHashes`]).
    hashes: Vec<Hash>,
}

/// Whether `key` may be (or already is) the log's key: equal to the recorded one; or, with none
/// recorded, a parseable key that verifies the latest checkpoint recorded before keys were (if
/// any), so an upgraded log keeps the key its checkpoints were signed with.
fn log_key_acceptable(state: &SmState, key: &LogKey) -> bool {
    match &state.log_key {
        Some(recorded) => recorded == key,
        None => {
            key.verifier().is_ok()
                && state
                    .checkpoint
                    .as_ref()
                    .is_none_or(|checkpoint| key.signed(&checkpoint.text))
        }
    }
}

/// Whether the latest accepted checkpoint carries the frozen marker line (rekor-v2-api.md §11.5):
/// a sealed log accepts no more entries and no more checkpoints. Derived from the committed
/// checkpoint text, so every node decides the same without extra persisted state.
fn is_frozen(state: &SmState) -> bool {
    state.checkpoint.as_ref().is_some_and(|checkpoint| {
        rekor_storage::note::Note::parse(checkpoint.text.as_bytes())
            .ok()
            .and_then(|note| rekor_storage::checkpoint::Checkpoint::parse_body(&note.text).ok())
            .is_some_and(|body| body.is_frozen())
    })
}

fn apply_append(
    files: &EntryFiles,
    applied_before: u64,
    next: &mut SmState,
    leaves: &mut NewLeaves,
    fresh: &mut HashMap<[u8; 32], u64>,
    entries: Vec<SequencedEntry>,
) -> Result<Vec<AppendOutcome>, StateMachineError> {
    let mut outcomes = Vec::with_capacity(entries.len());
    for entry in entries {
        // An entry no integrator could write would stop every node's integrator at it for good
        // (the entry-bundle record length is a u16). Refused from its bytes alone, so every node
        // refuses the same entries: it takes no index and leaves no identity record.
        if let Some(reason) = refusal_of(&entry.body) {
            tracing::warn!(%reason, "Append entry refused");
            outcomes.push(AppendOutcome::Refused { reason });
            continue;
        }
        // The identity is recomputed rather than trusted: dedup is the state machine's
        // authority (DESIGN.md, "Dedup"), and a proposer's wrong identity must not make two
        // different bodies collide or one body log twice. Every node computes the same.
        let identity = identity_of(&entry.body);
        if identity != entry.identity {
            tracing::warn!(
                index = next.tree.size(),
                "Append entry carried a wrong identity; using SHA-256 of its body"
            );
        }
        let index = next.tree.size();
        // One probe looks the identity up and, if it is new, records it at `index`. A record at
        // or beyond the applied size is a leftover of an apply lost in a crash, not an answer.
        let known = match fresh.get(&identity) {
            Some(first) => Some(*first),
            None => files.claim(&identity, index, applied_before)?,
        };
        if let Some(index) = known {
            outcomes.push(AppendOutcome::Duplicate { index });
            continue;
        }
        let hash = leaf_hash(&entry.body);
        next.tree
            .append(hash)
            .map_err(|e| StateMachineError::Corrupt(format!("compact range: {e}")))?;
        fresh.insert(identity, index);
        leaves.first.get_or_insert(index);
        leaves.bodies.push(entry.body);
        leaves.hashes.push(hash);
        outcomes.push(AppendOutcome::Logged { index });
    }
    Ok(outcomes)
}

fn sm_err(e: StateMachineError) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn sm_read_err(e: StateMachineError) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::new(&e)).into()
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

/// The state machine store handed to `Raft::new`. Use [`StateMachineStore::reader`] for the
/// node's reads.
pub struct StateMachineStore {
    shared: Arc<Shared>,
    /// Where a snapshot install pulls the bodies below the snapshot from.
    backfill: Option<Arc<dyn SnapshotBackfill>>,
}

impl StateMachineStore {
    /// Open the state machine on `keyspace` (normally [`STATE_MACHINE_KEYSPACE`]) with its
    /// leaf and identity files under `dir`.
    ///
    /// Leaves staged by a snapshot install that did not finish are dropped first.
    pub fn open(keyspace: Arc<dyn Keyspace>, dir: &Path) -> Result<Self, StateMachineError> {
        let state = load_state(keyspace.as_ref())?;
        let integrated = get_record(keyspace.as_ref(), KEY_INTEGRATED)?.unwrap_or(0);
        let files = EntryFiles::open(dir)?;
        files.recover(keyspace.as_ref(), state.tree.size(), integrated)?;
        let snapshot_path = dir.join(snapshot::SNAPSHOT_FILE);
        snapshot::reconcile_stored(keyspace.as_ref(), &snapshot_path, state.applied)?;
        let (applied_tx, _) = watch::channel(state.applied_state());
        Ok(Self {
            shared: Arc::new(Shared {
                keyspace,
                files,
                snapshot_path,
                state: Mutex::new(state),
                integration: Mutex::new(()),
                applied_tx,
                snapshot_seq: std::sync::atomic::AtomicU64::new(0),
                leaf_hashes: RecentLeafHashes::default(),
            }),
            backfill: None,
        })
    }

    /// Pull entry bodies through `backfill` when a snapshot install needs them (a node that
    /// has applied fewer leaves than the snapshot's integrated size). Without one, such an
    /// install fails with [`StateMachineError::BackfillUnavailable`].
    pub fn with_backfill(mut self, backfill: Arc<dyn SnapshotBackfill>) -> Self {
        self.backfill = Some(backfill);
        self
    }

    /// A cheap, cloneable read handle for other tasks (never blocks RaftCore).
    pub fn reader(&self) -> StateReader {
        StateReader {
            shared: self.shared.clone(),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = snapshot::SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeAddress>), StorageError<NodeId>>
    {
        let state = self.shared.lock_state().map_err(sm_read_err)?;
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let shared = self.shared.clone();
        blocking(move || {
            let mut state = shared.lock_state()?;
            // Leaves beyond the applied size can only be left by a failed earlier call.
            shared.files.discard_beyond(state.tree.size())?;
            let (next, applied) =
                apply_entries(shared.keyspace.as_ref(), &shared.files, &state, entries)?;
            let Applied {
                batch,
                leaves,
                responses,
            } = applied;
            if let Some(first) = leaves.first {
                shared.files.append(first, &leaves.bodies)?;
            }
            shared.keyspace.apply(batch)?;
            // Only once the apply took: a failed one leaves bodies the next apply discards.
            if let Some(first) = leaves.first {
                shared.leaf_hashes.record(first, &leaves.hashes);
            }
            *state = next;
            shared.applied_tx.send_replace(state.applied_state());
            Ok(responses)
        })
        .await
        .map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        snapshot::SnapshotBuilder::new(self.shared.clone())
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeAddress>,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        snapshot::install(
            self.shared.clone(),
            self.backfill.clone(),
            meta.clone(),
            data,
        )
        .await
        .map(|_report| ())
        .map_err(|e| {
            tracing::error!(error = %e, "snapshot install failed");
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
        })
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let shared = self.shared.clone();
        blocking(move || snapshot::current(&shared.snapshot_path))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, AnyError::new(&e)).into())
    }
}

/// Read access to the applied state for the node (integrator, request handlers, publisher).
///
/// Point reads go straight to the engine and are cheap; [`StateReader::leaves`] and
/// [`StateReader::mark_integrated`] run on blocking threads.
#[derive(Clone)]
pub struct StateReader {
    shared: Arc<Shared>,
}

impl StateReader {
    /// The applied size, root and latest checkpoint size.
    pub fn applied(&self) -> AppliedState {
        *self.shared.applied_tx.borrow()
    }

    /// A `watch` of the applied state, updated after every apply and snapshot install. Clone
    /// out of `borrow()` at once; never hold the guard across an await.
    pub fn subscribe(&self) -> watch::Receiver<AppliedState> {
        self.shared.applied_tx.subscribe()
    }

    /// The root computed at `size`, if `size` is 0, the current size, or a recent batch
    /// boundary.
    pub fn root_at(&self, size: u64) -> Result<Option<[u8; 32]>, StateMachineError> {
        let tree = self.shared.lock_state()?.tree.clone();
        root_at(self.shared.keyspace.as_ref(), &tree, &[], size)
    }

    /// Batch-boundary sizes in `(after, up_to]` that the recent-roots table still holds,
    /// ascending. The integrator ends its steps exactly there, so every node writes partial
    /// tiles at the same sizes and any checkpoint (always at a boundary) is backed by identical
    /// tiles on every node.
    pub fn batch_boundaries(&self, after: u64, up_to: u64) -> Result<Vec<u64>, StateMachineError> {
        if up_to <= after {
            return Ok(Vec::new());
        }
        let lower = index_key(ROOT_PREFIX, after.saturating_add(1));
        let upper = index_key(ROOT_PREFIX, up_to);
        let rows = self.shared.keyspace.scan(
            Bound::Included(&lower[..]),
            Bound::Included(&upper[..]),
            ScanOrder::Ascending,
            usize::MAX,
        )?;
        Ok(rows
            .iter()
            .filter_map(|(key, _)| crate::engine::parse_index_key(key))
            .collect())
    }

    /// The log's recorded identity (origin and public key), if one was recorded.
    pub fn log_key(&self) -> Result<Option<LogKey>, StateMachineError> {
        Ok(self.shared.lock_state()?.log_key.clone())
    }

    /// The latest accepted checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<PublishedCheckpoint>, StateMachineError> {
        Ok(self.shared.lock_state()?.checkpoint.clone())
    }

    /// The index at which the entry with `identity` was logged (only indices below the
    /// applied size count: see the module docs).
    pub fn lookup_identity(&self, identity: &[u8; 32]) -> Result<Option<u64>, StateMachineError> {
        let applied = self.applied().size;
        self.shared.files.lookup(identity, applied)
    }

    /// Identities in the identity index (for a metric).
    pub fn identity_count(&self) -> u64 {
        self.shared.files.identity_count()
    }

    /// Bytes of the leaf and identity files (for a metric).
    pub fn entry_files_bytes(&self) -> u64 {
        self.shared.files.size_on_disk()
    }

    /// This node's durable integrated size (0 if never set).
    pub fn integrated_size(&self) -> Result<u64, StateMachineError> {
        Ok(get_record(self.shared.keyspace.as_ref(), KEY_INTEGRATED)?.unwrap_or(0))
    }

    /// The unintegrated leaf bodies `range.start..range.end`, in index order. Fails with
    /// [`StateMachineError::LeafMissing`] for a body that is not held (integrated and deleted,
    /// not yet applied, or below an installed snapshot's first leaf).
    pub async fn leaves(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, StateMachineError> {
        let reader = self.clone();
        blocking(move || reader.leaves_now(range)).await
    }

    /// [`Self::leaves`] on the calling thread (it blocks on file reads). For a caller that owns a
    /// thread of its own, such as the integrator: the bodies are allocated, and freed, on that
    /// thread rather than on whichever blocking-pool thread ran the read, which keeps the
    /// allocator from growing one arena per pool thread to the size of a step.
    pub fn leaves_now(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, StateMachineError> {
        self.shared.files.read(range)
    }

    /// The leaf hashes of leaves `range`, if this process applied every one of them lately
    /// (computed from the bodies [`Self::leaves_now`] returns); `None` otherwise, and the caller
    /// hashes the bodies itself. Saves the integrator a second pass over each body.
    pub fn recent_leaf_hashes(&self, range: Range<u64>) -> Option<Vec<Hash>> {
        self.shared.leaf_hashes.get(range)
    }

    /// Record that this node's integrator has durably written every leaf below `size` to its
    /// tile store, then forget those bodies. Local, not replicated.
    ///
    /// The integrated size is fsynced before any body is forgotten: a crash in between leaves
    /// bodies that are already integrated (forgotten by the next call), never a body gone
    /// whose tiles the node does not know it wrote. A smaller `size` than the stored one is
    /// ignored. Bodies above the identity index's durable watermark are kept (see
    /// [`crate::entry_files`]).
    pub async fn mark_integrated(&self, size: u64) -> Result<(), StateMachineError> {
        let shared = self.shared.clone();
        blocking(move || {
            let _serial = shared.lock_integration()?;
            let applied = shared.lock_state()?.tree.size();
            if size > applied {
                return Err(StateMachineError::BeyondApplied { size, applied });
            }
            let keyspace = shared.keyspace.as_ref();
            let previous: u64 = get_record(keyspace, KEY_INTEGRATED)?.unwrap_or(0);
            if size <= previous {
                return Ok(());
            }
            let mut mark = WriteBatch::new();
            mark.put(KEY_INTEGRATED, codec::encode(&size)?);
            keyspace.apply(mark)?;
            keyspace.flush()?;
            shared.files.integrated(size, applied)?;
            Ok(())
        })
        .await
    }
}
