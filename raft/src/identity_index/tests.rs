use super::format::{shard_path, slot_offset, HEADER_LEN, TMP_SUFFIX};
use super::recovery::DEFAULT_INITIAL_PAGES;
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
        match shard.probe(identity).unwrap() {
            Probe::Found { slot, .. } => Some(slot),
            _ => None,
        }
    }

    /// Whether every shard's slot tags say what its file holds, slot by slot.
    fn tags_mirror_files(&self) -> bool {
        self.shards.iter().all(|cell| {
            let shard = read_lock(cell);
            let mut on_disk = Vec::new();
            table::stream_slots(&shard.file, &shard.path, shard.pages, |state| {
                on_disk.push(tags::tag_of(&state));
                Ok(())
            })
            .unwrap();
            (0..shard.slot_count()).all(|slot| shard.tags.get(slot) == Some(on_disk[slot as usize]))
        })
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
    let items: Vec<([u8; 32], u64)> = (0..3000).map(|i| (random_identity(&mut rng), i)).collect();
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
    let items: Vec<([u8; 32], u64)> = (0..2000).map(|i| (random_identity(&mut rng), i)).collect();
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
fn new_identities_are_looked_up_and_claimed_without_reading_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let index = IdentityIndex::open(dir.path()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let logged: Vec<[u8; 32]> = (0..5000).map(|_| random_identity(&mut rng)).collect();
    for (i, identity) in logged.iter().enumerate() {
        assert_eq!(index.get(identity).unwrap(), None);
        assert_eq!(index.claim(identity, i as u64, i as u64).unwrap(), None);
    }
    // 10,000 probes of absent identities, through doublings of every shard: only tag
    // collisions (1 in 253 per live slot passed) read a slot.
    let reads = index.slot_reads();
    assert!(
        reads < 200,
        "{reads} slot reads for 10,000 probes of new identities"
    );
    // A duplicate is found by reading its own slot.
    for (i, identity) in logged.iter().enumerate().take(1000) {
        assert_eq!(index.claim(identity, 9999, 5000).unwrap(), Some(i as u64));
    }
    let duplicate_reads = index.slot_reads() - reads;
    assert!((1000..1100).contains(&duplicate_reads), "{duplicate_reads}");
    assert!(index.tags_mirror_files());
    // Reopened, the tags are rebuilt from the files.
    index.close().unwrap();
    let index = IdentityIndex::open(dir.path()).unwrap();
    assert!(index.tags_mirror_files());
    assert_eq!(index.get(&logged[4999]).unwrap(), Some(4999));
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
    assert!(
        index.tags_mirror_files(),
        "the torn slot is tagged a tombstone"
    );
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

/// A pool of identities packed into 2 shards and 4 home hashes, so probe runs collide, with
/// three slot tags among them, so probes both skip slots by their tag and read colliding ones.
fn pool() -> Vec<[u8; 32]> {
    (0..96u64)
        .map(|i| {
            let mut identity = crafted_identity((i % 2) as u8, (i % 4) << 62, i);
            identity[31] = (i / 4 % 3) as u8;
            identity
        })
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
            prop_assert!(live.tags_mirror_files());
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
