//! On-disk identity index: a hash table from a 32-byte entry identity to the entry's log index.
//!
//! Implements the dedup map of DESIGN.md § Dedup ("Identity = SHA-256 of the canonical body"; the
//! state machine decides duplicates while applying `Append`). The map lives in files and is read and
//! written with positional I/O, so it is cached by the OS page cache rather than the process heap:
//! process memory is O(1) in the number of entries (a few dozen bytes per shard, plus a 256 KiB
//! buffer while one shard is being resized).
//!
//! # Layout
//!
//! The directory holds 64 shard files `shard-XX.idx` (`XX` = the top 6 bits of the identity's first
//! byte, in hex), a `watermark` file and a `LOCK` file. A shard is an open-addressing table with
//! linear probing:
//!
//! - page 0 is the header (magic, version, shard number, page count, counts, clean flag, CRC-32);
//! - pages 1.. hold [`SLOTS_PER_PAGE`] slots of 40 bytes each (`[identity 32][value u64 LE]`) and 16
//!   bytes of padding, so that **no slot straddles a 4 KiB page** and a probe reads whole pages.
//!
//! The home slot of an identity is taken from identity bytes 8..16 (identities are SHA-256 outputs,
//! so these bytes are uniform and independent of the shard bits in byte 0). A shard doubles when its
//! load would exceed 0.7: it is rewritten into `shard-XX.idx.tmp`, fsynced, renamed over the old file
//! and the directory is fsynced, so a crash mid-resize leaves the old shard intact, and only 1/64 of
//! the map is rewritten at a time. Leftover `.tmp` files are removed by [`IdentityIndex::open`].
//!
//! # Slot value and torn writes
//!
//! The value word is `(index + 1) | check << 40`: bits 0..40 hold the log index plus one (0 means
//! an empty slot; indices up to [`MAX_LOG_INDEX`] are accepted), bits 40..64 hold 24 bits of a
//! CRC-32 over the identity and the index, making each slot self-checking. A slot is written by one
//! `pwrite` inside one page, and before a `sync` every such write is the only writer of its bytes,
//! so a torn slot can only come from an unsynced write at a crash. Such a slot fails its check and
//! is treated as a tombstone: `get` probes past it, `insert` reuses it after finding no live copy,
//! and a resize drops it. Everything a torn write could have lost was written after the last
//! [`IdentityIndex::sync`], i.e. at or beyond the durable watermark, and the caller re-inserts from
//! there.
//!
//! # Crash semantics
//!
//! - [`IdentityIndex::insert`] / [`IdentityIndex::insert_many`] are visible on return, not durable.
//! - [`IdentityIndex::sync`] fdatasyncs every shard written since the previous sync, then writes the
//!   watermark file atomically (tmp, fsync, rename, fsync dir). After a crash, every insert made
//!   before the last completed sync is present; later ones may or may not be.
//! - Header counts are exact only while the header is marked clean. The first write to a shard after
//!   open durably marks its header unclean; [`IdentityIndex::close`] (or drop) syncs and marks it
//!   clean again. An unclean header found at open (crash) makes open rescan that shard to recompute
//!   its counts, which costs one sequential read of the shard. A header whose checksum fails (a
//!   torn rewrite: only counts and the flag are rewritten in place) is rebuilt the same way, with
//!   the page count taken from the file length; a bad magic, version, shard number or length is
//!   [`IdentityIndexError::Corrupt`].
//!
//! # Costs
//!
//! `get` is one 4 KiB `pread` (rarely two); `insert` a `pread` plus a 40-byte `pwrite`. Each insert
//! dirties a page, so a `sync` writes back up to one page per insert since the previous sync:
//! call it per group of batches or on a timer rather than per insert. A shard's lock is held for
//! the whole of its resize (a sequential rewrite of that shard). Identities must be hash outputs:
//! the probe position is taken from them unkeyed, so chosen identities could lengthen probe runs.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of shard files; a shard is chosen by the top 6 bits of the identity's first byte.
pub const SHARD_COUNT: usize = 64;

/// Size of an I/O page: probes read one page, slots never straddle one.
const PAGE: usize = 4096;
/// Slots read per step of a probe (expected probe lengths at a load of 0.7 are 2 to 6 slots).
const PROBE_READ_SLOTS: usize = 16;

/// A slot is `[identity 32][value u64 LE]`.
const SLOT: usize = 40;

/// Slots per 4 KiB page (102 × 40 = 4080 bytes; the last 16 bytes of each page are padding).
pub const SLOTS_PER_PAGE: u64 = (PAGE / SLOT) as u64;

/// Largest log index the index can store: the value word keeps 40 bits for `index + 1`.
pub const MAX_LOG_INDEX: u64 = (1 << INDEX_BITS) - 2;

const INDEX_BITS: u32 = 40;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// Load factor bound, as a fraction: a shard grows before its occupied slots exceed 7/10.
const MAX_LOAD_NUMERATOR: u64 = 7;
const MAX_LOAD_DENOMINATOR: u64 = 10;

/// Slot pages of a newly created shard (4 pages = 408 slots, 20 KiB file with its header).
const DEFAULT_INITIAL_PAGES: u64 = 4;

/// Pages read per syscall when streaming a whole shard (resize, recount at open).
const STREAM_PAGES: usize = 16;

/// Pages the resize write-back buffer holds (256 KiB). A doubled table keeps the order of its
/// entries (home slots come from a multiply-shift of the same hash), so the pages being written
/// advance with the pages being read and a small direct-mapped buffer catches almost every write.
const RESIZE_BUFFER_PAGES: usize = 64;

const SHARD_MAGIC: [u8; 8] = *b"RKIDXSH\0";
const SHARD_VERSION: u32 = 1;
/// Bytes of page 0 covered by the header (the rest of the page is zero).
const HEADER_LEN: usize = 48;

const WATERMARK_MAGIC: [u8; 8] = *b"RKIDXWM\0";
const WATERMARK_LEN: usize = 20;
const WATERMARK_FILE: &str = "watermark";
const LOCK_FILE: &str = "LOCK";
const TMP_SUFFIX: &str = ".tmp";

