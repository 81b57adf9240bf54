//! Chaos scenario `whole-cluster-restart` (cluster operations issue, "Acceptance"): Every node is killed at once and restarted; every acknowledged entry is still there.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::{run, ScenarioOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_restart_keeps_every_invariant() {
    let report = run("whole-cluster-restart", &ScenarioOptions::from_env())
        .await
        .expect("scenario runs");
    println!("{report}");
    assert!(report.passed, "{report}\n{}", report.logs);
    assert!(report.acknowledged > 0, "no entry was acknowledged");
}
