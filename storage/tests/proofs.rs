//! Tile-based roots and proofs against a naive recursive RFC 6962 implementation
//! (written here from RFC 6962 §2.1, §2.1.1 and §2.1.2), plus the integrator's
//! output checked against the tile arithmetic. One large tree is built once.

use proptest::prelude::*;
use rekor_storage::integrate::TreeBuilder;
use rekor_storage::merkle::{self, Hash, EMPTY_ROOT};
use rekor_storage::proof::{self, TileSet};
use rekor_storage::tiles::{self, TileId};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Every partial-tile edge case named by the issue, plus multiples and powers of 256.
const EDGE_SIZES: [u64; 14] = [
    1, 2, 255, 256, 257, 512, 768, 65_280, 65_535, 65_536, 65_537, 70_000, 131_072, 131_073,
];
const TREE_SIZE: u64 = 131_073;

// ---- naive RFC 6962 ----

fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => EMPTY_ROOT,
        1 => d[0],
        n => {
            let k = split(n);
            merkle::node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return Vec::new();
    }
    let k = split(d.len());
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = split(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

// ---- the tree under test ----

struct Tree {
    leaves: Vec<Hash>,
    /// Every object the integrator produced, by path.
    objects: HashMap<String, Vec<u8>>,
}

fn entry(i: u64) -> Vec<u8> {
    format!("leaf {i}").into_bytes()
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // Batch boundaries: every edge size plus a deterministic spread of others.
        let mut bounds: Vec<u64> = EDGE_SIZES.to_vec();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut s = 0;
        while s < TREE_SIZE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s += 1 + x % 3000;
            bounds.push(s.min(TREE_SIZE));
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut builder = TreeBuilder::new();
        let mut objects = HashMap::new();
        let mut from = 0;
        for to in bounds {
            let batch: Vec<Vec<u8>> = (from..to).map(entry).collect();
            let out = builder.append(&batch).unwrap();
            assert_eq!(out.size, to);
            // The integrator writes exactly the tiles and bundles the arithmetic predicts.
            let ids: Vec<TileId> = out.tiles.iter().map(|(id, _)| *id).collect();
            assert_eq!(
                ids,
                tiles::tiles_touched(from, to).collect::<Vec<_>>(),
                "{from}->{to}"
            );
            let bids: Vec<_> = out.bundles.iter().map(|(id, _)| *id).collect();
            assert_eq!(bids, tiles::bundles_touched(from, to).collect::<Vec<_>>());
            for (id, bytes) in out.tiles {
                let prev = objects.insert(id.path(), bytes.to_vec());
                assert!(prev.is_none(), "{} written twice", id.path());
            }
            for (id, bytes) in out.bundles {
                objects.insert(id.path(), bytes.to_vec());
            }
            from = to;
        }
        let leaves = (0..TREE_SIZE)
            .map(|i| merkle::leaf_hash(&entry(i)))
            .collect();
        Tree { leaves, objects }
    })
}

/// Fetches tiles as a client would at `size`: the exact object if it was written,
/// else the full or a wider partial tile cut down to the requested width, so a
/// builder that reads a node not complete at `size` gets wrong data and fails.
fn fetch(ids: &[TileId]) -> TileSet {
    let t = tree();
    let mut set = TileSet::new();
    for id in ids {
        let bytes = t.objects.get(&id.path()).cloned().unwrap_or_else(|| {
            let wider = (id.width..=256)
                .filter_map(|w| t.objects.get(&TileId { width: w, ..*id }.path()))
                .next()
                .unwrap_or_else(|| panic!("no tile for {}", id.path()));
            wider[..usize::from(id.width) * 32].to_vec()
        });
        set.insert(*id, &bytes).unwrap();
    }
    set
}

fn check_root(size: u64) {
    let set = fetch(&proof::tiles_for_root(size));
    let want = mth(&tree().leaves[..size as usize]);
    assert_eq!(
        proof::root_from_tiles(size, &set).unwrap(),
        want,
        "root at {size}"
    );
}

fn check_inclusion(index: u64, size: u64) {
    let leaves = &tree().leaves[..size as usize];
    let set = fetch(&proof::tiles_for_inclusion(index, size).unwrap());
    let got = proof::build_inclusion_proof(index, size, &set).unwrap();
    assert_eq!(
        got,
        path(index as usize, leaves),
        "inclusion {index} in {size}"
    );
    merkle::verify_inclusion(index, size, &leaves[index as usize], &got, &mth(leaves)).unwrap();
}

