//! The tile store: the only module that does IO. Hash tiles, entry bundles and the
//! checkpoint live in an `object_store` backend under their C2SP paths
//! (`tile/0/x001/234`, `tile/entries/000.p/3`, `checkpoint`; tlog-tiles.md §2).
//!
//! Durability promise: every `put_*` returns only once the object is durable. The
//! local backend is opened with `with_fsync(true)` (file and parent directory are
//! synced before success); cloud backends acknowledge only durable writes.
//!
//! Tiles and bundles are create-once (`PutMode::Create`). Integration is
//! deterministic, so a retry after a crash or an ambiguous timeout writes the same
//! bytes: on `AlreadyExists` the object is read back and identical bytes count as
//! success; different bytes are a [`TileStoreError::Conflict`] (a bug or a fork).
//! The checkpoint is overwritten in place (rust-stack.md §5).
//!
//! Read cache: tiles and bundles never change once written (a partial `.p/<w>` object
//! is immutable for its width too), so a bounded in-memory cache ([`ReadCache`], shared
//! by clones of a store) keeps recently written or read ones and answers reads without a
//! backend round trip; docs/benchmarks.md measured tile reads through the backend at half
//! of nginx's rate. The checkpoint is never cached: it is the one mutable object.
//!
//! Local reads: on a local directory, a tile or bundle the cache misses is read straight from
//! its file ([`read_local_file`]) rather than through `object_store`'s `LocalFileSystem`, which
//! takes two blocking-pool hops and zero-fills a buffer of the object's size before reading
//! into it (a profile of bundle reads had that `memset` at 11% of the node's CPU). Writes
//! still go through `object_store` (a temporary file renamed into place, fsynced), so a
//! direct read sees either no file or the whole object.

use crate::integrate::Integration;
use crate::proof::TileSet;
use crate::tiles::{BundleId, TileError, TileId, TILE_WIDTH};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The object key of the checkpoint.
pub const CHECKPOINT_PATH: &str = "checkpoint";

/// Default bound of a store's read cache, in bytes of cached objects.
pub const DEFAULT_CACHE_CAPACITY: usize = 64 * 1024 * 1024;

/// Tile and bundle writes in flight at once while an integration is written.
pub const WRITE_CONCURRENCY: usize = 32;

/// Why a tile-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TileStoreError {
    /// A create-once object already holds different bytes.
    #[error("conflicting object at {path}: existing bytes differ from the new ones")]
    Conflict { path: String },
    /// The store URL is not one we can open.
    #[error("unsupported tile store URL {0:?}")]
    UnsupportedUrl(String),
    /// A backend option key is not known to the backend.
    #[error("unknown option {key:?} for {scheme} tile store")]
    UnknownOption { scheme: &'static str, key: String },
    /// A local directory could not be created.
    #[error("cannot create tile store directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// The backend accepted a second create-once write of the same key: it ignores conditional
    /// writes, and create-once (no two different bytes under one tile path) cannot hold on it.
    #[error(
        "the tile store ignores create-once writes: a second write of {path} replaced the first; \
         use a backend with conditional writes (for S3-compatible stores, If-None-Match support)"
    )]
    CreateOnceIgnored { path: String },
    /// Reading an object's file from a local store failed (other than its absence).
    #[error("reading {path}: {source}")]
    LocalRead {
        path: String,
        source: std::io::Error,
    },
    /// An identifier was invalid.
    #[error(transparent)]
    Tile(#[from] TileError),
    /// The backend failed.
    #[error("object store error: {0}")]
    Backend(#[from] object_store::Error),
}

/// A tile store over any `object_store` backend, with an optional key prefix and a read
/// cache of immutable objects (shared by clones).
#[derive(Clone)]
pub struct TileStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    cache: Arc<ReadCache>,
    /// The directory of a local store, whose immutable objects are read directly.
    local_root: Option<Arc<std::path::PathBuf>>,
}

/// Counters of a store's read cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads of tiles and bundles answered from memory.
    pub hits: u64,
    /// Reads of tiles and bundles that went to the backend.
    pub misses: u64,
    /// Objects held now.
    pub entries: usize,
    /// Bytes held now (object bytes plus their path).
    pub bytes: usize,
    /// The bound on `bytes`.
    pub capacity: usize,
}

/// A byte-bounded least-recently-used cache of immutable objects, keyed by C2SP path.
/// Only tiles and bundles go in (see [`is_immutable_path`]); objects larger than the whole
/// capacity are not kept. A capacity of 0 turns it off.
#[derive(Debug)]
pub struct ReadCache {
    capacity: usize,
    inner: Mutex<CacheInner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// Path → (bytes, last-use tick).
    objects: HashMap<String, (Bytes, u64)>,
    /// Last-use tick → path; the first entry is the least recently used.
    by_use: BTreeMap<u64, String>,
    bytes: usize,
    tick: u64,
}

