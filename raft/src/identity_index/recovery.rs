//! Opening an identity index: taking the directory lock, removing what an interrupted write left,
//! creating missing shards of a new index, and bringing each existing shard back to exact
//! counts — trusted from a clean header, recounted after a crash, or rebuilt from the file
//! length when the header itself was torn — and building each shard's slot tags
//! ([`super::tags`]) from one sequential read of it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use super::format::{
    decode_watermark, shard_path, tmp_path, Header, SlotState, HEADER_LEN, LOCK_FILE, PAGE,
    SHARD_COUNT, SLOTS_PER_PAGE, TMP_SUFFIX, WATERMARK_FILE,
};
use super::table::{max_occupied, new_table_file, single_page_cache, stream_slots};
use super::tags::{tag_of, SlotTags};
use super::{
    corrupt, fsync_dir, io_error, write_watermark, IdentityIndex, IdentityIndexError, Result, Shard,
};

/// Slot pages of a newly created shard (4 pages = 408 slots, 20 KiB file with its header).
pub(super) const DEFAULT_INITIAL_PAGES: u64 = 4;

impl IdentityIndex {
    /// Open or create the index in directory `dir`. Removes leftovers of an interrupted resize or
    /// watermark write, validates every shard header and recounts shards left unclean by a crash.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with_initial_pages(dir, DEFAULT_INITIAL_PAGES)
    }

    /// Like [`IdentityIndex::open`], but shards created by this call start with `initial_pages`
    /// slot pages ([`SLOTS_PER_PAGE`](super::SLOTS_PER_PAGE) slots each, minimum 1). Existing shards keep their size.
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
        let started = std::time::Instant::now();
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
        // Every shard is read once at open to build its slot tags: ~1 GiB at 10 M identities.
        let took = started.elapsed();
        if took > std::time::Duration::from_secs(1) {
            let slots: u64 = shards
                .iter()
                .map(|cell| super::read_lock(cell).slot_count())
                .sum();
            tracing::info!(dir = %dir.display(), slots, seconds = took.as_secs_f64(),
                "identity index: read every shard to build the slot tags");
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
}

impl Shard {
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
            tags: SlotTags::empty(pages * SLOTS_PER_PAGE),
            slot_reads: AtomicU64::new(0),
            header_clean_on_disk: true,
        })
    }

    fn open_existing(number: usize, path: PathBuf) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("open shard", &path))?;
        single_page_cache(&file, &path);
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
            tags: SlotTags::empty(header.pages * SLOTS_PER_PAGE),
            slot_reads: AtomicU64::new(0),
            header_clean_on_disk: header.clean,
        };
        let (live, occupied) = shard.scan()?;
        if header.clean {
            if header.live > header.occupied || header.occupied > max_occupied(shard.slot_count()) {
                return Err(corrupt(&shard.path, "header counts out of range"));
            }
        } else {
            tracing::debug!(
                shard = number,
                live,
                occupied,
                tombstones = occupied - live,
                "identity index: recounted shard left unclean"
            );
            shard.live = live;
            shard.occupied = occupied;
        }
        Ok(shard)
    }

    /// Reads every slot once: builds the slot tags, and counts the live and occupied slots (the
    /// counts replace the header's after an unclean shutdown).
    fn scan(&mut self) -> Result<(u64, u64)> {
        let mut live = 0u64;
        let mut occupied = 0u64;
        let mut slot = 0u64;
        let tags = &mut self.tags;
        stream_slots(&self.file, &self.path, self.pages, |state| {
            match state {
                SlotState::Empty => {}
                SlotState::Live { .. } => {
                    live += 1;
                    occupied += 1;
                }
                SlotState::Torn => occupied += 1,
            }
            tags.set(slot, tag_of(&state));
            slot += 1;
            Ok(())
        })?;
        Ok((live, occupied))
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

/// The watermark of the last completed sync, `None` if the index was never fully created.
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
    decode_watermark(&bytes, &path).map(Some)
}