/// Errors of the identity index.
#[derive(Debug, thiserror::Error)]
pub enum IdentityIndexError {
    /// An operating-system call on one of the index files failed.
    #[error("identity index: {op} failed on {path}")]
    Io {
        /// What was being done (`"read slot page"`, `"fdatasync shard"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file of the index does not have the expected format; the index must be rebuilt.
    #[error("identity index: {path} is corrupt: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// Another `IdentityIndex` (in this or another process) holds the directory's lock.
    #[error("identity index: {path} is already open elsewhere")]
    AlreadyOpen {
        /// The index directory.
        path: PathBuf,
    },
    /// The log index does not fit the 40-bit slot field.
    #[error("identity index: log index {index} exceeds the maximum {max}")]
    IndexTooLarge {
        /// The rejected log index.
        index: u64,
        /// [`MAX_LOG_INDEX`].
        max: u64,
    },
}

type Result<T> = std::result::Result<T, IdentityIndexError>;

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> IdentityIndexError + 'a {
    move |source| IdentityIndexError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> IdentityIndexError {
    IdentityIndexError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// On-disk hash table from 32-byte identity to log index. See the module docs for the format and
/// the crash semantics.
///
/// `Send + Sync`: every method takes `&self`. Each shard has its own lock (readers share it,
/// writers and resizes take it exclusively), so writers to different shards do not contend.
pub struct IdentityIndex {
    dir: PathBuf,
    shards: Vec<RwLock<Shard>>,
    /// Serialises `sync` calls so that watermark files are written one at a time, in call order.
    sync_lock: Mutex<()>,
    /// Watermark of the last completed sync; written only by `sync` while holding `sync_lock`.
    durable_watermark: AtomicU64,
    /// Held (flock) for the index's lifetime so that two owners never write the same shards.
    _lock_file: File,
    /// Set by `close` so that drop does not repeat it.
    closed: bool,
}

/// One shard file and its in-memory bookkeeping; all fields are guarded by the shard's lock.
struct Shard {
    number: usize,
    path: PathBuf,
    /// Shared with `sync`, which fdatasyncs a clone outside the lock (a resize may replace it
    /// meanwhile; the replacement was made durable by the resize itself).
    file: Arc<File>,
    /// Slot pages (the file is `1 + pages` pages long).
    pages: u64,
    /// Live entries (`len`).
    live: u64,
    /// Slots in use: live entries plus tombstones (torn slots). Drives the load factor.
    occupied: u64,
    /// Some slot write happened since the last fdatasync of `file`.
    unsynced: bool,
    /// A resize renamed a new file over the shard but the directory fsync failed.
    rename_unsynced: bool,
    /// The header on disk says "clean" (its counts are exact). Cleared durably before the first
    /// slot write, set again by `close`.
    header_clean_on_disk: bool,
}

impl IdentityIndex {
    /// Open or create the index in directory `dir`. Removes leftovers of an interrupted resize or
    /// watermark write, validates every shard header and recounts shards left unclean by a crash.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_initial_pages(dir, DEFAULT_INITIAL_PAGES)
    }

    /// Like [`IdentityIndex::open`], but shards created by this call start with `initial_pages`
    /// slot pages ([`SLOTS_PER_PAGE`] slots each, minimum 1). Existing shards keep their size.
    /// Meant for tests (forcing many resizes) and for pre-sizing a large index.
    pub fn open_with_initial_pages(dir: &Path, initial_pages: u64) -> Result<Self> {
        let initial_pages = initial_pages.max(1);
        fs::create_dir_all(dir).map_err(io_error("create index directory", dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open lock file", &lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(IdentityIndexError::AlreadyOpen {
                    path: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(IdentityIndexError::Io {
                    op: "lock index directory",
                    path: lock_path,
                    source,
                })
            }
        }

        remove_leftovers(dir)?;

        // The watermark file is written only after all 64 shards exist, so its presence means the
        // index was fully created once and a missing shard is damage, not an interrupted create.
        let watermark = read_watermark(dir)?;
        let mut shards = Vec::with_capacity(SHARD_COUNT);
        let mut created_any = false;
        let mut recounted = 0;
        for number in 0..SHARD_COUNT {
            let path = shard_path(dir, number);
            let shard = if path.exists() {
                let shard = Shard::open_existing(number, path)?;
                recounted += usize::from(!shard.header_clean_on_disk);
                shard
            } else if watermark.is_some() {
                return Err(corrupt(&path, "shard file is missing"));
            } else {
                created_any = true;
                Shard::create(number, path, initial_pages)?
            };
            shards.push(RwLock::new(shard));
        }
        if created_any {
            fsync_dir(dir)?;
        }
        if recounted > 0 {
            tracing::info!(dir = %dir.display(), recounted,
                "identity index: recounted shards not closed cleanly");
        }
        let watermark = match watermark {
            Some(watermark) => watermark,
            None => {
                write_watermark(dir, 0)?;
                0
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            shards,
            sync_lock: Mutex::new(()),
            durable_watermark: AtomicU64::new(watermark),
            _lock_file: lock_file,
            closed: false,
        })
    }

    /// The index stored for `identity`, if any.
    pub fn get(&self, identity: &[u8; 32]) -> Result<Option<u64>> {
        let shard = read_lock(&self.shards[shard_of(identity)]);
        let mut pages = FilePages::new(&shard.file, &shard.path);
        match probe(&mut pages, shard.slot_count(), identity)? {
            Probe::Found { index, .. } => Ok(Some(index)),
            Probe::Vacant { .. } | Probe::Full => Ok(None),
        }
    }

    /// Store `identity → index`, overwriting any existing value for that identity (the caller
    /// decides validity: a stored index at or beyond the caller's applied size is stale and gets
    /// overwritten). Visible to `get` on return, not durable until [`IdentityIndex::sync`].
    pub fn insert(&self, identity: &[u8; 32], index: u64) -> Result<()> {
        check_index(index)?;
        let mut shard = write_lock(&self.shards[shard_of(identity)]);
        shard.insert(identity, index)
    }

    /// Dedup's lookup and insert in one probe: the index stored for `identity` if it is below
    /// `live_below` (a live record: nothing is written), otherwise store `identity → index` over
    /// any stale value and return `None`. Written on return, not durable until [`Self::sync`].
    pub fn claim(&self, identity: &[u8; 32], index: u64, live_below: u64) -> Result<Option<u64>> {
        check_index(index)?;
        let mut shard = write_lock(&self.shards[shard_of(identity)]);
        shard.claim(identity, index, live_below)
    }

    /// Store many `identity → index` pairs, in order (a later pair for the same identity wins).
    /// Takes each shard's lock once. All indices are checked before anything is written; an I/O
    /// error may leave a prefix of the pairs written.
    pub fn insert_many(&self, items: &[([u8; 32], u64)]) -> Result<()> {
        for (_, index) in items {
            check_index(*index)?;
        }
        // A stable sort keeps the call order among pairs of the same identity (same shard).
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| shard_of(&items[i].0));
        let mut rest = order.as_slice();
        while let Some(&first) = rest.first() {
            let number = shard_of(&items[first].0);
            let run = rest
                .iter()
                .position(|&i| shard_of(&items[i].0) != number)
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(run);
            let mut shard = write_lock(&self.shards[number]);
            for &i in group {
                let (identity, index) = &items[i];
                shard.insert(identity, *index)?;
            }
            drop(shard);
            rest = tail;
        }
        Ok(())
    }

    /// Make all inserts so far durable (fdatasync of every shard written since the last sync),
    /// then durably record `watermark`, a number the caller defines ("identities of all entries
    /// below this are in the index"). Returns after both are on disk.
    ///
    /// A crash before this returns leaves the previous watermark; a crash after leaves this one.
    pub fn sync(&self, watermark: u64) -> Result<()> {
        let _serial = self
            .sync_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut dir_unsynced = false;
        for cell in &self.shards {
            dir_unsynced |= std::mem::take(&mut write_lock(cell).rename_unsynced);
        }
        if dir_unsynced {
            if let Err(error) = fsync_dir(&self.dir) {
                for cell in &self.shards {
                    write_lock(cell).rename_unsynced = true;
                }
                return Err(error);
            }
        }
        for cell in &self.shards {
            // Take the flag and a handle under the lock, fdatasync outside it so that inserts into
            // this shard are not blocked by the flush. An insert racing with the flush sets the
            // flag again and is covered by the next sync; it is not part of "inserts so far".
            let (file, path) = {
                let mut shard = write_lock(cell);
                if !shard.unsynced {
                    continue;
                }
                shard.unsynced = false;
                (Arc::clone(&shard.file), shard.path.clone())
            };
            if let Err(source) = file.sync_data() {
                write_lock(cell).unsynced = true;
                return Err(IdentityIndexError::Io {
                    op: "fdatasync shard",
                    path,
                    source,
                });
            }
        }
        write_watermark(&self.dir, watermark)?;
        self.durable_watermark.store(watermark, Ordering::Release);
        Ok(())
    }

    /// The watermark of the last completed sync (0 for a new index), as read at open or last set.
    pub fn durable_watermark(&self) -> u64 {
        self.durable_watermark.load(Ordering::Acquire)
    }

