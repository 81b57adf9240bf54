//! Crash safety of the node's whole Raft storage (durability invariant): `store-crash-writer`
//! drives the real log store and state machine (log segments, leaf bodies, identity index,
//! engine metadata) and prints each log index once its append is durable; this test kills it
//! with SIGKILL at random moments, reopens the storage after every kill, re-applies the log
//! tail as openraft does, and checks it against the model (`chaos::store_crash`): no
//! acknowledged entry lost, and size, root, every identity and the held bodies as the model
//! says.
//!
//! 100 kills by default; `REKOR_SOAK=1` runs 1000.

use std::time::Duration;

use rand::Rng;
use rekor_cluster_tests::chaos::{crash, store_crash};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_storage_keeps_every_acknowledged_entry_and_matches_the_model() {
    let soak = std::env::var("REKOR_SOAK").is_ok_and(|value| value == "1");
    let kills = if soak { 1000 } else { 100 };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut acknowledged = 0u64;
    let mut largest = 0u64;
    for kill in 0..kills {
        let extra = Duration::from_micros(rng.gen_range(0..50_000));
        let path = dir.path().to_path_buf();
        if let Some(index) = tokio::task::spawn_blocking(move || {
            crash::run_and_kill(
                std::path::Path::new(env!("CARGO_BIN_EXE_store-crash-writer")),
                &path,
                extra,
            )
        })
        .await
        .unwrap()
        {
            acknowledged = acknowledged.max(index);
        }
        let state = match store_crash::check(dir.path()).await {
            Ok(state) => state,
            Err(error) => panic!("kill {kill}: {error}"),
        };
        assert!(
            state.last >= acknowledged,
            "kill {kill}: the log ends at {} but entry {acknowledged} was acknowledged",
            state.last
        );
        largest = largest.max(state.size);
    }
    // The runs made progress: many entries, several snapshots and purges.
    assert!(
        acknowledged >= kills as u64,
        "only {acknowledged} entries written"
    );
    eprintln!("{kills} kills, {acknowledged} entries acknowledged, {largest} leaves");
}
