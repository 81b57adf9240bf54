//! Append-only, segmented, crash-safe record log: the on-disk home of the Raft log and of the
//! unintegrated leaf bodies (DESIGN.md, "Durable before acknowledged"; replaces the sled trees
//! that grew without bound under append + delete-behind).
//!
//! A log holds records with consecutive `u64` indices in a window `[first_index, next_index)`.
//! It is appended at the end, cut back at the end (`truncate_from`, Raft conflict truncation),
//! forgotten from the front (`purge_to`), or emptied (`reset`). It is *not* a key-value store,
//! does no caching, and knows nothing about what a record means.
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

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Record header: index u64 LE, payload length u32 LE, CRC32 u32 LE.
const HEADER_LEN: usize = 16;
/// Length of the header prefix the CRC covers (index and length), before the payload.
const CRC_COVERED_HEADER_LEN: usize = 12;
const SEGMENT_SUFFIX: &str = ".seg";
/// Digits in a segment file name: enough for `u64::MAX`, so names sort like indices.
const SEGMENT_NAME_DIGITS: usize = 20;
const RESET_INTENT: &str = "reset.intent";
const TMP_SUFFIX: &str = ".tmp";
/// A read fetches consecutive records with one `pread` of up to about this many bytes.
const READ_CHUNK_BYTES: u64 = 1 << 20;
/// Buffer for the sequential recovery scan.
const SCAN_BUFFER_BYTES: usize = 1 << 20;

/// Where a log lives and how big its segment files grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    /// Directory holding this log's segment files (created if missing). One log per directory.
    pub dir: PathBuf,
    /// The active segment is sealed when the next record would take it past this size.
    /// A record larger than this is written alone in its own segment.
    pub segment_bytes: u64,
}

impl SegmentConfig {
    /// A config for `dir` with the default segment size ([`DEFAULT_SEGMENT_BYTES`]).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
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
    /// Opens the log in `config.dir`, creating the directory if needed.
    ///
    /// Recovery: completes an interrupted reset, removes leftover temp files, then scans every
    /// segment checking each record's header and CRC. A bad or incomplete tail of the *last*
    /// segment (a crash mid-append) is truncated away with a warning; any other damage, or
    /// segments that do not continue one another, is [`SegmentError::Corrupt`].
    pub fn open(config: SegmentConfig) -> Result<Self> {
        let dir = config.dir;
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
            // Make the new directory's own entry durable, or a crash could lose the whole log.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }

        let mut listing = list_dir(&dir)?;
        if let Some(intent) = &listing.reset_intent {
            let next = read_reset_intent(intent)?;
            tracing::warn!(dir = %dir.display(), next, "completing an interrupted segment log reset");
            complete_reset(&dir, next)?;
            listing = list_dir(&dir)?;
        }
        listing.segments.sort_unstable_by_key(|(first, _)| *first);

        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(listing.segments.len());
        let last = listing.segments.len().saturating_sub(1);
        for (position, (first, path)) in listing.segments.into_iter().enumerate() {
            if let Some(previous) = segments.back() {
                if previous.end() != first {
                    return Err(SegmentError::Corrupt {
                        reason: format!(
                            "segment starts at index {first} but the previous segment ends at {}",
                            previous.end()
                        ),
                        path,
                        offset: 0,
                    });
                }
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err("open segment", &path))?;
            let scan = scan_segment(&path, &file, first)?;
            let len = match scan.damage {
                None => scan.valid_len,
                Some(damage) if position == last => {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = damage.offset,
                        bytes = scan.file_len - damage.offset,
                        reason = %damage.reason,
                        "truncating torn tail of the last segment"
                    );
                    file.set_len(damage.offset)
                        .map_err(io_err("truncate torn tail", &path))?;
                    file.sync_data()
                        .map_err(io_err("sync truncated segment", &path))?;
                    damage.offset
                }
                Some(damage) => {
                    return Err(SegmentError::Corrupt {
                        path,
                        offset: damage.offset,
                        reason: damage.reason,
                    })
                }
            };
            segments.push_back(Segment {
                first,
                path,
                file: Arc::new(file),
                offsets: scan.offsets,
                len,
            });
        }

