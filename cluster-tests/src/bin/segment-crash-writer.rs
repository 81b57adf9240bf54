//! Crash-test writer for the segment log: appends records whose bytes are a function of their
//! index, syncs, and prints the last synced index (one line per sync) until it is killed.
//! Driven by `tests/crash.rs`, which SIGKILLs it at random moments and checks the log.
//!
//! Usage: `segment-crash-writer <dir>`

use rekor_raft::segments::{SegmentConfig, SegmentLog};
use std::io::Write;
use std::process::ExitCode;

/// Small segments so that kills land during rolls, not only mid-segment.
const SEGMENT_BYTES: u64 = 64 * 1024;
/// Records kept behind the write position when purging; `tests/crash.rs` relies on it.
const KEEP: u64 = 2_000;

/// Payload of record `index`; `tests/crash.rs` has the same function.
fn record_bytes(index: u64) -> Vec<u8> {
    let len = 1 + (index.wrapping_mul(7_919) % 1_500) as usize;
    let seed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .collect()
}

fn run(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let log = SegmentLog::open(SegmentConfig {
        dir: dir.into(),
        segment_bytes: SEGMENT_BYTES,
    })?;
    let mut stdout = std::io::stdout().lock();
    for iteration in 0u64.. {
        let next = log.next_index();
        let count = 1 + iteration % 23;
        let last = next + count - 1;
        let owned: Vec<Vec<u8>> = (next..=last).map(record_bytes).collect();
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        log.append(next, &refs)?;
        if iteration % 5 == 4 {
            // Exercise the durable truncation path: cut the batch's tail, write it again.
            let from = last - iteration % count;
            log.truncate_from(from)?;
            let again: Vec<Vec<u8>> = (from..=last).map(record_bytes).collect();
            let refs: Vec<&[u8]> = again.iter().map(Vec::as_slice).collect();
            log.append(from, &refs)?;
        }
        log.sync()?;
        writeln!(stdout, "{last}")?;
        stdout.flush()?;
        if iteration % 50 == 49 && next > KEEP {
            log.purge_to(next - KEEP)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: segment-crash-writer <dir>");
        return ExitCode::from(2);
    };
    match run(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("segment-crash-writer: {e}");
            ExitCode::FAILURE
        }
    }
}
