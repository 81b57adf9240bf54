//! An in-process [`LogBackend`] on the storage crate: one mutex-protected [`TreeBuilder`], an
//! in-memory (or any) [`TileStore`], an exact identity map for dedup, and a note signer.
//!
//! `submit` integrates the entry at once, signs a checkpoint for the new size, and builds the
//! inclusion proof from the stored tiles, so every response exercises the same tile and proof
//! code as the replicated node. For tests and single-process development logs: nothing here
//! is durable unless the tile store is, and the identity map is not persisted.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use bytes::Bytes;
use rekor_storage::checkpoint::Checkpoint;
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::note::NoteSigner;
use rekor_storage::proof::{build_inclusion_proof, tiles_for_inclusion, TileSet};
use rekor_storage::tile_store::TileStore;
use rekor_storage::tiles::TilePath;
use tokio::sync::Mutex;

use crate::backend::{
    bundle_holding, entry_in_bundle, BoxFuture, LogBackend, LoggedEntry, ReadError, StoredEntry,
    SubmitError, TileRequest, ValidatedEntry,
};

/// Why the in-process log could not start.
#[derive(Debug, thiserror::Error)]
pub enum MemoryLogError {
    #[error("signing the checkpoint: {0}")]
    Checkpoint(#[from] rekor_storage::checkpoint::CheckpointError),
    #[error("writing the checkpoint: {0}")]
    Store(#[from] rekor_storage::tile_store::TileStoreError),
}

/// A fault to inject into the next `submit` (tests of the HTTP error mapping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectedFault {
    /// Fail the next submit with this error, without touching the log.
    Fail(SubmitError),
    /// Log the next entry but return a corrupted inclusion proof.
    CorruptProof,
}

/// The in-process log.
pub struct MemoryLog {
    signer: Box<dyn NoteSigner>,
    store: TileStore,
    /// The tree, the identities and the checkpoint change together under this lock; it is
    /// held across the tile writes so entries integrate strictly one after another.
    state: Mutex<State>,
    fault: StdMutex<Option<InjectedFault>>,
}

struct State {
    tree: TreeBuilder,
    identities: HashMap<[u8; 32], u64>,
    checkpoint: Bytes,
}

impl MemoryLog {
    /// An empty log in an in-memory tile store; publishes the size-0 checkpoint.
    pub async fn new(signer: Box<dyn NoteSigner>) -> Result<Self, MemoryLogError> {
        Self::with_store(signer, TileStore::in_memory()).await
    }

    /// An empty log in `store` (which must be empty).
    pub async fn with_store(
        signer: Box<dyn NoteSigner>,
        store: TileStore,
    ) -> Result<Self, MemoryLogError> {
        let tree = TreeBuilder::new();
        let checkpoint =
            Bytes::from(Checkpoint::new(signer.name(), 0, tree.root()).sign(signer.as_ref())?);
        store.put_checkpoint(checkpoint.clone()).await?;
        Ok(MemoryLog {
            signer,
            store,
            state: Mutex::new(State {
                tree,
                identities: HashMap::new(),
                checkpoint,
            }),
            fault: StdMutex::new(None),
        })
    }

    /// The 32-byte log ID (`logId.keyId`) of the signing key.
    pub fn log_id(&self) -> [u8; 32] {
        self.signer.log_id()
    }

    /// The log origin (= the signer's key name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The current tree size.
    pub async fn size(&self) -> u64 {
        self.state.lock().await.tree.size()
    }

    /// The tile store (for tests that read tiles directly).
    pub fn store(&self) -> &TileStore {
        &self.store
    }

    /// Makes the next `submit` misbehave once.
    pub fn inject_fault(&self, fault: InjectedFault) {
        if let Ok(mut slot) = self.fault.lock() {
            *slot = Some(fault);
        }
    }

    fn take_fault(&self) -> Option<InjectedFault> {
        self.fault.lock().ok().and_then(|mut slot| slot.take())
    }