impl CacheInner {
    fn touch(&mut self, path: &str) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let (bytes, used) = self.objects.get_mut(path)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, path.to_string());
        Some(bytes.clone())
    }
}

fn cost(path: &str, bytes: &Bytes) -> usize {
    path.len() + bytes.len()
}

/// Whether `path` names a create-once object (a hash tile or an entry bundle, full or
/// partial) and so may be cached. The checkpoint and anything outside `tile/` may not.
/// Dot segments are refused so no spelling of another key can sneak in.
pub fn is_immutable_path(path: &str) -> bool {
    path.starts_with("tile/")
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

impl ReadCache {
    /// An empty cache holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        ReadCache {
            capacity,
            inner: Mutex::new(CacheInner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // The critical sections cannot leave the maps half-updated in a way that matters
        // (at worst a stale tick), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached bytes of `path`, counting a hit or a miss.
    fn get(&self, path: &str) -> Option<Bytes> {
        if self.capacity == 0 {
            return None;
        }
        let found = self.lock().touch(path);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `bytes` for `path`, evicting the least recently used objects to stay in bound.
    fn insert(&self, path: &str, bytes: Bytes) {
        let size = cost(path, &bytes);
        if size > self.capacity || !is_immutable_path(path) {
            return;
        }
        let mut inner = self.lock();
        if inner.touch(path).is_some() {
            // Immutable: the bytes already held are these bytes.
            return;
        }
        while inner.bytes + size > self.capacity {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = inner.objects.remove(&oldest) {
                inner.bytes -= cost(&oldest, &evicted);
            }
        }
        inner.tick += 1;
        let tick = inner.tick;
        inner.by_use.insert(tick, path.to_string());
        inner.objects.insert(path.to_string(), (bytes, tick));
        inner.bytes += size;
    }

    /// Forgets `path` (a damaged object was replaced).
    fn remove(&self, path: &str) {
        let mut inner = self.lock();
        if let Some((evicted, tick)) = inner.objects.remove(path) {
            inner.bytes -= cost(path, &evicted);
            inner.by_use.remove(&tick);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: inner.objects.len(),
            bytes: inner.bytes,
            capacity: self.capacity,
        }
    }
}

/// Reads a whole file on the blocking pool into a buffer of its size (`std::fs::read` neither
/// zero-fills nor regrows it); `None` if it does not exist. `path` is a store root joined with
/// an [`is_immutable_path`] key, which has no dot segments, so it stays under the root.
async fn read_local_file(path: std::path::PathBuf) -> Result<Option<Bytes>, TileStoreError> {
    let display = path.display().to_string();
    let read = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(|join| TileStoreError::LocalRead {
            path: display.clone(),
            source: std::io::Error::other(join),
        })?;
    match read {
        Ok(bytes) => Ok(Some(Bytes::from(bytes))),
        // Absent, or a path through a file where a directory would be: not there.
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(source) => Err(TileStoreError::LocalRead {
            path: display,
            source,
        }),
    }
}

impl std::fmt::Debug for TileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TileStore")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix)
            .field("cache", &self.cache.stats())
            .finish()
    }
}

impl TileStore {
    /// Wraps an existing backend. `prefix` (may be empty) is prepended to every key.
    /// The read cache holds [`DEFAULT_CACHE_CAPACITY`] bytes; see [`Self::with_cache_capacity`].
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            cache: Arc::new(ReadCache::new(DEFAULT_CACHE_CAPACITY)),
            local_root: None,
        }
    }

    /// The same store with a fresh read cache of `capacity` bytes (0 disables it). Call it
    /// before cloning: clones share one cache.
    pub fn with_cache_capacity(self, capacity: usize) -> Self {
        Self {
            cache: Arc::new(ReadCache::new(capacity)),
            ..self
        }
    }

    /// The file holding the object at `path`, for a store on a local directory and a
    /// create-once path ([`is_immutable_path`]); `None` for any other store or path. Objects
    /// are written to a staging file and linked into place, so a file that exists is complete.
    /// For readers that hand the file to the socket themselves (`sendfile`) instead of reading
    /// it through [`Self::get_path`] and its cache.
    pub fn local_file(&self, path: &str) -> Option<std::path::PathBuf> {
        let root = self.local_root.as_ref()?;
        is_immutable_path(path).then(|| root.join(path))
    }

    /// Hit/miss counters and size of the read cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// An in-memory store (tests, benchmarks).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(InMemory::new()), "")
    }

    /// Opens a store from a URL:
    /// - `file://<dir>` or a plain directory path: local filesystem with fsync, the
    ///   directory is created if missing;
    /// - `memory://`: in memory;
    /// - `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]`:
    ///   the object_store builder configured from the environment, then from
    ///   `options` (object_store config keys such as `endpoint`, `region`,
    ///   `allow_http`, `virtual_hosted_style_request`, `access_key_id`).
    pub fn from_url(url: &str, options: &BTreeMap<String, String>) -> Result<Self, TileStoreError> {
        let unsupported = || TileStoreError::UnsupportedUrl(url.to_string());
        let Some((scheme, rest)) = url.split_once("://") else {
            return Self::local(url);
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        match scheme {
            "file" => Self::local(rest),
            "memory" => Ok(Self::in_memory()),
            "s3" | "gs" | "az" if bucket.is_empty() => Err(unsupported()),
            "s3" => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key: AmazonS3ConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "s3",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            "gs" => {
                let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key: GoogleConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "gs",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            "az" => {
                let mut b = MicrosoftAzureBuilder::from_env().with_container_name(bucket);
                for (k, v) in options {
                    let key: AzureConfigKey =
                        k.parse().map_err(|_| TileStoreError::UnknownOption {
                            scheme: "az",
                            key: k.clone(),
                        })?;
                    b = b.with_config(key, v);
                }
                Ok(Self::new(Arc::new(b.build()?), prefix))
            }
            _ => Err(unsupported()),
        }
    }

    fn local(dir: &str) -> Result<Self, TileStoreError> {
        if dir.is_empty() {
            return Err(TileStoreError::UnsupportedUrl(dir.to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|source| TileStoreError::CreateDir {
            path: dir.to_string(),
            source,
        })?;
        // with_fsync(true): a put returns only after the file and its parent
        // directory are synced, so a tile we announce survives a power loss.
        let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        let root = std::fs::canonicalize(dir).map_err(|source| TileStoreError::CreateDir {
            path: dir.to_string(),
            source,
        })?;
        Ok(Self {
            local_root: Some(Arc::new(root)),
            ..Self::new(Arc::new(fs), "")
        })
    }

    fn key(&self, path: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(path)
        } else {
            Path::from(format!("{}/{}", self.prefix, path))
        }
    }

    /// Writes a create-once object; identical existing bytes count as success.
    async fn put_once(&self, path: &str, bytes: Bytes) -> Result<(), TileStoreError> {
        let key = self.key(path);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&key, PutPayload::from_bytes(bytes.clone()), opts)
            .await
        {
            Ok(_) => {
                self.cache.insert(path, bytes);
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                // A retry of our own write (or another node's identical one) is fine:
                // integration is deterministic. Anything else means a fork or a bug.
                let existing = self.store.get(&key).await?.bytes().await?;
                if existing == bytes {
                    self.cache.insert(path, bytes);
                    Ok(())
                } else {
                    Err(TileStoreError::Conflict {
                        path: path.to_string(),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Overwrites a create-once object found damaged (durable on return). Only for repair:
    /// `bytes` must be the object's one right content, proven by the caller (the integrator
    /// checks it against the committed root, [`crate::repair`]).
    pub async fn replace_damaged(&self, path: &str, bytes: Bytes) -> Result<(), TileStoreError> {
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.store
            .put_opts(&self.key(path), PutPayload::from_bytes(bytes.clone()), opts)
            .await?;
        self.cache.remove(path);
        self.cache.insert(path, bytes);
        Ok(())
    }

    /// Reads an object; tiles and bundles through the read cache.
    async fn get_opt(&self, path: &str) -> Result<Option<Bytes>, TileStoreError> {
        let cacheable = is_immutable_path(path);
        if cacheable {
            if let Some(bytes) = self.cache.get(path) {
                return Ok(Some(bytes));
            }
        }
        if let Some(root) = self.local_root.as_ref().filter(|_| cacheable) {
            let bytes = read_local_file(root.join(path)).await?;
            if let Some(bytes) = &bytes {
                self.cache.insert(path, bytes.clone());
            }
            return Ok(bytes);
        }
        match self.store.get(&self.key(path)).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                if cacheable {
                    self.cache.insert(path, bytes.clone());
                }
                Ok(Some(bytes))
            }
            // Absence is not cached: the object may be written next.
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that the backend honours create-once writes: writes a probe object, then a second,
    /// different one under the same key, which must be refused. A backend that silently replaces
    /// the first (an S3-compatible server without conditional writes) would let two different
    /// tiles exist under one path, so a node must not run on it. The probe object is removed.
    pub async fn probe_create_once(&self) -> Result<(), TileStoreError> {
        use rand_core::RngCore;
        let mut nonce = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut nonce);
        let path = format!(".probes/create-once-{}", hex::encode(nonce));
        let key = self.key(&path);
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.store
            .put_opts(&key, PutPayload::from_static(b"first"), create())
            .await?;
        let second = self
            .store
            .put_opts(&key, PutPayload::from_static(b"second"), create())
            .await;
        // Best effort: a probe left behind is harmless and outside every tile path.
        let _ = self.store.delete(&key).await;
        match second {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Ok(_) => Err(TileStoreError::CreateOnceIgnored { path }),
            Err(error) => Err(error.into()),
        }
    }

    /// Writes a hash tile (create-once, durable on return).
    pub async fn put_tile(&self, id: TileId, bytes: Bytes) -> Result<(), TileStoreError> {
        self.put_once(&id.path(), bytes).await
    }

    /// Reads a hash tile; `None` if it does not exist.
    pub async fn get_tile(&self, id: TileId) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(&id.path()).await
    }

    /// Writes entry bundle `index` of `width` entries (256 = full; create-once).
    pub async fn put_bundle(
        &self,
        index: u64,
        width: u16,
        bytes: Bytes,
    ) -> Result<(), TileStoreError> {
        let id = BundleId::new(index, width)?;
        self.put_once(&id.path(), bytes).await
    }

    /// Reads entry bundle `index` of `width` entries; `None` if it does not exist.
    pub async fn get_bundle(
        &self,
        index: u64,
        width: u16,
    ) -> Result<Option<Bytes>, TileStoreError> {
        let id = BundleId::new(index, width)?;
        self.get_opt(&id.path()).await
    }

    /// Overwrites the checkpoint (durable on return).
    pub async fn put_checkpoint(&self, bytes: Bytes) -> Result<(), TileStoreError> {
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.store
            .put_opts(
                &self.key(CHECKPOINT_PATH),
                PutPayload::from_bytes(bytes),
                opts,
            )
            .await?;
        Ok(())
    }

    /// Reads the checkpoint; `None` if none was written yet.
    pub async fn get_checkpoint(&self) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(CHECKPOINT_PATH).await
    }

    /// Writes every tile, then every bundle, of an integration, [`WRITE_CONCURRENCY`] at a
    /// time; returns once all are durable. Safe to repeat after a crash (identical bytes are
    /// accepted).
    pub async fn put_integration(&self, out: &Integration) -> Result<(), TileStoreError> {
        self.put_objects(out.tiles.clone(), out.bundles.clone())
            .await
    }

    /// [`Self::put_integration`] of objects handed over, each dropped once it is durable.
    pub(crate) async fn put_objects(
        &self,
        tiles: Vec<(TileId, Bytes)>,
        bundles: Vec<(BundleId, Bytes)>,
    ) -> Result<(), TileStoreError> {
        futures::stream::iter(
            tiles
                .into_iter()
                .map(|(id, bytes)| self.put_tile(id, bytes)),
        )
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<()>()
        .await?;
        futures::stream::iter(
            bundles
                .into_iter()
                .map(|(id, bytes)| self.put_bundle(id.index, id.width, bytes)),
        )
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect::<()>()
        .await
    }

    /// Fetches the tiles a proof needs (from [`crate::proof::tiles_for_inclusion`] and
    /// friends) concurrently. A partial tile that was garbage-collected is replaced by
    /// the full tile of the same index, which holds it as a prefix. A tile that is
    /// missing both ways is left out; building the proof then reports it.
    pub async fn fetch_tile_set(&self, ids: &[TileId]) -> Result<TileSet, TileStoreError> {
        let fetched = futures::future::try_join_all(ids.iter().map(|id| async move {
            if let Some(bytes) = self.get_tile(*id).await? {
                return Ok::<_, TileStoreError>(Some((*id, bytes)));
            }
            if id.is_full() {
                return Ok(None);
            }
            let full = TileId {
                width: TILE_WIDTH,
                ..*id
            };
            Ok(self.get_tile(full).await?.map(|b| (full, b)))
        }))
        .await?;
        Ok(TileSet::from_fetched(fetched.into_iter().flatten())?)
    }

    /// Reads any object by its C2SP path relative to the store root (for serving).
    pub async fn get_path(&self, path: &str) -> Result<Option<Bytes>, TileStoreError> {
        self.get_opt(path).await
    }
}
