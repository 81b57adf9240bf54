//! Partial tiles and bundles derived from wider ones (tlog-tiles §3: the partial tile or bundle
//! of width `w` is a prefix of every wider version of the same index, up to the full one).
//!
//! Why: the integrator writes partial objects only where a step ends, not at every Raft batch
//! boundary, so most sizes have no partial objects of their own on disk. Two places need them:
//! - before a node serves (and writes to its store) a committed checkpoint of size `s`, it
//!   writes the partial objects of size `s` ([`write_partials_at`]), so a reader that goes to
//!   the store directly (a public bucket) finds every object that checkpoint implies;
//! - a reader of this node's HTTP API may ask for the partial objects of any older size, for
//!   example of a checkpoint another node served; [`derive_partial`] cuts them out of the
//!   objects at this node's integrated size.
//!
//! Both only read objects this node already made durable, so they serve the same bytes as the
//! node that integrated at that size (tiles are a deterministic function of the log).

use bytes::Bytes;
use rekor_storage::tile_store::{TileStore, TileStoreError};
use rekor_storage::tiles::{
    bundle_at_size, bundle_prefix, tile_at_size, tile_prefix, BundleId, TileId, TilePath,
    TILE_WIDTH,
};

/// Levels that can hold a partial tile of a tree of at most 2^64 leaves.
const TILE_LEVELS: u8 = 8;

/// The partial object `path` cut out of the wider object with the same index at
/// `integrated_size`; `None` if `path` is not partial or this node has not integrated that far.
pub async fn derive_partial(
    store: &TileStore,
    path: TilePath,
    integrated_size: u64,
) -> Result<Option<Bytes>, TileStoreError> {
    match path {
        TilePath::Hash(id) if !id.is_full() => {
            let Some(source) = tile_at_size(id.level, id.index, integrated_size) else {
                return Ok(None);
            };
            if source.width < id.width {
                return Ok(None);
            }
            let Some(bytes) = store.get_tile(source).await? else {
                return Ok(None);
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
            let Some(bytes) = store.get_bundle(source.index, source.width).await? else {
                return Ok(None);
            };
            Ok(bundle_prefix(&bytes, id.width).map(|prefix| bytes.slice_ref(prefix)))
        }
        _ => Ok(None),
    }
}

/// Writes the partial tiles and the partial bundle of tree `size` (create-once: those that
/// exist are left as they are), derived from the objects at `integrated_size >= size`.
pub async fn write_partials_at(
    store: &TileStore,
    size: u64,
    integrated_size: u64,
) -> anyhow::Result<()> {
    if size == integrated_size {
        // A step ended here: the integrator wrote them.
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
        let bytes = derive_partial(store, TilePath::Hash(id), integrated_size)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no tile to derive {} from", id.path()))?;
        store.put_tile(id, bytes).await?;
    }
    if !size.is_multiple_of(width) {
        let id = BundleId::new(size / width, (size % width) as u16)?;
        let bytes = derive_partial(store, TilePath::Entries(id), integrated_size)
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

    #[tokio::test]
    async fn derived_partials_equal_the_ones_integration_writes() {
        let leaves: Vec<Vec<u8>> = (0..70_000u32)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        // Reference: a step ends at every size we look at.
        let sizes = [1u64, 255, 257, 300, 65_535, 65_537, 66_000];
        let reference = TileStore::in_memory();
        let mut steps = Vec::new();
        let mut last = 0u64;
        for size in sizes.iter().chain([&70_000]) {
            steps.push((size - last) as usize);
            last = *size;
        }
        integrate(&reference, &leaves, &steps).await;
        // Derived: one big step, then the partials of each size cut out of it.
        let derived = TileStore::in_memory();
        integrate(&derived, &leaves, &[70_000]).await;
        for size in sizes {
            write_partials_at(&derived, size, 70_000).await.unwrap();
            for level in 0..3u8 {
                let count = size >> (8 * u32::from(level));
                if count.is_multiple_of(256) {
                    continue;
                }
                let id = TileId::new(level, count / 256, (count % 256) as u16).unwrap();
                assert_eq!(
                    derived.get_tile(id).await.unwrap(),
                    reference.get_tile(id).await.unwrap(),
                    "tile {} at size {size}",
                    id.path()
                );
            }
            let (index, width) = (size / 256, (size % 256) as u16);
            assert_eq!(
                derived.get_bundle(index, width).await.unwrap(),
                reference.get_bundle(index, width).await.unwrap(),
                "bundle at size {size}"
            );
        }
    }

    #[tokio::test]
    async fn nothing_is_derived_beyond_the_integrated_size() {
        let leaves: Vec<Vec<u8>> = (0..300u32).map(|i| vec![i as u8; 3]).collect();
        let store = TileStore::in_memory();
        integrate(&store, &leaves, &[300]).await;
        let wider = TilePath::Entries(BundleId::new(1, 45).unwrap());
        assert_eq!(derive_partial(&store, wider, 300).await.unwrap(), None);
        let narrower = TilePath::Entries(BundleId::new(1, 44).unwrap());
        assert!(derive_partial(&store, narrower, 300)
            .await
            .unwrap()
            .is_some());
        let full = TilePath::Hash(TileId::new(0, 0, 256).unwrap());
        assert_eq!(derive_partial(&store, full, 300).await.unwrap(), None);
    }
}
