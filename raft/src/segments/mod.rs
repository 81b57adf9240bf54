//! Append-only, segmented, crash-safe record log: the on-disk home of the Raft log and of the
//! unintegrated leaf bodies (DESIGN.md, "Durable before acknowledged"; replaces the sled trees
//! that grew without bound under append + delete-behind).
//!
//! A log holds records with consecutive `u64` indices in a window `[first_index, next_index)`.
//! It is appended at the end, cut back at the end (`truncate_from`, Raft conflict truncation),
//! forgotten from the front (`purge_to`), or emptied (`reset`). It is *not* a key-value store
//! and knows nothing about what a record means. Its newest records stay in memory after their
//! append, up to [`SegmentConfig::recent_bytes`], and reads of them are served from there
//! (`recent`): both logs are read back soon after they are written.
//!
//! # On-disk format
//!
//! One directory per log. Each segment file is named after the index of its first record,
//! zero-padded so names sort like indices: `{first:020}.seg`. A segment is a sequence of
//! records, each `[index u64 LE][len u32 LE][crc32 u32 LE][payload; len]`, the CRC covering
//! `index || len || payload`. Segment `n+1` starts at the index where segment `n` ends; the
//! last segment is the only one that is written. An empty segment file is legal and says
//! "the log continues at my name" — this is how `next_index` survives a reopen when the log
//! holds no records. `reset.intent` (written via `reset.intent.tmp` + rename) marks a reset
//! in progress.
//!
//! # Durability promises and crash behaviour
//!
//! - `append` writes but does not sync; `sync` makes every append that returned before it
//!   durable (fdatasync of the active segment, then an fsync of the directory if segment files
//!   were created or removed since the last one).
//! - Rolling to a new segment fdatasyncs the sealed one (and the directory, if dirty) *before*
//!   creating the next file, so after any crash every segment but the last is complete. Damage
//!   found on open in a non-last segment is therefore real corruption (`Corrupt`), while an
//!   incomplete or bad-CRC tail of the last segment is what a crash mid-append leaves, and is
//!   cut away with a warning.
//! - `truncate_from` unlinks later segments (highest first), fsyncs the directory, then cuts the
//!   segment holding `from` and fdatasyncs it. A crash part-way leaves a prefix of the old log
//!   that still contains every record below `from`.
//! - `reset` (and every operation that needs the log to restart at a new index: `purge_to`
//!   past the end, `truncate_from` below the first segment, an append at a new index into an
//!   empty log) first durably writes `reset.intent`; `open` completes an interrupted reset.
//!   (`purge_to(next_index())` does not reset: it keeps the active segment, whose end already
//!   says where the log continues.)
//!   So a crash leaves either the old log or the new empty one.
//! - `purge_to` unlinks whole sealed segments, lowest first, without syncing; after a reopen
//!   the log may start lower than the purge point (callers keep their own purge point).
//! - If an fsync (or a rollback after a failed write) fails, the log is *poisoned*: every later
//!   write returns [`SegmentError::Poisoned`] and the owner must reopen it, because after a
//!   failed fsync the kernel may already have dropped the dirty pages.
//!
//! # Concurrency
//!
//! All methods take `&self`. Mutations are serialised by `writer`; the offset table readers use
//! is behind `table`, write-locked only for short in-memory updates, never across IO. Readers
//! clone the `Arc<File>` of the segments they need and read with `pread` after releasing the
//! table lock, so a segment unlinked by `purge_to` or `reset` stays readable for them. Only
//! `truncate_from` changes bytes in place; it takes `read_gate` exclusively while it hides the
//! cut records, which waits for in-flight reads (readers hold `read_gate` shared for their IO).
//! No lock a reader takes is ever held across an fsync.
//!
//! # Parts
//!
//! - this file: the log itself — its state, appending, syncing, cutting, purging, resetting
//!   and reading, and the small file helpers they share;
//! - `format`: the bytes on disk — record headers and their checksums, segment file names,
//!   the reset intent's encoding;
//! - `recovery`: [`SegmentLog::open`] — finishing an interrupted reset, scanning segments,
//!   cutting a torn tail — and the reset protocol it completes;
//! - `recent`: the newest records, in memory;
//! - `tests`: the unit and property tests.

mod format;
mod recent;
mod recovery;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use format::{encode_header, segment_path, verify_record, HEADER_LEN};
use recent::RecentRecords;
use recovery::{complete_reset, write_reset_intent};

