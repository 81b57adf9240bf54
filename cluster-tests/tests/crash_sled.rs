//! Crash safety of the storage engine (cluster operations issue, "crash tests of the storage
//! engine"): `sled-crash-writer` appends records through `rekor_raft`'s engine trait and prints
//! each one after `flush` returned; this test kills it with SIGKILL at random moments, reopens the
//! database after every kill, and checks that it opens, that every printed (acknowledged) record
//! is there with its bytes, and that no batch was torn.
//!
//! 300 kills by default; `REKOR_SOAK=1` runs 3000.

use std::time::Duration;

use rand::Rng;
use rekor_cluster_tests::chaos::crash;

#[test]
fn sigkilled_writer_never_loses_an_acknowledged_record() {
    let soak = std::env::var("REKOR_SOAK").is_ok_and(|value| value == "1");
    let kills = if soak { 3000 } else { 300 };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let mut rng = rand::thread_rng();
    let mut acknowledged: Option<u64> = None;
    let mut failures = Vec::new();
    for kill in 0..kills {
        let extra = Duration::from_micros(rng.gen_range(0..20_000));
        if let Some(number) = crash::run_and_kill(
            std::path::Path::new(env!("CARGO_BIN_EXE_sled-crash-writer")),
            &db,
            extra,
        ) {
            acknowledged = Some(acknowledged.map_or(number, |a| a.max(number)));
        }
        match crash::check(&db) {
            Ok(state) => {
                let needed = acknowledged.map_or(0, |a| a + 1);
                if state.count < needed {
                    failures.push(format!(
                        "kill {kill}: {} records survive but {needed} were acknowledged",
                        state.count
                    ));
                }
            }
            Err(error) => failures.push(format!("kill {kill}: {error}")),
        }
        // Stop at the first broken database: later runs would only build on the damage.
        if !failures.is_empty() {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "sled lost acknowledged writes or failed to reopen after SIGKILL: {failures:#?}"
    );
    assert!(acknowledged.is_some_and(|a| a >= kills as u64 - 1));
}
