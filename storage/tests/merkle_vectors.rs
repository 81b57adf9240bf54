//! The transparency-dev/merkle proof vectors (`testdata/merkle/`, Apache-2.0,
//! upstream commit 417fb0c3) run through our RFC 9162 verifiers, and the 8-leaf
//! reference tree from `testonly/constants.go` rebuilt with the compact range.

use base64::Engine;
use rekor_storage::merkle::{self, CompactRange, Hash};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod support;

use support::testdata_dir;

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "json") {
            out.push(p);
        }
    }
}

/// Decodes a base64 field; `""` or a wrong length yields `None` (such a value can
/// never be a valid hash, so the probe must fail).
fn hash(v: &Value) -> Option<Hash> {
    let s = v.as_str()?;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    b.try_into().ok()
}

/// Upstream treats roots as opaque byte strings, and a few probes with equal sizes
/// use 12-byte "don't care" roots that must compare equal. Our API takes typed
/// 32-byte hashes, so a malformed root is mapped to a tagged SHA-256 of its bytes:
/// equal inputs stay equal, and it can never collide with a real tree root.
fn opaque_root(v: &Value) -> Option<Hash> {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    match <Hash>::try_from(b.as_slice()) {
        Ok(h) => Some(h),
        Err(_) => {
            use sha2::Digest;
            Some(
                sha2::Sha256::new()
                    .chain_update(b"malformed-root")
                    .chain_update(&b)
                    .finalize()
                    .into(),
            )
        }
    }
}

/// `proof: null` means an empty proof; any malformed element makes the probe fail.
fn proof(v: &Value) -> Option<Vec<Hash>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Array(a) => a.iter().map(hash).collect(),
        _ => None,
    }
}

fn probes(kind: &str) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    json_files(&testdata_dir().join("merkle").join(kind), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no vectors for {kind}");
    files
        .into_iter()
        .map(|f| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
            (f, v)
        })
        .collect()
}