/// Default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Default memory for a log's newest records ([`SegmentConfig::recent_bytes`]).
pub const DEFAULT_RECENT_BYTES: usize = 16 * 1024 * 1024;

/// A read fetches consecutive records with one `pread` of up to about this many bytes.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// Where a log lives and how big its segment files grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Directory holding this log's segment files (created if missing). One log per directory.
    pub dir: PathBuf,
    /// The active segment is sealed when the next record would take it past this size.
    /// A record larger than this is written alone in its own segment.
    pub segment_bytes: u64,
    /// Memory for the newest records, which reads then take from memory instead of the files
    /// (about their payload bytes; 0 keeps none).
    pub recent_bytes: usize,
}

impl SegmentConfig {
    /// A config for `dir` with the default segment size ([`DEFAULT_SEGMENT_BYTES`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            recent_bytes: DEFAULT_RECENT_BYTES,
        }
    }
}

/// What went wrong, in the log's terms.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A file system call failed.
    #[error("segment log: {op} failed for {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Stored bytes fail their checks somewhere a crash cannot explain.
    #[error("segment log corrupt: {} at byte {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A read asked for records outside the held window.
    #[error("records {start}..{end} are not held (the log holds {first}..{next})")]
    OutOfRange {
        start: u64,
        end: u64,
        first: u64,
        next: u64,
    },
    /// An append to a non-empty log did not start at `next_index()`.
    #[error("append at index {got}, but the log continues at {expected}")]
    NotContiguous { expected: u64, got: u64 },
    /// A record's payload does not fit the header's u32 length field.
    #[error("record of {len} bytes exceeds the {max}-byte record limit")]
    RecordTooLarge { len: usize, max: u64 },
    /// Appending `count` records at `first` would run past `u64::MAX`.
    #[error("appending {count} records at index {first} overflows the index space")]
    IndexOverflow { first: u64, count: u64 },
    /// An earlier fsync or rollback failed; the on-disk state is unknown until reopened.
    #[error("segment log is poisoned by an earlier failed sync or write; reopen it")]
    Poisoned,
}

type Result<T, E = SegmentError> = std::result::Result<T, E>;

/// One segment file and the offsets of the records in it.
struct Segment {
    /// Index of the segment's first record (its file name).
    first: u64,
    path: PathBuf,
    /// Shared with readers, so an unlinked segment stays readable for a read already under way.
    file: Arc<File>,
    /// Byte offset of each record's header; record `first + i` is at `offsets[i]`.
    offsets: Vec<u64>,
    /// Bytes of complete records, i.e. where the next record goes.
    len: u64,
}

impl Segment {
    /// One past the index of the segment's last record.
    fn end(&self) -> u64 {
        self.first + self.offsets.len() as u64
    }

    /// Byte range of the record at local position `local`.
    fn record_span(&self, local: usize) -> (u64, u64) {
        let start = self.offsets[local];
        let end = self.offsets.get(local + 1).copied().unwrap_or(self.len);
        (start, end)
    }
}

/// What readers see. Mutated only by the holder of `SegmentLog::writer`.
struct Table {
    /// Every segment file on disk, in index order; the last is the active one.
    segments: VecDeque<Segment>,
    /// First held index (the purge point, or the first record on disk if higher).
    /// The log is empty when `first == next`.
    first: u64,
    next: u64,
    /// The newest records, ending at `next`.
    recent: RecentRecords,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.first >= self.next
    }

    /// Position of the segment holding record `index`, if any segment does.
    fn segment_holding(&self, index: u64) -> Option<usize> {
        let after = self.segments.partition_point(|s| s.first <= index);
        let pos = after.checked_sub(1)?;
        (index < self.segments[pos].end()).then_some(pos)
    }
}

/// State only the writer touches.
struct WriterState {
    /// Segment files were created or removed since the directory was last fsynced.
    dir_dirty: bool,
}

/// An append-only, segmented, crash-safe record log. See the module docs.
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    /// Serialises every mutation (append, truncate, purge, reset) and owns `dir_dirty`.
    /// Lock order: `sync_lock`, `writer`, `read_gate`, `table`.
    writer: Mutex<WriterState>,
    /// Offset table; write-locked only for in-memory updates.
    table: RwLock<Table>,
    /// Shared by readers for the duration of their file reads; exclusive while
    /// `truncate_from` hides records whose bytes it is about to cut and later overwrite.
    read_gate: RwLock<()>,
    /// Serialises `sync` so that a second caller cannot return before a directory fsync that
    /// the first caller took responsibility for has completed.
    sync_lock: Mutex<()>,
    poisoned: AtomicBool,
}

