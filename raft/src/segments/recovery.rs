//! Opening a segment log: how it gets from whatever a crash left on disk back to a log whose
//! every record checks out.
//!
//! `open` first finishes a reset whose intent is on disk, removes leftover temp files, then
//! scans every segment record by record. A bad or incomplete tail of the last segment is what a
//! crash mid-append leaves, and is cut away; damage anywhere else is corruption. The reset
//! protocol itself (intent, then marker segment) lives here too, because `open` is where an
//! interrupted one is completed.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use super::format::{
    decode_header, decode_reset_intent, encode_reset_intent, parse_segment_name, record_hasher,
    segment_path, HEADER_LEN, RESET_INTENT, TMP_SUFFIX,
};
use super::{
    io_err, remove_segment_file, sync_dir, RecentRecords, Result, Segment, SegmentConfig,
    SegmentError, SegmentLog, Table, WriterState,
};

/// Buffer for the sequential recovery scan.
const SCAN_BUFFER_BYTES: usize = 1 << 20;

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
                recent: RecentRecords::new(next, config.recent_bytes),
            }),
            read_gate: RwLock::new(()),
            sync_lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
        })
    }
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
        let mut hasher = record_hasher(&header_bytes);
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
pub(super) fn write_reset_intent(dir: &Path, next: u64) -> Result<()> {
    let tmp = dir.join(format!("{RESET_INTENT}{TMP_SUFFIX}"));
    let contents = encode_reset_intent(next);
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
    decode_reset_intent(&bytes).ok_or_else(|| SegmentError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: "reset intent is not an index with its checksum".into(),
    })
}

/// Second half of a reset, also run by `open` when it finds `reset.intent`: delete every
/// segment, create the empty marker segment named `next`, drop the intent. Idempotent.
pub(super) fn complete_reset(dir: &Path, next: u64) -> Result<Segment> {
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
