//! One shard as an open-addressing table with linear probing: finding an identity's slot,
//! inserting into it, and doubling it (through a small write-back buffer) before its load
//! passes 0.7. The slot and header bytes come from [`super::format`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::format::{
    decode_slot, encode_slot, home_hash, home_slot, slot_offset, tmp_path, Header, SlotState, PAGE,
    SLOT, SLOTS_PER_PAGE,
};
use super::tags::SlotTags;
use super::{corrupt, fsync_dir, io_error, Result, Shard};

/// Load factor bound, as a fraction: a shard grows before its occupied slots exceed 7/10.
const MAX_LOAD_NUMERATOR: u64 = 7;
const MAX_LOAD_DENOMINATOR: u64 = 10;

/// Pages read per syscall when streaming a whole shard (resize, recount at open).
const STREAM_PAGES: usize = 16;

/// Pages the resize write-back buffer holds (256 KiB). A doubled table keeps the order of its
/// entries (home slots come from a multiply-shift of the same hash), so the pages being written
/// advance with the pages being read and a small direct-mapped buffer catches almost every write.
const RESIZE_BUFFER_PAGES: usize = 64;

/// Access to the slot pages of one table: the live shard file, or the resize buffer.
pub(super) trait SlotPages {
    /// Slots of slot page `page` (0-based, i.e. file page `page + 1`) from slot `first` of the
    /// page on: at least one, at most up to the end of the page.
    fn slots(&mut self, page: u64, first: usize) -> Result<&[u8]>;
    fn write_slot(&mut self, slot: u64, bytes: &[u8; SLOT]) -> Result<()>;
}

/// The slots of a live shard file, read and written one at a time.
pub(super) struct FilePages<'a> {
    file: &'a File,
    path: &'a Path,
}

impl<'a> FilePages<'a> {
    pub(super) fn new(file: &'a File, path: &'a Path) -> Self {
        Self { file, path }
    }

    /// The bytes of one slot.
    pub(super) fn read_slot(&self, slot: u64) -> Result<[u8; SLOT]> {
        let mut bytes = [0u8; SLOT];
        self.file
            .read_exact_at(&mut bytes, slot_offset(slot))
            .map_err(io_error("read slot", self.path))?;
        Ok(bytes)
    }

    pub(super) fn write_slot(&self, slot: u64, bytes: &[u8; SLOT]) -> Result<()> {
        // One pwrite of 40 bytes inside one page (see the module docs on torn writes).
        self.file
            .write_all_at(bytes, slot_offset(slot))
            .map_err(io_error("write slot", self.path))
    }
}

/// Where a probe for an identity ended.
pub(super) enum Probe {
    /// The identity is live at `slot` with `index`.
    Found { slot: u64, index: u64 },
    /// The identity is absent; it belongs at `slot`, which is empty or (if `reuses_tombstone`) the
    /// first tombstone on the probe path.
    Vacant { slot: u64, reuses_tombstone: bool },
    /// Every slot is in use and none holds the identity (only possible if the file is damaged:
    /// the load factor keeps free slots).
    Full,
}

