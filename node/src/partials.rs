//! Partial tiles and bundles derived from wider ones (tlog-tiles §3: the partial tile or bundle
//! of width `w` is a prefix of every wider version of the same index, up to the full one).
//!
//! Why: a node's tile store holds the full objects, but partial objects only at a few sizes.
//! The integrator of a per-node store keeps the partial objects at its integrated size in memory
//! (the right edge in [`Served`]) and makes them durable four times a second, not at every step;
//! a shared store holds them at the sizes where the leader's steps ended. Every partial object at
//! a size up to the integrated one is a prefix of the object with the same index at the
//! integrated size, so:
//! - [`read_object`] answers every read of this node's tiles and bundles (the API, proofs,
//!   witnesses' consistency proofs, peers catching up): full objects from the store, partial ones
//!   cut out of the object at the integrated size ([`derive_partial`]);
//! - before the tile store's `checkpoint` file names a size `s`, [`write_partials_at`] makes the
//!   partial objects of `s` durable there, so a reader that goes to the store directly (a public
//!   bucket) finds every object that checkpoint implies.
//!
//! Both serve the same bytes as a node that wrote every size (tiles are a deterministic
//! function of the log).

use std::sync::Arc;

use bytes::Bytes;
use rekor_storage::tile_store::{TileStore, TileStoreError};
use rekor_storage::tiles::{
    bundle_at_size, bundle_prefix, tile_at_size, tile_prefix, BundleId, TileId, TilePath,
    TILE_WIDTH,
};

use tokio::sync::watch;

use crate::served::Served;

/// Levels that can hold a partial tile of a tree of at most 2^64 leaves.
const TILE_LEVELS: u8 = 8;

/// This node's tiles as of its integrated size, for the readers that hold no [`Served`] of their
/// own (the witness client's consistency proofs): the tile store and the served state's right
/// edge.
#[derive(Clone)]
pub struct LocalTiles {
    store: Arc<TileStore>,
    served: watch::Receiver<Served>,
}

impl LocalTiles {
    pub fn new(store: Arc<TileStore>, served: watch::Receiver<Served>) -> Self {
        Self { store, served }
    }

    /// The hash tile `id` ([`read_object`]).
    pub async fn tile(&self, id: TileId) -> Result<Option<Bytes>, TileStoreError> {
        let served = self.served.borrow().clone();
        read_object(&self.store, &served, TilePath::Hash(id)).await
    }
}

/// This node's bytes of the tile or bundle `path`, as of its integrated size; `None` if the tree
/// at that size does not hold it.
pub async fn read_object(
    store: &TileStore,
    served: &Served,
    path: TilePath,
) -> Result<Option<Bytes>, TileStoreError> {
    match path {
        TilePath::Hash(id) if id.is_full() => store.get_tile(id).await,
        TilePath::Entries(id) if id.is_full() => store.get_bundle(id.index, id.width).await,
        partial => derive_partial(store, served, partial).await,
    }
}

/// The partial object `path` cut out of the object with the same index at the integrated size
/// (from the right edge held in memory, or the store); `None` if `path` is not partial or this
/// node has not integrated that far.
pub async fn derive_partial(
    store: &TileStore,
    served: &Served,
    path: TilePath,
) -> Result<Option<Bytes>, TileStoreError> {
    let integrated_size = served.integrated_size;
    let right_edge = served
        .right_edge
        .as_deref()
        .filter(|edge| edge.size() == integrated_size);
    match path {
        TilePath::Hash(id) if !id.is_full() => {
            let Some(source) = tile_at_size(id.level, id.index, integrated_size) else {
                return Ok(None);
            };
            if source.width < id.width {
                return Ok(None);
            }
            let held = right_edge.and_then(|edge| edge.tile(source)).cloned();
            let bytes = match held {
                Some(bytes) => bytes,
                None => match store.get_tile(source).await? {
                    Some(bytes) => bytes,
                    None => return Ok(None),
                },
            };
            Ok(tile_prefix(&bytes, id.width).map(|prefix| bytes.slice_ref(prefix)))
        }
        TilePath::Entries(id) if !id.is_full() => {
            let Some(source) = bundle_at_size(id.index, integrated_size) else {
                return Ok(None);
            };
            if source.width < id.width {
                return Ok(None);
            }
            let held = right_edge.and_then(|edge| edge.bundle(source)).cloned();
            let bytes = match held {
                Some(bytes) => bytes,
                None => match store.get_bundle(source.index, source.width).await? {
                    Some(bytes) => bytes,
                    None => return Ok(None),
                },
            };
            Ok(bundle_prefix(&bytes, id.width).map(|prefix| bytes.slice_ref(prefix)))
        }
        _ => Ok(None),
    }
}

