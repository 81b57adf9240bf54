//! Crash-test writer for the segment log: appends records whose bytes are a function of their
//! index, syncs, and prints the last synced index (one line per sync) until it is killed.
//! Driven by `tests/crash_segments.rs`, which SIGKILLs it at random moments and checks the log.
//!
//! Usage: `segment-crash-writer <dir>`

use rekor_cluster_tests::chaos::crash::{
    segment_record as record_bytes, SEGMENT_BYTES, SEGMENT_KEEP as KEEP,
};
use rekor_raft::segments::{SegmentConfig, SegmentLog};
use std::io::Write;
use std::process::ExitCode;

fn run(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let log = SegmentLog::open(SegmentConfig {
        dir: dir.into(),
        segment_bytes: SEGMENT_BYTES,
        ..SegmentConfig::new(dir)
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
