//! The state machine's per-entry data, kept in files rather than in the engine: the bodies of
//! unintegrated leaves (a [`SegmentLog`] indexed by leaf index) and the identity index
//! ([`IdentityIndex`], identity → leaf index) that dedup reads.
//!
//! Both grow with every entry, and sled held them badly: 1 M entries cost ~250 MiB of RSS for
//! the identity records and up to ~300 MiB for leaf bodies written and deleted behind the
//! integrator (measured with the node's write pattern), against a budget of 512 MiB at 10 M
//! entries. Here the process holds O(unintegrated leaves) of offsets and one byte per identity
//! slot (the index's slot tags, ~25 MiB at 10 M entries), and the page cache does the rest. The engine keeps only the small state (applied id, compact range, roots, ...).
//!
//! Consistency with the engine, whose writes are durable only at its next flush:
//! - leaf bodies are fsynced by [`EntryFiles::append`] *before* the engine batch that advances
//!   the applied size is written, so the leaves always reach at least the durable applied size;
//!   leaves beyond it (an apply whose engine batch was lost, or a snapshot install that never
//!   switched) are cut off at open ([`EntryFiles::recover`]) and by [`EntryFiles::discard_beyond`];
//! - identity records are written unsynced and made durable with a *watermark* (all identities
//!   below it are on disk) about every 30 s from [`EntryFiles::integrated`]; leaf
//!   bodies are purged only below both the integrated size and that watermark, so at open the
//!   identities from the watermark up are re-derived from the held bodies;
//! - a record at or beyond the applied size is never an answer ([`EntryFiles::lookup`]): it can
//!   only come from an apply lost in a crash, which re-applying the committed log rewrites with
//!   the same index (the committed order fixes every index). Staged bodies of a snapshot install
//!   get identity records only once they reproduced the snapshot's root.

use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::{parse_index_key, scan_prefix, Keyspace, WriteBatch};
use crate::identity_index::IdentityIndex;
use crate::segments::{SegmentConfig, SegmentError, SegmentLog};
use crate::state_machine::StateMachineError;
use crate::types::identity_of;

/// Bodies read, hashed and re-inserted per step when rebuilding identities at open.
const REBUILD_CHUNK: u64 = 4096;

/// Make identities durable at least this often while entries are integrated (the kernel's own
/// write-back period). Every insert dirties a 4 KiB page of a table far larger than a page; a
/// sync writes each dirty page once however often it was dirtied since the last, so syncing
/// rarely is what keeps the write-back near the data's size: with a sync every second the
/// integration rate at 10 M entries fell to 0.72 of the rate at 0 in the growth scenario.
const IDENTITY_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// ... or once this many entries are integrated beyond the watermark: bounds the bodies kept
/// on disk for the rebuild at open (about 1 GB).
const IDENTITY_SYNC_ENTRIES: u64 = 1_000_000;

/// Key prefixes of the engine layout before these files existed (read once to migrate).
const LEGACY_LEAF_PREFIX: u8 = b'l';
const LEGACY_IDENTITY_PREFIX: u8 = b'i';
const LEGACY_KEY_STAGING: &[u8] = b"m/staging";

/// The leaf bodies and the identity index of one state machine.
pub(crate) struct EntryFiles {
    leaves: SegmentLog,
    identities: IdentityIndex,
    /// When the identity watermark was last advanced (never in this process: due).
    last_identity_sync: Mutex<Option<Instant>>,
}

