//! Crash test: SIGKILL the identity-crash-writer at random moments, reopen, and check that the
//! durable watermark never goes back and every identity below it maps to its index.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rekor_cluster_tests::chaos::crash::identity_of_entry as identity_of;
use rekor_raft::identity_index::IdentityIndex;

const RUNS: usize = 100;

fn check_range(index: &IdentityIndex, range: std::ops::Range<u64>) {
    for i in range {
        assert_eq!(
            index.get(&identity_of(i)).unwrap(),
            Some(i),
            "identity of entry {i} lost or wrong"
        );
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_synced_identities() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x1DE7);
    let mut last_printed = 0u64;
    let mut verified = 0u64;
    let mut killed_mid_resize = 0usize;
    for run in 0..RUNS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_identity-crash-writer"))
            .arg(dir.path())
            .arg("1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line.trim().parse().unwrap()).is_err() {
                    break;
                }
            }
        });
        // Wait for the writer to be running (its first sync), then for 0-3 more syncs, then a
        // random delay: the kill lands anywhere in insert, resize, fdatasync or watermark write.
        let deadline = Instant::now() + Duration::from_secs(60);
        let extra_lines = rng.gen_range(0..4usize);
        for _ in 0..=extra_lines {
            let left = deadline.saturating_duration_since(Instant::now());
            let printed = lines_rx
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("run {run}: writer printed nothing: {e}"));
            last_printed = last_printed.max(printed);
        }
        // Kill-timing jitter, not synchronisation: nothing waits on this delay.
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Lines the writer printed after the ones we waited for are also promises.
        while let Ok(printed) = lines_rx.try_recv() {
            last_printed = last_printed.max(printed);
        }

        let resize_leftover = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".idx.tmp"));
        killed_mid_resize += usize::from(resize_leftover);
        let index = IdentityIndex::open(dir.path()).unwrap();
        let watermark = index.durable_watermark();
        assert!(
            watermark >= last_printed,
            "run {run}: durable watermark {watermark} < printed {last_printed}"
        );
        assert!(index.len() >= watermark, "run {run}: len below watermark");
        // New entries fully; older ones by a sample (all of them are checked at the end).
        check_range(&index, verified..watermark);
        for _ in 0..500 {
            let i = rng.gen_range(0..watermark);
            assert_eq!(index.get(&identity_of(i)).unwrap(), Some(i), "run {run}");
        }
        verified = watermark;
        // Half the runs reopen through a clean close, half leave the writer's unclean headers.
        if run % 2 == 0 {
            index.close().unwrap();
        } else {
            drop(index);
        }
    }
    let index = IdentityIndex::open(dir.path()).unwrap();
    check_range(&index, 0..index.durable_watermark());
    println!(
        "crash test: {RUNS} kills ({killed_mid_resize} mid-resize), final watermark {}, \
         {} identities, {} bytes on disk",
        index.durable_watermark(),
        index.len(),
        index.size_on_disk()
    );
}
