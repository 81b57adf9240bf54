//! openraft wiring for the log (DESIGN.md, "The replicated state machine", "Dedup",
//! "Snapshots and catch-up"; rust-stack.md §2–§4, §8).
//!
//! - [`engine`]: the narrow key-value trait and its sled implementation.
//! - [`types`]: the openraft type config and the versioned command set.
//! - [`log_store`]: the Raft log (`RaftLogStorage`).
//! - [`state_machine`]: indices, dedup, compact range, checkpoint checks; [`StateReader`] for
//!   the node; [`snapshot`]: the small snapshot format and its install; [`backfill`]: pulling
//!   and staging the entry bodies below a snapshot from peers ([`SnapshotBackfill`]).
//! - [`network`] / [`server`]: Raft RPCs over HTTP (reqwest client, actix-web handlers).
//! - [`config`]: the tuned openraft `Config`.
#![forbid(unsafe_code)]
// openraft's trait signatures fix `StorageError` / `ConfigError` (200+ bytes) as error types;
// boxing them would only add conversions at every trait boundary.
#![allow(clippy::result_large_err)]

pub mod backfill;
pub mod codec;
pub mod config;
pub mod engine;
pub mod log_store;
pub mod network;
pub mod server;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use backfill::{
    BackfillError, BackfillPeer, PullFuture, SnapshotBackfill, SnapshotInstallReport,
    BACKFILL_CHUNK,
};
pub use config::{build_config, RaftTuning, TuningError};
pub use engine::{EngineConfig, EngineError, Keyspace, SledEngine};
pub use log_store::LogStore;
pub use network::{ClusterSecret, HttpNetwork, NetworkConfig};
pub use server::{raft_scope, RaftServerConfig};
pub use state_machine::{
    AppliedState, PublishedCheckpoint, StateMachineError, StateMachineStore, StateReader,
};
pub use types::{
    AppendOutcome, Command, CommandResponse, NodeAddress, NodeId, Raft, SequencedEntry, TypeConfig,
};

/// Open the Raft log store and the state machine on one engine (their own keyspaces of the
/// same database, so one fsync covers both).
pub fn open_stores(
    engine: &SledEngine,
) -> Result<(LogStore, StateMachineStore), StateMachineError> {
    let log = LogStore::new(engine.keyspace(log_store::LOG_KEYSPACE)?)?;
    let sm = StateMachineStore::open(engine.keyspace(state_machine::STATE_MACHINE_KEYSPACE)?)?;
    Ok((log, sm))
}