/// Writes the partial tiles and the partial bundle of tree `size` (create-once: those that
/// exist are left as they are), derived from the objects at the integrated size `>= size`.
pub async fn write_partials_at(
    store: &TileStore,
    size: u64,
    served: &Served,
) -> anyhow::Result<()> {
    if size == served.integrated_size && served.right_edge.is_none() {
        // The partial objects of the integrated size are in the store already.
        return Ok(());
    }
    let width = u64::from(TILE_WIDTH);
    for level in 0..TILE_LEVELS {
        let shift = 8 * u32::from(level);
        let count = size >> shift;
        if count == 0 {
            break;
        }
        if count.is_multiple_of(width) {
            continue;
        }
        let id = TileId::new(level, count / width, (count % width) as u16)?;
        let bytes = derive_partial(store, served, TilePath::Hash(id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no tile to derive {} from", id.path()))?;
        store.put_tile(id, bytes).await?;
    }
    if !size.is_multiple_of(width) {
        let id = BundleId::new(size / width, (size % width) as u16)?;
        let bytes = derive_partial(store, served, TilePath::Entries(id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("no bundle to derive {} from", id.path()))?;
        store.put_bundle(id.index, id.width, bytes).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rekor_storage::integrate::TreeBuilder;

    /// Integrates `leaves` in the given step sizes into an in-memory store.
    async fn integrate(store: &TileStore, leaves: &[Vec<u8>], steps: &[usize]) -> TreeBuilder {
        let mut builder = TreeBuilder::resume(store, 0).await.unwrap();
        let mut start = 0;
        for &step in steps {
            let out = builder.append(&leaves[start..start + step]).unwrap();
            store.put_integration(&out).await.unwrap();
            start += step;
        }
        builder
    }

    /// What a node serves at `size` with nothing held in memory.
    fn served_from_store(size: u64) -> Served {
        Served {
            integrated_size: size,
            ..Served::default()
        }
    }

    /// The partial objects of tree `size`: (path, tile or bundle id).
    fn partial_paths(size: u64) -> Vec<TilePath> {
        let mut paths = Vec::new();
        for level in 0..3u8 {
            let count = size >> (8 * u32::from(level));
            if count > 0 && !count.is_multiple_of(256) {
                let id = TileId::new(level, count / 256, (count % 256) as u16).unwrap();
                paths.push(TilePath::Hash(id));
            }
        }
        if !size.is_multiple_of(256) {
            let id = BundleId::new(size / 256, (size % 256) as u16).unwrap();
            paths.push(TilePath::Entries(id));
        }
        paths
    }

    async fn stored(store: &TileStore, path: TilePath) -> Option<Bytes> {
        match path {
            TilePath::Hash(id) => store.get_tile(id).await.unwrap(),
            TilePath::Entries(id) => store.get_bundle(id.index, id.width).await.unwrap(),
        }
    }

    const SIZES: [u64; 7] = [1, 255, 257, 300, 65_535, 65_537, 66_000];

    /// A store where a step ended at every size of [`SIZES`], then at 70,000.
    async fn reference(leaves: &[Vec<u8>]) -> TileStore {
        let reference = TileStore::in_memory();
        let mut steps = Vec::new();
        let mut last = 0u64;
        for size in SIZES.iter().chain([&70_000]) {
            steps.push((size - last) as usize);
            last = *size;
        }
        integrate(&reference, leaves, &steps).await;
        reference
    }

    fn leaves() -> Vec<Vec<u8>> {
        (0..70_000u32)
            .map(|i| format!("entry {i}").into_bytes())
            .collect()
    }

    #[tokio::test]
    async fn derived_partials_equal_the_ones_integration_writes() {
        let leaves = leaves();
        let reference = reference(&leaves).await;
        // Derived: one big step, then the partials of each size cut out of it.
        let derived = TileStore::in_memory();
        integrate(&derived, &leaves, &[70_000]).await;
        for size in SIZES {
            write_partials_at(&derived, size, &served_from_store(70_000))
                .await
                .unwrap();
            for path in partial_paths(size) {
                let expected = stored(&reference, path).await;
                assert!(expected.is_some(), "{path:?}");
                assert_eq!(stored(&derived, path).await, expected, "{path:?}");
            }
        }
    }

    /// A per-node store after steps written full-only: no partial object in the store, the right
    /// edge in memory, and still every partial object of every size read (and written for a
    /// checkpoint file) with the bytes of a store where steps ended at each size.
    #[tokio::test]
    async fn partials_come_from_the_right_edge_held_in_memory() {
        let leaves = leaves();
        let reference = reference(&leaves).await;
        let lean = TileStore::in_memory();
        let (builder, edge) = TreeBuilder::new()
            .stage(&leaves[..70_000])
            .unwrap()
            .write_full(&lean)
            .await
            .unwrap();
        assert_eq!(edge.size(), 70_000);
        let served = Served {
            integrated_size: 70_000,
            integrated_root: builder.root(),
            right_edge: Some(Arc::new(edge)),
            checkpoint: None,
        };
        for size in SIZES.iter().chain([&70_000]).copied() {
            for path in partial_paths(size) {
                assert_eq!(stored(&lean, path).await, None, "{path:?} written");
                let expected = stored(&reference, path).await;
                assert_eq!(
                    read_object(&lean, &served, path).await.unwrap(),
                    expected,
                    "{path:?}"
                );
            }
        }
        for size in SIZES {
            write_partials_at(&lean, size, &served).await.unwrap();
            for path in partial_paths(size) {
                assert_eq!(stored(&lean, path).await, stored(&reference, path).await);
            }
        }
        // Without the right edge the store alone cannot answer for the partial objects.
        let level0 = TilePath::Hash(TileId::new(0, 273, 5).unwrap());
        assert_eq!(
            read_object(&lean, &served_from_store(70_000), level0)
                .await
                .unwrap(),
            None
        );
        // A right edge of another size is not used.
        let stale = Served {
            integrated_size: 70_001,
            ..served.clone()
        };
        assert_eq!(read_object(&lean, &stale, level0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn nothing_is_derived_beyond_the_integrated_size() {
        let leaves: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 3]).collect();
        let store = TileStore::in_memory();
        integrate(&store, &leaves, &[300]).await;
        let served = served_from_store(300);
        let wider = TilePath::Entries(BundleId::new(1, 45).unwrap());
        assert_eq!(derive_partial(&store, &served, wider).await.unwrap(), None);
        let narrower = TilePath::Entries(BundleId::new(1, 44).unwrap());
        assert!(derive_partial(&store, &served, narrower)
            .await
            .unwrap()
            .is_some());
        let full = TilePath::Hash(TileId::new(0, 0, 256).unwrap());
        assert_eq!(derive_partial(&store, &served, full).await.unwrap(), None);
        assert!(read_object(&store, &served, full).await.unwrap().is_some());
    }
}