        let (first, next) = match (segments.front(), segments.back()) {
            (Some(front), Some(back)) => (front.first, back.end()),
            _ => (0, 0),
        };
        Ok(Self {
            dir,
            segment_bytes: config.segment_bytes,
            writer: Mutex::new(WriterState { dir_dirty: false }),
            table: RwLock::new(Table {
                segments,
                first,
                next,
            }),
            read_gate: RwLock::new(()),
            sync_lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        })
    }

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
    /// records. Every record's header and CRC are checked again. Runs concurrently with
    /// appends and syncs.
    pub fn read(&self, range: Range<u64>) -> Result<Vec<Vec<u8>>> {
        if range.start == range.end {
            return Ok(Vec::new());
        }
        let _gate = self
            .read_gate
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let plan = {
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
            plan_read(&table, range.clone())
        };

        let mut records = Vec::with_capacity((range.end - range.start) as usize);
        for piece in plan {
            piece.read_into(&mut records)?;
        }
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

struct Header {
    index: u64,
    len: u32,
    crc: u32,
}

fn decode_header(bytes: &[u8; HEADER_LEN]) -> Header {
    let [i0, i1, i2, i3, i4, i5, i6, i7, l0, l1, l2, l3, c0, c1, c2, c3] = *bytes;
    Header {
        index: u64::from_le_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
    }
}

/// Header for `payload` at `index`. Callers have checked that the length fits a u32.
fn encode_header(index: u64, payload: &[u8]) -> [u8; HEADER_LEN] {
    let len = payload.len() as u32;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(&index.to_le_bytes());
    header[8..12].copy_from_slice(&len.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..CRC_COVERED_HEADER_LEN]);
    hasher.update(payload);
    header[12..].copy_from_slice(&hasher.finalize().to_le_bytes());
    header
}

/// Checks a whole record (header + payload) read back from `path` at `offset`.
fn verify_record(path: &Path, offset: u64, bytes: &[u8], expected_index: u64) -> Result<()> {
    let corrupt = |reason: String| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let Some((header_bytes, payload)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(corrupt("record shorter than its header".into()));
    };
    let header = decode_header(header_bytes);
    if header.len as usize != payload.len() {
        return Err(corrupt(format!(
            "record length {} does not match the indexed length {}",
            header.len,
            payload.len()
        )));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header_bytes[..CRC_COVERED_HEADER_LEN]);
    hasher.update(payload);
    if hasher.finalize() != header.crc {
        return Err(corrupt("record checksum mismatch".into()));
    }
    if header.index != expected_index {
        return Err(corrupt(format!(
            "record has index {}, expected {expected_index}",
            header.index
        )));
    }
    Ok(())
}

/// Where and why a segment scan stopped early.
struct Damage {
    offset: u64,
    reason: String,
}

struct Scan {
    offsets: Vec<u64>,
    /// Bytes of complete, valid records.
    valid_len: u64,
    file_len: u64,
    damage: Option<Damage>,
}

/// Reads a segment from the start, checking each record's length, CRC and index.
fn scan_segment(path: &Path, file: &File, first: u64) -> Result<Scan> {
    let file_len = file.metadata().map_err(io_err("stat segment", path))?.len();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER_BYTES, file);
    let mut offsets = Vec::new();
    let mut position = 0u64;
    let mut payload_chunk = vec![0u8; 64 * 1024];
    let damage = loop {
        let remaining = file_len - position;
        if remaining == 0 {
            break None;
        }
        if remaining < HEADER_LEN as u64 {
            break Some("incomplete record header".to_string());
        }
        let mut header_bytes = [0u8; HEADER_LEN];
        reader
            .read_exact(&mut header_bytes)
            .map_err(io_err("read segment", path))?;
        let header = decode_header(&header_bytes);
        if u64::from(header.len) > remaining - HEADER_LEN as u64 {
            break Some(format!(
                "record of {} bytes runs past the end of the file",
                header.len
            ));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header_bytes[..CRC_COVERED_HEADER_LEN]);
        let mut left = header.len as usize;
        while left > 0 {
            let step = left.min(payload_chunk.len());
            reader
                .read_exact(&mut payload_chunk[..step])
                .map_err(io_err("read segment", path))?;
            hasher.update(&payload_chunk[..step]);
            left -= step;
        }
        if hasher.finalize() != header.crc {
            break Some("record checksum mismatch".to_string());
        }
        let expected = first + offsets.len() as u64;
        if header.index != expected {
            break Some(format!(
                "record has index {}, expected {expected}",
                header.index
            ));
        }
        offsets.push(position);
        position += HEADER_LEN as u64 + u64::from(header.len);
    };
    Ok(Scan {
        offsets,
        valid_len: position,
        file_len,
        damage: damage.map(|reason| Damage {
            offset: position,
            reason,
        }),
    })
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

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!(
        "{first:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    ))
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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

struct Listing {
    segments: Vec<(u64, PathBuf)>,
    reset_intent: Option<PathBuf>,
}

/// Lists the log directory, deleting leftover temp files on the way.
fn list_dir(dir: &Path) -> Result<Listing> {
    let mut listing = Listing {
        segments: Vec::new(),
        reset_intent: None,
    };
    let entries = fs::read_dir(dir).map_err(io_err("list directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::debug!(path = %path.display(), "ignoring non-UTF-8 name in segment log directory");
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            tracing::info!(path = %path.display(), "removing leftover temp file");
            fs::remove_file(&path).map_err(io_err("remove temp file", &path))?;
        } else if name == RESET_INTENT {
            listing.reset_intent = Some(path);
        } else if let Some(first) = parse_segment_name(&name) {
            listing.segments.push((first, path));
        } else {
            tracing::debug!(path = %path.display(), "ignoring foreign file in segment log directory");
        }
    }
    Ok(listing)
}

/// Durably records "this log is being reset to `next`" (temp file, fsync, rename, dir fsync).
fn write_reset_intent(dir: &Path, next: u64) -> Result<()> {
    let tmp = dir.join(format!("{RESET_INTENT}{TMP_SUFFIX}"));
    let mut contents = next.to_le_bytes().to_vec();
    contents.extend_from_slice(&crc32fast::hash(&next.to_le_bytes()).to_le_bytes());
    let mut file = File::create(&tmp).map_err(io_err("create reset intent", &tmp))?;
    file.write_all(&contents)
        .map_err(io_err("write reset intent", &tmp))?;
    file.sync_all().map_err(io_err("sync reset intent", &tmp))?;
    let intent = dir.join(RESET_INTENT);
    fs::rename(&tmp, &intent).map_err(io_err("rename reset intent", &intent))?;
    sync_dir(dir)
}

fn read_reset_intent(path: &Path) -> Result<u64> {
    let bytes = fs::read(path).map_err(io_err("read reset intent", path))?;
    let corrupt = || SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: "reset intent is not an index with its checksum".into(),
    };
    let (next_bytes, crc_bytes) = bytes.split_first_chunk::<8>().ok_or_else(corrupt)?;
    let crc: [u8; 4] = crc_bytes.try_into().map_err(|_| corrupt())?;
    if crc32fast::hash(next_bytes) != u32::from_le_bytes(crc) {
        return Err(corrupt());
    }
    Ok(u64::from_le_bytes(*next_bytes))
}