impl fmt::Debug for SegmentLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table_read();
        f.debug_struct("SegmentLog")
            .field("dir", &self.dir)
            .field("first", &table.first)
            .field("next", &table.next)
            .field("segments", &table.segments.len())
            .field("poisoned", &self.poisoned.load(Ordering::SeqCst))
            .finish()
    }
}

impl SegmentLog {
    /// Index of the first record held, `None` if the log is empty.
    pub fn first_index(&self) -> Option<u64> {
        let table = self.table_read();
        (!table.is_empty()).then_some(table.first)
    }

    /// One past the last record held. When the log is empty: the index set by the last
    /// `reset`/`purge_to`/`truncate_from` (0 for a new log), which is also where it continues.
    pub fn next_index(&self) -> u64 {
        self.table_read().next
    }

    /// Appends `records` with indices `first..first + records.len()`.
    ///
    /// If the log holds records, `first` must be `next_index()` ([`SegmentError::NotContiguous`]);
    /// an empty log accepts any `first` (restarting at a new index is a durable reset first).
    /// On return the records are readable but not durable: call [`SegmentLog::sync`]. Each
    /// segment's share of the batch goes to disk in one vectored write. Appending no records
    /// changes nothing. On an IO error a prefix of the batch may have been appended;
    /// `next_index()` says how much.
    pub fn append(&self, first: u64, records: &[&[u8]]) -> Result<()> {
        self.check_poisoned()?;
        let count = records.len() as u64;
        first
            .checked_add(count)
            .ok_or(SegmentError::IndexOverflow { first, count })?;
        if let Some(record) = records.iter().find(|r| u32::try_from(r.len()).is_err()) {
            return Err(SegmentError::RecordTooLarge {
                len: record.len(),
                max: u64::from(u32::MAX),
            });
        }

        let mut writer = self.lock_writer()?;
        let (empty, next, has_segments) = {
            let table = self.table_read();
            (table.is_empty(), table.next, !table.segments.is_empty())
        };
        if !empty && first != next {
            return Err(SegmentError::NotContiguous {
                expected: next,
                got: first,
            });
        }
        if records.is_empty() {
            return Ok(());
        }
        if !has_segments {
            // A brand-new log: nothing on disk to contradict, so no reset is needed.
            let segment = create_segment(&self.dir, first)?;
            writer.dir_dirty = true;
            let mut table = self.table_write();
            table.segments.push_back(segment);
            table.first = first;
            table.next = first;
            table.recent.clear(first);
        } else if first != next {
            // Empty log restarting elsewhere: the files must not keep saying "continue at next".
            self.reset_locked(first)?;
        }

        // Invariant from here: the active segment ends at `index` and table.next == index.
        let mut index = first;
        let mut remaining = records;
        while !remaining.is_empty() {
            let (file, path, start) = {
                let table = self.table_read();
                let active = table.segments.back().ok_or(SegmentError::Poisoned)?;
                (Arc::clone(&active.file), active.path.clone(), active.len)
            };
            let mut active_has_records = start > 0;
            let mut position = start;
            let mut headers = Vec::new();
            let mut offsets = Vec::new();
            for record in remaining {
                let size = (HEADER_LEN + record.len()) as u64;
                if active_has_records && position.saturating_add(size) > self.segment_bytes {
                    break;
                }
                headers.extend_from_slice(&encode_header(index + offsets.len() as u64, record));
                offsets.push(position);
                position += size;
                active_has_records = true;
            }

            if !offsets.is_empty() {
                let (chunk, rest) = remaining.split_at(offsets.len());
                let mut slices = Vec::with_capacity(chunk.len() * 2);
                for (header, record) in headers.chunks_exact(HEADER_LEN).zip(chunk) {
                    slices.push(IoSlice::new(header));
                    slices.push(IoSlice::new(record));
                }
                if let Err(source) = write_all_vectored_at(&file, start, &mut slices) {
                    // Cut off a partial write so the segment ends on a record boundary again;
                    // if even that fails the file no longer matches the table.
                    if file.set_len(start).is_err() {
                        self.poison("rollback of a failed append");
                    }
                    return Err(SegmentError::Io {
                        op: "append",
                        path,
                        source,
                    });
                }
                index += offsets.len() as u64;
                let mut table = self.table_write();
                if let Some(active) = table.segments.back_mut() {
                    active.offsets.extend_from_slice(&offsets);
                    active.len = position;
                }
                let chunk_first = table.next;
                table.recent.push(chunk_first, chunk);
                table.next = index;
                remaining = rest;
            }
            if !remaining.is_empty() {
                self.roll(&mut writer, &file, &path, index)?;
            }
        }
        Ok(())
    }

