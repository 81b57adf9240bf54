//! The node's implementation of the API crate's `LogBackend`: the glue between an HTTP request and
//! the replicated log.
//!
//! `submit`: exact-dedup fast path → pushback check → sequence (locally on the leader, otherwise
//! forwarded to the leader over the internal listener) → wait until this node serves a committed
//! checkpoint covering the index → inclusion proof from this node's own tiles at that size.
//! Reads are served from this node's tile store, never beyond its served checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use bytes::Bytes;
use rekor_api::backend::{
    BoxFuture, LogBackend, LoggedEntry, ReadError, StoredEntry, SubmitError, TileRequest,
    ValidatedEntry,
};
use rekor_raft::types::{AppendOutcome, NodeAddress, Raft, SequencedEntry};
use rekor_raft::StateReader;
use rekor_storage::tile_store::TileStore;
use rekor_storage::tiles::TilePath;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::metrics::NodeMetrics;
use crate::sequencer::{Sequence, SequenceError, Sequencer};
use crate::served::{CoverageWaiters, Served, ServedCheckpoint};
use rekor_storage::proof::HashedTileCache;

/// Everything `submit` and the read routes need. Shared by every HTTP worker.
pub struct NodeBackend {
    pub node_id: u64,
    pub raft: Raft,
    pub state_machine: StateReader,
    pub store: Arc<TileStore>,
    pub served: watch::Receiver<Served>,
    /// Requests waiting for a checkpoint to cover their entry.
    pub coverage: CoverageWaiters,
    pub sequencer: Addr<Sequencer>,
    /// Admission control (503 pushback).
    pub pushback: crate::pushback::Pushback,
    /// Sends entries to the leader in batches when this node follows.
    pub forwarder: crate::forwarder::Forwarder,
    pub submit_timeout: Duration,
    pub read_only: bool,
    pub metrics: NodeMetrics,
    /// Tiles with their inner nodes hashed, shared by every proof built here.
    pub hashed_tiles: Arc<HashedTileCache>,
    /// The `/healthz` checks.
    pub readiness: crate::readiness::ReadinessProbe,
}

/// Checks a duplicate answer against this node's own state: the identity must be recorded at
/// `claimed`. A leader (or a forwarding path) that answers with another index is lying or broken,
/// and the client must not be pointed at someone else's entry.
fn confirm_duplicate(
    state: &StateReader,
    identity: &[u8; 32],
    claimed: u64,
) -> Result<(), SubmitError> {
    match state.lookup_identity(identity) {
        Ok(Some(index)) if index == claimed => Ok(()),
        Ok(found) => {
            tracing::error!(
                claimed,
                ?found,
                "a duplicate answer names an index this node's state does not hold for the entry"
            );
            Err(SubmitError::Internal(format!(
                "duplicate of index {claimed} not confirmed by this node's state (found {found:?})"
            )))
        }
        Err(e) => Err(SubmitError::Internal(e.to_string())),
    }
}

/// Hashed tiles kept for proof building: each is ~16 KiB, so this is at most ~32 MiB.
pub const HASHED_TILE_CACHE_TILES: usize = 1024;

impl NodeBackend {
    fn is_frozen(&self) -> bool {
        self.read_only
            || self
                .served
                .borrow()
                .checkpoint
                .as_ref()
                .is_some_and(|checkpoint| checkpoint.frozen)
    }