/// Second half of a reset, also run by `open` when it finds `reset.intent`: delete every
/// segment, create the empty marker segment named `next`, drop the intent. Idempotent.
fn complete_reset(dir: &Path, next: u64) -> Result<Segment> {
    for (_, path) in list_dir(dir)?.segments {
        remove_segment_file(&path)?;
    }
    let path = segment_path(dir, next);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err("create marker segment", &path))?;
    sync_dir(dir)?;
    // The intent must be gone for good before any append lands in the marker; a surviving
    // intent would wipe those appends on the next open.
    let intent = dir.join(RESET_INTENT);
    remove_segment_file(&intent)?;
    sync_dir(dir)?;
    Ok(Segment {
        first: next,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    /// Deterministic payload for `index`: lengths vary (including 0) so records straddle
    /// segment limits, and bytes differ per index so a misplaced record is caught.
    fn payload(index: u64) -> Vec<u8> {
        let len = (index.wrapping_mul(37) % 90) as usize;
        let seed = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (0..len)
            .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
            .collect()
    }

    fn payloads(range: Range<u64>) -> Vec<Vec<u8>> {
        range.map(payload).collect()
    }

    fn append_range(log: &SegmentLog, range: Range<u64>) {
        let owned = payloads(range.clone());
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        log.append(range.start, &refs).unwrap();
    }

    fn open(dir: &Path, segment_bytes: u64) -> SegmentLog {
        SegmentLog::open(SegmentConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
        })
        .unwrap()
    }

    /// Segment files on disk, as their first indices, sorted.
    fn segment_files(dir: &Path) -> Vec<u64> {
        let mut firsts: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| parse_segment_name(e.unwrap().file_name().to_str()?))
            .collect();
        firsts.sort_unstable();
        firsts
    }

    fn bytes_on_disk(dir: &Path) -> u64 {
        segment_files(dir)
            .iter()
            .map(|&f| fs::metadata(segment_path(dir, f)).unwrap().len())
            .sum()
    }

    fn assert_holds(log: &SegmentLog, range: Range<u64>) {
        assert_eq!(log.read(range.clone()).unwrap(), payloads(range));
    }

    fn assert_out_of_range(log: &SegmentLog, range: Range<u64>) {
        match log.read(range.clone()) {
            Err(SegmentError::OutOfRange { .. }) => {}
            other => panic!("read {range:?}: expected OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn log_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SegmentLog>();
    }

    #[test]
    fn new_log_is_empty_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1024);
        assert_eq!(log.first_index(), None);
        assert_eq!(log.next_index(), 0);
        assert_eq!(log.size_on_disk(), 0);
        assert_out_of_range(&log, 0..1);
        assert_eq!(log.read(0..0).unwrap(), Vec::<Vec<u8>>::new());
        log.sync().unwrap();
    }

    #[test]
    fn append_read_round_trip_across_segment_rolls_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), 256);
            // Uneven batches so that rolls happen mid-batch and between batches.
            for batch in [0..1, 1..17, 17..18, 18..90, 90..200] {
                append_range(&log, batch);
            }
            assert_eq!(log.first_index(), Some(0));
            assert_eq!(log.next_index(), 200);
            assert_holds(&log, 0..200);
            assert_holds(&log, 37..151);
            log.sync().unwrap();
            assert_eq!(log.size_on_disk(), bytes_on_disk(dir.path()));
        }
        let files = segment_files(dir.path());
        assert!(files.len() > 10, "expected many segments, got {files:?}");
        for name in files.windows(2) {
            let size = fs::metadata(segment_path(dir.path(), name[0]))
                .unwrap()
                .len();
            assert!(size <= 256, "segment {} is {size} bytes", name[0]);
        }

        let log = open(dir.path(), 256);
        assert_eq!(log.first_index(), Some(0));
        assert_eq!(log.next_index(), 200);
        assert_holds(&log, 0..200);
        append_range(&log, 200..230);
        assert_holds(&log, 150..230);
    }

    #[test]
    fn record_larger_than_a_segment_goes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 64);
        let big = vec![7u8; 1000];
        log.append(0, &[b"a", &big, b"b"]).unwrap();
        assert_eq!(segment_files(dir.path()), vec![0, 1, 2]);
        assert_eq!(
            log.read(0..3).unwrap(),
            vec![b"a".to_vec(), big.clone(), b"b".to_vec()]
        );
        drop(log);
        let log = open(dir.path(), 64);
        assert_eq!(log.read(1..2).unwrap(), vec![big]);
    }

    #[test]
    fn append_to_a_non_empty_log_must_continue_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 1024);
        append_range(&log, 5..10);
        for wrong in [0, 9, 11] {
            match log.append(wrong, &[b"x"]) {
                Err(SegmentError::NotContiguous { expected: 10, got }) => assert_eq!(got, wrong),
                other => panic!("append at {wrong}: {other:?}"),
            }
        }
        assert_eq!(log.next_index(), 10);
        assert_holds(&log, 5..10);
    }

    #[test]
    fn empty_log_accepts_append_at_any_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), 1024);
            append_range(&log, 1_000_000..1_000_010);
            assert_eq!(log.first_index(), Some(1_000_000));
            assert_eq!(segment_files(dir.path()), vec![1_000_000]);
        }
        let log = open(dir.path(), 1024);
        assert_holds(&log, 1_000_000..1_000_010);

        // Emptied (continuing at 2_000_000), then restarted lower: the old files must not
        // keep claiming the log continues at 2_000_000.
        log.purge_to(2_000_000).unwrap();
        append_range(&log, 500..520);
        assert_eq!((log.first_index(), log.next_index()), (Some(500), 520));
        drop(log);
        let log = open(dir.path(), 1024);
        assert_eq!((log.first_index(), log.next_index()), (Some(500), 520));
        assert_holds(&log, 500..520);
    }

    #[test]
    fn truncate_from_mid_segment_then_append_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..60);
        let files_before = segment_files(dir.path());
        // Pick an index strictly inside some segment (not its first record).
        let (seg_first, seg_next) = (files_before[2], files_before[3]);
        assert!(seg_next - seg_first >= 2, "segment too small for the test");
        let from = seg_first + 1;

        log.truncate_from(from).unwrap();
        assert_eq!(log.next_index(), from);
        assert_holds(&log, 0..from);
        assert_out_of_range(&log, from..from + 1);
        assert_eq!(segment_files(dir.path()), files_before[..3].to_vec());
        assert_eq!(log.size_on_disk(), bytes_on_disk(dir.path()));

        // New content at the cut indices must replace the old, not mix with it.
        let replacement: Vec<Vec<u8>> = (0..5).map(|i| vec![0xAB; i * 50]).collect();
        let refs: Vec<&[u8]> = replacement.iter().map(Vec::as_slice).collect();
        log.append(from, &refs).unwrap();
        assert_eq!(log.read(from..from + 5).unwrap(), replacement);
        log.sync().unwrap();
        drop(log);

        let log = open(dir.path(), 300);
        assert_eq!(log.next_index(), from + 5);
        assert_holds(&log, 0..from);
        assert_eq!(log.read(from..from + 5).unwrap(), replacement);
    }

    #[test]
    fn truncate_from_at_a_segment_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..60);
        let files_before = segment_files(dir.path());
        let boundary = files_before[3];

        log.truncate_from(boundary).unwrap();
        assert_eq!(log.next_index(), boundary);
        assert_holds(&log, 0..boundary);
        // The segment named `boundary` is kept empty (it says where the log continues) and
        // every later one is gone.
        assert_eq!(segment_files(dir.path()), files_before[..4].to_vec());
        assert_eq!(
            fs::metadata(segment_path(dir.path(), boundary))
                .unwrap()
                .len(),
            0
        );
        append_range(&log, boundary..boundary + 3);
        drop(log);

        let log = open(dir.path(), 300);
        assert_eq!(log.next_index(), boundary + 3);
        assert_holds(&log, 0..boundary + 3);

        // Truncating at the very first record keeps an empty marker named after it.
        log.truncate_from(0).unwrap();
        assert_eq!((log.first_index(), log.next_index()), (None, 0));
        assert_eq!(segment_files(dir.path()), vec![0]);
        drop(log);
        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (None, 0));
    }

    #[test]
    fn truncate_from_at_or_past_next_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..10);
        log.truncate_from(10).unwrap();
        log.truncate_from(99).unwrap();
        assert_eq!(log.next_index(), 10);
        assert_holds(&log, 0..10);
    }

    #[test]
    fn truncate_below_every_segment_empties_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 100..160);
        log.truncate_from(40).unwrap();
        assert_eq!((log.first_index(), log.next_index()), (None, 40));
        assert_eq!(segment_files(dir.path()), vec![40]);
        drop(log);
        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (None, 40));
        append_range(&log, 40..45);
        assert_holds(&log, 40..45);
    }

    #[test]
    fn purge_to_deletes_whole_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..80);
        log.sync().unwrap();
        let files_before = segment_files(dir.path());
        // Purge into the middle of segment 4: segments 0..=3 hold only purged records.
        let to = files_before[4] + 1;

        log.purge_to(to).unwrap();
        assert_eq!(log.first_index(), Some(to));
        assert_eq!(log.next_index(), 80);
        assert_eq!(segment_files(dir.path()), files_before[4..].to_vec());
        assert_eq!(log.size_on_disk(), bytes_on_disk(dir.path()));
        assert_out_of_range(&log, to - 1..to);
        assert_out_of_range(&log, 0..80);
        assert_holds(&log, to..80);
        // Purging lower again changes nothing.
        log.purge_to(3).unwrap();
        assert_eq!(log.first_index(), Some(to));
        drop(log);

        // The straddling segment is kept whole, so the reopened log may start lower.
        let log = open(dir.path(), 300);
        assert_eq!(log.first_index(), Some(files_before[4]));
        assert_eq!(log.next_index(), 80);
        assert_holds(&log, files_before[4]..80);
        append_range(&log, 80..90);
        assert_holds(&log, to..90);
    }

    #[test]
    fn purge_to_next_keeps_only_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..50);
        let active = *segment_files(dir.path()).last().unwrap();
        assert!(active > 0);
        log.purge_to(50).unwrap();
        assert_eq!((log.first_index(), log.next_index()), (None, 50));
        assert_out_of_range(&log, 49..50);
        assert_eq!(segment_files(dir.path()), vec![active]);
        append_range(&log, 50..55);
        assert_holds(&log, 50..55);
        log.purge_to(55).unwrap();
        let active = *segment_files(dir.path()).last().unwrap();
        assert_eq!(segment_files(dir.path()), vec![active]);
        drop(log);
        // Not durable by contract: the kept segment's records come back, the end is exact.
        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (Some(active), 55));
        assert_holds(&log, active..55);
    }

    #[test]
    fn purge_to_past_next_empties_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..50);
        log.purge_to(70).unwrap();
        assert_eq!((log.first_index(), log.next_index()), (None, 70));
        assert_eq!(segment_files(dir.path()), vec![70]);
        drop(log);
        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (None, 70));
        append_range(&log, 70..75);
        assert_holds(&log, 70..75);
    }

    #[test]
    fn reset_then_reopen_keeps_next_index() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..40);
        log.reset(12_345).unwrap();
        assert_eq!((log.first_index(), log.next_index()), (None, 12_345));
        assert_eq!(log.size_on_disk(), 0);
        assert_eq!(segment_files(dir.path()), vec![12_345]);
        assert_out_of_range(&log, 0..1);
        drop(log);

        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (None, 12_345));
        // Reset to a lower index than before is allowed too.
        log.reset(7).unwrap();
        drop(log);
        let log = open(dir.path(), 300);
        assert_eq!(log.next_index(), 7);
        append_range(&log, 7..9);
        assert_holds(&log, 7..9);
    }

    #[test]
    fn interrupted_reset_is_completed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..40);
        log.sync().unwrap();
        drop(log);
        // A crash right after the commit point: intent durable, old segments still there.
        write_reset_intent(dir.path(), 1_000).unwrap();

        let log = open(dir.path(), 300);
        assert_eq!((log.first_index(), log.next_index()), (None, 1_000));
        assert_eq!(segment_files(dir.path()), vec![1_000]);
        assert!(!dir.path().join(RESET_INTENT).exists());
    }

    #[test]
    fn leftover_temp_files_are_removed_and_foreign_files_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..5);
        drop(log);
        let tmp = dir.path().join(format!("{RESET_INTENT}{TMP_SUFFIX}"));
        fs::write(&tmp, b"half").unwrap();
        fs::write(dir.path().join("README"), b"not a segment").unwrap();

        let log = open(dir.path(), 300);
        assert!(!tmp.exists());
        assert!(dir.path().join("README").exists());
        assert_holds(&log, 0..5);
    }

    /// Opens after damaging the last segment with `damage(path, original_len, last_record_offset)`
    /// and checks that exactly the undamaged records survive and appends continue.
    fn check_torn_tail(damage: impl FnOnce(&Path, u64, u64), survivors: u64) {
        let dir = tempfile::tempdir().unwrap();
        let (last, last_offset) = {
            let log = open(dir.path(), 1000);
            append_range(&log, 0..30);
            log.sync().unwrap();
            let table = log.table_read();
            let active = table.segments.back().unwrap();
            (active.first, *active.offsets.last().unwrap())
        };
        assert!(
            last > 0 && last < 27,
            "want several segments, the last holding several records"
        );
        let path = segment_path(dir.path(), last);
        let len = fs::metadata(&path).unwrap().len();
        damage(&path, len, last_offset);

        let log = open(dir.path(), 1000);
        assert_eq!(log.first_index(), Some(0));
        assert_eq!(log.next_index(), survivors);
        assert_holds(&log, 0..survivors);
        assert_eq!(log.size_on_disk(), bytes_on_disk(dir.path()));
        append_range(&log, survivors..survivors + 10);
        log.sync().unwrap();
        drop(log);
        let log = open(dir.path(), 1000);
        assert_holds(&log, 0..survivors + 10);
    }

    #[test]
    fn torn_tail_garbage_after_the_last_record_is_truncated() {
        check_torn_tail(
            |path, _, _| {
                let mut file = OpenOptions::new().append(true).open(path).unwrap();
                file.write_all(&[0x5A; 23]).unwrap();
            },
            30,
        );
    }

    #[test]
    fn torn_tail_zero_filled_extension_is_truncated() {
        check_torn_tail(
            |path, len, _| {
                let file = OpenOptions::new().write(true).open(path).unwrap();
                file.set_len(len + 4096).unwrap();
            },
            30,
        );
    }

    #[test]
    fn torn_tail_cut_mid_record_is_truncated() {
        check_torn_tail(
            |path, _, last_offset| {
                let file = OpenOptions::new().write(true).open(path).unwrap();
                file.set_len(last_offset + 5).unwrap(); // inside the last header
            },
            29,
        );
    }

    #[test]
    fn torn_tail_bad_checksum_in_the_last_record_is_truncated() {
        check_torn_tail(
            |path, len, last_offset| {
                assert!(
                    len > last_offset + HEADER_LEN as u64,
                    "need a non-empty payload"
                );
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .unwrap();
                let mut byte = [0u8; 1];
                file.read_exact_at(&mut byte, len - 1).unwrap();
                file.write_all_at(&[byte[0] ^ 0x01], len - 1).unwrap();
            },
            29,
        );
    }

    #[test]
    fn corruption_in_an_earlier_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..60);
        log.sync().unwrap();
        assert!(segment_files(dir.path()).len() > 3);
        // Inside the payload of record 1 (record 0's payload is empty).
        let record_1 = log.table_read().segments[0].offsets[1];
        assert!(!payload(1).is_empty());
        drop(log);
        let first = segment_path(dir.path(), 0);
        let flip_at = record_1 + HEADER_LEN as u64 + 2;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&first)
            .unwrap();
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, flip_at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x80], flip_at).unwrap();
        drop(file);
        let len_before = fs::metadata(&first).unwrap().len();

        match SegmentLog::open(SegmentConfig {
            dir: dir.path().to_path_buf(),
            segment_bytes: 300,
        }) {
            Err(SegmentError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, first);
                assert_eq!(offset, record_1);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Refusing must not "repair" anything.
        assert_eq!(fs::metadata(&first).unwrap().len(), len_before);
    }

    #[test]
    fn missing_middle_segment_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..60);
        drop(log);
        let files = segment_files(dir.path());
        fs::remove_file(segment_path(dir.path(), files[2])).unwrap();
        let err = SegmentLog::open(SegmentConfig {
            dir: dir.path().to_path_buf(),
            segment_bytes: 300,
        })
        .unwrap_err();
        assert!(
            matches!(&err, SegmentError::Corrupt { path, .. } if *path == segment_path(dir.path(), files[3])),
            "{err}"
        );
    }

    #[test]
    fn read_rechecks_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 4096);
        append_range(&log, 0..10);
        let offset = log.table_read().segments[0].offsets[3] + HEADER_LEN as u64;
        let file = OpenOptions::new()
            .write(true)
            .open(segment_path(dir.path(), 0))
            .unwrap();
        file.write_all_at(&[0xFF, 0xFF], offset).unwrap();
        assert!(matches!(log.read(0..10), Err(SegmentError::Corrupt { .. })));
        assert_holds(&log, 4..10);
    }

    #[test]
    fn reads_outside_the_window_are_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 10..20);
        for range in [9..11, 19..21, 20..21, 0..5, 30..40] {
            assert_out_of_range(&log, range);
        }
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 15..12;
        assert_out_of_range(&log, backwards);
        assert_holds(&log, 10..20);
    }

    #[test]
    fn poisoned_log_refuses_writes_but_serves_reads() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..5);
        log.poison("test");
        assert!(matches!(
            log.append(5, &[b"x"]),
            Err(SegmentError::Poisoned)
        ));
        assert!(matches!(log.sync(), Err(SegmentError::Poisoned)));
        assert!(matches!(log.truncate_from(1), Err(SegmentError::Poisoned)));
        assert_holds(&log, 0..5);
    }

    /// One thread appends (with rolls, purges and re-truncations) and syncs; readers read
    /// random held ranges at the same time and check every byte.
    #[test]
    fn reads_run_concurrently_with_append_sync_truncate_and_purge() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 2048);
        const TARGET: u64 = 6_000;
        let reads_done = AtomicU64::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                while log.next_index() < TARGET {
                    let next = log.next_index();
                    let n = rng.gen_range(1..40);
                    append_range(&log, next..next + n);
                    if rng.gen_bool(0.2) {
                        // Cut and rewrite the tail with identical content: readers racing
                        // this must still see exact bytes (or OutOfRange).
                        let from = next + n - rng.gen_range(1..=n);
                        log.truncate_from(from).unwrap();
                        append_range(&log, from..next + n);
                    }
                    log.sync().unwrap();
                    if rng.gen_bool(0.1) && next > 500 {
                        log.purge_to(next - 500).unwrap();
                    }
                }
            });
            for seed in 0..2u64 {
                let (log, reads_done) = (&log, &reads_done);
                s.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(100 + seed);
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while log.next_index() < TARGET {
                        assert!(Instant::now() < deadline, "writer did not finish");
                        let (Some(first), next) = (log.first_index(), log.next_index()) else {
                            continue;
                        };
                        let start = rng.gen_range(first..next);
                        let end = rng.gen_range(start + 1..=next.min(start + 200));
                        match log.read(start..end) {
                            Ok(records) => {
                                assert_eq!(records, payloads(start..end), "{start}..{end}");
                                reads_done.fetch_add(1, Ordering::Relaxed);
                            }
                            // Purged or truncated between the snapshot and the read.
                            Err(SegmentError::OutOfRange { .. }) => {}
                            Err(e) => panic!("read {start}..{end}: {e}"),
                        }
                    }
                });
            }
        });
        assert!(reads_done.load(Ordering::Relaxed) > 50);
        let first = log.first_index().unwrap();
        assert_holds(&log, first..log.next_index());
        drop(log);
        let log = open(dir.path(), 2048);
        let first = log.first_index().unwrap();
        assert_holds(&log, first..log.next_index());
    }

    /// truncate_from must not cut bytes a reader is still reading: it waits for the read gate
    /// that readers hold during their IO. The test plays the in-flight reader by holding the
    /// gate, watches for a while that the truncation has not happened (a bounded observation,
    /// which can only err towards passing), then lets it through.
    #[test]
    fn truncate_from_waits_for_in_flight_reads() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), 300);
        append_range(&log, 0..50);
        let reader_in_flight = log.read_gate.read().unwrap();
        std::thread::scope(|s| {
            let truncation = s.spawn(|| log.truncate_from(10));
            let watch_until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < watch_until {
                assert_eq!(log.next_index(), 50, "truncated under an in-flight read");
                assert!(!truncation.is_finished());
                std::thread::yield_now();
            }
            drop(reader_in_flight);
            truncation.join().unwrap().unwrap();
        });
        assert_eq!(log.next_index(), 10);
        assert_holds(&log, 0..10);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append records of these sizes at `next`; on an empty log, `restart` moves `first`.
        Append {
            sizes: Vec<usize>,
            restart: Option<u64>,
        },
        /// Append at a wrong index; must fail on a non-empty log and change nothing.
        AppendWrong {
            delta: u64,
        },
        TruncateBack(u64),
        PurgeForward(u64),
        Reset(u64),
        Sync,
        Reopen,
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (prop::collection::vec(0usize..200, 0..25), prop::option::weighted(0.3, 0u64..300))
                .prop_map(|(sizes, restart)| Op::Append { sizes, restart }),
            1 => (1u64..5).prop_map(|delta| Op::AppendWrong { delta }),
            2 => (0u64..40).prop_map(Op::TruncateBack),
            2 => (0u64..40).prop_map(Op::PurgeForward),
            1 => (0u64..300).prop_map(Op::Reset),
            1 => Just(Op::Sync),
            2 => Just(Op::Reopen),
        ]
    }

    /// Everything appended since the log last became empty, plus the purge point.
    struct Model {
        /// Index of `records[0]`.
        base: u64,
        records: VecDeque<Vec<u8>>,
        /// First index reads must serve (`first_index()` unless the log is empty).
        purge_point: u64,
    }

    impl Model {
        fn next(&self) -> u64 {
            self.base + self.records.len() as u64
        }
        fn restart(&mut self, at: u64) {
            self.base = at;
            self.records.clear();
            self.purge_point = at;
        }
    }

    fn check_against_model(log: &SegmentLog, model: &Model) {
        let next = model.next();
        assert_eq!(log.next_index(), next);
        let expected_first = (model.purge_point < next).then_some(model.purge_point);
        assert_eq!(log.first_index(), expected_first);
        if model.purge_point < next {
            let skip = (model.purge_point - model.base) as usize;
            let expected: Vec<Vec<u8>> = model.records.iter().skip(skip).cloned().collect();
            assert_eq!(log.read(model.purge_point..next).unwrap(), expected);
        }
        if model.purge_point > 0 {
            assert!(matches!(
                log.read(model.purge_point - 1..model.purge_point),
                Err(SegmentError::OutOfRange { .. })
            ));
        }
        assert!(matches!(
            log.read(next..next + 1),
            Err(SegmentError::OutOfRange { .. })
        ));
        assert_eq!(log.size_on_disk(), bytes_on_disk(&log.dir));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn behaves_like_an_in_memory_model(
            segment_bytes in 100u64..600,
            ops in prop::collection::vec(op_strategy(), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = open(dir.path(), segment_bytes);
            let mut model = Model { base: 0, records: VecDeque::new(), purge_point: 0 };
            let mut fill = 0u8;
            for op in ops {
                match op {
                    Op::Append { sizes, restart } => {
                        let empty = model.purge_point >= model.next();
                        let first = match restart {
                            Some(at) if empty => at,
                            _ => model.next(),
                        };
                        let owned: Vec<Vec<u8>> = sizes
                            .iter()
                            .map(|&n| {
                                fill = fill.wrapping_add(1);
                                vec![fill; n]
                            })
                            .collect();
                        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                        log.append(first, &refs).unwrap();
                        if !owned.is_empty() {
                            if first != model.next() {
                                model.restart(first);
                            }
                            model.records.extend(owned);
                        }
                    }
                    Op::AppendWrong { delta } => {
                        if model.purge_point < model.next() {
                            let result = log.append(model.next() + delta, &[b"x"]);
                            prop_assert!(
                                matches!(result, Err(SegmentError::NotContiguous { .. })),
                                "unexpected {:?}", result
                            );
                        }
                    }
                    Op::TruncateBack(back) => {
                        let from = model.next().saturating_sub(back);
                        log.truncate_from(from).unwrap();
                        if from < model.base {
                            model.restart(from);
                        } else {
                            model.records.truncate((from - model.base) as usize);
                            model.purge_point = model.purge_point.min(from);
                        }
                    }
                    Op::PurgeForward(forward) => {
                        let to = model.purge_point + forward;
                        log.purge_to(to).unwrap();
                        if to > model.next() {
                            model.restart(to);
                        } else {
                            model.purge_point = model.purge_point.max(to);
                        }
                    }
                    Op::Reset(next) => {
                        log.reset(next).unwrap();
                        model.restart(next);
                    }
                    Op::Sync => log.sync().unwrap(),
                    Op::Reopen => {
                        drop(log);
                        log = open(dir.path(), segment_bytes);
                        // A purge is kept only to segment granularity across a reopen.
                        if let Some(first) = log.first_index() {
                            prop_assert!(first >= model.base && first <= model.purge_point);
                            model.purge_point = first;
                        } else {
                            prop_assert_eq!(log.next_index(), model.next());
                            model.restart(model.next());
                        }
                    }
                }
                check_against_model(&log, &model);
            }
        }
    }
}
