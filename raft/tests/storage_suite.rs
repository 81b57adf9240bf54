//! openraft's storage conformance suite against the sled-backed stores (rust-stack.md §2.3).

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use rekor_raft::{
    open_stores, EngineConfig, LogStore, NodeId, SledEngine, StateMachineStore, TypeConfig,
};
use tempfile::TempDir;

/// Each build opens a fresh sled database in its own temp dir; the dir is the guard, dropped
/// after the stores.
struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine =
            SledEngine::open(&EngineConfig::new(dir.path().join("raft"))).expect("open sled");
        let (log, sm) = open_stores(&engine, dir.path()).expect("open stores");
        // The suite appends past the end of the log (a gap), which openraft itself never does.
        log.allow_gaps();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    if let Err(e) = Suite::test_all(SledStoreBuilder) {
        panic!("storage suite failed: {e}");
    }
}
