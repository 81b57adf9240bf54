//! Chaos scenario `leader-kill` (cluster operations issue, "Acceptance"): The leader is killed with SIGKILL under load; a new leader takes over (write unavailability is printed); the old leader restarts and catches up.
//!
//! Ends with the invariant checker (`rekor_cluster_tests::chaos::checker`). A few seconds of load
//! by default; `REKOR_SOAK=1` runs long phases.

use rekor_cluster_tests::chaos::{run, ScenarioOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_keeps_every_invariant() {
    let report = run("leader-kill", &ScenarioOptions::from_env())
        .await
        .expect("scenario runs");
    println!("{report}");
    assert!(report.passed, "{report}\n{}", report.logs);
    assert!(report.acknowledged > 0, "no entry was acknowledged");
}
