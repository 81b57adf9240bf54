//! Chaos scenario `minority-partition` (cluster operations issue, "Acceptance"): A minority of followers is cut off by the link proxy under load, then healed.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::{run, ScenarioOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_keeps_every_invariant() {
    let report = run("minority-partition", &ScenarioOptions::from_env())
        .await
        .expect("scenario runs");
    println!("{report}");
    assert!(report.passed, "{report}\n{}", report.logs);
    assert!(report.acknowledged > 0, "no entry was acknowledged");
}
