//! Inclusion and consistency proofs computed from hash tiles at a given tree size.
//!
//! No IO: [`tiles_for_inclusion`] / [`tiles_for_consistency`] list the tiles a proof
//! needs, the caller fetches them into a [`TileSet`], and [`build_inclusion_proof`] /
//! [`build_consistency_proof`] compute the proof. Only complete nodes are read from
//! tiles; the one ephemeral right-edge node is recomputed by folding complete nodes
//! (tlog-tiles.md §11.1–§11.3). The result is in RFC 9162 order and verifies
//! with [`crate::merkle::verify_inclusion`] / [`crate::merkle::verify_consistency`].
//!
//! A tile's inner nodes are hashed once, when it enters a [`TileSet`] ([`HashedTile`]),
//! so a proof reads every node instead of re-hashing up to 255 per tile. A server that
//! answers many proofs at the same tree size shares hashed tiles through a
//! [`HashedTileCache`]: the right-edge tiles are the same for every one of them.

use crate::merkle::{self, Hash};
use crate::tiles::{self, TileError, TileId, TILE_HEIGHT, TILE_WIDTH};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// A node of the tree: the MTH of leaves `[index·2^level, (index+1)·2^level)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

/// One element of a proof: a complete node, or an ephemeral node recomputed by
/// folding complete nodes (left to right order).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Node(NodeId),
    Fold(Vec<NodeId>),
}

/// Why a proof could not be planned or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofBuildError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof needs 0 < size1 ≤ size2.
    #[error("invalid consistency sizes {size1} -> {size2}")]
    InvalidSizes { size1: u64, size2: u64 },
    /// A needed tile was not supplied, or is narrower than the size implies.
    #[error("missing or short tile {0}")]
    MissingTile(TileId),
    /// A supplied tile does not decode.
    #[error(transparent)]
    Tile(#[from] TileError),
}

/// Tiles fetched by the caller, keyed by level and index. A wider tile (a larger
/// partial or the full tile) may stand in for a narrower one: it holds the same
/// hashes as a prefix (tlog-tiles.md §11.5).
#[derive(Debug, Clone, Default)]
pub struct TileSet {
    tiles: HashMap<(u8, u64), Arc<HashedTile>>,
}

/// A tile's bottom row and every complete inner node above it, up to the tile's top:
/// `rows[k][i]` is the hash of bottom-row entries `[i·2^k, (i+1)·2^k)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedTile {
    rows: Vec<Vec<Hash>>,
}

impl HashedTile {
    /// Hashes the inner nodes of a tile's bottom row (at most [`TILE_WIDTH`] hashes).
    pub fn new(bottom: Vec<Hash>) -> Self {
        let mut rows = vec![bottom];
        for _ in 0..TILE_HEIGHT {
            let Some(below) = rows.last() else { break };
            if below.len() < 2 {
                break;
            }
            let above: Vec<Hash> = below
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            rows.push(above);
        }
        Self { rows }
    }

    /// Decodes a tile's bytes at `width` and hashes its inner nodes.
    pub fn decode(bytes: &[u8], width: u16) -> Result<Self, TileError> {
        Ok(Self::new(tiles::decode_tile(bytes, width)?))
    }

    /// How many bottom-row hashes the tile holds.
    pub fn width(&self) -> usize {
        self.rows.first().map_or(0, Vec::len)
    }

    /// The hash of bottom-row entries `[first, first + 2^sub_level)`, if complete here.
    fn subtree(&self, first: usize, sub_level: u32) -> Option<Hash> {
        self.rows
            .get(sub_level as usize)?
            .get(first >> sub_level)
            .copied()
    }
}

impl TileSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a fetched tile's bytes, checking they match its width.
    pub fn insert(&mut self, id: TileId, bytes: &[u8]) -> Result<(), TileError> {
        let hashes = tiles::decode_tile(bytes, id.width)?;
        self.insert_hashes(id.level, id.index, hashes);
        Ok(())
    }

    /// Adds a decoded tile (its bottom row of hashes); keeps the wider of two.
    pub fn insert_hashes(&mut self, level: u8, index: u64, hashes: Vec<Hash>) {
        self.insert_hashed(level, index, Arc::new(HashedTile::new(hashes)));
    }

    /// Adds an already hashed tile (shared, e.g. from a [`HashedTileCache`]); keeps the
    /// wider of two.
    pub fn insert_hashed(&mut self, level: u8, index: u64, tile: Arc<HashedTile>) {
        match self.tiles.get(&(level, index)) {
            Some(held) if held.width() >= tile.width() => {}
            _ => {
                self.tiles.insert((level, index), tile);
            }
        }
    }

    /// Builds a set from `(TileId, bytes)` pairs.
    pub fn from_fetched<B: AsRef<[u8]>>(
        fetched: impl IntoIterator<Item = (TileId, B)>,
    ) -> Result<Self, TileError> {
        let mut set = Self::new();
        for (id, bytes) in fetched {
            set.insert(id, bytes.as_ref())?;
        }
        Ok(set)
    }

    /// The hash of a node complete at `size`, computed from the one tile holding it.
    pub fn node_hash(&self, node: NodeId, size: u64) -> Result<Hash, ProofBuildError> {
        let (tile, first, count) = locate(node, size);
        let sub_level = count.trailing_zeros();
        self.tiles
            .get(&(tile.level, tile.index))
            .filter(|held| first + count <= held.width())
            .and_then(|held| held.subtree(first, sub_level))
            .ok_or(ProofBuildError::MissingTile(tile))
    }
}

