//! Crash-test writer for the storage engine (cluster operations issue, "crash tests of the storage
//! engine"). Appends numbered records through `rekor_raft`'s engine trait — one atomic
//! `WriteBatch` per record (the record and its mirror), then `Keyspace::flush` — and prints each
//! sequence number to stdout only after its flush returned: a printed number is an acknowledged,
//! supposedly durable write. `tests/crash_sled.rs` kills this process with SIGKILL at random
//! moments and checks the database after each kill (format: `rekor_cluster_tests::chaos::crash`).
//!
//! Usage: `sled-crash-writer <database directory>`; resumes after the last record present.

use std::io::Write;
use std::ops::Bound;

use anyhow::{Context, Result};
use rekor_cluster_tests::chaos::crash::{self, MIRROR, RECORD};
use rekor_raft::engine::{index_key, parse_index_key, ScanOrder, WriteBatch};

fn main() -> Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .context("usage: sled-crash-writer <database directory>")?;
    let (_engine, records) = crash::open(std::path::Path::new(&path))?;
    let low = index_key(RECORD, 0);
    let high = index_key(RECORD, u64::MAX);
    let last = records.scan(
        Bound::Included(&low[..]),
        Bound::Included(&high[..]),
        ScanOrder::Descending,
        1,
    )?;
    let mut seq = match last.first() {
        Some((key, _)) => parse_index_key(key).context("malformed record key")? + 1,
        None => 0,
    };
    let stdout = std::io::stdout();
    loop {
        let mut batch = WriteBatch::new();
        let value = crash::payload(seq);
        batch.put(index_key(RECORD, seq).to_vec(), value.clone());
        batch.put(index_key(MIRROR, seq).to_vec(), value);
        records.apply(batch)?;
        records.flush()?;
        let mut out = stdout.lock();
        writeln!(out, "{seq}")?;
        out.flush()?;
        seq += 1;
    }
}