/// Linear probe for `identity` over a table read through `pages`, a page at a time (used by
/// the resize; a live shard probes its slot tags instead, [`SlotTags::probe`]).
pub(super) fn probe(
    pages: &mut impl SlotPages,
    slot_count: u64,
    identity: &[u8; 32],
) -> Result<Probe> {
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

/// Largest `occupied` allowed for a table of `slot_count` slots.
pub(super) fn max_occupied(slot_count: u64) -> u64 {
    slot_count * MAX_LOAD_NUMERATOR / MAX_LOAD_DENOMINATOR
}

impl Shard {
    pub(super) fn insert(&mut self, identity: &[u8; 32], index: u64) -> Result<()> {
        self.claim(identity, index, 0).map(|_| ())
    }

    /// The stored index of `identity` if it is below `live_below`; otherwise store `index` for
    /// it and return `None`.
    pub(super) fn claim(
        &mut self,
        identity: &[u8; 32],
        index: u64,
        live_below: u64,
    ) -> Result<Option<u64>> {
        self.mark_unclean()?;
        if self.occupied + 1 > max_occupied(self.slot_count()) {
            self.grow()?;
        }
        match self.probe(identity)? {
            Probe::Found { index: old, .. } if old < live_below => return Ok(Some(old)),
            Probe::Found { slot, index: old } => {
                if old != index {
                    self.write_slot(slot, identity, index)?;
                }
            }
            Probe::Vacant {
                slot,
                reuses_tombstone,
            } => {
                self.write_slot(slot, identity, index)?;
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

    /// Where `identity` is or would go: [`SlotTags::probe`], reading candidate slots from the
    /// file.
    pub(super) fn probe(&self, identity: &[u8; 32]) -> Result<Probe> {
        let pages = FilePages::new(&self.file, &self.path);
        self.tags.probe(identity, |slot| {
            self.slot_reads.fetch_add(1, Ordering::Relaxed);
            pages.read_slot(slot)
        })
    }

    /// Writes `identity → index` at `slot` and keeps its tag in step (unknown if the write
    /// failed: it may have reached the file in part).
    fn write_slot(&mut self, slot: u64, identity: &[u8; 32], index: u64) -> Result<()> {
        self.unsynced = true;
        let written =
            FilePages::new(&self.file, &self.path).write_slot(slot, &encode_slot(identity, index));
        match written {
            Ok(()) => self.tags.set_live(slot, identity),
            Err(_) => self.tags.forget(slot),
        }
        written
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
        let mut new_tags = SlotTags::empty(new_slot_count);
        let result = (|| {
            let mut buffer = ResizeBuffer::new(&new_file, &tmp);
            let mut live = 0u64;
            stream_slots(&self.file, &self.path, self.pages, |state| {
                // Tombstones are dropped here; that is how a resize cleans up after a crash.
                if let SlotState::Live { identity, index } = state {
                    match probe(&mut buffer, new_slot_count, identity)? {
                        Probe::Vacant { slot, .. } => {
                            buffer.write_slot(slot, &encode_slot(identity, index))?;
                            new_tags.set_live(slot, identity);
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
        self.tags = new_tags;
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
/// blocks (no metadata for `fdatasync` to journal, no ENOSPC at an arbitrary insert). They are
/// written one page per call, so that the page cache holds the file in single pages: see
/// [`single_page_cache`].
pub(super) fn new_table_file(path: &Path, header: &Header) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_error("create shard file", path))?;
    single_page_cache(&file, path);
    let zeros = [0u8; PAGE];
    for page in 0..1 + header.pages {
        file.write_all_at(&zeros, page * PAGE as u64)
            .map_err(io_error("zero shard file", path))?;
    }
    file.write_all_at(&header.encode(), 0)
        .map_err(io_error("write shard header", path))?;
    Ok(file)
}

/// Asks the kernel not to read ahead in a shard file, so that its page cache is filled with
/// single 4 KiB pages, as the zero fill of [`new_table_file`] and the resize buffer write it.
///
/// Every slot insert is a 40-byte `pwrite`, and ext4 (large folios since Linux 6.16) prepares a
/// write by walking every block of the cached folio that holds it: a folio made by readahead or
/// by one large write covers 16 blocks or more, and in a large index (1 GiB of shards at 10 M
/// entries) each block's buffer head is a cache miss. The walk cost more than the rest of the
/// insert: 16 % of the growth scenario's CPU at 10 M entries, against 3 % at 0, where its Raft
/// storage rate fell to 0.67 of the rate at 0. Slot reads are random anyway; the whole-shard
/// reads (resize, recount) still read [`STREAM_PAGES`] pages per call. Advice only: where it
/// is refused, inserts are slower, not wrong.
pub(super) fn single_page_cache(file: &File, path: &Path) {
    if let Err(error) = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Random) {
        tracing::debug!(path = %path.display(), %error, "identity index: fadvise(RANDOM) refused");
    }
}

/// Call `visit` for every slot of a table, reading [`STREAM_PAGES`] pages per syscall.
pub(super) fn stream_slots(
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
