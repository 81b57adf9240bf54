//! Chaos scenario `leader-isolation` (cluster operations issue, "Acceptance"): The leader is cut off from its followers: it stops acknowledging writes, and no checkpoint it signs after losing leadership is served; then healed.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_isolation_keeps_every_invariant() {
    assert_scenario_passes("leader-isolation").await;
}
