//! Kills `segment-crash-writer` with SIGKILL at random moments, ~100 times over one directory,
//! and checks after each kill that the log opens and every index the writer reported as
//! synced is readable with exactly the bytes it wrote.

use rekor_cluster_tests::chaos::crash::{
    segment_record as record_bytes, SEGMENT_BYTES, SEGMENT_KEEP as KEEP,
};
use rekor_raft::segments::{SegmentConfig, SegmentLog};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const KILLS: usize = 100;

#[test]
fn sigkill_at_random_moments_never_loses_synced_records() {
    use rand::Rng;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut max_synced: Option<u64> = None;
    let mut kills_during_run = 0;

    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_segment-crash-writer"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            // A line cut short by the kill has no newline and is not a report.
            while stdout.read_line(&mut line).unwrap_or(0) > 0 && line.ends_with('\n') {
                let synced: u64 = line.trim_end().parse().unwrap();
                if lines_tx.send(synced).is_err() {
                    break;
                }
                line.clear();
            }
        });

        // Wait (bounded) until this run has synced at least once, then crash it.
        let first = lines_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("round {round}: writer printed nothing: {e}"));
        if let Some(previous) = max_synced {
            assert!(first > previous, "round {round}: {first} after {previous}");
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..30_000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.code().is_none() {
            kills_during_run += 1;
        }
        reader.join().unwrap();
        let reported: Vec<u64> = std::iter::once(first).chain(lines_rx.try_iter()).collect();
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "round {round}");
        max_synced = reported.last().copied().max(max_synced);

        let log = SegmentLog::open(SegmentConfig {
            dir: dir.path().to_path_buf(),
            segment_bytes: SEGMENT_BYTES,
            ..SegmentConfig::new(dir.path())
        })
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        let synced = max_synced.unwrap();
        let next = log.next_index();
        assert!(next > synced, "round {round}: next {next}, synced {synced}");
        // Everything held must be exact, synced or not; the synced tail must be held.
        let first_held = log.first_index().unwrap();
        let must_hold_from = (synced + 1).saturating_sub(KEEP);
        assert!(
            first_held <= must_hold_from,
            "round {round}: first held {first_held}, must hold from {must_hold_from}"
        );
        let records = log.read(first_held..next).unwrap();
        for (index, record) in (first_held..next).zip(&records) {
            assert_eq!(
                *record,
                record_bytes(index),
                "round {round}: record {index}"
            );
        }
    }
    // The writer never exits by itself, so every run must have ended by the signal.
    assert_eq!(kills_during_run, KILLS);
    assert!(
        max_synced.unwrap() > 1_000,
        "too little progress: {max_synced:?}"
    );
}
