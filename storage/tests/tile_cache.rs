//! The tile store's read cache: immutable tiles and bundles (full and partial) are served
//! from memory after a write or a first read, the byte bound holds, and the checkpoint is
//! never cached. The backend is an `InMemory` store we also touch directly, so a read the
//! cache answers is told apart from one the backend answers.

use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rekor_storage::tile_store::{is_immutable_path, CacheStats, TileStore};
use rekor_storage::tiles::{BundleId, TileId};

fn store_over(capacity: usize) -> (Arc<InMemory>, TileStore) {
    let backend = Arc::new(InMemory::new());
    let store = TileStore::new(backend.clone(), "").with_cache_capacity(capacity);
    (backend, store)
}

async fn delete(backend: &InMemory, path: &str) {
    backend.delete(&Path::from(path)).await.unwrap();
}

#[tokio::test]
async fn reads_after_writes_are_served_from_the_cache() {
    let (backend, store) = store_over(1 << 20);
    let full = TileId::new(0, 7, 256).unwrap();
    let partial = TileId::new(1, 0, 3).unwrap();
    let full_bytes = Bytes::from(vec![1u8; 8192]);
    let partial_bytes = Bytes::from(vec![2u8; 96]);
    store.put_tile(full, full_bytes.clone()).await.unwrap();
    store
        .put_tile(partial, partial_bytes.clone())
        .await
        .unwrap();
    store
        .put_bundle(2, 256, Bytes::from_static(b"full bundle"))
        .await
        .unwrap();
    store
        .put_bundle(3, 5, Bytes::from_static(b"partial bundle"))
        .await
        .unwrap();

    // Remove every object from the backend: only the cache can answer now.
    for path in [
        full.path(),
        partial.path(),
        BundleId::new(2, 256).unwrap().path(),
        BundleId::new(3, 5).unwrap().path(),
    ] {
        delete(&backend, &path).await;
    }
    assert_eq!(store.get_tile(full).await.unwrap(), Some(full_bytes));
    assert_eq!(store.get_tile(partial).await.unwrap(), Some(partial_bytes));
    assert_eq!(
        store.get_bundle(2, 256).await.unwrap().as_deref(),
        Some(&b"full bundle"[..])
    );
    assert_eq!(
        store
            .get_path("tile/entries/003.p/5")
            .await
            .unwrap()
            .as_deref(),
        Some(&b"partial bundle"[..])
    );
    let stats = store.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (4, 0, 4));

    // A clone shares the cache.
    let clone = store.clone();
    assert!(clone.get_tile(full).await.unwrap().is_some());
    assert_eq!(store.cache_stats().hits, 5);
}

#[tokio::test]
async fn the_first_read_fills_the_cache_and_absence_is_not_cached() {
    let (backend, store) = store_over(1 << 20);
    let id = TileId::new(0, 1, 256).unwrap();
    // Not there yet: a miss, and nothing remembered.
    assert_eq!(store.get_tile(id).await.unwrap(), None);
    // Another writer (say the same bucket from another node) puts it.
    backend
        .put(&Path::from(id.path()), PutPayload::from_static(&[9u8; 32]))
        .await
        .unwrap();
    assert_eq!(store.get_tile(id).await.unwrap().unwrap().len(), 32);
    assert_eq!(store.cache_stats().misses, 2);
    delete(&backend, &id.path()).await;
    assert_eq!(store.get_tile(id).await.unwrap().unwrap().len(), 32);
    assert_eq!(store.cache_stats().hits, 1);
}

#[tokio::test]
async fn the_checkpoint_is_never_cached() {
    let (backend, store) = store_over(1 << 20);
    store
        .put_checkpoint(Bytes::from_static(b"size 1"))
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint().await.unwrap().as_deref(),
        Some(&b"size 1"[..])
    );
    // Changed behind the store's back: the store must see it at once.
    backend
        .put(
            &Path::from("checkpoint"),
            PutPayload::from_static(b"size 2"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_checkpoint().await.unwrap().as_deref(),
        Some(&b"size 2"[..])
    );
    assert_eq!(
        store.get_path("checkpoint").await.unwrap().as_deref(),
        Some(&b"size 2"[..])
    );
    delete(&backend, "checkpoint").await;
    assert_eq!(store.get_checkpoint().await.unwrap(), None);
    assert_eq!(
        store.cache_stats(),
        CacheStats {
            capacity: 1 << 20,
            ..CacheStats::default()
        }
    );
}

#[tokio::test]
async fn the_byte_bound_holds_and_the_least_recently_used_go_first() {
    const CAPACITY: usize = 10_000;
    let (backend, store) = store_over(CAPACITY);
    let ids: Vec<TileId> = (0..30).map(|i| TileId::new(0, i, 256).unwrap()).collect();
    for (n, id) in ids.iter().enumerate() {
        store
            .put_tile(*id, Bytes::from(vec![n as u8; 1000]))
            .await
            .unwrap();
        // Keep tile 0 in use: it must survive every eviction.
        assert!(store.get_tile(ids[0]).await.unwrap().is_some());
        let stats = store.cache_stats();
        assert!(stats.bytes <= CAPACITY, "{stats:?}");
    }
    let stats = store.cache_stats();
    // 1000 bytes + a ~13-byte path each: nine fit in 10 000.
    assert_eq!(stats.entries, 9, "{stats:?}");
    for id in &ids {
        delete(&backend, &id.path()).await;
    }
    // Tile 0 and the eight newest are cached; the rest are gone with the backend copies.
    assert!(store.get_tile(ids[0]).await.unwrap().is_some());
    for id in &ids[22..] {
        assert!(store.get_tile(*id).await.unwrap().is_some(), "{id:?}");
    }
    for id in &ids[1..22] {
        assert_eq!(store.get_tile(*id).await.unwrap(), None, "{id:?}");
    }

    // An object bigger than the whole cache is not kept (and evicts nothing).
    let big = TileId::new(2, 0, 256).unwrap();
    store
        .put_tile(big, Bytes::from(vec![0u8; CAPACITY + 1]))
        .await
        .unwrap();
    assert_eq!(store.cache_stats().entries, 9);
}

#[tokio::test]
async fn capacity_zero_turns_the_cache_off() {
    let (backend, store) = store_over(0);
    let id = TileId::new(0, 0, 256).unwrap();
    store
        .put_tile(id, Bytes::from(vec![1u8; 64]))
        .await
        .unwrap();
    delete(&backend, &id.path()).await;
    assert_eq!(store.get_tile(id).await.unwrap(), None);
    assert_eq!(store.cache_stats().entries, 0);
}

#[test]
fn only_tile_and_bundle_paths_are_cacheable() {
    for path in [
        "tile/0/000",
        "tile/0/x001/234.p/3",
        "tile/entries/000",
        "tile/entries/x001/002.p/17",
    ] {
        assert!(is_immutable_path(path), "{path}");
    }
    for path in [
        "checkpoint",
        "tile/../checkpoint",
        "tile/./0/000",
        "tile//0/000",
        "tile/",
        "",
        "tiles/0/000",
    ] {
        assert!(!is_immutable_path(path), "{path}");
    }
}
