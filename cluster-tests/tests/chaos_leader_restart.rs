//! Chaos scenario `leader-restart`: the leader is stopped with SIGTERM under load (a planned
//! restart, a rolling upgrade); it hands its leadership to a caught-up follower before exiting
//! (its log says so), then restarts and catches up. Write unavailability is printed.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_restart_hands_leadership_over_and_keeps_every_invariant() {
    assert_scenario_passes("leader-restart").await;
}
