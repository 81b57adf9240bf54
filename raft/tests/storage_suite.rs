//! openraft's storage conformance suite against the node's stores: the log store (entries in
//! segment files, vote and metadata in sled) and the state machine.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use rekor_raft::{
    open_stores, EngineConfig, LogStore, NodeId, SledEngine, StateMachineStore, TypeConfig,
};
use tempfile::TempDir;

/// Each build opens fresh stores (segment files and a sled database) in their own temp dir; the
/// dir is the guard, dropped after the stores.
struct FreshStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for FreshStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine =
            SledEngine::open(&EngineConfig::new(dir.path().join("raft"))).expect("open sled");
        let (log, sm) = open_stores(&engine, dir.path()).expect("open stores");
        // The suite appends past the end of the log (a gap), which openraft itself never does.
        // `allow_gaps` exists only with the `test-gaps` feature (raft's dev-dependency on
        // itself turns it on for its tests); a node build cannot call it.
        log.allow_gaps();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(FreshStoreBuilder) {
        panic!("storage suite failed: {e}");
    }
}