    async fn submit_entry(&self, entry: ValidatedEntry) -> Result<LoggedEntry, SubmitError> {
        let fault = self.take_fault();
        if let Some(InjectedFault::Fail(error)) = fault {
            return Err(error);
        }
        let internal = |e: &dyn std::fmt::Display| SubmitError::Internal(e.to_string());
        let mut state = self.state.lock().await;
        if let Some(&log_index) = state.identities.get(&entry.identity) {
            return Err(SubmitError::Duplicate { log_index });
        }
        let log_index = state.tree.size();
        let integration = state
            .tree
            .append(&[&entry.canonical_body])
            .map_err(|e| internal(&e))?;
        for (id, bytes) in integration.tiles {
            self.store
                .put_tile(id, bytes)
                .await
                .map_err(|e| internal(&e))?;
        }
        for (id, bytes) in integration.bundles {
            self.store
                .put_bundle(id.index, id.width, bytes)
                .await
                .map_err(|e| internal(&e))?;
        }
        let checkpoint = Checkpoint::new(self.signer.name(), integration.size, integration.root)
            .sign(self.signer.as_ref())
            .map_err(|e| internal(&e))?;
        let checkpoint = Bytes::from(checkpoint);
        self.store
            .put_checkpoint(checkpoint.clone())
            .await
            .map_err(|e| internal(&e))?;
        state.checkpoint = checkpoint.clone();
        state.identities.insert(entry.identity, log_index);
        drop(state);

        let mut inclusion_proof = self.inclusion_proof(log_index, integration.size).await?;
        if fault == Some(InjectedFault::CorruptProof) {
            match inclusion_proof.first_mut() {
                Some(first) => first[0] ^= 1,
                None => inclusion_proof.push([0; 32]),
            }
        }
        Ok(LoggedEntry {
            log_index,
            tree_size: integration.size,
            root_hash: integration.root,
            inclusion_proof,
            checkpoint: String::from_utf8(checkpoint.to_vec()).map_err(|e| internal(&e))?,
        })
    }

    /// Builds the proof for `index` at `size` from the stored tiles, as a node does.
    async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<[u8; 32]>, SubmitError> {
        let internal = |e: &dyn std::fmt::Display| SubmitError::Internal(e.to_string());
        let mut fetched = Vec::new();
        for id in tiles_for_inclusion(index, size).map_err(|e| internal(&e))? {
            let bytes = self
                .store
                .get_tile(id)
                .await
                .map_err(|e| internal(&e))?
                .ok_or_else(|| SubmitError::Internal(format!("tile {id} is missing")))?;
            fetched.push((id, bytes));
        }
        let tiles = TileSet::from_fetched(fetched).map_err(|e| internal(&e))?;
        build_inclusion_proof(index, size, &tiles).map_err(|e| internal(&e))
    }

    async fn read_entry(&self, index: u64) -> Result<Option<StoredEntry>, ReadError> {
        let (size, root, checkpoint) = {
            let state = self.state.lock().await;
            (
                state.tree.size(),
                state.tree.root(),
                state.checkpoint.clone(),
            )
        };
        let Some((bundle, position)) = bundle_holding(index, size) else {
            return Ok(None);
        };
        let bytes = self
            .read_tile(bundle)
            .await?
            .ok_or_else(|| ReadError::Storage(format!("bundle {bundle} is missing")))?;
        let (kind, canonical_body) = entry_in_bundle(&bytes, position)?;
        let inclusion_proof = self
            .inclusion_proof(index, size)
            .await
            .map_err(|e| ReadError::Storage(e.to_string()))?;
        Ok(Some(StoredEntry {
            kind,
            canonical_body,
            logged: LoggedEntry {
                log_index: index,
                tree_size: size,
                root_hash: root,
                inclusion_proof,
                checkpoint: String::from_utf8_lossy(&checkpoint).into_owned(),
            },
        }))
    }

    async fn read_tile(&self, request: TileRequest) -> Result<Option<Bytes>, ReadError> {
        let size = self.state.lock().await.tree.size();
        if !request.is_within(size) {
            return Ok(None);
        }
        let result = match request.0 {
            TilePath::Hash(id) => self.store.get_tile(id).await,
            TilePath::Entries(id) => self.store.get_bundle(id.index, id.width).await,
        };
        result.map_err(|e| ReadError::Storage(e.to_string()))
    }
}

impl LogBackend for MemoryLog {
    fn submit(&self, entry: ValidatedEntry) -> BoxFuture<'_, Result<LoggedEntry, SubmitError>> {
        Box::pin(self.submit_entry(entry))
    }

    fn checkpoint(&self) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>> {
        Box::pin(async move { Ok(Some(self.state.lock().await.checkpoint.clone())) })
    }

    fn tile(&self, id: TileRequest) -> BoxFuture<'_, Result<Option<Bytes>, ReadError>> {
        Box::pin(self.read_tile(id))
    }

    fn entry(&self, index: u64) -> BoxFuture<'_, Result<Option<StoredEntry>, ReadError>> {
        Box::pin(self.read_entry(index))
    }
}