    /// The current leader and its address. Called on every write: it reads the metrics in place
    /// rather than cloning them (their replication map and membership allocate).
    fn leader(&self) -> Option<(u64, NodeAddress)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .clone();
        Some((leader, node))
    }

    /// Sequences `entry` on the leader, retrying across leader changes until `deadline`.
    async fn sequence(
        &self,
        entry: SequencedEntry,
        deadline: Instant,
    ) -> Result<AppendOutcome, SubmitError> {
        let mut raft_metrics = self.raft.metrics();
        loop {
            let attempt = match self.leader() {
                Some((leader, _)) if leader == self.node_id => {
                    match self.sequencer.send(Sequence(entry.clone())).await {
                        Ok(result) => result,
                        Err(e) => Err(SequenceError::Raft(e.to_string())),
                    }
                }
                Some((leader, node)) => self.forward(leader, &node, &entry).await,
                None => Err(SequenceError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(outcome) => return Ok(outcome),
                Err(SequenceError::Frozen) => return Err(SubmitError::Frozen),
                // This node validated the entry, yet the leader or the state machine refuses
                // it: a server-side disagreement (configuration, version), not the client's
                // fault, and retrying cannot change the verdict.
                Err(SequenceError::Refused(reason)) => {
                    warn!(%reason, "the log refused a validated entry");
                    return Err(SubmitError::Internal(format!("entry refused: {reason}")));
                }
                Err(SequenceError::Overloaded) => {
                    self.metrics.pushback_total.inc();
                    return Err(SubmitError::Overloaded);
                }
                Err(error) => {
                    debug!(%error, "sequencing attempt failed");
                    if Instant::now() >= deadline {
                        return Err(SubmitError::Unavailable(format!(
                            "no leader accepted the entry: {error}"
                        )));
                    }
                    // Wait for a leadership change (or a short pause), then try again.
                    let pause = deadline
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(200));
                    let _ = tokio::time::timeout(pause, raft_metrics.changed()).await;
                }
            }
        }
    }

    async fn forward(
        &self,
        leader: u64,
        node: &NodeAddress,
        entry: &SequencedEntry,
    ) -> Result<AppendOutcome, SequenceError> {
        self.forwarder.forward(leader, node, entry.clone()).await
    }

    async fn wait_covering(
        &self,
        index: u64,
        deadline: Instant,
    ) -> Result<ServedCheckpoint, SubmitError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.coverage
            .wait_covering(index, remaining)
            .await
            .ok_or_else(|| {
                SubmitError::Unavailable(format!(
                    "no checkpoint covering index {index} within the submit timeout"
                ))
            })
    }

    async fn submit_entry(&self, entry: ValidatedEntry) -> Result<LoggedEntry, SubmitError> {
        if self.is_frozen() {
            return Err(SubmitError::Frozen);
        }
        let deadline = Instant::now() + self.submit_timeout;
        let identity = entry.identity;
        // Fast path for exact duplicates; the state machine remains the authority.
        let known = self
            .state_machine
            .lookup_identity(&entry.identity)
            .map_err(|e| SubmitError::Internal(e.to_string()))?;
        let outcome = match known {
            Some(index) => AppendOutcome::Duplicate { index },
            None => {
                let Some(_admission) = self.pushback.try_admit() else {
                    self.metrics.pushback_total.inc();
                    return Err(SubmitError::Overloaded);
                };
                let sequenced = SequencedEntry {
                    body: entry.canonical_body,
                    identity: entry.identity,
                };
                self.sequence(sequenced, deadline).await?
            }
        };
        let Some(index) = outcome.index() else {
            // `sequence` turns a refusal into an error; this is only a safety net.
            return Err(SubmitError::Internal("entry refused by the log".into()));
        };
        let checkpoint = self.wait_covering(index, deadline).await?;
        if let AppendOutcome::Duplicate { index } = outcome {
            // The leader said "duplicate of `index`"; this node has applied past `index` now
            // (it serves a checkpoint covering it), so its own identity index must agree before
            // the client is sent to that index.
            confirm_duplicate(&self.state_machine, &identity, index)?;
            self.metrics.dedup_hits_total.inc();
            return Err(SubmitError::Duplicate { log_index: index });
        }
        let inclusion_proof = self
            .inclusion_proof(index, checkpoint.size)
            .await
            .map_err(|e| {
            warn!(index, size = checkpoint.size, error = %e, "building an inclusion proof failed");
            self.metrics
                .storage_errors_total
                .with_label_values(&["inclusion_proof"])
                .inc();
            SubmitError::Internal(e.to_string())
        })?;
        Ok(LoggedEntry {
            log_index: index,
            tree_size: checkpoint.size,
            root_hash: checkpoint.root,
            inclusion_proof,
            checkpoint: checkpoint.text.to_string(),
        })
    }

    /// The entry at `index` with its proof in the tree of the served checkpoint, from this
    /// node's own tiles (no Raft round trip).
    async fn read_entry(&self, index: u64) -> Result<Option<StoredEntry>, ReadError> {
        let Some(checkpoint) = self.served.borrow().checkpoint.clone() else {
            return Ok(None);
        };
        let Some((bundle, position)) = rekor_api::bundle_holding(index, checkpoint.size) else {
            return Ok(None);
        };
        let bytes = self
            .read_tile(bundle)
            .await?
            .ok_or_else(|| ReadError::Storage(format!("bundle {bundle} is missing")))?;
        let (kind, canonical_body) = rekor_api::entry_in_bundle(&bytes, position)?;
        let inclusion_proof = self
            .inclusion_proof(index, checkpoint.size)
            .await
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        Ok(Some(StoredEntry {
            kind,
            canonical_body,
            logged: LoggedEntry {
                log_index: index,
                tree_size: checkpoint.size,
                root_hash: checkpoint.root,
                inclusion_proof,
                checkpoint: checkpoint.text.to_string(),
            },
        }))
    }

    /// The inclusion proof of `index` at `size` from this node's tiles
    /// ([`inclusion_proof_from_store`]).
    async fn inclusion_proof(&self, index: u64, size: u64) -> anyhow::Result<Vec<[u8; 32]>> {
        inclusion_proof_from_store(&self.store, &self.served, &self.hashed_tiles, index, size).await
    }

    /// The size of the checkpoint this node serves (0 before the first): no tile or bundle
    /// beyond it is served.
    pub(crate) fn served_size(&self) -> u64 {
        self.served
            .borrow()
            .checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.size)
    }

    pub(crate) async fn read_tile(&self, request: TileRequest) -> Result<Option<Bytes>, ReadError> {
        if !request.is_within(self.served_size()) {
            return Ok(None);
        }
        let served = self.served.borrow().clone();
        crate::partials::read_object(&self.store, &served, request.0)
            .await
            .map_err(|e| ReadError::Storage(e.to_string()))
    }
}

