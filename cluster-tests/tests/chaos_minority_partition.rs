//! Chaos scenario `minority-partition` (cluster operations issue, "Acceptance"): A minority of followers is cut off by the link proxy under load, then healed.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::assert_scenario_passes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_keeps_every_invariant() {
    assert_scenario_passes("minority-partition").await;
}
