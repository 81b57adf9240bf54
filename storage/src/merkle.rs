//! RFC 6962 Merkle-tree hashing, the compact range, and RFC 9162 proof verification.
//!
//! This module is the tree math only: no tiles, no IO, no signing.
//! Hashing follows RFC 6962 §2.1 (tlog-tiles.md §1); verification follows
//! RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), with the
//! transparency-dev/merkle convention that a consistency proof from size 0 is
//! always rejected. Subtree inclusion and subtree consistency follow the Merkle
//! Tree Certificates draft ("Verifying a Subtree Consistency Proof"), with the
//! edge cases of transparency-dev/merkle `VerifySubtreeConsistency`.

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// RFC 6962: the root of the empty tree is SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// RFC 6962 §2.1: leaf hash = SHA-256(0x00 ‖ entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// RFC 6962 §2.1: interior node hash = SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Why a proof or a compact range was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof needs 0 < size1 ≤ size2.
    #[error("invalid consistency sizes {size1} -> {size2}")]
    InvalidSizes { size1: u64, size2: u64 },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength { expected: usize, got: usize },
    /// The recomputed root differs from the expected one.
    #[error("recomputed root does not match the expected root")]
    RootMismatch,
    /// The subtree range is not a valid RFC 9162-style subtree.
    #[error("invalid subtree range [{start}, {end})")]
    InvalidSubtree { start: u64, end: u64 },
    /// The subtree ends past the tree it is claimed to be part of.
    #[error("subtree end {end} is beyond tree size {size}")]
    SubtreeBeyondTree { end: u64, size: u64 },
    /// The proof does not have the shape the sizes call for (too few or too many
    /// hashes for the path from the subtree to the root).
    #[error("proof shape does not match subtree [{start}, {end}) of tree size {size}")]
    MalformedSubtreeProof { start: u64, end: u64, size: u64 },
}

/// The compact range `[0, size)`: one perfect-subtree root per set bit of `size`,
/// largest (leftmost) first. At most 64 hashes. This is all the state needed to
/// append leaves and compute the root (tlog-tiles.md §11.6, §15.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

/// Why [`CompactRange::from_parts`] or [`CompactRange::from_bytes`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompactRangeError {
    /// The number of hashes must equal the number of set bits in the size.
    #[error("size {size} needs {expected} hashes, got {got}")]
    WrongHashCount {
        size: u64,
        expected: usize,
        got: usize,
    },
    /// Serialised form must be 8 bytes of size followed by whole hashes.
    #[error("serialised compact range has invalid length {0}")]
    InvalidLength(usize),
    /// Appending would overflow u64.
    #[error("tree is full")]
    Full,
}

impl CompactRange {
    /// The empty range (tree size 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a range from its size and its subtree roots, largest first.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, CompactRangeError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(CompactRangeError::WrongHashCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// The number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest (leftmost) first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The node IDs `(level, index)` of [`Self::hashes`], in the same order.
    pub fn node_ids(size: u64) -> impl Iterator<Item = (u8, u64)> {
        (0..64u8)
            .rev()
            .filter(move |b| size >> b & 1 == 1)
            .map(move |b| (b, (size >> b) - 1))
    }

    /// Appends one leaf hash.
    pub fn append(&mut self, leaf: Hash) -> Result<(), CompactRangeError> {
        self.append_visit(leaf, |_, _, _| {})
    }

    /// Appends one leaf hash and calls `visit(level, index, hash)` for every node that
    /// becomes complete: the leaf itself (level 0), then each parent it completes.
    /// The integrator uses this to fill tiles with exactly the non-ephemeral nodes.
    pub fn append_visit(
        &mut self,
        leaf: Hash,
        mut visit: impl FnMut(u8, u64, &Hash),
    ) -> Result<(), CompactRangeError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(CompactRangeError::Full)?;
        visit(0, index, &leaf);
        let mut acc = leaf;
        // Each trailing zero of the new size is one merge of two equal subtrees.
        let merges = new_size.trailing_zeros();
        for level in 0..merges {
            // The stack holds one hash per set bit of the old size; the lowest
            // `merges` bits of the old size are all set, so these pops succeed.
            let Some(left) = self.hashes.pop() else {
                return Err(CompactRangeError::WrongHashCount {
                    size: self.size,
                    expected: self.size.count_ones() as usize,
                    got: self.hashes.len(),
                });
            };
            acc = node_hash(&left, &acc);
            let parent_level = level + 1;
            visit(parent_level as u8, index >> parent_level, &acc);
        }
        self.hashes.push(acc);
        self.size = new_size;
        Ok(())
    }

    /// The RFC 6962 root of the tree `[0, size)`.
    pub fn root(&self) -> Hash {
        fold_right(&self.hashes).unwrap_or(EMPTY_ROOT)
    }

    /// Serialises as 8 bytes of big-endian size followed by the hashes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.hashes.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for h in &self.hashes {
            out.extend_from_slice(h);
        }
        out
    }

    /// Parses the form written by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CompactRangeError> {
        if bytes.len() < 8 || !(bytes.len() - 8).is_multiple_of(32) {
            return Err(CompactRangeError::InvalidLength(bytes.len()));
        }
        let (size_bytes, rest) = bytes.split_at(8);
        let mut sb = [0u8; 8];
        sb.copy_from_slice(size_bytes);
        let hashes = rest
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Self::from_parts(u64::from_be_bytes(sb), hashes)
    }
}

