//! Chaos scenario `frozen-leader` (cluster operations issue, "Acceptance"): The leader is frozen (SIGSTOP) under load, a new leader takes over, the old one is thawed (SIGCONT) and rejoins.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_leader_keeps_every_invariant() {
    assert_scenario_passes("frozen-leader").await;
}