impl EntryFiles {
    /// Open (or create) `dir/leaves` and `dir/identities`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StateMachineError> {
        Ok(Self {
            leaves: SegmentLog::open(SegmentConfig::new(dir.join("leaves")))?,
            identities: IdentityIndex::open(&dir.join("identities"))?,
            last_identity_sync: Mutex::new(None),
        })
    }

    /// Bring the files in line with the engine's durable state at open: move records of the old
    /// engine layout over, cut leaves beyond the applied size, and re-insert the identities
    /// above the durable watermark from the held bodies.
    pub(crate) fn recover(
        &self,
        keyspace: &dyn Keyspace,
        applied: u64,
        integrated: u64,
    ) -> Result<(), StateMachineError> {
        self.migrate_engine_records(keyspace, applied)?;
        self.discard_beyond(applied)?;
        let next = self.leaves.next_index();
        if next < applied {
            if integrated >= applied && self.leaves.first_index().is_none() {
                // Everything applied is integrated and purged: the empty spool starts here.
                self.leaves.reset(applied)?;
            } else {
                return Err(StateMachineError::Corrupt(format!(
                    "leaf bodies end at {next} but {applied} leaves are applied and only {integrated} integrated"
                )));
            }
        }
        let watermark = self.identities.durable_watermark();
        if watermark < applied {
            let held_from = self.leaves.first_index().unwrap_or(applied);
            if held_from > watermark {
                return Err(StateMachineError::Corrupt(format!(
                    "the identity index is durable only below {watermark} and the leaf bodies from there are gone (held from {held_from}); resynchronise this node from an empty data directory"
                )));
            }
            let mut from = watermark;
            while from < applied {
                let to = applied.min(from + REBUILD_CHUNK);
                let records = self.identity_records(from..to)?;
                self.identities.insert_many(&records)?;
                from = to;
            }
            self.identities.sync(applied)?;
            tracing::info!(
                from = watermark,
                to = applied,
                "re-inserted identities above the durable watermark"
            );
        }
        Ok(())
    }

    /// Identity records of the held bodies `range`.
    fn identity_records(
        &self,
        range: Range<u64>,
    ) -> Result<Vec<([u8; 32], u64)>, StateMachineError> {
        let start = range.start;
        Ok(self
            .read(range)?
            .iter()
            .enumerate()
            .map(|(offset, body)| (identity_of(body), start + offset as u64))
            .collect())
    }

    /// The index recorded for `identity`, if it is below `applied` (see the module docs).
    pub(crate) fn lookup(
        &self,
        identity: &[u8; 32],
        applied: u64,
    ) -> Result<Option<u64>, StateMachineError> {
        Ok(self
            .identities
            .get(identity)?
            .filter(|index| *index < applied))
    }

    /// The raw identity record, whatever its index.
    pub(crate) fn recorded(&self, identity: &[u8; 32]) -> Result<Option<u64>, StateMachineError> {
        Ok(self.identities.get(identity)?)
    }

    /// Dedup's lookup and record in one probe: the index of `identity` if it is logged below
    /// `applied`, otherwise record it at `index` (not yet durably) and return `None`.
    pub(crate) fn claim(
        &self,
        identity: &[u8; 32],
        index: u64,
        applied: u64,
    ) -> Result<Option<u64>, StateMachineError> {
        Ok(self.identities.claim(identity, index, applied)?)
    }

    /// Bodies `first..` as leaves, durably (their identities were claimed while applying).
    pub(crate) fn append(&self, first: u64, bodies: &[Vec<u8>]) -> Result<(), StateMachineError> {
        self.stage(first, bodies)?;
        self.leaves.sync()?;
        Ok(())
    }

    /// Bodies `first..` as leaves, without identities and not yet durable (a snapshot install's
    /// staging: nothing staged is trusted until the root matches).
    pub(crate) fn stage(&self, first: u64, bodies: &[Vec<u8>]) -> Result<(), StateMachineError> {
        if bodies.is_empty() {
            return Ok(());
        }
        if self.leaves.first_index().is_some() && self.leaves.next_index() != first {
            return Err(StateMachineError::Corrupt(format!(
                "leaf {first} appended but the held leaves end at {}",
                self.leaves.next_index()
            )));
        }
        let slices: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        self.leaves.append(first, &slices)?;
        Ok(())
    }

    /// Record the identities of the held bodies `range` (staged ones that proved honest) and make
    /// the bodies durable.
    pub(crate) fn adopt_staged(&self, range: Range<u64>) -> Result<(), StateMachineError> {
        let mut from = range.start;
        while from < range.end {
            let to = range.end.min(from + REBUILD_CHUNK);
            let records = self.identity_records(from..to)?;
            self.identities.insert_many(&records)?;
            from = to;
        }
        self.leaves.sync()?;
        Ok(())
    }

    /// Drop held bodies at or beyond `applied` (never applied, or staged and abandoned).
    pub(crate) fn discard_beyond(&self, applied: u64) -> Result<(), StateMachineError> {
        if self.leaves.first_index().is_some() && self.leaves.next_index() > applied {
            let dropped = self.leaves.next_index() - applied;
            self.leaves.truncate_from(applied)?;
            tracing::info!(
                from = applied,
                dropped,
                "dropped leaf bodies beyond the applied size"
            );
        }
        Ok(())
    }

    /// The held bodies `range`, in index order.
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>, StateMachineError> {
        if range.start >= range.end {
            return Ok(Vec::new());
        }
        let held_from = self.leaves.first_index().unwrap_or(u64::MAX);
        if range.start < held_from {
            return Err(StateMachineError::LeafMissing { index: range.start });
        }
        let next = self.leaves.next_index();
        if range.end > next {
            return Err(StateMachineError::LeafMissing {
                index: next.max(range.start),
            });
        }
        match self.leaves.read(range.clone()) {
            Ok(bodies) => Ok(bodies),
            // Purged concurrently.
            Err(SegmentError::OutOfRange { .. }) => {
                Err(StateMachineError::LeafMissing { index: range.start })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The integrator has durably written every leaf below `size` (of `applied`): advance the
    /// identity watermark when due, then forget the bodies below both.
    pub(crate) fn integrated(&self, size: u64, applied: u64) -> Result<(), StateMachineError> {
        let mut watermark = self.identities.durable_watermark();
        if watermark < size {
            let mut last = self
                .last_identity_sync
                .lock()
                .map_err(|_| StateMachineError::Poisoned)?;
            let due = last.is_none_or(|at| at.elapsed() >= IDENTITY_SYNC_INTERVAL);
            if due || size - watermark >= IDENTITY_SYNC_ENTRIES {
                // Every identity below `applied` was inserted before `applied` was published.
                self.identities.sync(applied)?;
                watermark = applied;
                *last = Some(Instant::now());
            }
        }
        let purge_to = size.min(watermark);
        if self
            .leaves
            .first_index()
            .is_some_and(|first| first < purge_to)
        {
            self.leaves.purge_to(purge_to)?;
        }
        Ok(())
    }

    /// Identities stored (for a metric).
    pub(crate) fn identity_count(&self) -> u64 {
        self.identities.len()
    }

    /// Bytes of the leaf segments and the identity index (for a metric).
    pub(crate) fn size_on_disk(&self) -> u64 {
        self.leaves.size_on_disk() + self.identities.size_on_disk()
    }

    /// Move leaf and identity records of the old engine layout into the files, then delete them
    /// from the engine. Records at or beyond the applied size (staged by an unfinished install)
    /// are dropped.
    fn migrate_engine_records(
        &self,
        keyspace: &dyn Keyspace,
        applied: u64,
    ) -> Result<(), StateMachineError> {
        let mut moved_leaves = 0u64;
        let mut moved_identities = 0u64;
        loop {
            let rows = scan_prefix(keyspace, LEGACY_LEAF_PREFIX, REBUILD_CHUNK as usize)?;
            if rows.is_empty() {
                break;
            }
            let mut delete = WriteBatch::new();
            let mut bodies = Vec::new();
            let mut first = None;
            for (key, body) in rows {
                let index = parse_index_key(&key)
                    .ok_or_else(|| StateMachineError::Corrupt("legacy leaf key".into()))?;
                if index < applied && index >= self.leaves.next_index() {
                    first.get_or_insert(index);
                    bodies.push(body);
                }
                delete.delete(key);
            }
            if let Some(first) = first {
                self.stage(first, &bodies)?;
                moved_leaves += bodies.len() as u64;
            }
            self.leaves.sync()?;
            keyspace.apply(delete)?;
        }
        loop {
            let rows = scan_prefix(keyspace, LEGACY_IDENTITY_PREFIX, 65_536)?;
            if rows.is_empty() {
                break;
            }
            let mut delete = WriteBatch::new();
            let mut records = Vec::with_capacity(rows.len());
            for (key, value) in rows {
                let identity: Option<[u8; 32]> = key.get(1..).and_then(|k| k.try_into().ok());
                let index: Option<[u8; 8]> = value.as_slice().try_into().ok();
                if let (Some(identity), Some(index)) = (identity, index) {
                    let index = u64::from_be_bytes(index);
                    if index < applied {
                        records.push((identity, index));
                    }
                }
                delete.delete(key);
            }
            self.identities.insert_many(&records)?;
            moved_identities += records.len() as u64;
            keyspace.apply(delete)?;
        }
        let legacy_marker = keyspace.get(LEGACY_KEY_STAGING)?.is_some();
        if moved_leaves > 0 || moved_identities > 0 || legacy_marker {
            self.identities.sync(applied)?;
            let mut marker = WriteBatch::new();
            marker.delete(LEGACY_KEY_STAGING);
            keyspace.apply(marker)?;
            keyspace.flush()?;
            tracing::info!(
                leaves = moved_leaves,
                identities = moved_identities,
                "moved leaf bodies and identities of an older layout from the engine into files"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::test_support::write_damaged_segments;

    #[test]
    fn damaged_leaf_files_are_typed_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let damaged = write_damaged_segments(&dir.path().join("leaves"), 0);
        match EntryFiles::open(dir.path()) {
            Err(StateMachineError::Leaves(SegmentError::Corrupt { path, .. })) => {
                assert_eq!(path, damaged);
            }
            Err(other) => panic!("expected corrupt leaves, got {other:?}"),
            Ok(_) => panic!("expected corrupt leaves, the files opened"),
        }
    }

    #[test]
    fn leaf_writes_after_a_failed_sync_are_typed_as_poisoned() {
        let dir = tempfile::tempdir().unwrap();
        let files = EntryFiles::open(dir.path()).unwrap();
        files.append(0, &[b"a".to_vec()]).unwrap();
        files.leaves.poison_for_test();
        match files.append(1, &[b"b".to_vec()]) {
            Err(StateMachineError::Leaves(SegmentError::Poisoned)) => {}
            other => panic!("expected poisoned leaves, got {other:?}"),
        }
    }
}
