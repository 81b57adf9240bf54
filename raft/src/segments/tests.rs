use super::format::{parse_segment_name, RESET_INTENT, TMP_SUFFIX};
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

/// A log that keeps no records in memory: every read is a file read.
fn open(dir: &Path, segment_bytes: u64) -> SegmentLog {
    open_with_recent(dir, segment_bytes, 0)
}

fn open_with_recent(dir: &Path, segment_bytes: u64, recent_bytes: usize) -> SegmentLog {
    SegmentLog::open(SegmentConfig {
        dir: dir.to_path_buf(),
        segment_bytes,
        recent_bytes,
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
        recent_bytes: 0,
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
        recent_bytes: 0,
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

/// Overwrites two payload bytes of record `index` in its segment file, behind the log's back.
fn damage_record_on_disk(log: &SegmentLog, dir: &Path, index: u64) {
    let (path, offset) = {
        let table = log.table_read();
        let position = table.segment_holding(index).unwrap();
        let segment = &table.segments[position];
        let local = (index - segment.first) as usize;
        (
            segment.path.clone(),
            segment.offsets[local] + HEADER_LEN as u64,
        )
    };
    assert!(path.starts_with(dir));
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[0xFF, 0xFF], offset).unwrap();
}

#[test]
fn the_newest_records_are_read_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_recent(dir.path(), 4096, 1 << 20);
    append_range(&log, 0..10);
    damage_record_on_disk(&log, dir.path(), 3);
    // Served from memory: the damage on disk is not seen.
    assert_holds(&log, 0..10);
    // The damage is on disk: a reopen, with nothing in memory, cuts the one segment's tail
    // at the damaged record as it would a torn write.
    drop(log);
    let log = open_with_recent(dir.path(), 4096, 1 << 20);
    assert_eq!(log.next_index(), 3);
    assert_holds(&log, 0..3);
}

#[test]
fn a_read_takes_older_records_from_the_files_and_newer_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    // Room for the last few records of 20 (payloads of up to 89 bytes, plus 32 each).
    let log = open_with_recent(dir.path(), 4096, 400);
    append_range(&log, 0..20);
    let held = log.table_read().recent.held();
    assert_eq!(held.end, 20);
    assert!(held.start > 12 && held.start < 19, "held {held:?}");
    // One read across both: the file part is checked, the memory part is not read from disk.
    damage_record_on_disk(&log, dir.path(), 19);
    assert_holds(&log, 5..20);
    damage_record_on_disk(&log, dir.path(), 2);
    assert!(matches!(log.read(0..20), Err(SegmentError::Corrupt { .. })));
}

#[test]
fn records_cut_by_truncation_leave_memory_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_recent(dir.path(), 4096, 1 << 20);
    append_range(&log, 0..10);
    log.truncate_from(6).unwrap();
    let replacement: Vec<Vec<u8>> = (0..3).map(|i| vec![0xA0 + i; 7]).collect();
    let refs: Vec<&[u8]> = replacement.iter().map(Vec::as_slice).collect();
    log.append(6, &refs).unwrap();
    let mut expected = payloads(0..6);
    expected.extend(replacement);
    assert_eq!(log.read(0..9).unwrap(), expected);
    log.reset(100).unwrap();
    append_range(&log, 100..103);
    assert_holds(&log, 100..103);
    assert_eq!(log.table_read().recent.held(), 100..103);
}

/// One append far larger than the budget leaves the log holding its newest records that fit,
/// and older ones are read from the files.
#[test]
fn an_append_larger_than_the_memory_budget_holds_its_newest_records() {
    // 68-byte payloads: 100 bytes each with the per-record charge; 350 holds three.
    let records: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 68]).collect();
    let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_recent(dir.path(), 4096, 350);
    log.append(0, &refs[..2]).unwrap();
    assert_eq!(log.table_read().recent.held(), 0..2);
    log.append(2, &refs[2..]).unwrap();
    assert_eq!(log.table_read().recent.held(), 7..10);
    assert_eq!(log.read(0..10).unwrap(), records);
}

#[test]
fn a_record_larger_than_the_memory_budget_is_read_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_recent(dir.path(), 4096, 100);
    let big = vec![7u8; 500];
    log.append(0, &[b"small", &big]).unwrap();
    assert_eq!(log.table_read().recent.held(), 2..2);
    assert_eq!(log.read(0..2).unwrap(), vec![b"small".to_vec(), big]);
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
        // None, a few records (reads straddle the files and memory), or all of them.
        recent_bytes in prop_oneof![Just(0usize), 40usize..400, Just(1usize << 20)],
        ops in prop::collection::vec(op_strategy(), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open_with_recent(dir.path(), segment_bytes, recent_bytes);
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
                    log = open_with_recent(dir.path(), segment_bytes, recent_bytes);
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