/// Folds subtree roots ordered left to right into one hash (right to left:
/// `acc = node(next_left, acc)`). `None` for an empty slice.
pub fn fold_right(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// RFC 9162 §2.1.3.2: the root implied by an inclusion proof for `leaf` at `index`
/// in a tree of `size` leaves.
pub fn root_from_inclusion_proof(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    let mut fnode = index;
    let mut snode = size - 1;
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    Ok(r)
}

/// RFC 9162 §2.1.3.2: verifies that `leaf` is at `index` in the tree of `size`
/// leaves with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let got = root_from_inclusion_proof(index, size, leaf, proof)?;
    if &got == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The number of hashes in an inclusion proof for `index` in `size` (index < size).
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    if index >= size {
        return 0;
    }
    let inner = inner_proof_size(index, size);
    let border = (index >> inner).count_ones() as usize;
    inner + border
}

/// Number of levels below the fork of `index` and the last leaf `size - 1`.
fn inner_proof_size(index: u64, size: u64) -> usize {
    (64 - (index ^ (size - 1)).leading_zeros()) as usize
}

/// RFC 9162 §2.1.4.2: the new root implied by a consistency proof from
/// `(size1, root1)` to `size2`, after checking it reproduces `root1`.
pub fn root_from_consistency_proof(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
) -> Result<Hash, ProofError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        return Ok(*root1);
    }
    let expected = consistency_proof_len(size1, size2);
    if proof.len() != expected {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    // If size1 is a power of two, the old root itself is the first subtree.
    let (first, rest) = if size1.is_power_of_two() {
        (*root1, proof)
    } else {
        match proof.split_first() {
            Some((f, r)) => (*f, r),
            None => return Err(ProofError::WrongProofLength { expected, got: 0 }),
        }
    };
    let mut fnode = size1 - 1;
    let mut snode = size2 - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = first;
    let mut sr = first;
    for c in rest {
        if snode == 0 {
            return Err(ProofError::WrongProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongProofLength {
            expected,
            got: proof.len(),
        });
    }
    if &fr != root1 {
        return Err(ProofError::RootMismatch);
    }
    Ok(sr)
}

/// RFC 9162 §2.1.4.2: verifies that the tree `(size2, root2)` extends `(size1, root1)`.
/// `size1 == 0` is always rejected (a proof from the empty tree is meaningless).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 == size2 && size1 != 0 && root1 != root2 {
        return Err(ProofError::RootMismatch);
    }
    let got = root_from_consistency_proof(size1, size2, proof, root1)?;
    if &got == root2 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The number of hashes in a consistency proof from `size1` to `size2`
/// (0 < size1 ≤ size2).
pub fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    if size1 == 0 || size1 >= size2 {
        return 0;
    }
    // The seed node: the largest perfect subtree ending at size1.
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let size_at_level = ((size2 - 1) >> level) + 1;
    let path = inclusion_proof_len(index, size_at_level);
    if size1.is_power_of_two() {
        path
    } else {
        path + 1
    }
}

/// RFC 6962 §2.1 Merkle tree hash over a row of already-hashed nodes (for example a
/// tile's bottom row). `None` for an empty row. Every node it produces is a complete
/// subtree of the row; the right edge is folded the same way as a tree root.
pub fn subtree_root(row: &[Hash]) -> Option<Hash> {
    let mut range = CompactRange::new();
    for h in row {
        // A row is at most usize::MAX hashes, far below u64::MAX, so append cannot fail.
        range.append(*h).ok()?;
    }
    fold_right(range.hashes())
}

/// Whether `[start, end)` is a valid subtree (Merkle Tree Certificates draft, as in
/// transparency-dev/merkle): non-empty, and `start` is a multiple of the smallest
/// power of two ≥ its width.
pub fn is_valid_subtree(start: u64, end: u64) -> bool {
    start < end
        && (end - start)
            .checked_next_power_of_two()
            .is_some_and(|w| start.is_multiple_of(w))
}