fn check_consistency(m: u64, n: u64) {
    let leaves = &tree().leaves;
    let set = fetch(&proof::tiles_for_consistency(m, n).unwrap());
    let got = proof::build_consistency_proof(m, n, &set).unwrap();
    assert_eq!(
        got,
        subproof(m as usize, &leaves[..n as usize], true),
        "consistency {m} -> {n}"
    );
    let (r1, r2) = (mth(&leaves[..m as usize]), mth(&leaves[..n as usize]));
    merkle::verify_consistency(m, n, &got, &r1, &r2).unwrap();
}

#[test]
fn edge_sizes_match_naive() {
    for &n in &EDGE_SIZES {
        check_root(n);
        for i in [0, n / 2, n - 1] {
            check_inclusion(i, n);
        }
        for m in [1, n / 2, n - 1, n] {
            if m >= 1 {
                check_consistency(m, n);
            }
        }
    }
    for &m in &EDGE_SIZES {
        check_consistency(m, TREE_SIZE);
    }
}

#[test]
fn empty_tree() {
    assert!(proof::tiles_for_root(0).is_empty());
    assert_eq!(
        proof::root_from_tiles(0, &TileSet::new()).unwrap(),
        EMPTY_ROOT
    );
    assert!(proof::tiles_for_inclusion(0, 0).is_err());
    assert!(proof::tiles_for_consistency(0, 5).is_err());
    assert!(proof::tiles_for_consistency(6, 5).is_err());
    assert!(proof::build_consistency_proof(5, 5, &TileSet::new())
        .unwrap()
        .is_empty());
}

/// tlog-tiles.md §11.4: leaf 1,234 in a tree of 70,000 needs 17 hashes from 4 tiles.
#[test]
fn worked_example_inclusion_1234_in_70000() {
    let ids = proof::tiles_for_inclusion(1234, 70_000).unwrap();
    let paths: Vec<String> = ids.iter().map(|t| t.path()).collect();
    assert_eq!(
        paths,
        [
            "tile/0/004",
            "tile/0/273.p/112",
            "tile/1/000",
            "tile/1/001.p/17"
        ]
    );
    assert_eq!(merkle::inclusion_proof_len(1234, 70_000), 17);
    check_inclusion(1234, 70_000);
}

#[test]
fn missing_tiles_are_reported() {
    let ids = proof::tiles_for_inclusion(1234, 70_000).unwrap();
    let partial = fetch(&ids[..3]);
    assert!(matches!(
        proof::build_inclusion_proof(1234, 70_000, &partial),
        Err(proof::ProofBuildError::MissingTile(t)) if t == ids[3]
    ));
}

#[test]
fn resume_at_edge_sizes_continues_identically() {
    // Resuming from the stored right edge reproduces the builder's root and, after
    // appending, the same objects as the uninterrupted build.
    let t = tree();
    for &n in &EDGE_SIZES {
        let (tile_ids, bundle) = TreeBuilder::right_edge(n);
        let tiles: Vec<(TileId, Vec<u8>)> = tile_ids
            .iter()
            .map(|id| (*id, t.objects[&id.path()].clone()))
            .collect();
        let bundle_bytes = bundle.map(|b| t.objects[&b.path()].clone());
        let mut b = TreeBuilder::from_right_edge(n, &tiles, bundle_bytes.as_deref()).unwrap();
        assert_eq!(b.root(), mth(&t.leaves[..n as usize]));
        let out = b.append(&[entry(n)]).unwrap();
        for (id, bytes) in out.tiles {
            let want = t.objects.get(&id.path());
            // Some sizes were never a batch boundary; compare where the object exists.
            if let Some(w) = want {
                assert_eq!(&bytes[..], &w[..], "{}", id.path());
            }
        }
    }
}

#[test]
fn oversized_entries_are_refused_without_changing_the_tree() {
    let mut b = TreeBuilder::new();
    b.append(&[b"a".to_vec()]).unwrap();
    let root = b.root();
    let err = b.append(&[b"b".to_vec(), vec![0; 65_536]]).unwrap_err();
    assert!(matches!(
        err,
        rekor_storage::integrate::IntegrateError::EntryTooLarge { position: 1, .. }
    ));
    assert_eq!((b.size(), b.root()), (1, root));
    assert!(b.append(&[vec![0; 65_535]]).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_matches_naive(size in 1..=TREE_SIZE, seed in any::<u64>()) {
        check_inclusion(seed % size, size);
    }

    #[test]
    fn consistency_matches_naive(n in 1..=TREE_SIZE, seed in any::<u64>()) {
        check_consistency(1 + seed % n, n);
    }

    #[test]
    fn root_matches_naive(size in 0..=TREE_SIZE) {
        check_root(size);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Small trees: many cases are cheap, and they cover every shape near the leaves.
    #[test]
    fn small_trees_match_naive(n in 1u64..=600, a in any::<u64>(), b in any::<u64>()) {
        check_inclusion(a % n, n);
        check_consistency(1 + b % n, n);
    }
}
