//! What this node serves: its integrated size and the newest committed checkpoint that its own
//! tiles fully back (DESIGN.md invariant 4, "readable checkpoints").
//!
//! The integrator actor owns the `watch::Sender`; requests waiting for their entry to be covered,
//! the read routes and the publisher hold receivers.

use std::sync::Arc;
use std::time::Duration;

use rekor_storage::merkle::Hash;
use tokio::sync::watch;

/// A committed, signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The signed note text, exactly as committed.
    pub text: Arc<str>,
    /// Whether it carries the frozen marker line (the shard is sealed).
    pub frozen: bool,
}

impl ServedCheckpoint {
    /// From a checkpoint the state machine accepted.
    pub fn from_published(published: rekor_raft::PublishedCheckpoint) -> Self {
        let frozen = rekor_storage::note::Note::parse(published.text.as_bytes())
            .ok()
            .and_then(|note| rekor_storage::checkpoint::Checkpoint::parse_body(&note.text).ok())
            .is_some_and(|checkpoint| checkpoint.is_frozen());
        Self {
            size: published.size,
            root: published.root,
            text: published.text.into(),
            frozen,
        }
    }
}

/// The node's externally visible state. Both fields only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served {
    /// Tree size whose tiles and bundles are durable in this node's tile store.
    pub integrated_size: u64,
    /// Root at `integrated_size`.
    pub integrated_root: Hash,
    /// The checkpoint this node serves; its size is ≤ `integrated_size`.
    pub checkpoint: Option<ServedCheckpoint>,
}

/// Waits until the served checkpoint covers `index` (its size is greater than `index`).
/// Returns `None` on timeout or when the integrator has stopped.
pub async fn wait_for_checkpoint_covering(
    served: &mut watch::Receiver<Served>,
    index: u64,
    timeout: Duration,
) -> Option<ServedCheckpoint> {
    let wait = served.wait_for(|state| {
        state
            .checkpoint
            .as_ref()
            .is_some_and(|checkpoint| checkpoint.size > index)
    });
    match tokio::time::timeout(timeout, wait).await {
        Ok(Ok(state)) => state.checkpoint.clone(),
        _ => None,
    }
}