    /// Number of identities stored (exact; tombstones left by torn writes are not counted).
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|cell| read_lock(cell).live).sum()
    }

    /// True when no identity is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes on disk of the shard files and the watermark file (for a metric).
    pub fn size_on_disk(&self) -> u64 {
        let shards: u64 = self
            .shards
            .iter()
            .map(|cell| (1 + read_lock(cell).pages) * PAGE as u64)
            .sum();
        shards + WATERMARK_LEN as u64
    }

    /// Make all inserts durable and mark every written shard's header clean, so that the next
    /// open trusts the header counts instead of rescanning. Dropping the index does the same but
    /// can only log a failure. Does not change the watermark.
    pub fn close(mut self) -> Result<()> {
        self.closed = true;
        self.mark_all_clean()
    }

    fn mark_all_clean(&self) -> Result<()> {
        for cell in &self.shards {
            write_lock(cell).mark_clean()?;
        }
        Ok(())
    }
}

impl Drop for IdentityIndex {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if let Err(error) = self.mark_all_clean() {
            tracing::warn!(%error, dir = %self.dir.display(),
                "identity index: could not mark shards clean on drop; next open will rescan them");
        }
    }
}

impl std::fmt::Debug for IdentityIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityIndex")
            .field("dir", &self.dir)
            .field("durable_watermark", &self.durable_watermark())
            .finish_non_exhaustive()
    }
}

fn check_index(index: u64) -> Result<()> {
    if index > MAX_LOG_INDEX {
        return Err(IdentityIndexError::IndexTooLarge {
            index,
            max: MAX_LOG_INDEX,
        });
    }
    Ok(())
}

// Shard locks are only poisoned by a panic while held; no code path here panics, and the on-disk
// state is valid at every step, so a poisoned guard is used as is.
fn read_lock(cell: &RwLock<Shard>) -> RwLockReadGuard<'_, Shard> {
    cell.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(cell: &RwLock<Shard>) -> RwLockWriteGuard<'_, Shard> {
    cell.write().unwrap_or_else(PoisonError::into_inner)
}

/// Shard of an identity: the top 6 bits of its first byte.
fn shard_of(identity: &[u8; 32]) -> usize {
    usize::from(identity[0] >> 2)
}

/// The probe hash: identity bytes 8..16. Identities are SHA-256 outputs, hence uniform; these
/// bytes do not overlap the shard bits.
fn home_hash(identity: &[u8; 32]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&identity[8..16]);
    u64::from_le_bytes(bytes)
}

/// Home slot by multiply-shift: monotone in the hash, so doubling a table keeps entry order
/// (which is what makes the resize write-back buffer effective).
fn home_slot(hash: u64, slot_count: u64) -> u64 {
    ((u128::from(hash) * u128::from(slot_count)) >> 64) as u64
}

fn shard_path(dir: &Path, number: usize) -> PathBuf {
    dir.join(format!("shard-{number:02x}.idx"))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

fn slot_check(identity: &[u8; 32], index_plus_one: u64) -> u64 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(identity);
    hasher.update(&index_plus_one.to_le_bytes());
    u64::from(hasher.finalize() >> 8)
}

fn encode_slot(identity: &[u8; 32], index: u64) -> [u8; SLOT] {
    let index_plus_one = index + 1;
    let value = index_plus_one | (slot_check(identity, index_plus_one) << INDEX_BITS);
    let mut slot = [0u8; SLOT];
    slot[..32].copy_from_slice(identity);
    slot[32..].copy_from_slice(&value.to_le_bytes());
    slot
}

enum SlotState<'a> {
    Empty,
    Live {
        identity: &'a [u8; 32],
        index: u64,
    },
    /// Written, but the check does not match: a torn write from before a crash.
    Torn,
}

fn decode_slot(slot: &[u8]) -> SlotState<'_> {
    let mut value_bytes = [0u8; 8];
    value_bytes.copy_from_slice(&slot[32..SLOT]);
    let value = u64::from_le_bytes(value_bytes);
    if value == 0 {
        return SlotState::Empty;
    }
    let Ok(identity) = <&[u8; 32]>::try_from(&slot[..32]) else {
        return SlotState::Torn;
    };
    let index_plus_one = value & INDEX_MASK;
    if index_plus_one == 0 || value >> INDEX_BITS != slot_check(identity, index_plus_one) {
        return SlotState::Torn;
    }
    SlotState::Live {
        identity,
        index: index_plus_one - 1,
    }
}

/// Byte offset of a slot in a shard file (page 0 is the header).
fn slot_offset(slot: u64) -> u64 {
    (1 + slot / SLOTS_PER_PAGE) * PAGE as u64 + (slot % SLOTS_PER_PAGE) * SLOT as u64
}

/// Access to the slot pages of one table: the live shard file, or the resize buffer.
trait SlotPages {
    /// Slots of slot page `page` (0-based, i.e. file page `page + 1`) from slot `first` of the
    /// page on: at least one, at most up to the end of the page.
    fn slots(&mut self, page: u64, first: usize) -> Result<&[u8]>;
    fn write_slot(&mut self, slot: u64, bytes: &[u8; SLOT]) -> Result<()>;
}

struct FilePages<'a> {
    file: &'a File,
    path: &'a Path,
    buf: [u8; PAGE],
}

impl<'a> FilePages<'a> {
    fn new(file: &'a File, path: &'a Path) -> Self {
        Self {
            file,
            path,
            buf: [0; PAGE],
        }
    }
}

impl SlotPages for FilePages<'_> {
    fn slots(&mut self, page: u64, first: usize) -> Result<&[u8]> {
        // A few slots rather than the page: most probes end within them, and copying whole
        // pages out of a table much larger than the CPU caches was a visible cost at 10 M entries.
        let count = (SLOTS_PER_PAGE as usize - first).min(PROBE_READ_SLOTS);
        let bytes = &mut self.buf[..count * SLOT];
        self.file
            .read_exact_at(bytes, (page + 1) * PAGE as u64 + (first * SLOT) as u64)
            .map_err(io_error("read slot page", self.path))?;
        Ok(bytes)
    }

    fn write_slot(&mut self, slot: u64, bytes: &[u8; SLOT]) -> Result<()> {
        // One pwrite of 40 bytes inside one page (see the module docs on torn writes).
        self.file
            .write_all_at(bytes, slot_offset(slot))
            .map_err(io_error("write slot", self.path))
    }
}

enum Probe {
    /// The identity is live at `slot` with `index`.
    Found { slot: u64, index: u64 },
    /// The identity is absent; it belongs at `slot`, which is empty or (if `reuses_tombstone`) the
    /// first tombstone on the probe path.
    Vacant { slot: u64, reuses_tombstone: bool },
    /// Every slot is in use and none holds the identity (only possible if the file is damaged:
    /// the load factor keeps free slots).
    Full,
}

