//! openraft wiring for the log (DESIGN.md, "The replicated state machine", "Dedup",
//! "Snapshots and catch-up"; rust-stack.md §2–§4, §8).
//!
//! - [`engine`]: the narrow key-value trait and its sled implementation.
//! - [`types`]: the openraft type config and the versioned command set.
//! - [`log_store`]: the Raft log (`RaftLogStorage`) in [`segments`] files.
//! - [`state_machine`]: indices, dedup, compact range, checkpoint checks; [`StateReader`] for
//!   the node; [`snapshot`]: the small snapshot format and its install; [`backfill`]: pulling
//!   and staging the entry bodies below a snapshot from peers ([`SnapshotBackfill`]);
//!   `entry_files`: the unintegrated leaf bodies ([`segments`]) and the [`identity_index`].
//! - [`network`] / [`server`]: Raft RPCs over HTTP (reqwest client, actix-web handlers);
//!   [`auth`]: the cluster-secret check of every internal route, before any body is read.
//! - [`config`]: the tuned openraft `Config`.
#![forbid(unsafe_code)]
// openraft's trait signatures fix `StorageError` / `ConfigError` (200+ bytes) as error types;
// boxing them would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod backfill;
pub mod codec;
pub mod config;
pub mod engine;
mod entry_files;
pub mod identity_index;
pub mod leader_contact;
mod leaf_hashes;
pub mod log_store;
pub mod network;
pub mod peers;
pub mod segments;
pub mod server;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use auth::{AuthenticatedPeer, Caller, InternalAuth, Refusal, Role};
pub use backfill::{
    BackfillError, BackfillPeer, PullFuture, SnapshotBackfill, SnapshotInstallReport,
    BACKFILL_CHUNK,
};
pub use config::{build_config, RaftTuning, TuningError};
pub use engine::{EngineConfig, EngineError, Keyspace, SledEngine};
pub use leader_contact::LeaderContact;
pub use log_store::{LogSizeProbe, LogStore, LogStoreError, LogWriteError};
pub use network::{ClusterSecret, HttpNetwork, NetworkConfig, PEER_CONNECT_TIMEOUT};
pub use peers::{read_answer, AnswerError, PeerClientError, PeerClients, PEER_POOL_IDLE_TIMEOUT};
pub use segments::SegmentError;
pub use server::{raft_scope, RaftServerConfig};
pub use state_machine::{
    AppliedState, PublishedCheckpoint, StateMachineError, StateMachineStore, StateReader,
};
pub use types::{
    AppendOutcome, Command, CommandResponse, LogKey, NodeAddress, NodeId, Raft, SequencedEntry,
    TypeConfig,
};

/// Open the Raft log store and the state machine: their small records in two keyspaces of
/// `engine`, their per-entry data in files under `dir` (`raft-log/`, `leaves/`, `identities/`).
pub fn open_stores(
    engine: &SledEngine,
    dir: &std::path::Path,
) -> Result<(LogStore, StateMachineStore), OpenStoresError> {
    let log = LogStore::open(
        engine.keyspace(log_store::LOG_KEYSPACE)?,
        &dir.join("raft-log"),
    )?;
    let sm = StateMachineStore::open(engine.keyspace(state_machine::STATE_MACHINE_KEYSPACE)?, dir)?;
    Ok((log, sm))
}

/// Why [`open_stores`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoresError {
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The Raft log failed to open.
    #[error(transparent)]
    Log(#[from] log_store::LogStoreError),
    /// The state machine failed to open.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
}