    /// Makes every append that returned before this call durable: fdatasync of the active
    /// segment, then an fsync of the directory if segments were created or removed since the
    /// last one. Readers and appenders are not blocked while the fsync runs.
    pub fn sync(&self) -> Result<()> {
        self.check_poisoned()?;
        let _one_sync_at_a_time = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (active, dir_dirty) = {
            let mut writer = self.lock_writer()?;
            let table = self.table_read();
            let active = table
                .segments
                .back()
                .map(|s| (Arc::clone(&s.file), s.path.clone()));
            (active, std::mem::take(&mut writer.dir_dirty))
        };
        if let Some((file, path)) = active {
            if let Err(source) = file.sync_data() {
                self.poison("fdatasync of the active segment");
                return Err(SegmentError::Io {
                    op: "fdatasync segment",
                    path,
                    source,
                });
            }
        }
        if dir_dirty {
            if let Err(e) = sync_dir(&self.dir) {
                self.poison("fsync of the log directory");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes every record with index `>= from` (Raft conflict truncation); `next_index()`
    /// becomes `from` if it was higher. Durable on return. Truncating below every record on
    /// disk is a [`SegmentLog::reset`] to `from`.
    pub fn truncate_from(&self, from: u64) -> Result<()> {
        self.check_poisoned()?;
        let _writer = self.lock_writer()?;
        let holder = {
            let table = self.table_read();
            if from >= table.next {
                return Ok(());
            }
            table.segment_holding(from)
        };
        let Some(position) = holder else {
            return self.reset_locked(from);
        };

        // Hide the cut records, after in-flight reads (which may be reading them) finish.
        let (doomed, file, path, cut) = {
            let _no_reads_in_flight = self
                .read_gate
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let mut table = self.table_write();
            let doomed: Vec<PathBuf> = table
                .segments
                .drain(position + 1..)
                .map(|s| s.path)
                .collect();
            let segment = &mut table.segments[position];
            let local = (from - segment.first) as usize;
            let cut = segment.offsets[local];
            segment.offsets.truncate(local);
            segment.len = cut;
            let (file, path) = (Arc::clone(&segment.file), segment.path.clone());
            table.next = from;
            table.first = table.first.min(from);
            table.recent.truncate_from(from);
            (doomed, file, path, cut)
        };

        let result = cut_tail(&self.dir, &doomed, &file, &path, cut);
        if result.is_err() {
            // The table no longer describes the files; only a reopen can re-derive it.
            self.poison("truncate_from");
        }
        result
    }

    /// Forgets records with index `< to`: reading them fails, and segment files holding only
    /// such records are deleted, except that a segment straddling `to` is kept whole and the
    /// active segment is always kept (it says where the log continues; purging exactly to
    /// `next_index()` is thus cheap). Not durable, so after a reopen `first_index()` may be
    /// lower than `to`; callers keep their own purge point. Purging past `next_index()` is a
    /// durable [`SegmentLog::reset`] to `to` (the log then continues at `to`).
    pub fn purge_to(&self, to: u64) -> Result<()> {
        self.check_poisoned()?;
        let mut writer = self.lock_writer()?;
        let doomed: Vec<PathBuf> = {
            let mut table = self.table_write();
            if to <= table.first {
                return Ok(());
            }
            if to > table.next {
                drop(table);
                return self.reset_locked(to);
            }
            table.first = to;
            table.recent.purge_to(to);
            let sealed = table.segments.len().saturating_sub(1);
            table
                .segments
                .iter()
                .take(sealed)
                .take_while(|s| s.end() <= to)
                .map(|s| s.path.clone())
                .collect()
        };

        // Lowest first and stop at the first failure, so the files left always continue one
        // another; a segment we could not delete stays in the table (and is retried next time).
        let mut removed = 0;
        let mut failure = None;
        for path in &doomed {
            match remove_segment_file(path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if removed > 0 {
            writer.dir_dirty = true;
            let mut table = self.table_write();
            table.segments.drain(..removed);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Removes everything; the log is empty and continues at `next`. Durable on return, and
    /// atomic across a crash (see the module docs).
    pub fn reset(&self, next: u64) -> Result<()> {
        self.check_poisoned()?;
        let _writer = self.lock_writer()?;
        self.reset_locked(next)
    }

    /// Records `range.start..range.end`, each as its payload bytes. The range must lie within
    /// `[first_index, next_index)` ([`SegmentError::OutOfRange`]); an empty range yields no
    /// records. The newest records come from memory (`recent`); every record read from a file
    /// has its header and CRC checked again. Runs concurrently with appends and syncs.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>> {
        if range.start == range.end {
            return Ok(Vec::new());
        }
        let _gate = self
            .read_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let (plan, in_memory) = {
            let table = self.table_read();
            if table.is_empty()
                || range.start > range.end
                || range.start < table.first
                || range.end > table.next
            {
                return Err(SegmentError::OutOfRange {
                    start: range.start,
                    end: range.end,
                    first: table.first,
                    next: table.next,
                });
            }
            let (in_memory_from, in_memory) = table.recent.tail_of(range.clone());
            let plan = if range.start < in_memory_from {
                plan_read(&table, range.start..in_memory_from)
            } else {
                Vec::new()
            };
            (plan, in_memory)
        };

        let mut records = Vec::with_capacity((range.end - range.start) as usize);
        for piece in plan {
            piece.read_into(&mut records)?;
        }
        records.extend(in_memory.iter().map(|record| record.to_vec()));
        Ok(records)
    }

    /// Bytes of all segment files, for a metric.
    pub fn size_on_disk(&self) -> u64 {
        self.table_read().segments.iter().map(|s| s.len).sum()
    }

    /// Seals the active segment (`file`, ending at `index`) and starts a new one at `index`.
    fn roll(&self, writer: &mut WriterState, file: &File, path: &Path, index: u64) -> Result<()> {
        // Sealed segments must be complete on disk before a later one can exist: otherwise a
        // crash could leave a torn record in the middle of the log, which open calls corruption.
        if let Err(source) = file.sync_data() {
            self.poison("fdatasync of a sealed segment");
            return Err(SegmentError::Io {
                op: "fdatasync sealed segment",
                path: path.to_path_buf(),
                source,
            });
        }
        if writer.dir_dirty {
            if let Err(e) = sync_dir(&self.dir) {
                self.poison("fsync of the log directory");
                return Err(e);
            }
            writer.dir_dirty = false;
        }
        let segment = create_segment(&self.dir, index)?;
        writer.dir_dirty = true;
        self.table_write().segments.push_back(segment);
        Ok(())
    }

    /// Empties the log so that it continues at `next`. Caller holds `writer`.
    ///
    /// The durable `reset.intent` is the commit point: before it the old log survives a crash,
    /// after it `open` finishes the job. Readers holding old segments keep reading them (the
    /// unlinked files stay open), so no read gate is needed.
    fn reset_locked(&self, next: u64) -> Result<()> {
        let outcome =
            write_reset_intent(&self.dir, next).and_then(|()| complete_reset(&self.dir, next));
        match outcome {
            Ok(marker) => {
                let mut table = self.table_write();
                table.segments.clear();
                table.segments.push_back(marker);
                table.first = next;
                table.next = next;
                table.recent.clear(next);
                Ok(())
            }
            Err(e) => {
                self.poison("reset");
                Err(e)
            }
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            Err(SegmentError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Poison the log as a failed fsync would, for the owners' tests.
    #[cfg(test)]
    pub(crate) fn poison_for_test(&self) {
        self.poison("test");
    }

    fn poison(&self, what: &str) {
        tracing::error!(dir = %self.dir.display(), what, "segment log poisoned; it must be reopened");
        self.poisoned.store(true, Ordering::SeqCst);
    }

    fn lock_writer(&self) -> Result<MutexGuard<'_, WriterState>> {
        // A panic mid-mutation may have left the table and the files disagreeing.
        self.writer.lock().map_err(|_| {
            self.poison("a writer panicked");
            SegmentError::Poisoned
        })
    }

    fn table_read(&self) -> RwLockReadGuard<'_, Table> {
        // Table updates are small and cannot panic half-way, so a poisoned lock is still sound.
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn table_write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The file half of `truncate_from`: unlink the `doomed` later segments, then cut the segment
/// `file` at byte `cut`, durably. Later segments go first (highest first) and the directory is
/// synced before the cut, so a crash part-way leaves a prefix of the old log, never a gap.
fn cut_tail(dir: &Path, doomed: &[PathBuf], file: &File, path: &Path, cut: u64) -> Result<()> {
    for doomed_path in doomed.iter().rev() {
        remove_segment_file(doomed_path)?;
    }
    if !doomed.is_empty() {
        sync_dir(dir)?;
    }
    file.set_len(cut)
        .map_err(io_err("truncate segment", path))?;
    file.sync_data().map_err(io_err("fdatasync segment", path))
}

/// The records one segment contributes to a read, located while the table was locked.
struct ReadPiece {
    path: PathBuf,
    file: Arc<File>,
    first_index: u64,
    /// Byte span of each record, consecutive.
    spans: Vec<(u64, u64)>,
}

fn plan_read(table: &Table, range: Range<u64>) -> Vec<ReadPiece> {
    let mut plan = Vec::new();
    let mut index = range.start;
    while index < range.end {
        let Some(position) = table.segment_holding(index) else {
            break; // unreachable: the held window lies within the segments
        };
        let segment = &table.segments[position];
        let stop = range.end.min(segment.end());
        let spans = ((index - segment.first)..(stop - segment.first))
            .map(|local| segment.record_span(local as usize))
            .collect();
        plan.push(ReadPiece {
            path: segment.path.clone(),
            file: Arc::clone(&segment.file),
            first_index: index,
            spans,
        });
        index = stop;
    }
    plan
}

impl ReadPiece {
    fn read_into(&self, records: &mut Vec<Vec<u8>>) -> Result<()> {
        let mut i = 0;
        while i < self.spans.len() {
            let chunk_start = self.spans[i].0;
            let mut j = i + 1;
            while j < self.spans.len() && self.spans[j].1 - chunk_start <= READ_CHUNK_BYTES {
                j += 1;
            }
            let chunk_end = self.spans[j - 1].1;
            let mut buf = vec![0u8; to_usize(chunk_end - chunk_start, &self.path, chunk_start)?];
            self.file
                .read_exact_at(&mut buf, chunk_start)
                .map_err(io_err("read segment", &self.path))?;
            if j - i == 1 {
                // A lone (typically large) record: strip the header in place instead of copying.
                let index = self.first_index + i as u64;
                verify_record(&self.path, chunk_start, &buf, index)?;
                buf.drain(..HEADER_LEN);
                records.push(buf);
            } else {
                for (k, &(start, end)) in self.spans[i..j].iter().enumerate() {
                    let bytes = &buf[(start - chunk_start) as usize..(end - chunk_start) as usize];
                    let index = self.first_index + (i + k) as u64;
                    verify_record(&self.path, start, bytes, index)?;
                    records.push(bytes[HEADER_LEN..].to_vec());
                }
            }
            i = j;
        }
        Ok(())
    }
}

/// Writes all of `slices` at `offset` with as few `writev` calls as the kernel allows.
/// Only the writer moves the file cursor; readers use `pread`, which ignores it.
fn write_all_vectored_at(
    file: &File,
    offset: u64,
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn create_segment(dir: &Path, first: u64) -> Result<Segment> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("create segment", &path))?;
    Ok(Segment {
        first,
        path,
        file: Arc::new(file),
        offsets: Vec::new(),
        len: 0,
    })
}

fn remove_segment_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(SegmentError::Io {
            op: "remove file",
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn to_usize(bytes: u64, path: &Path, offset: u64) -> Result<usize> {
    usize::try_from(bytes).map_err(|_| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: format!("record span of {bytes} bytes does not fit in memory"),
    })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SegmentError + 'a {
    move |source| SegmentError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Test support for the owners of segment logs (the log store, the entry files).
#[cfg(test)]
pub(crate) mod test_support {
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    use super::{SegmentConfig, SegmentLog};

    /// Fill `dir` with several small segments holding records `first..first + 19`, then damage
    /// a payload byte of the first (sealed) segment, which a reopen must report as corrupt
    /// rather than cut off as a torn tail. Returns the damaged file.
    pub(crate) fn write_damaged_segments(dir: &Path, first: u64) -> PathBuf {
        let log = SegmentLog::open(SegmentConfig {
            dir: dir.to_path_buf(),
            segment_bytes: 200,
            recent_bytes: 0,
        })
        .unwrap();
        let records: Vec<Vec<u8>> = (1..20u8).map(|i| vec![i; 40]).collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        log.append(first, &slices).unwrap();
        log.sync().unwrap();
        drop(log);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        assert!(files.len() > 2, "{files:?}");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&files[0])
            .unwrap();
        // Inside the first record's payload (after its 16-byte header).
        file.write_all_at(&[0xFF], 20).unwrap();
        files.swap_remove(0)
    }
}
