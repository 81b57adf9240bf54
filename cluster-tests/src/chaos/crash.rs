//! The record format of the storage-engine crash test, shared by `bin/sled-crash-writer` (which
//! writes it) and `tests/crash_sled.rs` (which checks it after every SIGKILL).
//!
//! Record `seq` lives at [`index_key`]`(RECORD, seq)` with [`payload`]`(seq)`, and its mirror at
//! `index_key(MIRROR, seq)`, written in the same atomic batch and made durable with
//! `Keyspace::flush` before the writer prints `seq`.

use std::ops::Bound;
use std::path::Path;

use rekor_raft::engine::{index_key, parse_index_key, Keyspace, ScanOrder};
use rekor_raft::{EngineConfig, EngineError, SledEngine};

/// Keyspace the records go to.
pub const KEYSPACE: &str = "crash";
/// Key prefix of records.
pub const RECORD: u8 = b'r';
/// Key prefix of each record's mirror.
pub const MIRROR: u8 = b'm';

/// The payload of record `seq`: deterministic, 64 bytes to about 4 KiB, so the engine's log
/// fills and rolls segments quickly.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = 64 + (seq.wrapping_mul(2_654_435_761) % 4032) as usize;
    (0..len)
        .map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// Opens the crash-test database with a small cache.
pub fn open(path: &Path) -> Result<(SledEngine, std::sync::Arc<dyn Keyspace>), EngineError> {
    let mut config = EngineConfig::new(path);
    config.cache_capacity = 8 * 1024 * 1024;
    let engine = SledEngine::open(&config)?;
    let records = engine.keyspace(KEYSPACE)?;
    Ok((engine, records))
}

/// What a crashed database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashState {
    /// Number of records: `0..count` are present.
    pub count: u64,
}

/// Why a crashed database is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CrashCheckError {
    #[error("the database does not open or read: {0}")]
    Engine(#[from] EngineError),
    #[error("record {seq} is missing while later records exist (or a key is malformed)")]
    Gap { seq: u64 },
    #[error("record {seq} has the wrong bytes")]
    Corrupt { seq: u64 },
    #[error("record {seq} and its mirror disagree (batch not atomic)")]
    TornBatch { seq: u64 },
}

fn scan_prefix(records: &dyn Keyspace, prefix: u8) -> Result<Vec<(u64, Vec<u8>)>, CrashCheckError> {
    let low = index_key(prefix, 0);
    let high = index_key(prefix, u64::MAX);
    let pairs = records.scan(
        Bound::Included(&low[..]),
        Bound::Included(&high[..]),
        ScanOrder::Ascending,
        usize::MAX,
    )?;
    pairs
        .into_iter()
        .enumerate()
        .map(|(position, (key, value))| match parse_index_key(&key) {
            Some(seq) if seq == position as u64 => Ok((seq, value)),
            _ => Err(CrashCheckError::Gap {
                seq: position as u64,
            }),
        })
        .collect()
}

/// Opens the database at `path` and checks it: records are `0..count` without gaps, each with
/// its payload, each with an identical mirror.
pub fn check(path: &Path) -> Result<CrashState, CrashCheckError> {
    let (_engine, records) = open(path)?;
    let main = scan_prefix(records.as_ref(), RECORD)?;
    let mirror = scan_prefix(records.as_ref(), MIRROR)?;
    for (seq, value) in &main {
        if *value != payload(*seq) {
            return Err(CrashCheckError::Corrupt { seq: *seq });
        }
    }
    if main.len() != mirror.len() || main.iter().zip(&mirror).any(|(a, b)| a != b) {
        let seq = main
            .iter()
            .zip(&mirror)
            .position(|(a, b)| a != b)
            .unwrap_or(main.len().min(mirror.len())) as u64;
        return Err(CrashCheckError::TornBatch { seq });
    }
    Ok(CrashState {
        count: main.len() as u64,
    })
}
