//! What the storage crash tests share: [`run_and_kill`], the record format of the
//! storage-engine crash test (`bin/sled-crash-writer` writes it, `tests/crash_sled.rs` checks it
//! after every SIGKILL), and the record functions of the segment and identity-index writers.
//!
//! Record `seq` lives at [`index_key`]`(RECORD, seq)` with [`payload`]`(seq)`, and its mirror at
//! `index_key(MIRROR, seq)`, written in the same atomic batch and made durable with
//! `Keyspace::flush` before the writer prints `seq`.

use std::io::{BufRead, BufReader};
use std::ops::Bound;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rekor_raft::engine::{index_key, parse_index_key, Keyspace, ScanOrder};
use rekor_raft::{EngineConfig, EngineError, SledEngine};

/// Starts the crash writer `program` on `dir`, waits (up to a minute) until it printed at least
/// one number — a write it was told is durable — lets it run `extra` longer, kills it with
/// SIGKILL and returns the last number it printed. Panics if it printed nothing.
pub fn run_and_kill(program: &Path, dir: &Path, extra: Duration) -> Option<u64> {
    let mut child = Command::new(program)
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let last = Arc::new(Mutex::new(None::<u64>));
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let last = last.clone();
        std::thread::spawn(move || {
            // Only complete lines count: a number cut short by the kill was never acknowledged.
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if let Some(number) = line.strip_suffix('\n').and_then(|n| n.parse().ok()) {
                    *last.lock().expect("last acknowledged") = Some(number);
                    let _ = first_tx.send(());
                }
                line.clear();
            }
        })
    };
    if first_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let output = child.wait_with_output().expect("reaping the writer");
        panic!(
            "the writer acknowledged nothing ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The random moment of the crash.
    std::thread::sleep(extra);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaping the writer");
    reader.join().expect("reader thread");
    let acknowledged = *last.lock().expect("last acknowledged");
    acknowledged
}

/// Segment size of `bin/segment-crash-writer` (small, so that kills land during rolls).
pub const SEGMENT_BYTES: u64 = 64 * 1024;
/// Records the segment writer keeps behind its write position when purging, so the last this
/// many synced indices stay readable.
pub const SEGMENT_KEEP: u64 = 2_000;

/// Payload of record `index` of the segment crash test.
pub fn segment_record(index: u64) -> Vec<u8> {
    let len = 1 + (index.wrapping_mul(7_919) % 1_500) as usize;
    let seed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .collect()
}

/// Identity of entry `index` in the identity-index crash test: a cheap deterministic stand-in
/// for SHA-256 (four splitmix64 outputs).
pub fn identity_of_entry(index: u64) -> [u8; 32] {
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
