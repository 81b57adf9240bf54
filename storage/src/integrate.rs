//! The single integration core: appends batches of entries to the tree and returns
//! every hash tile and entry bundle to write, deterministically.
//!
//! A [`TreeBuilder`] holds only the tree's right edge in memory: the compact range
//! (≤ 64 hashes), the bottom row of the partial tile at each tile level, and the
//! partial entry bundle (tlog-tiles.md §11.6, §15.5). Appending is pure; the
//! caller writes the returned objects (each path's bytes depend only on the leaves
//! it covers, so re-running an integration after a crash rewrites identical bytes,
//! which the create-once tile store accepts).

use crate::merkle::{self, CompactRange, Hash};
use crate::proof::{self, ProofBuildError, TileSet};
use crate::tile_store::{TileStore, TileStoreError};
use crate::tiles::{self, BundleId, TileError, TileId, MAX_ENTRY_SIZE, TILE_HEIGHT, TILE_WIDTH};
use bytes::Bytes;

/// Tile levels needed for a u64-sized tree (8 levels × 8 = 64 tree levels).
const TILE_LEVELS: usize = 8;

/// Most leaves one integration step takes: bounds the memory and the latency of a step. The
/// node's integrator steps by it, and so does the growth benchmark that measures it.
pub const MAX_LEAVES_PER_STEP: u64 = 16_384;

/// The result of one [`TreeBuilder::append`]: the new tree head and the objects to
/// write (full and partial), sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    /// Tree size after the batch.
    pub size: u64,
    /// RFC 6962 root after the batch.
    pub root: Hash,
    /// Hash tiles to write, sorted by (level, index, width).
    pub tiles: Vec<(TileId, Bytes)>,
    /// Entry bundles to write, sorted by (index, width).
    pub bundles: Vec<(BundleId, Bytes)>,
}

/// One integration step, hashed but not written yet: the builder after the step's entries and
/// every tile and bundle they produce. The builder it was staged from is left as it was, so a
/// write that fails leaves its owner at the durable size (and a retry writes identical bytes).
#[derive(Debug)]
pub struct StagedStep {
    next: TreeBuilder,
    integration: Integration,
}

impl StagedStep {
    /// The tree size after the step.
    pub fn size(&self) -> u64 {
        self.integration.size
    }

    /// The RFC 6962 root after the step (to check entries from elsewhere before writing them).
    pub fn root(&self) -> Hash {
        self.integration.root
    }

    /// The builder at the new size, without writing anything: for a node that shares its tile
    /// store with a writer that makes these same objects durable (the node then advances its
    /// durable size only once that writer has vouched for them, see the node's integrator).
    pub fn into_builder(self) -> TreeBuilder {
        self.next
    }

    /// How many tiles and bundles [`Self::write`] would write.
    pub fn object_count(&self) -> usize {
        self.integration.tiles.len() + self.integration.bundles.len()
    }

    /// How many full tiles and bundles [`Self::write_full`] would write.
    pub fn full_object_count(&self) -> usize {
        let tiles = self.integration.tiles.iter().filter(|(id, _)| id.is_full());
        let bundles = self
            .integration
            .bundles
            .iter()
            .filter(|(id, _)| id.is_full());
        tiles.count() + bundles.count()
    }

    /// Writes every tile, then every bundle, of the step ([`TileStore::put_integration`]) and,
    /// once all are durable, returns the builder at the new size.
    pub async fn write(self, store: &TileStore) -> Result<TreeBuilder, TileStoreError> {
        let Integration { tiles, bundles, .. } = self.integration;
        store.put_objects(tiles, bundles).await?;
        Ok(self.next)
    }

    /// Writes only the step's *full* tiles and bundles and, once they are durable, returns the
    /// builder at the new size with its [`RightEdge`]: the partial objects at that size, in
    /// memory, not written. A full object never changes again, so writing it once is final;
    /// a partial one is superseded by the next step, and its owner makes it durable only when
    /// it needs to (to resume from that size, or before a checkpoint file names it).
    pub async fn write_full(
        self,
        store: &TileStore,
    ) -> Result<(TreeBuilder, RightEdge), TileStoreError> {
        let Integration { tiles, bundles, .. } = self.integration;
        let (full_tiles, partial_tiles): (Vec<_>, Vec<_>) =
            tiles.into_iter().partition(|(id, _)| id.is_full());
        let (full_bundles, mut partial_bundles): (Vec<_>, Vec<_>) =
            bundles.into_iter().partition(|(id, _)| id.is_full());
        store.put_objects(full_tiles, full_bundles).await?;
        let edge = RightEdge::assemble(&self.next, partial_tiles, partial_bundles.pop());
        Ok((self.next, edge))
    }
}

