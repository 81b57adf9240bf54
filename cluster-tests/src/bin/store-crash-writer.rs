//! Crash-test writer for the node's whole Raft storage: drives the real log store and state
//! machine in a directory until killed, printing each log index once its append is durable
//! (see `rekor_cluster_tests::chaos::store_crash`; `tests/crash_stores.rs` kills it).
//!
//! Usage: `store-crash-writer <directory>`; resumes after the last durable entry.

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .context("usage: store-crash-writer <directory>")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(rekor_cluster_tests::chaos::store_crash::run_writer(
        std::path::Path::new(&dir),
    ))?;
    Ok(())
}