/// Linear probe for `identity`, reading [`PROBE_READ_SLOTS`] slots at a time (never across a
/// page).
fn probe(pages: &mut impl SlotPages, slot_count: u64, identity: &[u8; 32]) -> Result<Probe> {
    let mut slot = home_slot(home_hash(identity), slot_count);
    let mut first_tombstone = None;
    let mut examined = 0u64;
    let page_count = slot_count / SLOTS_PER_PAGE;
    while examined < slot_count {
        let page_number = slot / SLOTS_PER_PAGE;
        let start = (slot % SLOTS_PER_PAGE) as usize;
        let chunk = pages.slots(page_number, start)?;
        let read = chunk.len() / SLOT;
        for (i, bytes) in chunk.chunks_exact(SLOT).enumerate() {
            let here = page_number * SLOTS_PER_PAGE + (start + i) as u64;
            examined += 1;
            match decode_slot(bytes) {
                SlotState::Empty => {
                    return Ok(match first_tombstone {
                        Some(slot) => Probe::Vacant {
                            slot,
                            reuses_tombstone: true,
                        },
                        None => Probe::Vacant {
                            slot: here,
                            reuses_tombstone: false,
                        },
                    })
                }
                SlotState::Live {
                    identity: stored,
                    index,
                } if stored == identity => return Ok(Probe::Found { slot: here, index }),
                SlotState::Live { .. } => {}
                SlotState::Torn => {
                    first_tombstone.get_or_insert(here);
                }
            }
            if examined == slot_count {
                break;
            }
        }
        slot = if start + read < SLOTS_PER_PAGE as usize {
            slot + read as u64
        } else {
            ((page_number + 1) % page_count) * SLOTS_PER_PAGE
        };
    }
    Ok(match first_tombstone {
        Some(slot) => Probe::Vacant {
            slot,
            reuses_tombstone: true,
        },
        None => Probe::Full,
    })
}

/// Shard header (page 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    shard: u32,
    pages: u64,
    live: u64,
    occupied: u64,
    clean: bool,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&SHARD_MAGIC);
        out[8..12].copy_from_slice(&SHARD_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.shard.to_le_bytes());
        out[16..24].copy_from_slice(&self.pages.to_le_bytes());
        out[24..32].copy_from_slice(&self.live.to_le_bytes());
        out[32..40].copy_from_slice(&self.occupied.to_le_bytes());
        out[40..44].copy_from_slice(&u32::from(self.clean).to_le_bytes());
        let crc = crc32fast::hash(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decode page 0. `Ok(None)` means the checksum does not match: a header rewrite (which only
    /// ever changes the counts and the clean flag) was torn by a crash.
    fn decode(bytes: &[u8; HEADER_LEN], path: &Path) -> Result<Option<Self>> {
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        if bytes[0..8] != SHARD_MAGIC {
            return Err(corrupt(path, "bad shard magic"));
        }
        if crc32fast::hash(&bytes[..44]) != u32_at(44) {
            return Ok(None);
        }
        let version = u32_at(8);
        if version != SHARD_VERSION {
            return Err(corrupt(
                path,
                format!("unsupported shard version {version}"),
            ));
        }
        let clean = match u32_at(40) {
            0 => false,
            1 => true,
            other => return Err(corrupt(path, format!("bad clean flag {other}"))),
        };
        Ok(Some(Self {
            shard: u32_at(12),
            pages: u64_at(16),
            live: u64_at(24),
            occupied: u64_at(32),
            clean,
        }))
    }
}

/// Largest `occupied` allowed for a table of `slot_count` slots.
fn max_occupied(slot_count: u64) -> u64 {
    slot_count * MAX_LOAD_NUMERATOR / MAX_LOAD_DENOMINATOR
}

impl Shard {
    fn slot_count(&self) -> u64 {
        self.pages * SLOTS_PER_PAGE
    }

    fn header(&self, clean: bool) -> Header {
        Header {
            shard: self.number as u32,
            pages: self.pages,
            live: self.live,
            occupied: self.occupied,
            clean,
        }
    }

    /// Create an empty shard: written to `.tmp`, fsynced, renamed (the caller fsyncs the dir).
    fn create(number: usize, path: PathBuf, pages: u64) -> Result<Self> {
        let header = Header {
            shard: number as u32,
            pages,
            live: 0,
            occupied: 0,
            // An empty table's counts are exact; the first write marks it unclean durably.
            clean: true,
        };
        let tmp = tmp_path(&path);
        let file = new_table_file(&tmp, &header)?;
        file.sync_all().map_err(io_error("fsync new shard", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_error("rename new shard", &path))?;
        Ok(Self {
            number,
            path,
            file: Arc::new(file),
            pages,
            live: 0,
            occupied: 0,
            unsynced: false,
            rename_unsynced: false,
            header_clean_on_disk: true,
        })
    }

    fn open_existing(number: usize, path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("open shard", &path))?;
        let len = file
            .metadata()
            .map_err(io_error("stat shard", &path))?
            .len();
        let mut bytes = [0u8; HEADER_LEN];
        if len < PAGE as u64 {
            return Err(corrupt(&path, format!("shard file is {len} bytes")));
        }
        file.read_exact_at(&mut bytes, 0)
            .map_err(io_error("read shard header", &path))?;
        let header = match Header::decode(&bytes, &path)? {
            Some(header) => header,
            None => {
                // Only counts and the clean flag are ever rewritten in place, so the page count
                // follows from the file length and the counts from a recount.
                tracing::warn!(path = %path.display(),
                    "identity index: torn shard header, recovering from the file length");
                Header {
                    shard: number as u32,
                    pages: (len / PAGE as u64).saturating_sub(1),
                    live: 0,
                    occupied: 0,
                    clean: false,
                }
            }
        };
        if header.shard as usize != number {
            return Err(corrupt(
                &path,
                format!("header names shard {}", header.shard),
            ));
        }
        let expected_len = header
            .pages
            .checked_add(1)
            .and_then(|p| p.checked_mul(PAGE as u64));
        if header.pages == 0 || expected_len != Some(len) {
            return Err(corrupt(
                &path,
                format!(
                    "header says {} slot pages, file is {len} bytes",
                    header.pages
                ),
            ));
        }
        let mut shard = Self {
            number,
            path,
            file: Arc::new(file),
            pages: header.pages,
            live: header.live,
            occupied: header.occupied,
            unsynced: false,
            rename_unsynced: false,
            header_clean_on_disk: header.clean,
        };
        if header.clean {
            if header.live > header.occupied || header.occupied > max_occupied(shard.slot_count()) {
                return Err(corrupt(&shard.path, "header counts out of range"));
            }
        } else {
            shard.recount()?;
        }
        Ok(shard)
    }

    /// Recompute `live` and `occupied` by scanning every slot (after an unclean shutdown).
    fn recount(&mut self) -> Result<()> {
        let mut live = 0u64;
        let mut occupied = 0u64;
        stream_slots(&self.file, &self.path, self.pages, |state| {
            match state {
                SlotState::Empty => {}
                SlotState::Live { .. } => {
                    live += 1;
                    occupied += 1;
                }
                SlotState::Torn => occupied += 1,
            }
            Ok(())
        })?;
        tracing::debug!(
            shard = self.number,
            live,
            occupied,
            tombstones = occupied - live,
            "identity index: recounted shard left unclean"
        );
        self.live = live;
        self.occupied = occupied;
        Ok(())
    }

    /// Durably mark the header unclean before the first slot write after open or close.
    fn mark_unclean(&mut self) -> Result<()> {
        if !self.header_clean_on_disk {
            return Ok(());
        }
        self.write_header(false)?;
        self.file
            .sync_data()
            .map_err(io_error("fdatasync shard header", &self.path))?;
        self.header_clean_on_disk = false;
        Ok(())
    }

    /// Make the slots durable, then record exact counts in a clean header.
    fn mark_clean(&mut self) -> Result<()> {
        if self.header_clean_on_disk {
            return Ok(());
        }
        // Slots first: a clean header must never describe slots that are not on disk.
        self.file
            .sync_data()
            .map_err(io_error("fdatasync shard", &self.path))?;
        self.write_header(true)?;
        self.file
            .sync_data()
            .map_err(io_error("fdatasync shard header", &self.path))?;
        self.unsynced = false;
        self.header_clean_on_disk = true;
        Ok(())
    }

    fn write_header(&self, clean: bool) -> Result<()> {
        self.file
            .write_all_at(&self.header(clean).encode(), 0)
            .map_err(io_error("write shard header", &self.path))
    }

    fn insert(&mut self, identity: &[u8; 32], index: u64) -> Result<()> {
        self.claim(identity, index, 0).map(|_| ())
    }

    /// The stored index of `identity` if it is below `live_below`; otherwise store `index` for
    /// it and return `None`.
    fn claim(&mut self, identity: &[u8; 32], index: u64, live_below: u64) -> Result<Option<u64>> {
        self.mark_unclean()?;
        if self.occupied + 1 > max_occupied(self.slot_count()) {
            self.grow()?;
        }
        let slot_count = self.slot_count();
        let mut pages = FilePages::new(&self.file, &self.path);
        match probe(&mut pages, slot_count, identity)? {
            Probe::Found { index: old, .. } if old < live_below => return Ok(Some(old)),
            Probe::Found { slot, index: old } => {
                if old != index {
                    pages.write_slot(slot, &encode_slot(identity, index))?;
                    self.unsynced = true;
                }
            }
            Probe::Vacant {
                slot,
                reuses_tombstone,
            } => {
                pages.write_slot(slot, &encode_slot(identity, index))?;
                self.unsynced = true;
                self.live += 1;
                if !reuses_tombstone {
                    self.occupied += 1;
                }
            }
            Probe::Full => {
                return Err(corrupt(
                    &self.path,
                    "no free slot although the load factor is bounded",
                ))
            }
        }
        Ok(None)
    }

    /// Double the table: stream the live slots into `shard-XX.idx.tmp`, fsync it, rename it over
    /// the shard and fsync the directory. A crash before the rename leaves the old shard intact
    /// (the `.tmp` is removed at open); after it, the new shard is complete and durable.
    fn grow(&mut self) -> Result<()> {
        let new_pages = self.pages * 2;
        let new_slot_count = new_pages * SLOTS_PER_PAGE;
        let tmp = tmp_path(&self.path);
        let placeholder = Header {
            shard: self.number as u32,
            pages: new_pages,
            live: 0,
            occupied: 0,
            clean: false,
        };
        let new_file = new_table_file(&tmp, &placeholder)?;
        let result = (|| {
            let mut buffer = ResizeBuffer::new(&new_file, &tmp);
            let mut live = 0u64;
            stream_slots(&self.file, &self.path, self.pages, |state| {
                // Tombstones are dropped here; that is how a resize cleans up after a crash.
                if let SlotState::Live { identity, index } = state {
                    match probe(&mut buffer, new_slot_count, identity)? {
                        Probe::Vacant { slot, .. } => {
                            buffer.write_slot(slot, &encode_slot(identity, index))?;
                            live += 1;
                        }
                        // Never happens: the old table holds each identity once.
                        Probe::Found { .. } => {}
                        Probe::Full => return Err(corrupt(&tmp, "resized table is full")),
                    }
                }
                Ok(())
            })?;
            buffer.flush()?;
            let header = Header {
                live,
                occupied: live,
                ..placeholder
            };
            new_file
                .write_all_at(&header.encode(), 0)
                .map_err(io_error("write shard header", &tmp))?;
            new_file
                .sync_all()
                .map_err(io_error("fsync resized shard", &tmp))?;
            fs::rename(&tmp, &self.path).map_err(io_error("rename resized shard", &self.path))?;
            Ok(live)
        })();
        let live = match result {
            Ok(live) => live,
            Err(error) => {
                // The old shard is untouched; the partial .tmp would also be removed at open.
                let _ = fs::remove_file(&tmp);
                return Err(error);
            }
        };
        // The rename is done: from here on the new file is the shard, whatever happens next.
        self.file = Arc::new(new_file);
        self.pages = new_pages;
        self.live = live;
        self.occupied = live;
        // The new file is entirely durable and its header is unclean, as a written shard's is.
        self.unsynced = false;
        self.header_clean_on_disk = false;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        if let Err(error) = fsync_dir(dir) {
            // Until the directory is synced a crash may bring the old file back; the next sync
            // retries the directory fsync before it records a watermark.
            self.rename_unsynced = true;
            return Err(error);
        }
        tracing::debug!(
            shard = self.number,
            pages = new_pages,
            live,
            "identity index: shard doubled"
        );
        Ok(())
    }
}

/// Create (truncating) a table file of `header.pages` zeroed slot pages with `header` in page 0.
/// The zeroes are written, not left as a sparse hole, so that later slot writes do not allocate
/// blocks (no metadata for `fdatasync` to journal, no ENOSPC at an arbitrary insert).
fn new_table_file(path: &Path, header: &Header) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_error("create shard file", path))?;
    let zeros = vec![0u8; STREAM_PAGES * PAGE];
    let total = (1 + header.pages) * PAGE as u64;
    let mut offset = 0u64;
    while offset < total {
        let chunk = (total - offset).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..chunk], offset)
            .map_err(io_error("zero shard file", path))?;
        offset += chunk as u64;
    }
    file.write_all_at(&header.encode(), 0)
        .map_err(io_error("write shard header", path))?;
    Ok(file)
}

