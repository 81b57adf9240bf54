//! On-disk identity index: a hash table from a 32-byte entry identity to the entry's log index.
//!
//! Implements the dedup map of DESIGN.md § Dedup ("Identity = SHA-256 of the canonical body"; the
//! state machine decides duplicates while applying `Append`). The map lives in files and is read and
//! written with positional I/O, so it is cached by the OS page cache rather than the process heap:
//! process memory is one byte per slot (the slot tags, below), plus a 256 KiB buffer while one
//! shard is being resized.
//!
//! # Layout
//!
//! The directory holds 64 shard files `shard-XX.idx` (`XX` = the top 6 bits of the identity's first
//! byte, in hex), a `watermark` file and a `LOCK` file. A shard is an open-addressing table with
//! linear probing:
//!
//! - page 0 is the header (magic, version, shard number, page count, counts, clean flag, CRC-32);
//! - pages 1.. hold [`SLOTS_PER_PAGE`] slots of 40 bytes each (`[identity 32][value u64 LE]`) and 16
//!   bytes of padding, so that **no slot straddles a 4 KiB page** (one slot is one `pwrite` inside one page).
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
//! Each shard keeps one byte per slot in memory, the slot's tag (`tags`): empty, tombstone or
//! a byte of the live identity. A probe walks the tags and reads from the file only the slots
//! whose tag matches, so `get` of an absent identity reads nothing (a tag collision, 1 in 253
//! per live slot passed, costs one 40-byte `pread`), `get` of a present one reads its slot, and
//! `insert` of a new identity is one 40-byte `pwrite`. The tags are built at open by one
//! sequential read of every shard (~1 GiB at 10 M identities) and take ~2–3 bytes of memory per
//! identity. Each insert dirties a page, so a `sync` writes back up to one page per insert since
//! the previous sync: call it per group of batches or on a timer rather than per insert. A
//! shard's lock is held for the whole of its resize (a sequential rewrite of that shard).
//! Identities must be hash outputs: the probe position is taken from them unkeyed, so chosen
//! identities could lengthen probe runs.
//!
//! # Parts
//!
//! - this file: the index's API (get, insert, claim, sync, close), the shard bookkeeping and
//!   the clean/unclean header protocol;
//! - `format`: the bytes on disk — shard header, slot encoding and its check, file names, the
//!   watermark file;
//! - `table`: one shard as an open-addressing table — linear probing, inserting, doubling;
//! - `tags`: the in-memory slot tags and the probe over them;
//! - `recovery`: [`IdentityIndex::open`] — lock, leftovers, shard creation, header checks and
//!   recounts;
//! - `tests`: the unit and property tests.

mod format;
mod recovery;
mod table;
mod tags;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use format::{MAX_LOG_INDEX, SHARD_COUNT, SLOTS_PER_PAGE};

use format::{encode_watermark, shard_of, tmp_path, Header, PAGE, WATERMARK_FILE, WATERMARK_LEN};
use table::Probe;
use tags::SlotTags;

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
    /// What each slot holds, so that probes read only candidate slots ([`tags`]).
    tags: SlotTags,
    /// Slots read from the file by probes (a probe under the shared lock counts here too).
    slot_reads: AtomicU64,
    /// The header on disk says "clean" (its counts are exact). Cleared durably before the first
    /// slot write, set again by `close`.
    header_clean_on_disk: bool,
}

impl IdentityIndex {
    /// The index stored for `identity`, if any.
    pub fn get(&self, identity: &[u8; 32]) -> Result<Option<u64>> {
        let shard = read_lock(&self.shards[shard_of(identity)]);
        match shard.probe(identity)? {
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

    /// Slots read from the files by lookups and claims since open: about one per duplicate
    /// found, a few per thousand new identities (tag collisions).
    pub fn slot_reads(&self) -> u64 {
        self.shards
            .iter()
            .map(|cell| read_lock(cell).slot_reads.load(Ordering::Relaxed))
            .sum()
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
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync index directory", dir))
}

/// Atomically replace the watermark file: write tmp, fsync, rename, fsync dir.
fn write_watermark(dir: &Path, watermark: u64) -> Result<()> {
    let path = dir.join(WATERMARK_FILE);
    let tmp = tmp_path(&path);
    let bytes = encode_watermark(watermark);
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
