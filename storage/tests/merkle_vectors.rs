//! The transparency-dev/merkle proof vectors (`../shared/testdata/merkle/`, Apache-2.0,
//! upstream commit 417fb0c3) run through our RFC 9162 verifiers, and the 8-leaf
//! reference tree from `testonly/constants.go` rebuilt with the compact range.

use base64::Engine;
use rekor_storage::merkle::{self, CompactRange, Hash};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn testdata() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata"
    ))
}

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
    json_files(&testdata().join("merkle").join(kind), &mut files);
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

/// Subtree inclusion (leaf index absolute, subtree `[start, end)`). Subtree
/// consistency verification is not implemented.
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

#[test]
fn reference_tree_roots() {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(testdata().join("merkle/reference-tree.json")).unwrap(),
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