/// Call `visit` for every slot of a table, reading [`STREAM_PAGES`] pages per syscall.
fn stream_slots(
    file: &File,
    path: &Path,
    pages: u64,
    mut visit: impl FnMut(SlotState<'_>) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; STREAM_PAGES * PAGE];
    let mut page = 0u64;
    while page < pages {
        let count = (pages - page).min(STREAM_PAGES as u64) as usize;
        let chunk = &mut buf[..count * PAGE];
        file.read_exact_at(chunk, (page + 1) * PAGE as u64)
            .map_err(io_error("read shard", path))?;
        for page_bytes in chunk.chunks_exact(PAGE) {
            for slot in page_bytes[..SLOTS_PER_PAGE as usize * SLOT].chunks_exact(SLOT) {
                visit(decode_slot(slot))?;
            }
        }
        page += count as u64;
    }
    Ok(())
}

/// Direct-mapped write-back buffer over the pages of a table being built by a resize.
struct ResizeBuffer<'a> {
    file: &'a File,
    path: &'a Path,
    data: Vec<u8>,
    /// Slot page held by each line, if any.
    tags: Vec<Option<u64>>,
    dirty: Vec<bool>,
}

impl<'a> ResizeBuffer<'a> {
    fn new(file: &'a File, path: &'a Path) -> Self {
        Self {
            file,
            path,
            data: vec![0; RESIZE_BUFFER_PAGES * PAGE],
            tags: vec![None; RESIZE_BUFFER_PAGES],
            dirty: vec![false; RESIZE_BUFFER_PAGES],
        }
    }

    /// Make `page` resident; returns its line.
    fn load(&mut self, page: u64) -> Result<usize> {
        let line = (page % RESIZE_BUFFER_PAGES as u64) as usize;
        if self.tags[line] == Some(page) {
            return Ok(line);
        }
        self.write_back(line)?;
        self.file
            .read_exact_at(
                &mut self.data[line * PAGE..(line + 1) * PAGE],
                (page + 1) * PAGE as u64,
            )
            .map_err(io_error("read resized shard", self.path))?;
        self.tags[line] = Some(page);
        Ok(line)
    }

    fn write_back(&mut self, line: usize) -> Result<()> {
        if let (Some(page), true) = (self.tags[line], self.dirty[line]) {
            self.file
                .write_all_at(
                    &self.data[line * PAGE..(line + 1) * PAGE],
                    (page + 1) * PAGE as u64,
                )
                .map_err(io_error("write resized shard", self.path))?;
            self.dirty[line] = false;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        for line in 0..RESIZE_BUFFER_PAGES {
            self.write_back(line)?;
        }
        Ok(())
    }
}

impl SlotPages for ResizeBuffer<'_> {
    fn slots(&mut self, page: u64, first: usize) -> Result<&[u8]> {
        let line = self.load(page)?;
        Ok(&self.data[line * PAGE + first * SLOT..line * PAGE + SLOTS_PER_PAGE as usize * SLOT])
    }

