//! Chaos scenario `whole-cluster-restart` (cluster operations issue, "Acceptance"): Every node is killed at once and restarted; every acknowledged entry is still there.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_every_invariant() {
    assert_scenario_passes("whole-cluster-restart").await;
}