/// The partial objects of the tree at one size: the partial hash tile of every tile level that
/// has one, and the partial entry bundle (tlog-tiles.md §3). Together with the full objects
/// below them they are all the tree holds at that size, and every narrower partial object of
/// the same index is a prefix of one of them. A step that writes only its full objects
/// ([`StagedStep::write_full`]) keeps them here instead; [`Self::write`] makes them durable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    tiles: Vec<(TileId, Bytes)>,
    bundle: Option<(BundleId, Bytes)>,
}

impl RightEdge {
    /// The right edge of `builder`: the given partial objects (a step's own, already encoded)
    /// and, for the levels the step did not touch, the builder's rows encoded anew.
    fn assemble(
        builder: &TreeBuilder,
        mut encoded: Vec<(TileId, Bytes)>,
        bundle: Option<(BundleId, Bytes)>,
    ) -> Self {
        let size = builder.size();
        let (want_tiles, want_bundle) = TreeBuilder::right_edge(size);
        let tiles = want_tiles
            .into_iter()
            .map(
                |id| match encoded.iter().position(|(have, _)| *have == id) {
                    Some(at) => encoded.swap_remove(at),
                    None => (
                        id,
                        Bytes::from(tiles::encode_tile(
                            &builder.partial_tiles[usize::from(id.level)],
                        )),
                    ),
                },
            )
            .collect();
        let bundle = want_bundle.map(|id| match bundle {
            Some((have, bytes)) if have == id => (id, bytes),
            _ => (id, Bytes::copy_from_slice(&builder.partial_bundle)),
        });
        Self {
            size,
            tiles,
            bundle,
        }
    }

    /// The right edge of `builder`, every object encoded from its rows.
    pub fn of(builder: &TreeBuilder) -> Self {
        Self::assemble(builder, Vec::new(), None)
    }

    /// The tree size these are the partial objects of.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The partial tile `id`, if it is one of these.
    pub fn tile(&self, id: TileId) -> Option<&Bytes> {
        self.tiles
            .iter()
            .find(|(have, _)| *have == id)
            .map(|(_, bytes)| bytes)
    }

    /// The partial bundle `id`, if it is this one.
    pub fn bundle(&self, id: BundleId) -> Option<&Bytes> {
        self.bundle
            .as_ref()
            .filter(|(have, _)| *have == id)
            .map(|(_, bytes)| bytes)
    }

    /// How many objects [`Self::write`] would write.
    pub fn object_count(&self) -> usize {
        self.tiles.len() + usize::from(self.bundle.is_some())
    }

    /// Makes these objects durable in `store` (create-once; identical bytes already there count
    /// as written), except those `durable` holds too: an object's bytes depend only on its id,
    /// so one written with an earlier right edge need not be written again.
    pub async fn write(
        &self,
        store: &TileStore,
        durable: &RightEdge,
    ) -> Result<(), TileStoreError> {
        let tiles = self
            .tiles
            .iter()
            .filter(|(id, _)| durable.tile(*id).is_none())
            .cloned()
            .collect();
        let bundles = self
            .bundle
            .iter()
            .filter(|(id, _)| durable.bundle(*id).is_none())
            .cloned()
            .collect();
        store.put_objects(tiles, bundles).await
    }
}

