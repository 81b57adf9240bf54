//! Crash-test writer for the identity index (driven by `tests/crash_identity_index.rs`).
//!
//! Usage: `identity-crash-writer <dir> [initial_pages]`. Opens the index, then from its durable
//! watermark on loops forever: insert a batch of derived identities (identity of entry `i` =
//! [`identity_of`]`(i)`, value `i`), sync with watermark = entries so far, print the watermark.
//! Restarting after a kill re-inserts from the watermark, as the log's state machine does.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use rekor_cluster_tests::chaos::crash::identity_of_entry as identity_of;
use rekor_raft::identity_index::IdentityIndex;

const BATCH: u64 = 1500;

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