/// Verifies that `leaf` is at absolute `index` in the subtree `[start, end)` whose
/// hash is `root`: an RFC 9162 inclusion proof inside the subtree.
pub fn verify_subtree_inclusion(
    index: u64,
    start: u64,
    end: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if !is_valid_subtree(start, end) {
        return Err(ProofError::InvalidSubtree { start, end });
    }
    if index < start || index >= end {
        return Err(ProofError::IndexOutOfRange { index, size: end });
    }
    verify_inclusion(index - start, end - start, leaf, proof, root)
}

/// Verifies that the subtree `[start, end)` whose hash is `subtree_root` sits at
/// those leaf positions in the tree of `size` leaves whose root is `tree_root`
/// (Merkle Tree Certificates draft, subtree consistency proof; the same
/// semantics as transparency-dev/merkle `VerifySubtreeConsistency`).
///
/// `[start, end)` must be a valid subtree (see [`is_valid_subtree`]) with
/// `end ≤ size`. The empty subtree (`start == end ≤ size`) is accepted only with an
/// empty proof and `subtree_root` equal to [`EMPTY_ROOT`]; it says nothing about
/// the tree, so `tree_root` is not checked. When `start == 0 && end == size` the
/// subtree is the whole tree: the proof must be empty and the roots equal.
pub fn verify_subtree_consistency(
    start: u64,
    end: u64,
    size: u64,
    proof: &[Hash],
    subtree_root: &Hash,
    tree_root: &Hash,
) -> Result<(), ProofError> {
    if end > size {
        return Err(ProofError::SubtreeBeyondTree { end, size });
    }
    if start == end {
        // An empty range is trivially part of any tree, as long as it is stated
        // with the empty-tree hash and nothing else.
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        return if subtree_root == &EMPTY_ROOT {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if !is_valid_subtree(start, end) {
        return Err(ProofError::InvalidSubtree { start, end });
    }
    let malformed = ProofError::MalformedSubtreeProof { start, end, size };

    // Cursors on one level of the tree: the subtree's first leaf (fn), its last
    // leaf (sn) and the tree's last leaf (tn). Shifting all three right climbs one
    // level. `end > start` and `size >= end`, so none of these subtract below 0.
    let mut first = start;
    let mut last = end - 1;
    let mut tree_last = size - 1;

    // Climb the levels that need no proof hash.
    if last == tree_last {
        // The subtree's right edge is the tree's right edge: nothing outside the
        // subtree joins it until its own root, so climb to that root.
        while first != last {
            first >>= 1;
            last >>= 1;
            tree_last >>= 1;
        }
    } else {
        // An interior subtree: climb while the last leaf's ancestor is a right
        // child (its left sibling is inside the subtree, covered by the seed).
        while first != last && last & 1 == 1 {
            first >>= 1;
            last >>= 1;
            tree_last >>= 1;
        }
    }

    // Both accumulators start from one seed: `sub` rebuilds the subtree hash
    // from the left siblings inside it, `tree` rebuilds the tree root. If the
    // climb reached the subtree's root, the seed is that root, already known.
    let (seed, rest) = if first == last {
        (*subtree_root, proof)
    } else {
        match proof.split_first() {
            Some((seed, rest)) => (*seed, rest),
            None => return Err(malformed),
        }
    };
    let mut sub = seed;
    let mut tree = seed;
    for sibling in rest {
        if tree_last == 0 {
            // Already at the root: the proof is too long.
            return Err(malformed);
        }
        if last & 1 == 1 || last == tree_last {
            // A left sibling. It belongs to the subtree only while the subtree's
            // cursors have not met (the subtree root is above this level).
            if first < last {
                sub = node_hash(sibling, &sub);
            }
            tree = node_hash(sibling, &tree);
            // On the right edge, skip levels where the node has no right sibling
            // (it is promoted unchanged). `last != 0` here: either it is odd, or
            // it equals `tree_last`, which is not 0.
            while last & 1 == 0 && last != 0 {
                first >>= 1;
                last >>= 1;
                tree_last >>= 1;
            }
        } else {
            // A right sibling: outside the subtree, it only affects the tree root.
            tree = node_hash(&tree, sibling);
        }
        first >>= 1;
        last >>= 1;
        tree_last >>= 1;
    }
    if tree_last != 0 {
        // The proof ran out before reaching the root.
        return Err(malformed);
    }
    if &sub != subtree_root || &tree != tree_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}