/// A bounded, shared cache of [`HashedTile`]s keyed by tile id (level, index and width:
/// every one of them is immutable). Two generations approximate least-recently-used: a
/// hit in the older one moves the tile to the newer, and when the newer fills up the
/// older is dropped.
#[derive(Debug)]
pub struct HashedTileCache {
    capacity: usize,
    generations: Mutex<[HashMap<TileId, Arc<HashedTile>>; 2]>,
}

impl HashedTileCache {
    /// A cache keeping between `capacity` and `2 × capacity` tiles.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            generations: Mutex::new([HashMap::new(), HashMap::new()]),
        }
    }

    /// The hashed tile `id`, if cached.
    pub fn get(&self, id: TileId) -> Option<Arc<HashedTile>> {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tile) = generations[0].get(&id) {
            return Some(tile.clone());
        }
        let tile = generations[1].remove(&id)?;
        Self::insert_young(&mut generations, self.capacity, id, tile.clone());
        Some(tile)
    }

    /// Caches `tile` as `id`.
    pub fn insert(&self, id: TileId, tile: Arc<HashedTile>) {
        let mut generations = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        Self::insert_young(&mut generations, self.capacity, id, tile);
    }

    /// Decodes and hashes `bytes` as tile `id`, through the cache.
    pub fn get_or_decode(&self, id: TileId, bytes: &[u8]) -> Result<Arc<HashedTile>, TileError> {
        if let Some(tile) = self.get(id) {
            return Ok(tile);
        }
        let tile = Arc::new(HashedTile::decode(bytes, id.width)?);
        self.insert(id, tile.clone());
        Ok(tile)
    }

    fn insert_young(
        generations: &mut [HashMap<TileId, Arc<HashedTile>>; 2],
        capacity: usize,
        id: TileId,
        tile: Arc<HashedTile>,
    ) {
        if generations[0].len() >= capacity {
            generations[1] = std::mem::take(&mut generations[0]);
        }
        generations[0].insert(id, tile);
    }
}

/// tlog-tiles.md §11.1: the tile (as of `size`) that holds `node`, and the range
/// of its bottom row whose subtree hash is the node.
fn locate(node: NodeId, size: u64) -> (TileId, usize, usize) {
    let tile_level = (u32::from(node.level) / TILE_HEIGHT) as u8;
    let sub_level = u32::from(node.level) % TILE_HEIGHT;
    let per_tile_shift = TILE_HEIGHT - sub_level;
    let tile_index = node.index >> per_tile_shift;
    let in_tile = (node.index & ((1u64 << per_tile_shift) - 1)) as usize;
    // A node that is complete at `size` always lies in an existing tile; the
    // fallback width only matters for callers asking about incomplete nodes.
    let tile = tiles::tile_at_size(tile_level, tile_index, size).unwrap_or(TileId {
        level: tile_level,
        index: tile_index,
        width: TILE_WIDTH,
    });
    let count = 1usize << sub_level;
    (tile, in_tile << sub_level, count)
}

/// The nodes of the compact decomposition of `[begin, end)`, largest (leftmost) first.
fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut pos = begin;
    while pos < end {
        // The largest aligned perfect subtree starting at `pos` that fits.
        let align = if pos == 0 { 63 } else { pos.trailing_zeros() };
        let fit = 63 - (end - pos).leading_zeros();
        let level = align.min(fit);
        out.push(NodeId {
            level: level as u8,
            index: pos >> level,
        });
        pos += 1u64 << level;
    }
    out
}

/// tlog-tiles.md §11.2 generalised to a node at `level`: the proof elements for
/// the node `(level, index)` in a tree of `size` leaves (node complete, size > 0).
fn path_elements(level: u32, index: u64, size: u64) -> Vec<Element> {
    let row = size >> level;
    // Bits above the fork agree; the fork is where the node's path and the path
    // to the last leaf diverge.
    let inner = 63 - (index ^ row).leading_zeros();
    let fork_level = level + inner;
    let fork_index = index >> inner;
    let begin = fork_index << fork_level;
    let end = (fork_index + 1) << fork_level;
    let mut out = Vec::new();
    for l in 0..inner {
        out.push(Element::Node(NodeId {
            level: (level + l) as u8,
            index: (index >> l) ^ 1,
        }));
    }
    let right = range_nodes(end, size);
    match right.len() {
        0 => {}
        1 => out.push(Element::Node(right[0])),
        _ => out.push(Element::Fold(right)),
    }
    out.extend(range_nodes(0, begin).into_iter().rev().map(Element::Node));
    out
}

