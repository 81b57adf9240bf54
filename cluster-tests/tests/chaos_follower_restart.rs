//! Chaos scenario `follower-restart` (cluster operations issue, "Acceptance"): A follower is killed with SIGKILL under load and restarted; it catches up.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_restart_keeps_every_invariant() {
    assert_scenario_passes("follower-restart").await;
}
