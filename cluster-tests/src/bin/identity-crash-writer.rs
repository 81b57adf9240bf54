//! Crash-test writer for the identity index (driven by `tests/crash.rs`).
//!
//! Usage: `identity-crash-writer <dir> [initial_pages]`. Opens the index, then from its durable
//! watermark on loops forever: insert a batch of derived identities (identity of entry `i` =
//! [`identity_of`]`(i)`, value `i`), sync with watermark = entries so far, print the watermark.
//! Restarting after a kill re-inserts from the watermark, as the log's state machine does.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rekor_raft::identity_index::IdentityIndex;

const BATCH: u64 = 1500;

/// A cheap deterministic stand-in for SHA-256 of entry `index`: four splitmix64 outputs.
fn identity_of(index: u64) -> [u8; 32] {
    let mut identity = [0u8; 32];
    for (lane, chunk) in identity.chunks_exact_mut(8).enumerate() {
        let mut z = index
            .wrapping_mul(4)
            .wrapping_add(lane as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    identity
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: identity-crash-writer <dir> [initial_pages]");
        return ExitCode::FAILURE;
    };
    let initial_pages = args
        .next()
        .and_then(|p| p.to_str().and_then(|p| p.parse().ok()))
        .unwrap_or(1);
    let index = match IdentityIndex::open_with_initial_pages(&dir, initial_pages) {
        Ok(index) => index,
        Err(error) => {
            eprintln!("open: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut next = index.durable_watermark();
    let stdout = std::io::stdout();
    loop {
        let batch: Vec<([u8; 32], u64)> =
            (next..next + BATCH).map(|i| (identity_of(i), i)).collect();
        next += BATCH;
        if let Err(error) = index.insert_many(&batch).and_then(|()| index.sync(next)) {
            eprintln!("write: {error}");
            return ExitCode::FAILURE;
        }
        let mut out = stdout.lock();
        if writeln!(out, "{next}").and_then(|()| out.flush()).is_err() {
            // The test closed its end of the pipe; stop quietly.
            return ExitCode::SUCCESS;
        }
    }
}