impl LogBackend for NodeBackend {
    fn readiness(&self) -> BoxFuture<'_, rekor_api::Readiness> {
        Box::pin(self.readiness.check())
    }

    fn submit(&self, entry: ValidatedEntry) -> BoxFuture<'_, Result<LoggedEntry, SubmitError>> {
        Box::pin(self.submit_entry(entry))
    }

    fn checkpoint(&self) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>> {
        let text = self
            .served
            .borrow()
            .checkpoint
            .as_ref()
            .map(|checkpoint| Bytes::from_owner(NoteBytes(checkpoint.text.clone())));
        Box::pin(async move { Ok(text) })
    }

    fn tile(&self, request: TileRequest) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>> {
        Box::pin(self.read_tile(request))
    }

    fn entry(&self, index: u64) -> BoxFuture<'_, Result<Option<StoredEntry>, ReadError>> {
        Box::pin(self.read_entry(index))
    }
}

/// A served checkpoint's text as a body without copying it (every checkpoint read answers it).
struct NoteBytes(Arc<str>);

impl AsRef<[u8]> for NoteBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Builds the inclusion proof of `index` at `size` (at most the integrated size) from this
/// node's tiles: the tiles the proof needs are read concurrently, then the proof is computed from
/// them (ephemeral right-edge nodes recomputed, never read).
async fn inclusion_proof_from_store(
    store: &TileStore,
    served: &watch::Receiver<Served>,
    hashed_tiles: &HashedTileCache,
    index: u64,
    size: u64,
) -> anyhow::Result<Vec<[u8; 32]>> {
    let needed = rekor_storage::proof::tiles_for_inclusion(index, size)?;
    let fetched = futures::future::try_join_all(needed.into_iter().map(|id| async move {
        if let Some(tile) = hashed_tiles.get(id) {
            return Ok((id, tile));
        }
        let served = served.borrow().clone();
        match crate::partials::read_object(store, &served, TilePath::Hash(id)).await? {
            Some(bytes) => Ok((id, hashed_tiles.get_or_decode(id, &bytes)?)),
            None => anyhow::bail!("tile {} is missing", id.path()),
        }
    }))
    .await?;
    let mut tiles = rekor_storage::proof::TileSet::new();
    for (id, tile) in fetched {
        tiles.insert_hashed(id.level, id.index, tile);
    }
    Ok(rekor_storage::proof::build_inclusion_proof(
        index, size, &tiles,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use rekor_raft::types::{identity_of, Command};

    /// A real state machine (files and sled in a temp dir) with `bodies` applied in one batch.
    async fn state_with(
        dir: &std::path::Path,
        bodies: &[&[u8]],
    ) -> (rekor_raft::SledEngine, rekor_raft::StateMachineStore) {
        let engine =
            rekor_raft::SledEngine::open(&rekor_raft::EngineConfig::new(dir.join("raft"))).unwrap();
        let (_log, mut sm) = rekor_raft::open_stores(&engine, dir).unwrap();
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 1),
            payload: EntryPayload::Normal(Command::Append {
                entries: bodies
                    .iter()
                    .map(|body| SequencedEntry::new(body.to_vec()))
                    .collect(),
            }),
        };
        sm.apply([entry]).await.unwrap();
        (engine, sm)
    }

    #[tokio::test]
    async fn a_duplicate_answer_must_match_this_nodes_own_state() {
        let dir = tempfile::tempdir().unwrap();
        let (_engine, sm) = state_with(dir.path(), &[b"first", b"second"]).await;
        let reader = sm.reader();
        let second = identity_of(b"second");
        assert!(confirm_duplicate(&reader, &second, 1).is_ok());
        // A leader pointing the client at another entry, or at an entry this node never saw.
        for claimed in [0, 2, 7] {
            match confirm_duplicate(&reader, &second, claimed) {
                Err(SubmitError::Internal(message)) => {
                    assert!(message.contains("not confirmed"), "{message}")
                }
                other => panic!("claimed {claimed}: {other:?}"),
            }
        }
        assert!(confirm_duplicate(&reader, &identity_of(b"never logged"), 0).is_err());
    }
}
