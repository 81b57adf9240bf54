//! openraft wiring for the log (DESIGN.md, "The replicated state machine", "Dedup",
//! "Snapshots and catch-up"; rust-stack.md §2–§4, §8).

pub mod codec;
pub mod config;
pub mod engine;
pub mod log_store;
pub mod network;
pub mod server;
pub mod snapshot;
pub mod state_machine;
pub mod types;

pub use config::{build_config, RaftTuning};
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
