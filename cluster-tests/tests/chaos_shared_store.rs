//! The chaos scenarios `leader-kill` and `whole-cluster-restart` with every node on one shared
//! tile store (`--shared-tile-store`): only the leader writes, so a leader killed mid-step leaves
//! its successor to finish on the objects it wrote, and a whole-cluster restart resumes every
//! node from the one store's right edge. Ends with the invariant checker
//! (`rekor_cluster_tests::chaos::checker`).

use rekor_cluster_tests::chaos::{assert_scenario_passes_with, ScenarioOptions};

fn shared() -> ScenarioOptions {
    ScenarioOptions {
        shared_tile_store: true,
        ..ScenarioOptions::from_env()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_on_a_shared_tile_store_keeps_every_invariant() {
    assert_scenario_passes_with("leader-kill", shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_on_a_shared_tile_store_keeps_every_invariant() {
    assert_scenario_passes_with("whole-cluster-restart", shared()).await;
}