/// Why an append or a resume failed.
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    /// An entry is larger than a bundle record can hold.
    #[error("entry {position} of the batch has {len} bytes; the limit is 65,535")]
    EntryTooLarge { position: usize, len: usize },
    /// The tree cannot grow past u64::MAX leaves.
    #[error("tree size would overflow")]
    Overflow,
    /// A right-edge tile needed to resume is missing.
    #[error("right-edge tile {0} is missing from the store")]
    MissingTile(TileId),
    /// The right-edge entry bundle needed to resume is missing.
    #[error("right-edge bundle {0} is missing from the store")]
    MissingBundle(BundleId),
    /// The partial bundle does not hold the number of entries the size implies.
    #[error("bundle {id} holds {got} entries")]
    BundleCount { id: BundleId, got: usize },
    /// The partial bundle's entries do not hash to the level-0 partial tile.
    #[error("bundle {id} does not match the level-0 partial tile")]
    BundleMismatch { id: BundleId },
    /// Leaf hashes handed in with a batch are not one per entry.
    #[error("{hashes} leaf hashes for {entries} entries")]
    LeafHashCount { entries: usize, hashes: usize },
    /// The resumed tree's root is not the expected one.
    #[error("resumed root at size {size} does not match the expected root")]
    RootMismatch { size: u64 },
    /// A stored tile or bundle is malformed.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// Rebuilding the compact range from tiles failed.
    #[error(transparent)]
    Proof(#[from] ProofBuildError),
    /// Reading from the store failed.
    #[error(transparent)]
    Store(#[from] TileStoreError),
}

/// The tree's right edge, and the function that extends it.
///
/// Owned by the integrator (a single writer); not shared.
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    range: CompactRange,
    /// Bottom row of the partial tile at each tile level, as of `range.size()`;
    /// level `l` holds `partial_tile_width(l, size)` hashes.
    partial_tiles: Vec<Vec<Hash>>,
    /// Encoded records of the partial entry bundle (`size % 256` entries).
    partial_bundle: Vec<u8>,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeBuilder {
    /// A builder for the empty tree.
    pub fn new() -> Self {
        Self {
            range: CompactRange::new(),
            partial_tiles: vec![Vec::new(); TILE_LEVELS],
            partial_bundle: Vec::new(),
        }
    }

    /// The current tree size.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// The current RFC 6962 root.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// The current compact range (what the Raft state machine may persist).
    pub fn compact_range(&self) -> &CompactRange {
        &self.range
    }

    /// The tiles and bundle [`Self::from_right_edge`] needs for `size`.
    pub fn right_edge(size: u64) -> (Vec<TileId>, Option<BundleId>) {
        let tiles = (0..TILE_LEVELS as u8)
            .filter_map(|l| tiles::tile_at_size(l, size >> (TILE_HEIGHT * u32::from(l)) >> 8, size))
            .filter(|t| !t.is_full())
            .collect();
        (
            tiles,
            tiles::bundle_at_size(size / u64::from(TILE_WIDTH), size),
        )
    }

    /// Rebuilds the builder from the right-edge partial tiles (`(id, bytes)` for the
    /// ids of [`Self::right_edge`]) and the partial bundle's bytes. The bundle's entries must
    /// hash to the level-0 partial tile: the root check of [`Self::resume_checked`] covers the
    /// tiles only, and a damaged bundle would otherwise be carried into the next full one.
    pub fn from_right_edge<B: AsRef<[u8]>>(
        size: u64,
        tiles: &[(TileId, B)],
        bundle: Option<&[u8]>,
    ) -> Result<Self, IntegrateError> {
        let (want_tiles, want_bundle) = Self::right_edge(size);
        let mut partial_tiles = vec![Vec::new(); TILE_LEVELS];
        let mut set = TileSet::new();
        for id in want_tiles {
            let bytes = tiles
                .iter()
                .find(|(t, _)| *t == id)
                .map(|(_, b)| b.as_ref())
                .ok_or(IntegrateError::MissingTile(id))?;
            let hashes = tiles::decode_tile(bytes, id.width)?;
            set.insert_hashes(id.level, id.index, hashes.clone());
            partial_tiles[usize::from(id.level)] = hashes;
        }
        let partial_bundle = match want_bundle {
            Some(id) => {
                let bytes = bundle.ok_or(IntegrateError::MissingBundle(id))?;
                let records = tiles::decode_bundle(bytes)?;
                let got = records.len();
                if got != usize::from(id.width) {
                    return Err(IntegrateError::BundleCount { id, got });
                }
                let row = &partial_tiles[0];
                if row.len() != got
                    || records
                        .iter()
                        .zip(row)
                        .any(|(record, hash)| &merkle::leaf_hash(record) != hash)
                {
                    return Err(IntegrateError::BundleMismatch { id });
                }
                bytes.to_vec()
            }
            None => Vec::new(),
        };
        let range = proof::compact_range_from_tiles(size, &set)?;
        Ok(Self {
            range,
            partial_tiles,
            partial_bundle,
        })
    }

    /// Resumes at `size` by reading only the right-edge partial tiles and partial
    /// bundle from `store`.
    pub async fn resume(store: &TileStore, size: u64) -> Result<Self, IntegrateError> {
        let (want_tiles, want_bundle) = Self::right_edge(size);
        let mut tiles = Vec::with_capacity(want_tiles.len());
        for id in want_tiles {
            let bytes = store
                .get_tile(id)
                .await?
                .ok_or(IntegrateError::MissingTile(id))?;
            tiles.push((id, bytes));
        }
        let bundle = match want_bundle {
            Some(id) => Some(
                store
                    .get_bundle(id.index, id.width)
                    .await?
                    .ok_or(IntegrateError::MissingBundle(id))?,
            ),
            None => None,
        };
        Self::from_right_edge(size, &tiles, bundle.as_deref())
    }

    /// [`Self::resume`], then checks the rebuilt root equals `expected_root`.
    pub async fn resume_checked(
        store: &TileStore,
        size: u64,
        expected_root: &Hash,
    ) -> Result<Self, IntegrateError> {
        let builder = Self::resume(store, size).await?;
        if &builder.root() != expected_root {
            return Err(IntegrateError::RootMismatch { size });
        }
        Ok(builder)
    }

    /// Stages one integration step: [`Self::append`] of `entries` on a copy of this builder.
    pub fn stage<E: AsRef<[u8]>>(&self, entries: &[E]) -> Result<StagedStep, IntegrateError> {
        self.stage_hashed(entries, None)
    }

    /// [`Self::stage`] with each entry's `leaf_hash` already known, as the state machine computed
    /// it from the same bodies: the step does not hash them again. The caller vouches that
    /// `leaf_hashes[i]` is `merkle::leaf_hash(entries[i])`; only their number is checked here.
    pub fn stage_with_leaf_hashes<E: AsRef<[u8]>>(
        &self,
        entries: &[E],
        leaf_hashes: &[Hash],
    ) -> Result<StagedStep, IntegrateError> {
        if leaf_hashes.len() != entries.len() {
            return Err(IntegrateError::LeafHashCount {
                entries: entries.len(),
                hashes: leaf_hashes.len(),
            });
        }
        self.stage_hashed(entries, Some(leaf_hashes))
    }

    /// [`Self::append_hashed`] on a copy of this builder.
    fn stage_hashed<E: AsRef<[u8]>>(
        &self,
        entries: &[E],
        leaf_hashes: Option<&[Hash]>,
    ) -> Result<StagedStep, IntegrateError> {
        let mut next = self.clone();
        let integration = next.append_hashed(entries, leaf_hashes)?;
        Ok(StagedStep { next, integration })
    }

    /// Appends a batch of entries (the leaf data, e.g. canonical bodies) and returns
    /// the new tree head and every tile and bundle to write. On error nothing changes.
    pub fn append<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<Integration, IntegrateError> {
        self.append_hashed(entries, None)
    }

    /// [`Self::append`], taking each entry's leaf hash from `leaf_hashes` when given (one per
    /// entry, checked by the caller) instead of computing it.
    fn append_hashed<E: AsRef<[u8]>>(
        &mut self,
        entries: &[E],
        leaf_hashes: Option<&[Hash]>,
    ) -> Result<Integration, IntegrateError> {
        for (position, e) in entries.iter().enumerate() {
            let len = e.as_ref().len();
            if len > MAX_ENTRY_SIZE {
                return Err(IntegrateError::EntryTooLarge { position, len });
            }
        }
        let start = self.range.size();
        start
            .checked_add(entries.len() as u64)
            .ok_or(IntegrateError::Overflow)?;

        let mut out_tiles = Vec::new();
        let mut out_bundles = Vec::new();
        let mut touched = [false; TILE_LEVELS];
        let width = usize::from(TILE_WIDTH);
        let partial_tiles = &mut self.partial_tiles;
        for (position, e) in entries.iter().enumerate() {
            let entry = e.as_ref();
            let index = self.range.size();
            let hash = match leaf_hashes.and_then(|hashes| hashes.get(position)) {
                Some(hash) => *hash,
                None => merkle::leaf_hash(entry),
            };
            // Length checked above, so the record always encodes.
            tiles::append_bundle_entry(&mut self.partial_bundle, entry)?;
            if (index + 1).is_multiple_of(u64::from(TILE_WIDTH)) {
                let id = BundleId {
                    index: index / u64::from(TILE_WIDTH),
                    width: TILE_WIDTH,
                };
                out_bundles.push((id, Bytes::from(std::mem::take(&mut self.partial_bundle))));
            }
            self.range
                .append_visit(hash, |level, node_index, hash| {
                    // Only nodes at multiples of 8 levels are tile entries; the rows
                    // in between are recomputed by readers.
                    if u32::from(level) % TILE_HEIGHT != 0 {
                        return;
                    }
                    let tile_level = (u32::from(level) / TILE_HEIGHT) as usize;
                    let Some(row) = partial_tiles.get_mut(tile_level) else {
                        return;
                    };
                    row.push(*hash);
                    touched[tile_level] = true;
                    if row.len() == width {
                        let id = TileId {
                            level: tile_level as u8,
                            index: node_index / u64::from(TILE_WIDTH),
                            width: TILE_WIDTH,
                        };
                        out_tiles.push((id, Bytes::from(tiles::encode_tile(row))));
                        row.clear();
                    }
                })
                .map_err(|_| IntegrateError::Overflow)?;
        }
        let size = self.range.size();
        for (level, row) in self.partial_tiles.iter().enumerate() {
            if touched[level] && !row.is_empty() {
                let index = size >> (TILE_HEIGHT * level as u32) >> TILE_HEIGHT;
                let id = TileId {
                    level: level as u8,
                    index,
                    width: row.len() as u16,
                };
                out_tiles.push((id, Bytes::from(tiles::encode_tile(row))));
            }
        }
        if size > start && !self.partial_bundle.is_empty() {
            let id = BundleId {
                index: size / u64::from(TILE_WIDTH),
                width: (size % u64::from(TILE_WIDTH)) as u16,
            };
            out_bundles.push((id, Bytes::copy_from_slice(&self.partial_bundle)));
        }
        out_tiles.sort_by_key(|(id, _)| *id);
        out_bundles.sort_by_key(|(id, _)| *id);
        Ok(Integration {
            size,
            root: self.range.root(),
            tiles: out_tiles,
            bundles: out_bundles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaf hashes handed in are the ones the tree is built from (no second hashing), and with
    /// the right ones a step's objects are exactly those of hashing the bodies.
    #[test]
    fn a_step_with_known_leaf_hashes_builds_the_same_objects() {
        let entries: Vec<Vec<u8>> = (0..600)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let hashes: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let builder = TreeBuilder::new()
            .stage(&entries[..100])
            .unwrap()
            .into_builder();

        let hashed = builder.stage(&entries[100..]).unwrap();
        let known = builder
            .stage_with_leaf_hashes(&entries[100..], &hashes[100..])
            .unwrap();
        assert_eq!(known.root(), hashed.root());
        assert_eq!(known.integration.tiles, hashed.integration.tiles);
        assert_eq!(known.integration.bundles, hashed.integration.bundles);

        let mut wrong = hashes[100..].to_vec();
        wrong[7] = [0u8; 32];
        let trusted = builder
            .stage_with_leaf_hashes(&entries[100..], &wrong)
            .unwrap();
        assert_ne!(
            trusted.root(),
            hashed.root(),
            "the given hashes are used as they are"
        );

        let refused = builder.stage_with_leaf_hashes(&entries[100..], &hashes[101..]);
        assert!(matches!(
            refused,
            Err(IntegrateError::LeafHashCount {
                entries: 500,
                hashes: 499
            })
        ));
    }

    /// A staged step leaves its builder alone until written, writes what `append` returns, and
    /// hands back a builder the store resumes to.
    #[tokio::test]
    async fn a_staged_step_is_append_then_a_durable_write() {
        let store = TileStore::in_memory();
        let entries: Vec<Vec<u8>> = (0..700)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let builder = TreeBuilder::new();
        let staged = builder.stage(&entries).unwrap();
        assert_eq!(builder.size(), 0);
        let appended = builder.clone().append(&entries).unwrap();
        assert_eq!((staged.size(), staged.root()), (700, appended.root));

        let next = staged.write(&store).await.unwrap();
        assert_eq!(next.root(), appended.root);
        for (id, bytes) in &appended.tiles {
            assert_eq!(store.get_tile(*id).await.unwrap().as_ref(), Some(bytes));
        }
        for (id, bytes) in &appended.bundles {
            let stored = store.get_bundle(id.index, id.width).await.unwrap();
            assert_eq!(stored.as_ref(), Some(bytes));
        }
        let resumed = TreeBuilder::resume_checked(&store, 700, &appended.root)
            .await
            .unwrap();
        // A step staged again from the old builder (a retry after a crash) writes the same bytes.
        builder
            .stage(&entries)
            .unwrap()
            .write(&store)
            .await
            .unwrap();
        assert_eq!(resumed.root(), next.root());
    }

    /// A step written full-only stores exactly the full objects a whole write stores and keeps
    /// the partial ones in its right edge, byte for byte; once that edge is written the store
    /// resumes at its size. Steps here touch some tile levels and not others (level 2 gets its
    /// first entry at 65,536 and is left alone by the steps after it).
    #[tokio::test]
    async fn a_step_written_full_only_keeps_the_partial_objects_in_its_right_edge() {
        let entries: Vec<Vec<u8>> = (0..70_000u32)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let whole = TileStore::in_memory();
        let lean = TileStore::in_memory();
        let mut writer = TreeBuilder::new();
        let mut builder = TreeBuilder::new();
        let mut edge = RightEdge::default();
        let mut start = 0usize;
        for end in [300usize, 65_541, 65_548, 65_792, 69_700] {
            writer = writer
                .stage(&entries[start..end])
                .unwrap()
                .write(&whole)
                .await
                .unwrap();
            (builder, edge) = builder
                .stage(&entries[start..end])
                .unwrap()
                .write_full(&lean)
                .await
                .unwrap();
            let size = end as u64;
            assert_eq!((edge.size(), builder.root()), (size, writer.root()));
            assert_eq!(edge, RightEdge::of(&builder));
            let (partial_tiles, partial_bundle) = TreeBuilder::right_edge(size);
            assert_eq!(
                edge.object_count(),
                partial_tiles.len() + partial_bundle.iter().count()
            );
            for id in partial_tiles {
                let stored = whole.get_tile(id).await.unwrap();
                assert_eq!(edge.tile(id), stored.as_ref(), "{}", id.path());
                assert_eq!(lean.get_tile(id).await.unwrap(), None, "{}", id.path());
            }
            if let Some(id) = partial_bundle {
                let stored = whole.get_bundle(id.index, id.width).await.unwrap();
                assert_eq!(edge.bundle(id), stored.as_ref());
                assert_eq!(lean.get_bundle(id.index, id.width).await.unwrap(), None);
            }
            for id in tiles::tiles_touched(start as u64, size).filter(|id| id.is_full()) {
                let lean_tile = lean.get_tile(id).await.unwrap();
                assert!(lean_tile.is_some(), "{}", id.path());
                assert_eq!(lean_tile, whole.get_tile(id).await.unwrap());
            }
            for id in tiles::bundles_touched(start as u64, size).filter(|id| id.is_full()) {
                let lean_bundle = lean.get_bundle(id.index, id.width).await.unwrap();
                assert!(lean_bundle.is_some(), "{}", id.path());
                assert_eq!(
                    lean_bundle,
                    whole.get_bundle(id.index, id.width).await.unwrap()
                );
            }
            start = end;
        }
        // Nothing is written that the durable edge already holds.
        edge.write(&lean, &edge).await.unwrap();
        assert!(TreeBuilder::resume(&lean, 69_700).await.is_err());
        edge.write(&lean, &RightEdge::default()).await.unwrap();
        let resumed = TreeBuilder::resume_checked(&lean, 69_700, &writer.root())
            .await
            .unwrap();
        assert_eq!(RightEdge::of(&resumed), edge);
    }

    /// A follower of a shared store takes the staged builder without writing: it continues
    /// exactly as the writer's, and the store stays as the writer left it.
    #[tokio::test]
    async fn a_staged_step_taken_without_writing_continues_like_a_written_one() {
        let store = TileStore::in_memory();
        let entries: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let staged = TreeBuilder::new().stage(&entries[..200]).unwrap();
        // The partial level-0 tile and the partial bundle of width 200.
        assert_eq!(staged.object_count(), 2);
        let follower = staged.into_builder();
        assert_eq!(
            store
                .get_tile(TileId::new(0, 0, 200).unwrap())
                .await
                .unwrap(),
            None
        );
        let mut writer = TreeBuilder::new()
            .stage(&entries[..200])
            .unwrap()
            .write(&store)
            .await
            .unwrap();
        assert_eq!(follower.root(), writer.root());
        let follower_next = follower.stage(&entries[200..]).unwrap();
        let writer_next = writer.append(&entries[200..]).unwrap();
        assert_eq!(follower_next.root(), writer_next.root);
    }
}