#[test]
fn inclusion_vectors() {
    let all = probes("inclusion");
    assert_eq!(all.len(), 98);
    for (file, v) in all {
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = (|| {
            let idx = v["leafIdx"].as_u64()?;
            let size = v["treeSize"].as_u64()?;
            let leaf = hash(&v["leafHash"])?;
            let root = hash(&v["root"])?;
            let p = proof(&v["proof"])?;
            Some(merkle::verify_inclusion(idx, size, &leaf, &p, &root).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(got, !want_err, "{}", file.display());
    }
}

#[test]
fn consistency_vectors() {
    let all = probes("consistency");
    assert_eq!(all.len(), 98);
    for (file, v) in all {
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = (|| {
            let s1 = v["size1"].as_u64()?;
            let s2 = v["size2"].as_u64()?;
            let r1 = opaque_root(&v["root1"])?;
            let r2 = opaque_root(&v["root2"])?;
            let p = proof(&v["proof"])?;
            Some(merkle::verify_consistency(s1, s2, &p, &r1, &r2).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(got, !want_err, "{}", file.display());
    }
}

/// Subtree inclusion (leaf index absolute, subtree `[start, end)`).
#[test]
fn subtree_inclusion_vectors() {
    let all = probes("subtreeinclusion");
    assert_eq!(all.len(), 204);
    for (file, v) in all {
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = (|| {
            let idx = v["leafIdx"].as_u64()?;
            let start = v["start"].as_u64()?;
            let end = v["end"].as_u64()?;
            let leaf = hash(&v["leafHash"])?;
            let root = hash(&v["root"])?;
            let p = proof(&v["proof"])?;
            Some(merkle::verify_subtree_inclusion(idx, start, end, &leaf, &p, &root).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(got, !want_err, "{}", file.display());
    }
}

/// Subtree consistency: the subtree `[start, end)` with `root1` is part of the tree
/// of `size` leaves with `root2`. Roots go through [`opaque_root`] because the
/// equal-size and empty-subtree probes use 12-byte "don't care" roots.
#[test]
fn subtree_consistency_vectors() {
    let all = probes("subtreeconsistency");
    assert_eq!(all.len(), 118);
    let mut accepted = 0;
    for (file, v) in all {
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = (|| {
            let start = v["start"].as_u64()?;
            let end = v["end"].as_u64()?;
            let size = v["size"].as_u64()?;
            let r1 = opaque_root(&v["root1"])?;
            let r2 = opaque_root(&v["root2"])?;
            let p = proof(&v["proof"])?;
            Some(merkle::verify_subtree_consistency(start, end, size, &p, &r1, &r2).is_ok())
        })()
        .unwrap_or(false);
        assert_eq!(got, !want_err, "{}", file.display());
        accepted += usize::from(got);
    }
    // The README counts 106 of 118 probes as errors.
    assert_eq!(accepted, 12);
}

/// Every subtree of the 8-leaf reference tree, in every tree size that contains
/// it, is consistent with a proof built from the tree itself, and corrupting any
/// proof hash, the subtree root or the tree root is caught.
#[test]
fn subtree_consistency_generated_proofs() {
    let leaves: Vec<Hash> = (0u8..13).map(|i| merkle::leaf_hash(&[i])).collect();
    let mth = |lo: usize, hi: usize| merkle::subtree_root(&leaves[lo..hi]).unwrap();
    // The draft's SUBTREE_PROOF(start, end, D[lo..hi]) with `known` meaning the
    // verifier already holds the node for the current range.
    fn sub_proof(
        start: usize,
        end: usize,
        lo: usize,
        hi: usize,
        known: bool,
        mth: &dyn Fn(usize, usize) -> Hash,
        out: &mut Vec<Hash>,
    ) {
        let n = hi - lo;
        if start == 0 && end == n {
            if !known {
                out.push(mth(lo, hi));
            }
            return;
        }
        // The largest power of two below n (n ≥ 2 here).
        let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
        if end <= k {
            sub_proof(start, end, lo, lo + k, known, mth, out);
            out.push(mth(lo + k, hi));
        } else if k <= start {
            sub_proof(start - k, end - k, lo + k, hi, known, mth, out);
            out.push(mth(lo, lo + k));
        } else {
            sub_proof(0, end - k, lo + k, hi, false, mth, out);
            out.push(mth(lo, lo + k));
        }
    }
    let mut checked = 0;
    for size in 1..=leaves.len() {
        for start in 0..size {
            for end in start + 1..=size {
                if !merkle::is_valid_subtree(start as u64, end as u64) {
                    continue;
                }
                let mut p = Vec::new();
                sub_proof(start, end, 0, size, true, &mth, &mut p);
                let (s, e, n) = (start as u64, end as u64, size as u64);
                let r1 = mth(start, end);
                let r2 = mth(0, size);
                assert_eq!(
                    merkle::verify_subtree_consistency(s, e, n, &p, &r1, &r2),
                    Ok(()),
                    "[{start}, {end}) in {size}"
                );
                assert!(merkle::verify_subtree_consistency(s, e, n, &p, &r2, &[7; 32]).is_err());
                if r1 != r2 {
                    assert!(merkle::verify_subtree_consistency(s, e, n, &p, &r2, &r2).is_err());
                }
                for i in 0..p.len() {
                    let mut bad = p.clone();
                    bad[i][0] ^= 1;
                    assert!(
                        merkle::verify_subtree_consistency(s, e, n, &bad, &r1, &r2).is_err(),
                        "[{start}, {end}) in {size}, hash {i}"
                    );
                    let mut short = p.clone();
                    short.remove(i);
                    assert!(merkle::verify_subtree_consistency(s, e, n, &short, &r1, &r2).is_err());
                }
                let mut long = p.clone();
                long.push(r1);
                assert!(merkle::verify_subtree_consistency(s, e, n, &long, &r1, &r2).is_err());
                checked += 1;
            }
        }
    }
    assert!(checked > 50, "only {checked} subtrees checked");
}

#[test]
fn reference_tree_roots() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(testdata_dir().join("merkle/reference-tree.json")).unwrap(),
    )
    .unwrap();
    let leaves: Vec<Vec<u8>> = v["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hex::decode(s.as_str().unwrap()).unwrap())
        .collect();
    let roots: Vec<String> = v["root_hashes_hex_by_tree_size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(roots.len(), 9);
    let mut range = CompactRange::new();
    assert_eq!(hex::encode(range.root()), roots[0]);
    assert_eq!(merkle::EMPTY_ROOT, {
        use sha2::Digest;
        let h: Hash = sha2::Sha256::digest(b"").into();
        h
    });
    let level0: Vec<String> = v["node_hashes_hex_by_level"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    for (i, leaf) in leaves.iter().enumerate() {
        let lh = merkle::leaf_hash(leaf);
        assert_eq!(hex::encode(lh), level0[i]);
        range.append(lh).unwrap();
        assert_eq!(hex::encode(range.root()), roots[i + 1], "size {}", i + 1);
        let round = CompactRange::from_bytes(&range.to_bytes()).unwrap();
        assert_eq!(round, range);
    }
}

#[test]
fn compact_range_rejects_wrong_hash_count() {
    assert!(CompactRange::from_parts(3, vec![[0; 32]]).is_err());
    assert!(CompactRange::from_bytes(&[0; 7]).is_err());
    assert!(CompactRange::from_bytes(&[0; 9]).is_err());
    assert!(CompactRange::from_parts(3, vec![[0; 32]; 2]).is_ok());
}