    fn write_slot(&mut self, slot: u64, bytes: &[u8; SLOT]) -> Result<()> {
        let line = self.load(slot / SLOTS_PER_PAGE)?;
        let at = line * PAGE + (slot % SLOTS_PER_PAGE) as usize * SLOT;
        self.data[at..at + SLOT].copy_from_slice(bytes);
        self.dirty[line] = true;
        Ok(())
    }
}

/// Remove `.tmp` files left by a resize, shard creation or watermark write that a crash
/// interrupted. The files they were meant to replace are intact (renames are atomic).
fn remove_leftovers(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io_error("list index directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_error("list index directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.ends_with(TMP_SUFFIX)
            && (name.starts_with("shard-") || name.starts_with(WATERMARK_FILE));
        if ours {
            let path = entry.path();
            tracing::info!(path = %path.display(), "identity index: removing leftover of an interrupted write");
            fs::remove_file(&path).map_err(io_error("remove leftover", &path))?;
        }
    }
    Ok(())
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync index directory", dir))
}

fn read_watermark(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(WATERMARK_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(IdentityIndexError::Io {
                op: "read watermark",
                path,
                source,
            })
        }
    };
    if bytes.len() != WATERMARK_LEN || bytes[..8] != WATERMARK_MAGIC {
        return Err(corrupt(&path, "bad watermark file"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    if crc32fast::hash(&bytes[..16]) != u32::from_le_bytes(crc) {
        return Err(corrupt(&path, "watermark checksum mismatch"));
    }
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[8..16]);
    Ok(Some(u64::from_le_bytes(value)))
}

/// Atomically replace the watermark file: write tmp, fsync, rename, fsync dir.
fn write_watermark(dir: &Path, watermark: u64) -> Result<()> {
    let path = dir.join(WATERMARK_FILE);
    let tmp = tmp_path(&path);
    let mut bytes = [0u8; WATERMARK_LEN];
    bytes[..8].copy_from_slice(&WATERMARK_MAGIC);
    bytes[8..16].copy_from_slice(&watermark.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_error("create watermark", &tmp))?;
    file.write_all_at(&bytes, 0)
        .map_err(io_error("write watermark", &tmp))?;
    file.sync_all().map_err(io_error("fsync watermark", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_error("rename watermark", &path))?;
    fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    fn random_identity(rng: &mut impl Rng) -> [u8; 32] {
        let mut identity = [0u8; 32];
        rng.fill(&mut identity);
        identity
    }

    /// An identity in `shard` whose probe hash is `hash` (so its home slot is chosen by the test),
    /// made distinct by `salt`.
    fn crafted_identity(shard: u8, hash: u64, salt: u64) -> [u8; 32] {
        let mut identity = [0u8; 32];
        identity[0] = shard << 2;
        identity[8..16].copy_from_slice(&hash.to_le_bytes());
        identity[16..24].copy_from_slice(&salt.to_le_bytes());
        identity
    }

    impl IdentityIndex {
        /// Simulate a crash that keeps the page cache (a SIGKILL): release the files without
        /// syncing or marking headers clean.
        fn abandon(mut self) {
            self.closed = true;
        }

        fn slot_of(&self, identity: &[u8; 32]) -> Option<u64> {
            let shard = read_lock(&self.shards[shard_of(identity)]);
            let mut pages = FilePages::new(&shard.file, &shard.path);
            match probe(&mut pages, shard.slot_count(), identity).unwrap() {
                Probe::Found { slot, .. } => Some(slot),
                _ => None,
            }
        }

        fn shard_pages(&self, number: usize) -> u64 {
            read_lock(&self.shards[number]).pages
        }
    }

    #[test]
    fn claim_answers_a_live_record_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a = random_identity(&mut rng);
        // New: recorded at the claimed index.
        assert_eq!(index.claim(&a, 5, 5).unwrap(), None);
        assert_eq!(index.get(&a).unwrap(), Some(5));
        // Live (below the applied size 6): answered, nothing written.
        assert_eq!(index.claim(&a, 9, 6).unwrap(), Some(5));
        assert_eq!(index.get(&a).unwrap(), Some(5));
        // Stale (at or beyond the applied size 5): replaced.
        assert_eq!(index.claim(&a, 7, 5).unwrap(), None);
        assert_eq!(index.get(&a).unwrap(), Some(7));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn insert_get_round_trip_overwrite_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = random_identity(&mut rng);
        let b = random_identity(&mut rng);
        assert!(index.is_empty());
        assert_eq!(index.get(&a).unwrap(), None);
        index.insert(&a, 0).unwrap();
        index.insert(&b, 7).unwrap();
        assert_eq!(index.get(&a).unwrap(), Some(0));
        assert_eq!(index.get(&b).unwrap(), Some(7));
        index.insert(&a, 42).unwrap();
        assert_eq!(index.get(&a).unwrap(), Some(42));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get(&random_identity(&mut rng)).unwrap(), None);
        index.insert(&b, MAX_LOG_INDEX).unwrap();
        assert_eq!(index.get(&b).unwrap(), Some(MAX_LOG_INDEX));
        assert!(matches!(
            index.insert(&b, MAX_LOG_INDEX + 1),
            Err(IdentityIndexError::IndexTooLarge { .. })
        ));
        assert!(matches!(
            index.insert_many(&[(a, 1), (b, u64::MAX)]),
            Err(IdentityIndexError::IndexTooLarge { .. })
        ));
        // Nothing of the rejected batch was written.
        assert_eq!(index.get(&a).unwrap(), Some(42));
        assert_eq!(index.durable_watermark(), 0);
        assert_eq!(
            index.size_on_disk(),
            (SHARD_COUNT as u64 * (1 + DEFAULT_INITIAL_PAGES) * PAGE as u64) + WATERMARK_LEN as u64
        );
    }

    #[test]
    fn insert_many_last_pair_for_an_identity_wins() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open(dir.path()).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let ids: Vec<[u8; 32]> = (0..500).map(|_| random_identity(&mut rng)).collect();
        let mut items: Vec<([u8; 32], u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i as u64))
            .collect();
        items.push((ids[3], 1000));
        items.push((ids[3], 1001));
        index.insert_many(&items).unwrap();
        assert_eq!(index.get(&ids[3]).unwrap(), Some(1001));
        for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 3) {
            assert_eq!(index.get(id).unwrap(), Some(i as u64));
        }
        assert_eq!(index.len(), 500);
    }

    #[test]
    fn reopen_after_sync_keeps_entries_and_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let items: Vec<([u8; 32], u64)> =
            (0..3000).map(|i| (random_identity(&mut rng), i)).collect();
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            index.insert_many(&items).unwrap();
            index.sync(3000).unwrap();
            assert_eq!(index.durable_watermark(), 3000);
            // Crash-like exit: headers stay unclean, so the next open must recount.
            index.abandon();
        }
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            assert_eq!(index.durable_watermark(), 3000);
            assert_eq!(index.len(), 3000);
            for (identity, i) in &items {
                assert_eq!(index.get(identity).unwrap(), Some(*i));
            }
            index.insert(&items[0].0, 9).unwrap();
            index.sync(3001).unwrap();
            index.close().unwrap();
        }
        let index = IdentityIndex::open(dir.path()).unwrap();
        assert_eq!(index.durable_watermark(), 3001);
        assert_eq!(index.len(), 3000);
        assert_eq!(index.get(&items[0].0).unwrap(), Some(9));
        assert_eq!(index.get(&items[1].0).unwrap(), Some(1));
    }

    #[test]
    fn clean_close_header_counts_are_trusted_and_unclean_ones_recounted() {
        let dir = tempfile::tempdir().unwrap();
        let id = crafted_identity(5, 0, 1);
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            index.insert(&id, 1).unwrap();
            index.close().unwrap();
        }
        let path = shard_path(dir.path(), 5);
        let mut bytes = [0u8; HEADER_LEN];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut bytes, 0)
            .unwrap();
        let header = Header::decode(&bytes, &path).unwrap().unwrap();
        assert!(header.clean);
        assert_eq!((header.live, header.occupied), (1, 1));
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            index.insert(&crafted_identity(5, 0, 2), 2).unwrap();
            // The first write durably marked the header unclean.
            File::open(&path)
                .unwrap()
                .read_exact_at(&mut bytes, 0)
                .unwrap();
            assert!(!Header::decode(&bytes, &path).unwrap().unwrap().clean);
            index.abandon();
        }
        let index = IdentityIndex::open(dir.path()).unwrap();
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn many_inserts_resize_shards_and_keep_every_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let items: Vec<([u8; 32], u64)> = (0..40_000)
            .map(|i| (random_identity(&mut rng), i * 3))
            .collect();
        {
            let index = IdentityIndex::open_with_initial_pages(dir.path(), 1).unwrap();
            for chunk in items.chunks(1000) {
                index.insert_many(chunk).unwrap();
            }
            // 40 000 / 64 = 625 per shard, more than 0.7 × 4 pages: at least 3 doublings each.
            for number in 0..SHARD_COUNT {
                assert!(
                    index.shard_pages(number) >= 8,
                    "shard {number} did not grow"
                );
            }
            for (identity, i) in &items {
                assert_eq!(index.get(identity).unwrap(), Some(*i));
            }
            assert_eq!(index.len(), 40_000);
            index.sync(1).unwrap();
        }
        let index = IdentityIndex::open(dir.path()).unwrap();
        assert_eq!(index.len(), 40_000);
        for (identity, i) in &items {
            assert_eq!(index.get(identity).unwrap(), Some(*i));
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(TMP_SUFFIX))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn identities_colliding_on_shard_and_home_slot_all_work() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open_with_initial_pages(dir.path(), 1).unwrap();
        // 300 identities with the same shard and the same home slot: runs longer than a page,
        // several resizes, and (hash u64::MAX = last slot) a run that wraps to slot 0.
        for hash in [0u64, u64::MAX, 1 << 63] {
            let ids: Vec<[u8; 32]> = (0..300).map(|s| crafted_identity(9, hash, s)).collect();
            for (i, id) in ids.iter().enumerate() {
                index.insert(id, i as u64).unwrap();
            }
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(
                    index.get(id).unwrap(),
                    Some(i as u64),
                    "hash {hash:x} salt {i}"
                );
            }
            assert_eq!(index.get(&crafted_identity(9, hash, 300)).unwrap(), None);
        }
        assert_eq!(index.len(), 900);
        // The run homed at the last slot really wrapped: all but one of its identities sit in
        // the first half of the table (after the run homed at slot 0).
        let slot_count = index.shard_pages(9) * SLOTS_PER_PAGE;
        let wrapped = (0..300)
            .filter_map(|s| index.slot_of(&crafted_identity(9, u64::MAX, s)))
            .filter(|&slot| slot < slot_count / 2)
            .count();
        assert_eq!(wrapped, 299);
    }

    #[test]
    fn leftover_tmp_from_interrupted_resize_is_removed_and_shard_intact() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let items: Vec<([u8; 32], u64)> =
            (0..2000).map(|i| (random_identity(&mut rng), i)).collect();
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            index.insert_many(&items).unwrap();
            index.sync(2000).unwrap();
        }
        // What a crash mid-resize leaves: a half-written tmp beside the intact shard.
        let shard = shard_path(dir.path(), 17);
        let tmp = tmp_path(&shard);
        let original = fs::read(&shard).unwrap();
        fs::write(&tmp, &original[..original.len() / 3]).unwrap();
        let watermark_tmp = dir.path().join("watermark.tmp");
        fs::write(&watermark_tmp, b"partial").unwrap();

        let index = IdentityIndex::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert!(!watermark_tmp.exists());
        assert_eq!(fs::read(&shard).unwrap(), original);
        assert_eq!(index.durable_watermark(), 2000);
        for (identity, i) in &items {
            assert_eq!(index.get(identity).unwrap(), Some(*i));
        }
    }

    #[test]
    fn torn_slot_is_a_tombstone_skipped_by_get_and_reused_by_insert() {
        let dir = tempfile::tempdir().unwrap();
        let a = crafted_identity(3, 1 << 40, 1);
        let b = crafted_identity(3, 1 << 40, 2);
        let slot_a;
        {
            let index = IdentityIndex::open(dir.path()).unwrap();
            index.insert(&a, 10).unwrap();
            index.insert(&b, 11).unwrap();
            slot_a = index.slot_of(&a).unwrap();
            assert_eq!(index.slot_of(&b), Some(slot_a + 1));
            index.abandon();
        }
        // Tear a's slot: its second half of the identity never reached the disk.
        let path = shard_path(dir.path(), 3);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0u8; 16], slot_offset(slot_a) + 16)
            .unwrap();
        drop(file);

        let index = IdentityIndex::open(dir.path()).unwrap();
        assert_eq!(index.len(), 1, "recount excludes the tombstone");
        assert_eq!(index.get(&a).unwrap(), None);
        assert_eq!(index.get(&b).unwrap(), Some(11), "probe continues past it");
        index.insert(&b, 12).unwrap();
        assert_eq!(index.slot_of(&b), Some(slot_a + 1), "b updated in place");
        index.insert(&a, 10).unwrap();
        assert_eq!(index.slot_of(&a), Some(slot_a), "a reuses its tombstone");
        assert_eq!(index.len(), 2);
        assert_eq!(read_lock(&index.shards[3]).occupied, 2);
    }

    #[test]
    fn open_rejects_damaged_headers_and_missing_shards() {
        let dir = tempfile::tempdir().unwrap();
        IdentityIndex::open(dir.path()).unwrap().close().unwrap();
        let path = shard_path(dir.path(), 2);
        let original = fs::read(&path).unwrap();

        let mut bad_magic = original.clone();
        bad_magic[0] ^= 1;
        fs::write(&path, &bad_magic).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));

        let mut bad_version = original.clone();
        bad_version[8] = 9;
        let crc = crc32fast::hash(&bad_version[..44]);
        bad_version[44..48].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bad_version).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));

        fs::write(&path, &original[..original.len() - PAGE]).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));

        // Another shard's file under this shard's name.
        fs::copy(shard_path(dir.path(), 3), &path).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));

        fs::remove_file(&path).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));

        fs::write(&path, &original).unwrap();
        fs::write(dir.path().join(WATERMARK_FILE), b"garbage").unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::Corrupt { .. })
        ));
        write_watermark(dir.path(), 5).unwrap();
        assert_eq!(
            IdentityIndex::open(dir.path()).unwrap().durable_watermark(),
            5
        );
    }

    #[test]
    fn torn_header_is_recovered_from_file_length_and_recount() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<[u8; 32]> = (0..200).map(|s| crafted_identity(4, s << 50, s)).collect();
        {
            let index = IdentityIndex::open_with_initial_pages(dir.path(), 1).unwrap();
            for (i, id) in ids.iter().enumerate() {
                index.insert(id, i as u64).unwrap();
            }
            index.close().unwrap();
        }
        // A crash tore the clean-flag rewrite: the counts changed, the checksum did not.
        let path = shard_path(dir.path(), 4);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff; 8], 24).unwrap();
        drop(file);
        let index = IdentityIndex::open(dir.path()).unwrap();
        assert_eq!(index.len(), 200);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id).unwrap(), Some(i as u64));
        }
    }

    #[test]
    fn second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open(dir.path()).unwrap();
        assert!(matches!(
            IdentityIndex::open(dir.path()),
            Err(IdentityIndexError::AlreadyOpen { .. })
        ));
        drop(index);
        IdentityIndex::open(dir.path()).unwrap();
    }

    #[test]
    fn concurrent_writers_and_readers() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<IdentityIndex>();
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open_with_initial_pages(dir.path(), 1).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let index = &index;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
                    let items: Vec<([u8; 32], u64)> = (0..5000)
                        .map(|i| (random_identity(&mut rng), t * 10_000 + i))
                        .collect();
                    for chunk in items.chunks(250) {
                        index.insert_many(chunk).unwrap();
                        for (identity, i) in chunk {
                            assert_eq!(index.get(identity).unwrap(), Some(*i));
                        }
                        index.sync(t).unwrap();
                    }
                    for (identity, i) in &items {
                        assert_eq!(index.get(identity).unwrap(), Some(*i));
                    }
                });
            }
        });
        assert_eq!(index.len(), 20_000);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(usize, u64),
        InsertMany(Vec<(usize, u64)>),
        Get(usize),
        Sync(u64),
        /// Reopen; `true` closes cleanly, `false` abandons (crash keeping the page cache).
        Reopen(bool),
    }

    /// A pool of identities packed into 2 shards and 4 home hashes, so probe runs collide.
    fn pool() -> Vec<[u8; 32]> {
        (0..96u64)
            .map(|i| crafted_identity((i % 2) as u8, (i % 4) << 62, i))
            .collect()
    }

    fn op() -> impl Strategy<Value = Op> {
        let value = prop_oneof![0..1000u64, Just(MAX_LOG_INDEX)];
        prop_oneof![
            4 => (0..96usize, value.clone()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => proptest::collection::vec((0..96usize, value), 0..40).prop_map(Op::InsertMany),
            3 => (0..96usize).prop_map(Op::Get),
            1 => (0..1000u64).prop_map(Op::Sync),
            1 => any::<bool>().prop_map(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn behaves_like_a_hash_map_across_reopens(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let ids = pool();
            let mut model: HashMap<usize, u64> = HashMap::new();
            let mut watermark = 0;
            let mut index = Some(IdentityIndex::open_with_initial_pages(dir.path(), 1).unwrap());
            for op in ops {
                let live = index.as_ref().unwrap();
                match op {
                    Op::Insert(k, v) => {
                        live.insert(&ids[k], v).unwrap();
                        model.insert(k, v);
                    }
                    Op::InsertMany(pairs) => {
                        let items: Vec<_> = pairs.iter().map(|&(k, v)| (ids[k], v)).collect();
                        live.insert_many(&items).unwrap();
                        model.extend(pairs);
                    }
                    Op::Get(k) => prop_assert_eq!(live.get(&ids[k]).unwrap(), model.get(&k).copied()),
                    Op::Sync(w) => {
                        live.sync(w).unwrap();
                        watermark = w;
                    }
                    Op::Reopen(clean) => {
                        let old = index.take().unwrap();
                        if clean { old.close().unwrap() } else { old.abandon() }
                        index = Some(IdentityIndex::open(dir.path()).unwrap());
                    }
                }
                let live = index.as_ref().unwrap();
                prop_assert_eq!(live.len(), model.len() as u64);
                prop_assert_eq!(live.durable_watermark(), watermark);
            }
            let live = index.as_ref().unwrap();
            for (k, id) in ids.iter().enumerate() {
                prop_assert_eq!(live.get(id).unwrap(), model.get(&k).copied());
            }
        }
    }

    /// A deterministic stand-in for SHA-256 of entry `i` (splitmix64 lanes), so the benchmark
    /// does not hold its keys in memory.
    fn identity_of(i: u64) -> [u8; 32] {
        let mut identity = [0u8; 32];
        for (lane, chunk) in identity.chunks_exact_mut(8).enumerate() {
            let mut z = (i * 4 + lane as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        identity
    }

    fn resident_kib() -> String {
        fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("VmRSS") || l.starts_with("VmHWM"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Throughput and size figures: `cargo test --release -- --ignored --nocapture throughput`.
    #[test]
    #[ignore]
    fn throughput_and_bytes_per_entry() {
        const N: u64 = 2_000_000;
        const BATCH: u64 = 1000;
        let dir = tempfile::tempdir().unwrap();
        let index = IdentityIndex::open(dir.path()).unwrap();
        println!("before: {}", resident_kib());
        let per_sec = |n: u64, d: std::time::Duration| n as f64 / d.as_secs_f64();

        let start = std::time::Instant::now();
        for first in (0..N).step_by(BATCH as usize) {
            let batch: Vec<_> = (first..first + BATCH)
                .map(|i| (identity_of(i), i))
                .collect();
            index.insert_many(&batch).unwrap();
        }
        let inserts = per_sec(N, start.elapsed());
        let start = std::time::Instant::now();
        index.sync(N).unwrap();
        let sync_time = start.elapsed();

        let start = std::time::Instant::now();
        for i in 0..N {
            assert_eq!(index.get(&identity_of(i)).unwrap(), Some(i));
        }
        let hits = per_sec(N, start.elapsed());
        let start = std::time::Instant::now();
        for i in N..2 * N {
            assert_eq!(index.get(&identity_of(i)).unwrap(), None);
        }
        let misses = per_sec(N, start.elapsed());

        // The replay path after a crash: same pairs again (no writes), sync every 10 batches.
        let start = std::time::Instant::now();
        for (n, first) in (0..200_000u64).step_by(BATCH as usize).enumerate() {
            let batch: Vec<_> = (first..first + BATCH)
                .map(|i| (identity_of(i), i))
                .collect();
            index.insert_many(&batch).unwrap();
            if n % 10 == 9 {
                index.sync(N).unwrap();
            }
        }
        let replays = per_sec(200_000, start.elapsed());

        // Fresh inserts with a sync after every batch (64 dirty shards per sync).
        let start = std::time::Instant::now();
        let mut in_sync = std::time::Duration::ZERO;
        for first in (N..N + 100_000).step_by(BATCH as usize) {
            let batch: Vec<_> = (first..first + BATCH)
                .map(|i| (identity_of(i), i))
                .collect();
            index.insert_many(&batch).unwrap();
            let sync_start = std::time::Instant::now();
            index.sync(first + BATCH).unwrap();
            in_sync += sync_start.elapsed();
        }
        let synced_inserts = per_sec(100_000, start.elapsed());
        let sync_per_batch = in_sync / 100;

        assert_eq!(index.len(), N + 100_000);
        println!(
            "inserts {inserts:.0}/s (batches of {BATCH}, incl. resizes); final sync {sync_time:?}; \
             gets {hits:.0}/s hit, {misses:.0}/s miss; replay {replays:.0}/s; \
             inserts with a sync per batch {synced_inserts:.0}/s ({sync_per_batch:?} per sync); {} bytes on disk = {:.1} bytes/entry",
            index.size_on_disk(),
            index.size_on_disk() as f64 / index.len() as f64
        );
        println!("after: {}", resident_kib());
    }
}
