//! Chaos scenario `leader-kill` (cluster operations issue, "Acceptance"): The leader is killed with SIGKILL under load; a new leader takes over (write unavailability is printed); the old leader restarts and catches up.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_keeps_every_invariant() {
    assert_scenario_passes("leader-kill").await;
}