fn inclusion_elements(index: u64, size: u64) -> Result<Vec<Element>, ProofBuildError> {
    if index >= size {
        return Err(ProofBuildError::IndexOutOfRange { index, size });
    }
    Ok(path_elements(0, index, size))
}

fn consistency_elements(size1: u64, size2: u64) -> Result<Vec<Element>, ProofBuildError> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofBuildError::InvalidSizes { size1, size2 });
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    // tlog-tiles.md §11.3: the seed is the largest perfect subtree ending at size1.
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let mut out = Vec::new();
    if !size1.is_power_of_two() {
        out.push(Element::Node(NodeId {
            level: level as u8,
            index,
        }));
    }
    out.extend(path_elements(level, index, size2));
    Ok(out)
}

fn tiles_for(elements: &[Element], size: u64) -> Vec<TileId> {
    let mut set = BTreeSet::new();
    for e in elements {
        match e {
            Element::Node(n) => {
                set.insert(locate(*n, size).0);
            }
            Element::Fold(ns) => set.extend(ns.iter().map(|n| locate(*n, size).0)),
        }
    }
    set.into_iter().collect()
}

fn build(elements: &[Element], size: u64, tiles: &TileSet) -> Result<Vec<Hash>, ProofBuildError> {
    elements
        .iter()
        .map(|e| match e {
            Element::Node(n) => tiles.node_hash(*n, size),
            Element::Fold(ns) => {
                let hashes = ns
                    .iter()
                    .map(|n| tiles.node_hash(*n, size))
                    .collect::<Result<Vec<_>, _>>()?;
                // `Fold` always has at least two nodes, so the fold is defined.
                merkle::fold_right(&hashes).ok_or(ProofBuildError::InvalidSizes {
                    size1: size,
                    size2: size,
                })
            }
        })
        .collect()
}

/// The tiles (at their widths as of `size`) needed to prove leaf `index` in `size`.
pub fn tiles_for_inclusion(index: u64, size: u64) -> Result<Vec<TileId>, ProofBuildError> {
    Ok(tiles_for(&inclusion_elements(index, size)?, size))
}

/// The tiles (as of `size2`) needed to prove `size1` consistent with `size2`.
pub fn tiles_for_consistency(size1: u64, size2: u64) -> Result<Vec<TileId>, ProofBuildError> {
    Ok(tiles_for(&consistency_elements(size1, size2)?, size2))
}

/// The right-edge tiles at `size`: they hold every node of the compact range of
/// `[0, size)`, which is all that is needed for the root or to resume appending.
pub fn tiles_for_root(size: u64) -> Vec<TileId> {
    let nodes: Vec<NodeId> = merkle::CompactRange::node_ids(size)
        .map(|(level, index)| NodeId { level, index })
        .collect();
    tiles_for(&[Element::Fold(nodes)], size)
}

/// The RFC 6962 inclusion proof for leaf `index` in the tree of `size`, built from
/// the tiles listed by [`tiles_for_inclusion`].
pub fn build_inclusion_proof(
    index: u64,
    size: u64,
    tiles: &TileSet,
) -> Result<Vec<Hash>, ProofBuildError> {
    build(&inclusion_elements(index, size)?, size, tiles)
}

/// The RFC 6962 consistency proof from `size1` to `size2`, built from the tiles
/// listed by [`tiles_for_consistency`].
pub fn build_consistency_proof(
    size1: u64,
    size2: u64,
    tiles: &TileSet,
) -> Result<Vec<Hash>, ProofBuildError> {
    build(&consistency_elements(size1, size2)?, size2, tiles)
}

/// The compact range of `[0, size)` read from the right-edge tiles listed by
/// [`tiles_for_root`].
pub fn compact_range_from_tiles(
    size: u64,
    tiles: &TileSet,
) -> Result<merkle::CompactRange, ProofBuildError> {
    let hashes = merkle::CompactRange::node_ids(size)
        .map(|(level, index)| tiles.node_hash(NodeId { level, index }, size))
        .collect::<Result<Vec<_>, _>>()?;
    merkle::CompactRange::from_parts(size, hashes).map_err(|_| ProofBuildError::InvalidSizes {
        size1: size,
        size2: size,
    })
}

/// The tree root at `size` from the right-edge tiles listed by [`tiles_for_root`].
pub fn root_from_tiles(size: u64, tiles: &TileSet) -> Result<Hash, ProofBuildError> {
    Ok(compact_range_from_tiles(size, tiles)?.root())
}
